#!/usr/bin/env python
"""Build the course website: every notebook in `nbs/`, with its saved outputs, as static HTML.

    python tools/build_site.py                 # writes _site/: open _site/index.html, or
    python -m http.server -d _site 8000        # and browse http://127.0.0.1:8000
    python tools/build_site.py --out DIR       # somewhere else

Pages are nbconvert's `lab` template plus: a sidebar listing every lesson, the core track then the appendix, a table of contents per page built
from its headings, exercise solutions (code cells tagged `solution`) folded in `<details>`, nbdev's `#| hide` cells left
out and its directives stripped from the code that is shown, previous/next links. Exported code (`#| export`) is shown:
here the code is the lesson (nbdev's own docs hide it and show only the signatures).

Nothing is fetched from the internet when a page is read: figures are embedded as data URIs; MathJax 3 comes from the
`django-static-mathjax` package (a dev requirement: its one-file TeX-to-SVG bundle, 2 MB with the fonts inside, is
copied into `_static/mathjax/`); the stock template's other CDN scripts (require.js, mermaid, the widget manager) are
left out, since no notebook here needs them; a live widget's place says it appears in JupyterLab.
Quarto (`nbdev_docs`) renders a richer site where it is installed; this needs only the dev requirements.
`tools/check_site.py` opens every page in headless Chromium and checks what this writes (`manifest.json`).
"""
import argparse, html, importlib.util, json, re, shutil, sys, time
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
.site-pager { display: flex; justify-content: space-between; gap: 16px; margin-top: 40px; padding-top: 14px; border-top: 1px solid #dcdfe4;
  font: 14px var(--jp-ui-font-family); }
.site-pager a { color: #1d4ed8; text-decoration: none; }
"""

def nav_html(pages, current):
    "The sidebar: every page in order, the current one marked, the core track and the appendix under their own headings."
    items, group = [], None
    for p in pages:
        g = None if p['stem'] == 'index' else 'Appendix' if is_appendix(p['stem']) else 'Core track'
        if g != group and g: items.append(f'<li class="site-nav-group">{g}</li>')
        group = g
        num = p['stem'].split('_')[0] if p['stem'][:2].isdigit() else ''
        label = 'Overview' if p['stem'] == 'index' else p['title']
        cur = ' aria-current="page"' if p['stem'] == current else ''
        items.append(f'<li><a href="{p["href"]}"{cur}><span class="num">{html.escape(num)}</span>'
                     f'<span class="label">{html.escape(label)}</span></a></li>')
    return ('<nav class="site-nav" aria-label="Lessons"><a class="site-brand" href="index.html">ijepa_edu</a>'
            '<div class="site-tagline">I-JEPA, step by step</div><ol>' + ''.join(items) + '</ol></nav>')

def pager_html(pages, i):
    "Previous / next links at the foot of a page."
    prev = f'<a rel="prev" href="{pages[i-1]["href"]}">&larr; {html.escape(pages[i-1]["title"])}</a>' if i > 0 else '<span></span>'
    nxt = (f'<a rel="next" href="{pages[i+1]["href"]}">{html.escape(pages[i+1]["title"])} &rarr;</a>'
           if i + 1 < len(pages) else '<span></span>')
    return f'<nav class="site-pager" aria-label="Previous and next">{prev}{nxt}</nav>'

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

def build(out=ROOT / '_site', nbs=ROOT / 'nbs', quiet=False):
    "Render every page into `out` (replaced if it is an earlier build) and write `out/manifest.json`; return the manifest."
    t0, out, nbs = time.time(), Path(out), Path(nbs)
    if out.exists():
        if any(out.iterdir()) and not (out / 'manifest.json').exists():
            raise SystemExit(f'{out} exists and is not a site built by this script: refusing to replace it')
        shutil.rmtree(out)
    out.mkdir(parents=True)
    mj = mathjax_file()
    if mj: (out / MATHJAX).parent.mkdir(parents=True); shutil.copy(mj, out / MATHJAX)
    else: print('warning: django-static-mathjax is not installed (pip install -e ".[dev]"): formulas stay as TeX', file=sys.stderr)

    paths = reading_order(lesson_paths(nbs))
    if not paths: raise SystemExit(f'no notebooks in {nbs}')
    raw = {p: nbformat.read(p, as_version=4) for p in paths}
    pages = [dict(stem=p.stem, href=f'{p.stem}.html', source=str(p.relative_to(nbs.parent)) if p.is_relative_to(nbs.parent) else str(p),
                  title=title_of(raw[p], p.stem)) for p in paths]
    stems = {p.stem for p in paths}

    exporter = HTMLExporter(template_name='lab', extra_loaders=[jinja2.DictLoader({'site.html.j2': TEMPLATE})],
                            template_file='site.html.j2', exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    for i, (p, page) in enumerate(zip(paths, pages)):
        nb, counts = prepare(raw[p])
        math = has_math(nb)
        resources = {'metadata': {'name': f'{page["title"]} · ijepa_edu', 'path': str(p.parent)},
                     'site': dict(css=CSS, nav=nav_html(pages, page['stem']), pager=pager_html(pages, i), mathjax=MATHJAX if math and mj else '')}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        heads = headings(body)
        body = body.replace('<!--SITE-TOC-->', toc_html(heads), 1)
        # links between lessons: `04_masks.ipynb#x` -> `04_masks.html#x`
        body = body.replace('href="_site/', 'href="')   # the README's link to the site, seen from inside the site
        body = re.sub(r'href="(?:\.\./)?(?:nbs/)?([\w-]+)\.ipynb(#[^"]*)?"',
                      lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"' if m.group(1) in stems else m.group(0), body)
        # the README's lesson table names each notebook: make the names links
        body = re.sub(r'<td><code>([\w-]+)</code></td>',
                      lambda m: f'<td><a href="{m.group(1)}.html"><code>{m.group(1)}</code></a></td>' if m.group(1) in stems else m.group(0), body)
        (out / page['href']).write_text(body, encoding='utf-8')
        page.update(counts, headings=[dict(level=lv, id=hid, text=t) for lv, hid, t in heads], math=math,
                    bytes=len(body.encode()))
        if not quiet: print(f'{page["href"]:28s} {len(body) / 1e6:5.2f} MB  {counts["images"]:3d} figures  '
                            f'{len(heads):3d} headings  {counts["solutions"]} solutions')
    manifest = dict(pages=pages, mathjax=bool(mj), built_in_s=round(time.time() - t0, 1))
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    if not quiet: print(f'{len(pages)} pages in {out} ({time.time() - t0:.1f} s)')
    return manifest

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_site'), help='output folder (default: _site/ in the repository)')
    ap.add_argument('--nbs', default=str(ROOT / 'nbs'), help='notebook folder (default: nbs/)')
    a = ap.parse_args()
    build(a.out, a.nbs)
