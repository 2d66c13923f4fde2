"""The course website (tools/build_site.py, tools/check_site.py) and the README's list of lessons.

The browser tests need Debian's Chromium: `.ci/run` installs it; without it they are skipped on a developer's machine
and fail in CI (CI is set), so they can never pass by not running."""
import base64, json, os, re, shutil, subprocess, sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import build_site, check_site   # noqa: E402

def need_chromium():
    if check_site.chromium_path() is None:
        msg = "Debian's Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get('CI'): pytest.fail(msg + ': CI must install it (.ci/run does)')
        pytest.skip(msg)

def shots_dir(tmp_path, name):
    "Screenshots go to $SCREENSHOTS/<name> when that is set (to look at them), else into the test's temp folder."
    return Path(os.environ['SCREENSHOTS']) / name if os.environ.get('SCREENSHOTS') else tmp_path / 'shots'

LESSONS = [p for p in build_site.lesson_paths() if p.stem != 'index']
GUIDE = [p for p in build_site.guide_paths(ROOT / 'docs')] + [ROOT / 'docs' / 'objectives.md'] * (not (ROOT / 'docs' / 'objectives.md').exists())

def default_exp(path):
    for c in nbformat.read(path, as_version=4).cells:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', c.source, re.M) if c.cell_type == 'code' else None
        if m: return m.group(1)

# ------------------------------------------------------------------ README
# a row of a lesson table: `| `01_patches` | `patches` | what ... |`, the name alone or as a link; — : a page that exports nothing
ROW = re.compile(r'^\| \[?`(\d\d_\w+)`\]?(?:\([^)]*\))? \| (?:`([\w.]+)`|—) \| (.+?) \|\s*$', re.M)
README_MAX_LINES = 130

def test_readme_lists_every_lesson():
    """Each lesson in nbs/ has one row, with its module and a line on what a student learns, in the README's table (the
    core track) or on the appendix page that the README links to (one click from the front page); no row names a lesson
    that is not there."""
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    assert '](docs/appendix.md)' in readme, 'the README must link to the appendix page'
    rows = {}
    for f in (ROOT / 'README.md', ROOT / 'docs' / 'appendix.md'):
        for m in ROW.finditer(f.read_text(encoding='utf-8')):
            assert m.group(1) not in rows, f'{m.group(1)} is listed twice'
            rows[m.group(1)] = (m.group(2), m.group(3))
    stems = [p.stem for p in LESSONS]
    assert len(stems) >= 15, stems
    assert sorted(rows) == stems, f'rows {sorted(rows)} != lessons {stems}: update the table in nbs/index.ipynb or docs/appendix.md'
    for p in LESSONS:
        module, learns = rows[p.stem]
        assert module == default_exp(p), f'{p.stem}: the table says module {module}, the notebook exports {default_exp(p)}'
        assert len(learns.split()) >= 5, f'{p.stem}: say what a student learns'
    core = [m.group(1) for m in ROW.finditer(readme)]
    assert core == [p.stem for p in LESSONS if not build_site.is_appendix(p.stem)], 'the README lists the core track, in order'

def test_readme_core_table_matches_the_lessons():
    "The README's core table (made by nbs/index.ipynb) shows each lesson's own one-line summary and its stated time, as the lessons say them today."
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    for m in ROW.finditer(readme):
        cells = nbformat.read(ROOT / 'nbs' / f'{m.group(1)}.ipynb', as_version=4).cells
        summary = re.search(r'^> (.*)$', cells[0].source, re.M).group(1)
        minutes = build_site.objectives(nbformat.v4.new_notebook(cells=cells))[1]
        assert m.group(3) == f'{summary} | about {minutes} min', (
            f'{m.group(1)}: the README row is stale; re-run nbs/index.ipynb, then regenerate README.md '
            '(jupyter nbconvert --to notebook --execute --inplace nbs/index.ipynb; see test_readme_is_generated_from_index)')

def test_readme_is_a_front_page():
    "The README stays a front page (about 120 lines): the rest of what a reader needs is on the pages it links to."
    n = len((ROOT / 'README.md').read_text(encoding='utf-8').splitlines())
    assert n <= README_MAX_LINES, f'README.md has {n} lines, at most {README_MAX_LINES}: move detail to a page under docs/'
    readme = (ROOT / 'README.md').read_text(encoding='utf-8')
    for page in ('docs/syllabus.md', 'docs/objectives.md', 'docs/results.md', 'docs/troubleshooting.md', 'docs/official.md'):
        assert f']({page})' in readme, f'the README does not link to {page}'

def test_objectives_page_is_generated_from_the_lessons():
    "docs/objectives.md is what tools/build_site.py makes of the lessons' `## Objectives` cells today (the site renders it afresh)."
    assert (ROOT / 'docs' / 'objectives.md').read_text(encoding='utf-8') == build_site.objectives_markdown(), (
        'docs/objectives.md is stale: python tools/build_site.py --objectives')

def test_readme_is_generated_from_index(tmp_path):
    "README.md is what nbconvert makes of nbs/index.ipynb today (so the list above cannot drift from the notebook)."
    shutil.copy(ROOT / 'nbs' / 'index.ipynb', tmp_path)
    subprocess.run([sys.executable, '-m', 'nbconvert', '--to', 'markdown', str(tmp_path / 'index.ipynb'),
                    '--TemplateExporter.exclude_input=True', '--output-dir', str(tmp_path), '--output', 'README'],
                   check=True, capture_output=True)
    assert (tmp_path / 'README.md').read_text(encoding='utf-8') == (ROOT / 'README.md').read_text(encoding='utf-8'), (
        'README.md is stale: jupyter nbconvert --to markdown nbs/index.ipynb --TemplateExporter.exclude_input=True '
        '--output-dir . --output README')

# ------------------------------------------------------------------ builder, on a toy project
def _png():
    "A small real PNG, base64."
    import io
    from PIL import Image
    buf = io.BytesIO(); Image.new('RGB', (8, 6), (30, 120, 200)).save(buf, 'PNG')
    return base64.b64encode(buf.getvalue()).decode()
PNG = _png()

def toy_project(root):
    "nbs/ with an index and two lessons holding every case the builder handles."
    nbs = root / 'nbs'; nbs.mkdir()
    stream = lambda t: new_output('stream', name='stdout', text=t)
    lesson = new_notebook(cells=[
        new_markdown_cell('# Toy lesson\n\n> One line.'),
        new_code_cell('#| default_exp toy'),
        new_code_cell('#| export\ndef exported_fn(x): return x'),
        new_code_cell('#| hide\nhidden_cell_source = 1', outputs=[stream('hidden cell output')]),
        new_code_cell('show_doc(exported_fn)', outputs=[new_output('display_data', data={'text/markdown':
            '---\n\n[source](https://example.org/toy.py#L1){target="_blank" style="float:right"}\n\n### exported_fn\n\n> exported_fn (x)',
            'text/plain': 'doc'})]),
        new_markdown_cell('## Section A\n\nInline math $x_i^2$ and a [link](02_other.ipynb#Sec).'),
        new_code_cell('#| echo: false\ndraw_the_figure()', outputs=[new_output('display_data', data={'image/png': PNG, 'text/plain': 'fig'})]),
        new_markdown_cell('### Sub B'),
        new_code_cell('#|output: false\nprint("output hidden")', outputs=[stream('hidden by output: false')]),
        new_markdown_cell('## Exercises\n\n**Exercise 1.** Predict x.\n\n*Solution: [solutions/01_toy.ipynb](solutions/01_toy.ipynb), exercise 1.*'),
        new_code_cell('x = 1\nprint(x)', outputs=[stream('exercise one output\n')]),
        new_markdown_cell('**Exercise 2.** Write y.'),
        new_code_cell('explore()', outputs=[new_output('display_data', data={
            'application/vnd.jupyter.widget-view+json': {'model_id': 'abc', 'version_major': 2, 'version_minor': 0},
            'text/plain': 'interactive(children=...)'})]),
    ])
    other = new_notebook(cells=[new_markdown_cell('# Other\n\n## Objectives\n\n- Add two numbers.\n- Read a sum.\n\n*Time: about 5 minutes.*'),
                                new_markdown_cell('## Sec\n\ntext'), new_code_cell('1 + 1')])
    index = new_notebook(cells=[new_markdown_cell('# toyproject\n\n## Start\n\n| notebook | what |\n|---|---|\n| `01_toy` | toys |\n\n'
                                                  'The [guide](docs/guide.md) and [lesson 01](nbs/01_toy.ipynb).')])
    for name, nb in [('index', index), ('01_toy', lesson), ('02_other', other)]:
        nbformat.write(nb, nbs / f'{name}.ipynb')
    solutions = new_notebook(cells=[   # the lesson's solutions, outside it (convention 3 of issue 22)
        new_markdown_cell('# Solutions: lesson 01, Toy lesson\n\nTry each exercise in the lesson first. [Back](../01_toy.ipynb).'),
        new_code_cell('x = 1'),
        new_markdown_cell('## Exercise 2\n\nWrite y.'),
        new_code_cell('# Solution 2\nprint("second solution")', outputs=[stream('second solution\n')], metadata={'tags': ['solution']}),
        new_markdown_cell('## Exercise 1\n\nPredict x.'),
        new_code_cell('# Solution 1\nassert x == 1\nprint("solution ran")', outputs=[stream('solution ran\n')],
                      metadata={'tags': ['solution'], 'jupyter': {'source_hidden': True}}),
        new_code_cell('print("more of solution 1")', outputs=[stream('more of solution 1 ran\n')], metadata={'tags': ['solution']})])
    (nbs / 'solutions').mkdir(); nbformat.write(solutions, nbs / 'solutions' / '01_toy.ipynb')
    docs = root / 'docs'; docs.mkdir()
    (docs / 'guide.md').write_text('# A guide\n\n## Part\n\nSee [lesson 01](../nbs/01_toy.ipynb#Sec) and [the overview](../README.md).\n')
    return nbs

@pytest.fixture(scope='module')
def toy_site(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    manifest = build_site.build(root / 'site', toy_project(root), quiet=True)
    return root / 'site', manifest

def test_builder_applies_nbdev_directives_and_folds_solutions(toy_site):
    site, manifest = toy_site
    assert [p['href'] for p in manifest['pages'] if p['nav']] == ['index.html', '01_toy.html', '02_other.html', 'guide.html', 'objectives.html']
    assert [p['href'] for p in manifest['pages'] if not p['nav']] == ['solutions_01_toy.html']   # a page, not in the sidebar
    page = next(p for p in manifest['pages'] if p['stem'] == '01_toy')
    assert (page['images'], page['solutions'], page['widgets'], page['math']) == (1, 3, 1, True)
    assert (page['exercises'], page['unplaced_solutions'], page['solutions_page']) == ([1, 2], [], 'solutions_01_toy.html')
    html = (site / '01_toy.html').read_text()
    assert 'hidden_cell_source' not in html and 'hidden cell output' not in html       # #| hide: cell left out
    assert 'exported_fn' in html and '#|' not in html and 'default_exp' not in html    # directives stripped
    assert 'draw_the_figure' not in html and f'data:image/png;base64,{PNG}' in html    # echo: false, figure embedded
    assert 'output hidden' in html and 'hidden by output: false' not in html           # output: false
    assert 'show_doc(' not in html and '>exported_fn (x)' in html and '{target=' not in html   # show_doc: output only
    det = re.search(r'<details class="solution"[^>]*><summary>Solution 1</summary>(.*?)</details>', html, re.S)
    assert det and 'solution ran' in det.group(1) and 'print(x)' not in det.group(1)  # folded, closed, only the solution
    # each solution under its own exercise, after the exercise's code cells (exercise 2's is the widget) and before the next exercise
    main = html[html.index('<main'):]
    order = [main.index(t) for t in ('Exercise 1.', 'exercise one output', 'solution ran', 'more of solution 1 ran', 'Exercise 2.',
                                      'site-widget-note', 'second solution')]
    assert order == sorted(order), order
    assert 'href="solutions_01_toy.html"' in html                                      # the lesson's link, to the page
    sol = (site / 'solutions_01_toy.html').read_text()
    assert 'href="01_toy.html"' in sol and 'solution ran' in sol                       # its link back to the lesson
    assert re.findall(r'<a (?=[^>]*aria-current="page")[^>]*href="([^"]+)"', sol) == ['01_toy.html']
    guide = (site / 'guide.html').read_text()
    assert 'href="01_toy.html#Sec"' in guide and 'href="index.html"' in guide           # docs/*.md links -> pages
    idx = (site / 'index.html').read_text()
    assert 'href="guide.html"' in idx and 'href="01_toy.html"' in idx                   # README links -> pages
    assert 'site-widget-note' in html and 'interactive(children' not in html
    assert 'href="02_other.html#Sec"' in html                                          # .ipynb links -> .html
    toc = re.search(r'<nav[^>]*class="page-toc".*?</nav>', html, re.S).group(0)
    assert re.findall(r'href="#([^"]+)"', toc) == [h['id'] for h in page['headings']] == ['Section-A', 'Sub-B', 'Exercises']
    nav = re.search(r'<nav[^>]*class="site-nav".*?</nav>', html, re.S).group(0)
    assert re.findall(r'href="([^"]+)"', nav)[1:] == ['index.html', '01_toy.html', '02_other.html', 'guide.html', 'objectives.html']
    obj = (site / 'objectives.html').read_text()   # generated from each lesson's `## Objectives` cell
    assert 'Add two numbers.' in obj and 'about 5 minutes' in obj and 'no <code>## Objectives</code> cell yet' in obj
    assert re.findall(r'<a (?=[^>]*aria-current="page")[^>]*href="([^"]+)"', nav) == ['01_toy.html']
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html), 'a CDN script or stylesheet is loaded'
    if build_site.mathjax_file():
        assert (site / build_site.MATHJAX).exists() and f'src="{build_site.MATHJAX}"' in html
    assert 'MathJax' not in (site / '02_other.html').read_text()   # no formulas, no MathJax
    assert '<td><a href="01_toy.html"><code>01_toy</code></a></td>' in (site / 'index.html').read_text()   # the lesson table links

def test_builder_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / 'mine').mkdir(); (tmp_path / 'mine' / 'notes.txt').write_text('keep me')
    with pytest.raises(SystemExit, match='not a site built by this script'):
        build_site.build(tmp_path / 'mine', toy_project(tmp_path), quiet=True)
    assert (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep me'

# ------------------------------------------------------------------ in Chromium
def test_checker_catches_requests_that_leave_the_machine(toy_site, tmp_path):
    "The offline check is not vacuous: a page that loads an outside image is reported, and the request never leaves."
    need_chromium()
    site = tmp_path / 'site'; shutil.copytree(toy_site[0], site)
    p = site / '02_other.html'
    p.write_text(p.read_text().replace('</main>', '<img src="https://example.invalid/tracker.png"></main>'))
    problems, facts, left = check_site.check_site(site, quiet=True)
    assert left == ['https://example.invalid/tracker.png']
    assert any('leave localhost' in x for x in problems) and any('02_other.html: 1 images did not load' in x for x in problems)
    assert not [x for x in problems if x.startswith(('index.html', '01_toy.html'))], problems   # the clean pages pass
    assert facts['01_toy.html']['details'] == 3 and facts['01_toy.html']['details_open'] == 0

def test_checker_catches_a_lesson_without_its_solutions(toy_site, tmp_path):
    "A lesson whose solutions notebook exists but whose page folds none of them, or links to a page that is not there, is reported."
    need_chromium()
    site = tmp_path / 'site'; shutil.copytree(toy_site[0], site)
    p = site / '01_toy.html'
    p.write_text(re.sub(r'<details class="solution".*?</details>', '', p.read_text(), flags=re.S))
    (site / 'solutions_01_toy.html').unlink()
    problems, facts, left = check_site.check_site(site, quiet=True)
    assert any('01_toy.html: exercises, but no folded solution' in x for x in problems), problems
    assert any("01_toy.html: links to files the site does not have: ['solutions_01_toy.html']" in x for x in problems), problems

def test_every_page_of_the_site_in_chromium(tmp_path):
    "Build the real site and open every page offline: sidebar, table of contents, figures, formulas, folded solutions."
    need_chromium()
    manifest = build_site.build(tmp_path / 'site', quiet=True)
    nav = [p for p in manifest['pages'] if p['nav']]
    assert len(nav) == len(LESSONS) + 1 + len(GUIDE), [p['href'] for p in nav]
    assert {p['href'] for p in nav} >= {'syllabus.html', 'objectives.html', 'results.html'}
    colab = (tmp_path / 'site' / '01_patches.html').read_text()   # a lesson opens in Colab, where its first cell installs the course
    assert 'href="https://colab.research.google.com/github/ijepa-edu/ijepa_edu/blob/main/nbs/01_patches.ipynb"' in colab
    for p in manifest['pages']:   # every lesson whose exercises have a solutions notebook shows them folded
        if (ROOT / 'nbs' / 'solutions' / f"{p['stem']}.ipynb").exists():
            assert p['solutions_page'] == f"solutions_{p['stem']}.html" and p['solutions'] > 0 and not p['unplaced_solutions'], p['stem']
    assert sum(p['images'] for p in manifest['pages']) >= len(LESSONS)      # the lessons have saved figures
    problems, facts, left = check_site.check_site(tmp_path / 'site', shots=shots_dir(tmp_path, 'site'), quiet=True)
    assert problems == [] and left == []
    for p in manifest['pages']:
        f = facts[p['href']]
        assert len(f['toc']) == len(p['headings']) > 0 and len(f['nav']) == len(nav)
        assert f['images'] >= p['images'] and (f['images'] > 0 or p['images'] == 0)
    if any(p['math'] for p in manifest['pages']): assert sum(f['math'] for f in facts.values()) > 0
    if any(p['solutions'] for p in manifest['pages']):
        assert sum(f['details'] for f in facts.values()) == sum(p['solutions'] for p in manifest['pages'])
