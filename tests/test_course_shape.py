"""The course's shape: a student reads a core lesson one short cell at a time, so no code cell there runs past 45 lines
(the aim is 40: a long cell is split at its natural seams, helpers before the function or class that uses them, with a
sentence of prose between the pieces); no module of the package, which the lessons generate, passes 425 lines (the aim is about 400); and
nothing a student reads points at a file outside the repository (the course machine's shared folder, its facts sheet)."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ['00_big_picture', '01_patches', '02_blocks', '03_context', '04_masks', '05_encoder', '06_predictor', '07_ema', '08_step',
        '09_diagnostics', '10_evaluate', '11_smallscale', '12_visualise', '13_decoder']
MAX_CELL, MAX_MODULE = 45, 425
MODULES = sorted(p for p in (ROOT / 'ijepa_edu').glob('*.py') if p.name != '_modidx.py')  # _modidx.py: nbdev's index


def n_lines(text): return len(text.splitlines())


@pytest.mark.parametrize('name', CORE)
def test_core_lesson_cells_are_short(name):
    cells = json.loads((ROOT / 'nbs' / f'{name}.ipynb').read_text())['cells']
    long = [f"{name}.ipynb, cell {c['id']}: {n_lines(''.join(c['source']))} lines" for c in cells
            if c['cell_type'] == 'code' and n_lines(''.join(c['source'])) > MAX_CELL]
    assert not long, f'code cells over {MAX_CELL} lines (split them):\n' + '\n'.join(long)


@pytest.mark.parametrize('module', MODULES, ids=[p.stem for p in MODULES])
def test_modules_are_short(module):
    n = n_lines(module.read_text())
    assert n <= MAX_MODULE, f'ijepa_edu/{module.name} has {n} lines, over {MAX_MODULE}: split it, or move code to a new module'


def test_found_everything():
    "Guard against a list or glob that silently finds nothing."
    assert all((ROOT / 'nbs' / f'{name}.ipynb').exists() for name in CORE) and len(MODULES) >= 10


OUTSIDE = re.compile(r'\.\./shared|ijepa-facts|small-scale\.md|/work/')   # the course machine's folders, its reference sheets
READ_BY_STUDENTS = [*(ROOT / 'nbs').glob('*.ipynb'), *(ROOT / 'nbs' / 'solutions').glob('*.ipynb'), ROOT / 'README.md',
                    *(ROOT / 'docs').glob('*.md'), *MODULES,
                    *(p for p in (ROOT / 'nbs' / 'assets').rglob('*') if p.suffix in ('.json', '.md', '.csv', '.txt'))]


def test_nothing_points_outside_the_repository():
    "Notebooks (saved outputs too), the README, the library's messages and the text assets that lessons print."
    bad = [f'{p.relative_to(ROOT)}: {m.group(0)}' for p in READ_BY_STUDENTS
           for m in [OUTSIDE.search(p.read_text(errors='replace'))] if m]
    assert not bad, 'points outside the repository (say it in the project\'s words, or use a relative path):\n' + '\n'.join(bad)


def test_shipped_models_name_no_machine_paths():
    "The small checkpoints in nbs/assets/models/ keep their config without the data and run folders of the machine that made them."
    import torch
    models = sorted((ROOT / 'nbs' / 'assets' / 'models').glob('*.pt'))
    assert models
    for p in models:
        cfg = torch.load(p, map_location='cpu', weights_only=True)['config']
        assert (cfg['data'], cfg['out']) == ('', ''), f"{p.name}: data={cfg['data']!r}, out={cfg['out']!r}"


# ------------------------------------------------------------------ issue 22: the course's shape
# Conventions of course v3 (issue 22): a core lesson opens with its objectives and time and closes with what the student
# can now do, within a budget of words and cells; every lesson installs the package where it is missing (Colab); figures
# share one style; exercises are graded; solutions live outside the lessons; every relative link resolves.
NBS = ROOT / 'nbs'
LESSONS = sorted(p for p in NBS.glob('[0-9][0-9]_*.ipynb'))                 # core and appendix; not index, not solutions/
SOLUTIONS = sorted((NBS / 'solutions').glob('*.ipynb'))
MAX_WORDS, MAX_CELLS, MAX_CORE_WORDS = 2000, 60, 18000
INSTALL = """# Running on Colab or a machine without the course? This installs it (it does nothing where ijepa_edu is installed).
import importlib.util, subprocess, sys
if importlib.util.find_spec('ijepa_edu') is None:
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'ijepa_edu @ git+https://github.com/ijepa-edu/ijepa_edu'], check=True)"""


def cells_of(path): return json.loads(Path(path).read_text())['cells']
def src(cell): return ''.join(cell['source'])
def prose_words(path): return sum(len(src(c).split()) for c in cells_of(path) if c['cell_type'] == 'markdown')


@pytest.mark.parametrize('name', CORE)
def test_core_lesson_within_budget(name):
    "At most 2,000 words of prose (markdown cells, words split on whitespace) and 60 cells per core lesson."
    path = NBS / f'{name}.ipynb'
    words, cells = prose_words(path), len(cells_of(path))
    assert words <= MAX_WORDS and cells <= MAX_CELLS, f'{name}: {words} prose words (at most {MAX_WORDS}), {cells} cells (at most {MAX_CELLS})'


def test_core_track_within_budget():
    "The whole core (00-13) holds at most 18,000 prose words."
    per = {name: prose_words(NBS / f'{name}.ipynb') for name in CORE}
    assert sum(per.values()) <= MAX_CORE_WORDS, f'core: {sum(per.values())} prose words, at most {MAX_CORE_WORDS}: {per}'


@pytest.mark.parametrize('name', CORE)
def test_core_lesson_opens_with_objectives_and_closes_with_what_you_can_do(name):
    "A `## Objectives` cell with 2-4 bullets and `*Time: about N minutes.*`, and a `## What you can now do` cell of 2-4 bullets."
    md = [src(c) for c in cells_of(NBS / f'{name}.ipynb') if c['cell_type'] == 'markdown']
    obj = [s for s in md if re.search(r'^##\s+Objectives\s*$', s, re.M)]
    assert len(obj) == 1, f'{name}: {len(obj)} markdown cells with a `## Objectives` heading (want one)'
    bullets = lambda s, head: [l for l in s[re.search(head, s, re.M).end():].split('\n## ')[0].splitlines()
                               if re.match(r'\s*[-*] ', l)]
    n = len(bullets(obj[0], r'^##\s+Objectives\s*$'))
    assert 2 <= n <= 4, f'{name}: {n} objectives (want 2-4 bullets)'
    assert re.search(r'^\*Time: about \d+ minutes\.\*\s*$', obj[0], re.M), f'{name}: no `*Time: about N minutes.*` line in Objectives'
    done = [s for s in md if re.search(r'^##\s+What you can now do\s*$', s, re.M)]
    assert len(done) == 1, f'{name}: {len(done)} `## What you can now do` cells (want one)'
    n = len(bullets(done[0], r'^##\s+What you can now do\s*$'))
    assert 2 <= n <= 4, f'{name}: {n} bullets under What you can now do (want 2-4)'


@pytest.mark.parametrize('path', LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_first_code_cell_installs_the_course(path):
    "The first code cell of every lesson is the install cell, so a hosted notebook (Colab) runs it without a local install."
    code = [src(c) for c in cells_of(path) if c['cell_type'] == 'code']
    assert code and code[0].strip() == INSTALL, f'{path.name}: the first code cell is not the install cell:\n{code[0][:300] if code else ""}'


def draws_figures(cells):
    "Does a notebook draw: `plt.` or a `show_*(` call in its code, or an image among its saved outputs?"
    code = '\n'.join(src(c) for c in cells if c['cell_type'] == 'code')
    images = any(k.startswith('image/') for c in cells if c['cell_type'] == 'code' for o in c.get('outputs', []) for k in o.get('data', {}))
    return images or bool(re.search(r'\bplt\.|\bshow_(?!doc\b)\w+\(', code))


@pytest.mark.parametrize('path', LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_with_figures_uses_the_course_style(path):
    "A lesson that draws imports `use_style` from `ijepa_edu.style` and calls it, so its figures share the course's colours and text sizes."
    cells = cells_of(path)
    if not draws_figures(cells): pytest.skip(f'{path.name} draws no figure')
    code = '\n'.join(src(c) for c in cells if c['cell_type'] == 'code')
    if re.search(r'^def use_style\(', code, re.M): code += '\nfrom ijepa_edu.style import use_style'   # the style notebook itself
    assert re.search(r'from\s+(ijepa_edu|\.)\.?style\s+import\s+[^\n]*\buse_style\b', code), f'{path.name}: draws figures but does not import use_style'
    assert re.search(r'^\s*use_style\(\)', code, re.M), f'{path.name}: draws figures but does not call use_style()'


@pytest.mark.parametrize('name', CORE)
def test_core_lesson_has_a_graded_exercise(name):
    "Every core lesson has a write-it-yourself exercise graded by a checker: a code cell under `## Exercises` calling `check_*(`."
    cells = cells_of(NBS / f'{name}.ipynb')
    start = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and re.search(r'^##\s+Exercises', src(c), re.M)), None)
    assert start is not None, f'{name}: no `## Exercises` section'
    graded = [c for c in cells[start:] if c['cell_type'] == 'code' and re.search(r'(?<![\w.])check_\w+\(', src(c))
              and not re.search(r'^\s*def check_', src(c), re.M)]
    assert graded, f'{name}: no code cell under Exercises calls a check_* grader'


@pytest.mark.parametrize('path', [*LESSONS, NBS / 'index.ipynb'], ids=[p.stem for p in [*LESSONS, NBS / 'index.ipynb']])
def test_no_solution_in_a_lesson(path):
    "Solutions live in nbs/solutions/, not in the student's notebook (GitHub and Colab show folded cells)."
    bad = [c.get('id') for c in cells_of(path) if c['cell_type'] == 'code'
           and ('solution' in c['metadata'].get('tags', []) or src(c).lstrip().startswith('# Solution'))]
    assert not bad, f'{path.name}: solution cells {bad}: move them to nbs/solutions/{path.name}'
    md = '\n'.join(src(c) for c in cells_of(path) if c['cell_type'] == 'markdown')
    said = re.findall(r'[^.\n]*solutions? (?:is|are) folded[^.\n]*', md, re.I)
    assert not said, f'{path.name} still says its solutions are folded in it: {said}'


@pytest.mark.parametrize('path', SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_solution_has_its_exercise(path):
    "Each `# Solution N` in nbs/solutions/X.ipynb answers a `**Exercise N.**` of nbs/X.ipynb, which links to it."
    lesson = NBS / path.name
    assert lesson.exists(), f'solutions/{path.name}: no lesson {path.name}'
    sols = [int(m.group(1)) for c in cells_of(path) if c['cell_type'] == 'code'
            for m in [re.match(r'#\s*Solution (\d+)\b', src(c).lstrip())] if m]
    assert sols, f'solutions/{path.name}: no `# Solution N` cell'
    assert all('solution' in c['metadata'].get('tags', []) for c in cells_of(path) if c['cell_type'] == 'code'
               and src(c).lstrip().startswith('# Solution')), f'solutions/{path.name}: solution cells must keep the `solution` tag'
    md = '\n'.join(src(c) for c in cells_of(lesson) if c['cell_type'] == 'markdown')
    exercises = {int(n) for n in re.findall(r'\*\*Exercise (\d+)\.\*\*', md)}
    assert set(sols) <= exercises, f'solutions/{path.name}: solutions {sorted(set(sols) - exercises)} have no **Exercise N.** in {lesson.name}'
    assert f'](solutions/{path.name})' in md, f'{lesson.name} does not link to solutions/{path.name}'


_re_code = re.compile(r'```.*?```|`[^`\n]*`', re.S)
_re_link = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|<(?:a|img)\s[^>]*(?:href|src)="([^"]+)"')

def relative_links(text):
    "The relative link targets of a Markdown text (code spans and blocks left out), without their #anchors."
    found = []
    for m in _re_link.finditer(_re_code.sub('', text)):
        t = (m.group(1) or m.group(2)).split('#')[0].split('?')[0]
        if t and not re.match(r'[a-z][a-z0-9+.-]*:', t, re.I): found.append(t)
    return found

LINKED = [ROOT / 'README.md', *LESSONS, *SOLUTIONS, *sorted((ROOT / 'docs').glob('*.md')), *sorted((ROOT / 'bench').glob('*.md'))]

@pytest.mark.parametrize('path', LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_relative_links_resolve(path):
    "Every relative link in the README, the notebooks' markdown and the site's Markdown pages names a file that exists (relative to its own folder)."
    if path.suffix == '.ipynb': text = '\n'.join(src(c) for c in cells_of(path) if c['cell_type'] == 'markdown')
    else: text = path.read_text(encoding='utf-8')
    broken = [t for t in relative_links(text) if not (path.parent / t).exists()]
    assert not broken, f'{path.relative_to(ROOT)}: links to missing files {broken}'


def test_link_finder_finds_links():
    "The link test is not vacuous."
    assert relative_links('see [a](x.ipynb#s), ![f](img/p.png), [w](https://e.org), [m](mailto:a@b), [h](#top), `[c](no.md)`') == ['x.ipynb', 'img/p.png']
    assert relative_links((ROOT / 'README.md').read_text())


_re_small_text = re.compile(r"\b(?:font|label|title)size\s*=\s*(?:(\d+(?:\.\d+)?)\b|['\"](xx?-small|small|smaller)['\"])")

def small_text(code):
    "The explicit text sizes below 10 pt (or matplotlib's named small sizes) that a piece of code sets."
    return [m.group(0) for m in _re_small_text.finditer(code) if m.group(2) or float(m.group(1)) < 10]

@pytest.mark.parametrize('path', [*LESSONS, *MODULES], ids=[p.stem for p in [*LESSONS, *MODULES]])
def test_no_text_below_10pt(path):
    "Figures keep text of at least 10 pt at the size they are saved: no lesson or library figure sets a smaller font."
    code = '\n'.join(src(c) for c in cells_of(path) if c['cell_type'] == 'code') if path.suffix == '.ipynb' else path.read_text()
    found = small_text(code)
    assert not found, f'{path.name}: text below 10 pt: {found} (use_style() sets 10 pt; drop the fontsize)'

def test_small_text_finder():
    assert small_text("ax.set_title('a', fontsize=8); ax.legend(fontsize='small'); t(fontsize=10); tick_params(labelsize=9.5); figsize=(3, 2)") == \
        ['fontsize=8', "fontsize='small'", 'labelsize=9.5']
