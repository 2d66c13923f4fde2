#!/usr/bin/env python
"""Build the course website: every notebook in `nbs/`, with its saved outputs, as static HTML.

    python tools/build_site.py                 # writes _site/: open _site/index.html, or
    python -m http.server -d _site 8000        # and browse http://127.0.0.1:8000
    python tools/build_site.py --out DIR       # somewhere else

Pages are nbconvert's `lab` template plus: a sidebar listing every lesson, the core track then the appendix, then the
course guide (the Markdown pages in `docs/`, and the objectives of every core lesson, generated here from each lesson's
`## Objectives` cell), a table of contents per page built from its headings, nbdev's `#| hide` cells left out and its
directives stripped from the code that is shown, previous/next links. Exercise solutions live outside the lessons, in
`nbs/solutions/<lesson>.ipynb` (GitHub and Colab would show them): each solution cell (tagged `solution`, first line
`# Solution N`) is folded in `<details>` into the lesson's page under the exercise whose markdown says `**Exercise N.**`,
after that exercise's code cells; the solutions notebooks are pages of their own too (linked from the lessons, not in
the sidebar). Links between the course's files (`.ipynb`, `docs/*.md`, the README) become links between pages; a link
to another file of the repository goes to it on GitHub.

    python tools/build_site.py --objectives    # rewrite docs/objectives.md, the same page for GitHub readers Exported code (`#| export`) is shown:
here the code is the lesson (nbdev's own docs hide it and show only the signatures).

Nothing is fetched from the internet when a page is read: figures are embedded as data URIs; MathJax 3 comes from the
`django-static-mathjax` package (a dev requirement: its one-file TeX-to-SVG bundle, 2 MB with the fonts inside, is
copied into `_static/mathjax/`); the stock template's other CDN scripts (require.js, mermaid, the widget manager) are
left out, since no notebook here needs them; a live widget's place says it appears in JupyterLab.
Quarto (`nbdev_docs`) renders a richer site where it is installed; this needs only the dev requirements.
`tools/check_site.py` opens every page in headless Chromium and checks what this writes (`manifest.json`).
"""
import argparse, html, importlib.util, json, posixpath, re, shutil, sys, time
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = '_static/mathjax/tex-svg-full.js'   # where the pages load MathJax from
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/svg+xml', 'image/gif')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'

# The appendix track (README, "The learning path"): engineering and reference pages a course can skip. The sidebar lists
# the core track first (lessons 00-13), then these under their own heading: the appendix is numbered after the core.
FIRST_APPENDIX = 14

def is_appendix(stem): return stem[:2].isdigit() and int(stem[:2]) >= FIRST_APPENDIX

def reading_order(paths):
    "The site's order: the overview, the core lessons, then the appendix, each by number."
    return sorted(paths, key=lambda p: (p.stem != 'index', is_appendix(p.stem), p.stem))

def lesson_paths(nbs=ROOT / 'nbs'):
    "The site's pages in reading order: `index.ipynb` first, then the numbered lessons (nbdev's rule: no `_`/`.` names)."
    nbs = Path(nbs)
    found = [p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.'))]
    return sorted(found, key=lambda p: (p.stem != 'index', p.stem))

def is_core(stem): return stem[:2].isdigit() and not is_appendix(stem)

def solutions_path(lesson, nbs=None):
    "`nbs/solutions/<lesson>.ipynb`: where a lesson's exercise solutions live (it may not exist)."
    lesson = Path(lesson)
    return Path(nbs or lesson.parent) / 'solutions' / lesson.name

# The course guide (docs/*.md) in this order; other Markdown pages there follow by name. `objectives` is generated.
GUIDE_ORDER = ['syllabus', 'objectives', 'appendix', 'results', 'levers', 'running', 'gpu', 'interop', 'official', 'troubleshooting']

def guide_paths(docs):
    "The Markdown pages of the course guide, in the sidebar's order (`objectives.md` is rewritten from the lessons)."
    found = [p for p in Path(docs).glob('*.md') if not p.name.startswith(('_', '.'))] if Path(docs).is_dir() else []
    rank = lambda p: (GUIDE_ORDER.index(p.stem) if p.stem in GUIDE_ORDER else len(GUIDE_ORDER), p.stem)
    return sorted(found, key=rank)

# ---------------------------------------------------------------- nbdev directives
_re_directive = re.compile(r'^\s*#\s*\|\s*(.*?)\s*$')

def split_directives(source):
    "`(directives, code)`: the leading `#| name: value` lines of a code cell as a dict, and the code without them."
    lines, dirs = source.splitlines(), {}
    i = 0
    while i < len(lines):
        m = _re_directive.match(lines[i])
        if m:
            name, value = re.match(r'([\w-]*)\s*:?\s*(.*)', m.group(1)).groups()   # `echo: false`, `default_exp masks`
            dirs[name.lower()] = value.lower()
        elif lines[i].strip():
            break
        i += 1
    return dirs, '\n'.join(lines[i:]).strip('\n')

def _is_false(v): return v in ('false', 'no', '0')
_re_show_doc = re.compile(r'^\s*show_doc\(.*\)\s*(#.*)?$')
_re_link_attrs = re.compile(r'(\]\([^)]*\))\{[^}]*\}')

def prepare(nb):
    """Apply nbdev's display directives to a notebook (a copy is changed) and count what the page should show.
    `hide` or `include: false`: the cell is left out; `echo: false`: only its outputs; `output: false`: only its code;
    other directives (`export`, `default_exp`, ...) are stripped from the code shown; a cell left empty is dropped.
    As in nbdev's docs, a cell that only calls `show_doc` shows its output alone."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))   # deep copy
    cells, images, solutions, widgets = [], 0, 0, 0
    for cell in nb.cells:
        if cell.cell_type == 'raw': continue
        if cell.cell_type == 'code':
            dirs, code = split_directives(cell.source)
            if 'hide' in dirs or _is_false(dirs.get('include', '')): continue
            cell.source = code
            only_show_doc = code.strip() and all(_re_show_doc.match(l) for l in code.splitlines() if l.strip())
            if _is_false(dirs.get('echo', '')) or only_show_doc:   # nbdev's docs show a `show_doc` cell's output only
                cell.metadata['transient'] = {'remove_source': True}
            if _is_false(dirs.get('output', '')): cell.outputs = []
            outs = []
            for out in cell.get('outputs', []):
                data = out.get('data', {})
                if WIDGET_MIME in data:   # no widget state is saved, so a live widget cannot be drawn: say so instead
                    widgets += 1
                    outs.append(nbformat.v4.new_output('display_data', data={'text/html':
                        '<div class="site-widget-note">An interactive widget appears here when the notebook runs in '
                        'JupyterLab.</div>'}))
                    continue
                if 'text/markdown' in data:   # show_doc's `[source](url){target="_blank" ...}` is Quarto's syntax, not ours
                    data['text/markdown'] = _re_link_attrs.sub(r'\1', ''.join(data['text/markdown']))
                images += any(k in data for k in IMAGE_MIMES)
                outs.append(out)
            cell.outputs = outs
            if not cell.source.strip() and not cell.outputs: continue
            if 'solution' in cell.metadata.get('tags', []):
                solutions += 1
                first = cell.source.splitlines()[0].lstrip('#').strip() if cell.source.strip() else ''
                cell.metadata['site_summary'] = first if first.lower().startswith('solution') else 'Solution'
        cells.append(cell)
    nb.cells = cells
    return nb, dict(images=images, solutions=solutions, widgets=widgets)

def title_of(nb, fallback):
    "The notebook's first `# ` heading."
    for cell in nb.cells:
        if cell.cell_type == 'markdown':
            for line in cell.source.splitlines():
                if line.startswith('# '): return line[2:].strip()
    return fallback

_re_exercise = re.compile(r'\*\*Exercise (\d+)\.\*\*')
_re_solution = re.compile(r'^#\s*Solution (\d+)\b')

def solution_cells(sol_nb):
    "`{N: [cells]}`: the code cells tagged `solution` of a solutions notebook, by the `# Solution N` that starts them."
    found, n = {}, None
    for cell in sol_nb.cells:
        if cell.cell_type != 'code' or 'solution' not in cell.metadata.get('tags', []): continue
        m = _re_solution.match(cell.source.lstrip())
        n = int(m.group(1)) if m else n   # a cell without the line continues the solution before it
        if n is not None: found.setdefault(n, []).append(cell)
    return found

def exercise_numbers(nb):
    "The numbers of the exercises a notebook's markdown sets (`**Exercise N.**`), in order."
    return [int(n) for c in nb.cells if c.cell_type == 'markdown' for n in _re_exercise.findall(c.source)]

def fold_solutions(nb, sol_nb):
    """A copy of lesson `nb` with the solution cells of `sol_nb` placed under their exercises: after the markdown cell
    that says `**Exercise N.**` and the code cells that follow it, before the next markdown cell. Returns
    `(notebook, numbers of the solutions that found no exercise)`."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    sols = solution_cells(sol_nb)
    cells, placed, pending = [], set(), []
    def flush():
        for n in pending: cells.extend(nbformat.from_dict(json.loads(json.dumps(c))) for c in sols[n]); placed.add(n)
        pending.clear()
    for cell in nb.cells:
        if cell.cell_type == 'markdown': flush()
        cells.append(cell)
        if cell.cell_type == 'markdown':
            pending.extend(int(n) for n in _re_exercise.findall(cell.source) if int(n) in sols and int(n) not in placed)
    flush()
    nb.cells = cells
    return nb, sorted(set(sols) - placed)

_re_objectives = re.compile(r'^##\s+Objectives\s*$', re.M)
_re_time = re.compile(r'\*Time: about (\d+) minutes\.\*')

def objectives(nb):
    "`(bullets, minutes)` from a lesson's `## Objectives` cell, or `([], None)`."
    for c in nb.cells:
        if c.cell_type == 'markdown' and _re_objectives.search(c.source):
            body = c.source[_re_objectives.search(c.source).end():]
            bullets = []
            for l in body.split('\n## ')[0].splitlines():
                if l.startswith(('- ', '* ')): bullets.append(l[2:].strip())
                elif bullets and l.startswith(' ') and l.strip(): bullets[-1] += ' ' + l.strip()   # a bullet's next line
                elif bullets and not l.startswith(' '): break                                         # the list has ended
            t = _re_time.search(body)
            return bullets, int(t.group(1)) if t else None
    return [], None

def objectives_markdown(nbs=ROOT / 'nbs'):
    "The course guide's page of objectives, written from each core lesson's `## Objectives` cell (so it cannot drift)."
    lines = ['# Objectives of every lesson', '',
             "What a student can do after each core lesson, and how long the lesson takes (reading and running every cell,",
             "without the exercises), as each lesson's `## Objectives` cell states them. `python tools/build_site.py",
             "--objectives` writes this page from the lessons; do not edit it by hand.", '']
    total = 0
    for p in reading_order(lesson_paths(nbs)):
        if not is_core(p.stem): continue
        nb = nbformat.read(p, as_version=4)
        bullets, minutes = objectives(nb)
        total += minutes or 0
        lines += [f'## {p.stem[:2]}: {title_of(nb, p.stem)}', '',
                  f'[{p.name}](../nbs/{p.name}), ' + (f'about {minutes} minutes.' if minutes else 'time not stated yet.'), '']
        lines += [f'- {b}' for b in bullets] or ['- (this lesson has no `## Objectives` cell yet)']
        lines.append('')
    lines += ['## In all', '', f'The core track (lessons 00-13): about {total} minutes, {total / 60:.1f} hours, without the exercises.', '']
    return '\n'.join(lines)

def markdown_notebook(text):
    "A Markdown page as a notebook of one markdown cell, so that it renders as the lessons do."
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])

def has_math(nb):
    "Does any markdown cell hold TeX (`$...$`, `$$...$$`, `\\(...\\)`)?"
    pat = re.compile(r'\$\$.+?\$\$|(?<![\\$])\$[^\s$][^$\n]*?\$|\\\(.+?\\\)', re.S)
    return any(cell.cell_type == 'markdown' and pat.search(re.sub(r'`[^`]*`', '', cell.source)) for cell in nb.cells)

# ---------------------------------------------------------------- page template and style
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}{%- if resources.site.mathjax -%}
<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
  processEscapes: true, processEnvironments: true}, svg: {fontCache: 'global'}};</script>
<script defer src="{{ resources.site.mathjax }}"></script>
{%- endif -%}{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}<style type="text/css">{{ resources.site.css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}
<body class="jp-Notebook site-page" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.site.nav }}
<!--SITE-TOC-->
<main>
{{ resources.site.open }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.site.pager }}
</main>
</body>
{%- endblock body_footer -%}
{%- block any_cell -%}
{%- if 'solution' in cell.metadata.get('tags', []) -%}
<details class="solution"><summary>{{ cell.metadata.get('site_summary', 'Solution') | e }}</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock any_cell -%}
"""

CSS = """
:root { --site-nav-w: 270px; --site-toc-w: 230px; }
body.site-page { margin: 0; padding: 0; overflow: visible; }
.site-nav { position: fixed; top: 0; bottom: 0; left: 0; width: var(--site-nav-w); overflow-y: auto; box-sizing: border-box;
  padding: 18px 12px; background: #f4f5f7; border-right: 1px solid #dcdfe4; font: 14px/1.45 var(--jp-ui-font-family); z-index: 10; }
.site-nav .site-brand { display: block; font-weight: 700; font-size: 17px; margin: 0 8px 4px; color: #111827; text-decoration: none; }
.site-nav .site-tagline { margin: 0 8px 14px; color: #6b7280; font-size: 12px; }
.site-nav ol { list-style: none; margin: 0; padding: 0; }
.site-nav .site-nav-group { margin: 14px 8px 4px; color: #6b7280; font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: 0.05em; }
.site-nav li a { display: flex; gap: 6px; padding: 4px 8px; border-radius: 5px; color: #1f2937; text-decoration: none; }
.site-nav li a:hover { background: #e5e8ee; }
.site-nav li a[aria-current="page"] { background: #dbe6ff; font-weight: 600; }
.site-nav .num { flex: 0 0 1.7em; color: #6b7280; font-variant-numeric: tabular-nums; }
.page-toc { position: fixed; top: 0; right: 0; width: var(--site-toc-w); max-height: 100vh; overflow-y: auto; box-sizing: border-box;
  padding: 18px 14px; font: 13px/1.4 var(--jp-ui-font-family); border-left: 1px solid #eceef1; background: #fff; z-index: 10; }
.page-toc .toc-title { font-weight: 700; margin-bottom: 8px; color: #111827; }
.page-toc ul { list-style: none; margin: 0; padding: 0; }
.page-toc li { margin: 0; }
.page-toc li.toc-h3 { padding-left: 12px; font-size: 12px; }
.page-toc a { display: block; padding: 2px 0; color: #374151; text-decoration: none; }
.page-toc a:hover { color: #1d4ed8; }
body.site-page > main { margin-left: var(--site-nav-w); margin-right: var(--site-toc-w); padding: 8px 28px 48px;
  box-sizing: border-box; max-width: calc(1100px + var(--site-nav-w)); }
@media (max-width: 1180px) { .page-toc { display: none; } body.site-page > main { margin-right: 0; } }
details.solution { margin: 6px 0 10px 0; border: 1px solid #f0d58c; border-radius: 6px; background: #fffaf0; }
details.solution > summary { cursor: pointer; padding: 6px 10px; font: 600 14px var(--jp-ui-font-family); color: #8a5a00; }
details.solution[open] > summary { border-bottom: 1px solid #f0d58c; }
body.site-page .jp-InputArea, body.site-page .jp-InputArea-editor { overflow-x: auto; }   /* long lines scroll, not cut */
.site-widget-note { font-style: italic; color: #555; padding: 4px 0; }
.site-open { font: 13px var(--jp-ui-font-family); margin: 8px 0 0 0; text-align: right; }
.site-open a { color: #1d4ed8; text-decoration: none; }
.site-pager { display: flex; justify-content: space-between; gap: 16px; margin-top: 40px; padding-top: 14px; border-top: 1px solid #dcdfe4;
  font: 14px var(--jp-ui-font-family); }
.site-pager a { color: #1d4ed8; text-decoration: none; }
"""

def nav_html(pages, current):
    "The sidebar: every page in order, the current one marked, the core track, the appendix and the guide under their own headings."
    items, group = [], None
    for p in pages:
        if not p.get('nav', True): continue
        g = {'core': 'Core track', 'appendix': 'Appendix', 'guide': 'Course guide'}.get(p['kind'])
        if g != group and g: items.append(f'<li class="site-nav-group">{g}</li>')
        group = g
        num = p['stem'].split('_')[0] if p['stem'][:2].isdigit() else ''
        label = 'Overview' if p['stem'] == 'index' else p['title']
        cur = ' aria-current="page"' if p['href'] == current else ''
        items.append(f'<li><a href="{p["href"]}"{cur}><span class="num">{html.escape(num)}</span>'
                     f'<span class="label">{html.escape(label)}</span></a></li>')
    return ('<nav class="site-nav" aria-label="Lessons"><a class="site-brand" href="index.html">ijepa_edu</a>'
            '<div class="site-tagline">I-JEPA, step by step</div><ol>' + ''.join(items) + '</ol></nav>')

def pager_html(pages, page):
    "Previous / next links at the foot of a page (in the sidebar's order); a solutions page links back to its lesson."
    if not page.get('nav', True):
        back = next(p for p in pages if p['href'] == page['current'])
        return (f'<nav class="site-pager" aria-label="Previous and next"><a rel="prev" href="{back["href"]}">&larr; '
                f'{html.escape(back["title"])}</a><span></span></nav>')
    seq = [p for p in pages if p.get('nav', True)]
    i = seq.index(page)
    prev = f'<a rel="prev" href="{seq[i-1]["href"]}">&larr; {html.escape(seq[i-1]["title"])}</a>' if i > 0 else '<span></span>'
    nxt = (f'<a rel="next" href="{seq[i+1]["href"]}">{html.escape(seq[i+1]["title"])} &rarr;</a>'
           if i + 1 < len(seq) else '<span></span>')
    return f'<nav class="site-pager" aria-label="Previous and next">{prev}{nxt}</nav>'

_re_href = re.compile(r'(href|src)="(?![a-z][a-z0-9+.-]*:|#|/)([^"#?]+)((?:[?#][^"]*)?)"', re.I)

def repo_url(root=ROOT):
    "The repository on GitHub (settings.ini's user and repo), or None outside a project that has one."
    import configparser
    f = Path(root) / 'settings.ini'
    if not f.exists(): return None
    cp = configparser.ConfigParser(delimiters=['=']); cp.read(f, encoding='utf-8')
    d = cp['DEFAULT']
    return f"https://github.com/{d['user']}/{d['repo']}" if 'user' in d and 'repo' in d else None

def relink(body, base, site_of, root, github=None, branch='main'):
    """Point the relative links of a page written in folder `base` (relative to `root`) at the site: a course file
    (`site_of`: repository path -> page) becomes its page, another file of the repository its GitHub view."""
    def sub(m):
        attr, target, tail = m.groups()
        if target.endswith('.html'): return m.group(0)   # already a page of the site (the sidebar, the pager)
        path = posixpath.normpath(posixpath.join(base, html.unescape(target)))
        if path in site_of: return f'{attr}="{site_of[path]}{tail}"'
        if attr == 'href' and github and not path.startswith('..') and (Path(root) / path).exists():
            kind = 'tree' if (Path(root) / path).is_dir() else 'blob'
            return f'{attr}="{github}/{kind}/{branch}/{path}{tail}"'
        return m.group(0)
    return _re_href.sub(sub, body)

_re_md_cell = re.compile(r'<div[^>]*class="[^"]*jp-MarkdownCell[^"]*"[^>]*>(.*?)(?=<div[^>]*class="[^"]*jp-Cell |\Z)', re.S)
_re_heading = re.compile(r'<h([23])\s+id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)

def headings(body):
    "`(level, id, text)` of the h2/h3 headings written in markdown cells (not those inside outputs)."
    found = []
    for cell in _re_md_cell.findall(body):
        for level, hid, inner in _re_heading.findall(cell):
            text = re.sub(r'<a class="anchor-link".*?</a>', '', inner, flags=re.S)
            text = html.unescape(re.sub(r'<[^>]+>', '', text)).strip()
            found.append((int(level), hid, text))
    return found

def toc_html(heads):
    "The page's table of contents."
    items = ''.join(f'<li class="toc-h{lv}"><a href="#{hid}">{html.escape(text)}</a></li>' for lv, hid, text in heads)
    return f'<nav class="page-toc" aria-label="On this page"><div class="toc-title">On this page</div><ul>{items}</ul></nav>'

def mathjax_file():
    "MathJax 3's one-file TeX-to-SVG bundle (fonts inside, nothing else to fetch) from `django-static-mathjax`, or None."
    spec = importlib.util.find_spec('mathjax')   # that package's module; it needs no Django to be read from
    if spec is None or not spec.submodule_search_locations: return None
    f = Path(list(spec.submodule_search_locations)[0]) / 'static' / 'mathjax' / 'es5' / 'tex-svg-full.js'
    return f if f.exists() else None

def open_html(page, github, branch='main'):
    "A lesson's links to run it in Colab, where its first cell installs the course, and to its source."
    if not github or page['kind'] not in ('core', 'appendix'): return ''
    path = page['source']
    colab = github.replace('https://github.com/', 'https://colab.research.google.com/github/')
    return (f'<div class="site-open"><a href="{colab}/blob/{branch}/{path}">Open in Colab</a> · '
            f'<a href="{github}/blob/{branch}/{path}">the notebook on GitHub</a></div>')

def site_pages(nbs=ROOT / 'nbs', docs=None):
    """Every page of the site, in the sidebar's order: the overview, the core lessons, the appendix, the course guide,
    then the solutions notebooks (pages of their own, not in the sidebar). Each is a dict with `kind`, `path`, `href`."""
    nbs = Path(nbs); docs = Path(docs) if docs else nbs.parent / 'docs'
    pages = []
    for p in reading_order(lesson_paths(nbs)):
        kind = 'index' if p.stem == 'index' else 'appendix' if is_appendix(p.stem) else 'core'
        pages.append(dict(stem=p.stem, kind=kind, path=p, href=f'{p.stem}.html'))
    guide = guide_paths(docs)
    if not any(p.stem == 'objectives' for p in guide) and any(is_core(p.stem) for p in lesson_paths(nbs)):
        guide.insert(min(1, len(guide)), docs / 'objectives.md')   # generated even where docs/ has no copy
    pages += [dict(stem=p.stem, kind='guide', path=p, href=f'{p.stem}.html') for p in guide]
    lessons = {pg['stem']: pg for pg in pages if pg['kind'] in ('core', 'appendix')}
    for p in sorted((nbs / 'solutions').glob('*.ipynb')) if (nbs / 'solutions').is_dir() else []:
        if p.name.startswith(('_', '.')): continue
        pages.append(dict(stem=f'solutions_{p.stem}', kind='solutions', path=p, href=f'solutions_{p.stem}.html', nav=False,
                          current=lessons[p.stem]['href'] if p.stem in lessons else 'index.html'))
    return pages

def build(out=ROOT / '_site', nbs=ROOT / 'nbs', quiet=False, docs=None):
    "Render every page into `out` (replaced if it is an earlier build) and write `out/manifest.json`; return the manifest."
    t0, out, nbs = time.time(), Path(out), Path(nbs)
    root = nbs.parent
    if out.exists():
        if any(out.iterdir()) and not (out / 'manifest.json').exists():
            raise SystemExit(f'{out} exists and is not a site built by this script: refusing to replace it')
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mj = mathjax_file()
    if mj: (out / MATHJAX).parent.mkdir(parents=True); shutil.copy(mj, out / MATHJAX)
    else: print('warning: django-static-mathjax is not installed (pip install -e ".[dev]"): formulas stay as TeX', file=sys.stderr)

    pages = site_pages(nbs, docs)
    if not any(pg['kind'] != 'guide' for pg in pages): raise SystemExit(f'no notebooks in {nbs}')
    raw = {}
    for pg in pages:
        p = pg['path']
        if pg['kind'] == 'guide':
            raw[pg['href']] = markdown_notebook(objectives_markdown(nbs) if p.stem == 'objectives' else p.read_text(encoding='utf-8'))
        else: raw[pg['href']] = nbformat.read(p, as_version=4)
        rel = lambda q: posixpath.relpath(Path(q).resolve().as_posix(), root.resolve().as_posix())
        pg.update(source=rel(p), title=title_of(raw[pg['href']], pg['stem']), nav=pg.get('nav', True))
        pg['base'] = '' if pg['kind'] == 'index' else posixpath.dirname(pg['source'])   # README.md is index.ipynb's text
    site_of = {pg['source']: pg['href'] for pg in pages}
    if any(pg['kind'] == 'index' for pg in pages): site_of['README.md'] = 'index.html'
    stems = {pg['stem'] for pg in pages if pg['kind'] in ('core', 'appendix')}
    github = repo_url(root)

    exporter = HTMLExporter(template_name='lab', extra_loaders=[jinja2.DictLoader({'site.html.j2': TEMPLATE})],
                            template_file='site.html.j2', exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    for page in pages:
        nb, exercises, unplaced, sol_source = raw[page['href']], [], [], None
        if page['kind'] in ('core', 'appendix'):
            exercises = exercise_numbers(nb)
            sol = solutions_path(page['path'])
            if sol.exists():
                sol_source = site_of.get(posixpath.relpath(sol.resolve().as_posix(), root.resolve().as_posix()))
                nb, unplaced = fold_solutions(nb, nbformat.read(sol, as_version=4))
                if unplaced: print(f'warning: {sol.name}: solutions {unplaced} match no **Exercise N.** in the lesson', file=sys.stderr)
        nb, counts = prepare(nb)
        math = has_math(nb)
        resources = {'metadata': {'name': f'{page["title"]} · ijepa_edu', 'path': str(page['path'].parent)},
                     'site': dict(css=CSS, nav=nav_html(pages, page.get('current', page['href'])), pager=pager_html(pages, page),
                                  mathjax=MATHJAX if math and mj else '', open=open_html(page, github))}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        heads = headings(body)
        body = body.replace('<!--SITE-TOC-->', toc_html(heads), 1)
        body = body.replace('href="_site/', 'href="')   # the README's link to the site, seen from inside the site
        body = relink(body, page['base'], site_of, root, github)   # `04_masks.ipynb#x` -> `04_masks.html#x`, ...
        # the README's lesson table names each notebook: make the names links
        body = re.sub(r'<td><code>([\w-]+)</code></td>',
                      lambda m: f'<td><a href="{m.group(1)}.html"><code>{m.group(1)}</code></a></td>' if m.group(1) in stems else m.group(0), body)
        (out / page['href']).write_text(body, encoding='utf-8')
        page.update(counts, headings=[dict(level=lv, id=hid, text=t) for lv, hid, t in heads], math=math,
                    bytes=len(body.encode()), exercises=exercises, unplaced_solutions=unplaced, solutions_page=sol_source)
        page.pop('path'); page.pop('base')
        if not quiet: print(f'{page["href"]:34s} {len(body) / 1e6:5.2f} MB  {counts["images"]:3d} figures  '
                            f'{len(heads):3d} headings  {counts["solutions"]} solutions')
    manifest = dict(pages=pages, mathjax=bool(mj), built_in_s=round(time.time() - t0, 1))
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    if not quiet: print(f'{len(pages)} pages in {out} ({time.time() - t0:.1f} s)')
    return manifest

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_site'), help='output folder (default: _site/ in the repository)')
    ap.add_argument('--nbs', default=str(ROOT / 'nbs'), help='notebook folder (default: nbs/)')
    ap.add_argument('--objectives', action='store_true', help='only rewrite docs/objectives.md from the lessons')
    a = ap.parse_args()
    if a.objectives:
        (ROOT / 'docs').mkdir(exist_ok=True)
        (ROOT / 'docs' / 'objectives.md').write_text(objectives_markdown(a.nbs), encoding='utf-8')
        print('wrote docs/objectives.md')
    else: build(a.out, a.nbs)
