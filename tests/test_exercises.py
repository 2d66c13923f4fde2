"""The exercise format of issues 7, 13 and 22. A lesson ends with `## Exercises`; each exercise is a `**Exercise N.**`
markdown cell that ends with the line `*Solution: [solutions/<lesson>.ipynb](solutions/<lesson>.ipynb), exercise N.*`,
then at most one starting-point code cell, which carries no saved output (it would show the answer before the student
runs it). The solution is not in the lesson (GitHub and Colab show folded cells): it lives in
`nbs/solutions/<lesson>.ipynb`, after a title cell and one setup cell, under `## Exercise N`, as code cell(s) tagged
`solution` whose first line is `# Solution N` and which check their own claim (so nbdev_test fails if the library stops
agreeing with it).

Predict-then-check exercises come first (2 or 3); then up to 2 "write it yourself" exercises, whose starting point is a
stub (`raise NotImplementedError`) graded by a checker the library exports (`check_*` from `ijepa_edu.checks` or
`ijepa_edu.checks_training`), and whose solution asserts that the checker passes (a checker never raises: it returns
False on a wrong answer). Every core lesson has at least one write-it-yourself exercise.

tests/test_course_shape.py checks, and this file does not repeat: no solution cell in a lesson, every `# Solution N` of
a solutions notebook answers a `**Exercise N.**` of its lesson, solution cells keep their tag, and every relative link
resolves."""
import json, re
from pathlib import Path
import pytest
import ijepa_edu.checks, ijepa_edu.checks_training

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
# Reference pages (the facts sheet, the public API, the run journal, the figure style) are looked up, not taught:
# they have no exercises.
REFERENCE_PAGES = {'29_reference', '30_api', '31_smallscale_journal', '32_style'}
LESSONS = sorted(p for p in NBS.glob('[0-9][0-9]_*.ipynb') if p.stem not in REFERENCE_PAGES)
HEADER = '## Exercises'
CHECK = re.compile(r'^\s*assert\b|\btest_(eq|ne|close|fail|is|eq_type|shuffled|stdout|warns)\s*\(', re.M)
CHECKER = re.compile(r'\b(check_\w+)\s*\(')
CHECKERS = set(ijepa_edu.checks.__all__) | set(ijepa_edu.checks_training.__all__)
# Lessons that must have a "write it yourself" exercise graded by a checker: the core (00-13) and lesson 15, which had
# one when it was core.
WRITE_IT_YOURSELF = ['00_big_picture', '01_patches', '02_blocks', '03_context', '04_masks', '05_encoder', '06_predictor',
                     '07_ema', '08_step', '09_diagnostics', '10_evaluate', '11_smallscale', '12_visualise', '13_decoder',
                     '15_schedules']


def src(cell): return ''.join(cell['source'])


def load(nb): return json.loads(Path(nb).read_text())['cells']


def solutions_of(nb): return NBS / 'solutions' / Path(nb).name


def exercise_section(cells):
    "Index of the `## Exercises` markdown cell, or None."
    hits = [i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and src(c).lstrip().startswith(HEADER)]
    assert len(hits) <= 1, f'{len(hits)} "{HEADER}" sections'
    return hits[0] if hits else None


def graders(cell):
    "The library's checkers a cell calls."
    return sorted(set(CHECKER.findall(src(cell))) & CHECKERS)


def is_write_it_yourself(start_cell):
    "An exercise whose starting point is a stub or calls one of the library's checkers."
    return start_cell is not None and (bool(graders(start_cell)) or 'raise NotImplementedError' in src(start_cell))


def link_line(name, n): return f'*Solution: [solutions/{name}](solutions/{name}), exercise {n}.*'


def exercises(cells):
    """`(intro cells, [(question, starting point or None, other cells)], problems)` of a lesson's exercise section, the
    hidden nbdev_export cell that ends the notebook left out."""
    start, out = exercise_section(cells), []
    body = cells[start + 1:]
    if not body or not (body[-1]['cell_type'] == 'code' and src(body[-1]).startswith('#| hide') and 'nbdev_export' in src(body[-1])):
        out.append('the section must be followed only by the hidden nbdev_export cell, last in the notebook')
    else: body = body[:-1]
    k = 0
    while k < len(body) and not (body[k]['cell_type'] == 'markdown' and src(body[k]).startswith('**Exercise')): k += 1
    intro, groups = body[:k], []
    if any(c['cell_type'] != 'markdown' for c in intro): out.append('code before the first "**Exercise 1.**" cell')
    for c in body[k:]:
        if c['cell_type'] == 'markdown' and src(c).startswith('**Exercise'): groups.append([c])
        else: groups[-1].append(c)
    groups = [(g[0], g[1] if len(g) > 1 and g[1]['cell_type'] == 'code' else None, g[2:] if len(g) > 1 and g[1]['cell_type'] == 'code' else g[1:])
              for g in groups]
    return intro, groups, out


def problems(cells, name):
    "Everything wrong with a lesson's exercise section (an empty list when it follows the format)."
    if exercise_section(cells) is None: return [f'no "{HEADER}" section']
    intro, groups, out = exercises(cells)
    if re.search(r'\bfold', '\n'.join(src(c) for c in [cells[exercise_section(cells)], *intro]), re.I):
        out.append('the intro still says solutions are folded under the exercises (they are in solutions/)')
    kinds = [is_write_it_yourself(start) for _, start, _ in groups]
    n_write = sum(kinds)
    if not 2 <= len(groups) - n_write <= 3: out.append(f'{len(groups) - n_write} predict-then-check exercises; want 2 or 3')
    if n_write > 2: out.append(f'{n_write} write-it-yourself exercises; want at most 2')
    if kinds != sorted(kinds): out.append('write-it-yourself exercises must come after the predict-then-check ones')
    for n, (q, start, rest) in enumerate(groups, 1):
        if not src(q).startswith(f'**Exercise {n}.**'):
            out.append(f'exercise {n}: the question must be a markdown cell starting "**Exercise {n}.**" (got "{src(q)[:20]}")')
        lines = src(q).rstrip().splitlines()
        if not lines or lines[-1].strip() != link_line(name, n):
            out.append(f'exercise {n}: the question must end with the line "{link_line(name, n)}"')
        if rest: out.append(f'exercise {n}: want the question and at most one starting-point code cell, '
                            f'got {len(rest)} more cell(s) (first: "{src(rest[0])[:40]}")')
        if start is not None and start.get('outputs'):
            out.append(f'exercise {n}: the starting point "{src(start).splitlines()[0][:40]}" has saved outputs: '
                       'clear them, they show the answer')
        if is_write_it_yourself(start):
            if 'raise NotImplementedError' not in src(start):
                out.append(f'exercise {n}: a write-it-yourself starting point is a stub that raises NotImplementedError')
            if not graders(start): out.append(f'exercise {n}: graded by no checker that ijepa_edu.checks or checks_training exports '
                                              f'(it calls {sorted(set(CHECKER.findall(src(start)))) or "none"})')
    return out


def solution_problems(cells, sol_cells, name, title=None):
    """Everything wrong with the solutions notebook `sol_cells` of a lesson (`cells`): a title, one setup cell, then for
    each exercise N of the lesson `## Exercise N` and its solution cells, which check their claim."""
    if sol_cells is None: return [f'no solutions notebook nbs/solutions/{name}']
    _, groups, _ = exercises(cells)
    out = []
    head = src(sol_cells[0]) if sol_cells and sol_cells[0]['cell_type'] == 'markdown' else ''
    want = f'# Solutions: lesson {name[:2]}, '
    if not head.startswith(want) or 'Try each exercise in the lesson first.' not in head:
        out.append(f'the first cell must be the title "{want}<lesson title>" with the line "Try each exercise in the lesson first."')
    elif title is not None and head.splitlines()[0][len(want):].strip().lower() != title.lower():
        out.append(f'the title names "{head.splitlines()[0][len(want):].strip()}", the lesson is "{title}"')
    heads = [i for i, c in enumerate(sol_cells) if c['cell_type'] == 'markdown' and re.match(r'##\s+Exercise \d+\b', src(c))]
    setup = sol_cells[1:heads[0]] if heads else sol_cells[1:]
    if [c['cell_type'] for c in setup] != ['code'] or 'solution' in setup[0]['metadata'].get('tags', []):
        out.append(f'want one setup code cell (not a solution) between the title and "## Exercise 1", got {[c["cell_type"] for c in setup]}')
    answers = {}
    for a, b in zip(heads, heads[1:] + [len(sol_cells)]):
        n = int(re.match(r'##\s+Exercise (\d+)', src(sol_cells[a])).group(1))
        if n in answers: out.append(f'two "## Exercise {n}" sections')
        answers[n] = sol_cells[a + 1:b]
    if list(answers) != sorted(answers): out.append(f'the exercises come in the order {list(answers)}')
    for n, (q, start, _) in enumerate(groups, 1):
        sols = answers.get(n)
        if not sols: out.append(f'exercise {n}: no "## Exercise {n}" section with its solution'); continue
        if any(c['cell_type'] != 'code' for c in sols):
            out.append(f'exercise {n}: only solution code cells under "## Exercise {n}" (say the task in its heading cell)')
        code = [c for c in sols if c['cell_type'] == 'code']
        if not code: continue
        if any('solution' not in c['metadata'].get('tags', []) for c in code):
            out.append(f'exercise {n}: every code cell under "## Exercise {n}" is tagged "solution" (the site folds only those)')
        if not src(code[0]).startswith(f'# Solution {n}\n') and src(code[0]).strip() != f'# Solution {n}':
            # also rules out a leading `#| eval: false` or `#| gpu`: a solution always runs under nbdev_test
            out.append(f'exercise {n}: its first solution cell must start with the line "# Solution {n}"')
        stray = [m.group(1) for c in code for m in [re.match(r'#\s*Solution (\d+)\b', src(c).lstrip())] if m and int(m.group(1)) != n]
        if stray: out.append(f'exercise {n}: "# Solution {stray[0]}" under "## Exercise {n}" (the site would fold it under exercise {stray[0]})')
        if any(re.search(r'^#\|\s*(eval:\s*false|gpu)\b', src(c), re.M) for c in code):
            out.append(f'exercise {n}: a solution cell that nbdev_test skips (#| eval: false or #| gpu)')
        text = '\n'.join(src(c) for c in code)
        if not CHECK.search(text): out.append(f'exercise {n}: the solution checks nothing (no assert or test_* call)')
        if is_write_it_yourself(start):
            for checker in graders(start):
                if not re.search(rf'^assert {checker}\(', text, re.M):
                    out.append(f'exercise {n}: the solution must `assert {checker}(...)` (a checker returns False, it never raises)')
    return out


def title_of(cells):
    "A notebook's title: its first markdown cell's `# ...` line."
    first = next((src(c) for c in cells if c['cell_type'] == 'markdown'), '')
    return first.splitlines()[0][2:].strip() if first.startswith('# ') else None


WITH_EXERCISES = [nb for nb in LESSONS if exercise_section(load(nb)) is not None]


@pytest.mark.parametrize('nb', WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_exercise_format(nb):
    "The lesson's side: the section, the questions and their solution links, the starting points (no saved output), the kinds of exercise."
    assert problems(load(nb), nb.name) == [], nb.name


@pytest.mark.parametrize('nb', WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_solutions_notebook(nb):
    "The solutions' side: nbs/solutions/<lesson>.ipynb answers every exercise, each answer checks its claim."
    sol = solutions_of(nb)
    cells = load(nb)
    assert solution_problems(cells, load(sol) if sol.exists() else None, nb.name, title_of(cells)) == [], f'solutions/{nb.name}'


@pytest.mark.parametrize('name', WRITE_IT_YOURSELF)
def test_lesson_has_write_it_yourself(name):
    "At least one exercise whose starting point is a stub graded by a checker the library exports."
    cells = load(NBS / f'{name}.ipynb')
    assert exercise_section(cells) is not None, f'{name}: no "{HEADER}" section'
    _, groups, _ = exercises(cells)
    assert any(is_write_it_yourself(start) and graders(start) and 'raise NotImplementedError' in src(start)
               for _, start, _ in groups), f'{name}: no "write it yourself" exercise (a stub graded by a check_* the library exports)'


def test_every_lesson_has_exercises():
    missing = [nb.name for nb in LESSONS if nb not in WITH_EXERCISES]
    assert not missing, f'lessons without "{HEADER}": {missing}'


def test_found_lessons():
    "Guard against a glob or a list that silently finds nothing."
    assert len(LESSONS) >= 25 and all((NBS / f'{name}.ipynb').exists() for name in WRITE_IT_YOURSELF), LESSONS
    assert {'check_patchify', 'check_ema_update'} <= CHECKERS


# The checker itself must be able to fail: a good lesson and solutions notebook, then one defect at a time.
NAME = '01_x.ipynb'
def _md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': [s]}
def _code(s, tags=None, outputs=None):
    return {'cell_type': 'code', 'metadata': {'tags': tags} if tags else {}, 'source': [s], 'outputs': outputs or []}
OUT = [{'output_type': 'stream', 'name': 'stdout', 'text': ['1\n']}]
STUB = 'def my_patchify(imgs, patch_size):\n    raise NotImplementedError\ncheck_patchify(my_patchify)'
WRITTEN = '# Solution {k}\ndef my_patchify(imgs, patch_size): return patchify(imgs, patch_size)\nassert check_patchify(my_patchify)'
LINK = '\n\n' + link_line(NAME, '{k}')

def _lesson(n=2, write=0, stub=STUB, start='print(x)', link=LINK, intro='Predict first, then run the cell to check.'):
    cells = [_md('# Lesson X'), _code('x = 1'), _md(f'{HEADER}\n\n{intro}')]
    for k in range(1, n + 1): cells += [_md(f'**Exercise {k}.** Predict.' + link.format(k=k))] + ([_code(start)] if start else [])
    for k in range(n + 1, n + write + 1): cells += [_md(f'**Exercise {k}.** Write `patchify` yourself.' + link.format(k=k)), _code(stub)]
    return cells + [_code('#| hide\nimport nbdev; nbdev.nbdev_export()')]

def _solutions(n=2, write=0, sol=lambda k: f'# Solution {k}\ntest_eq(1 + 1, 2)', written=WRITTEN, tags=('solution',),
               title='# Solutions: lesson 01, lesson x\n\nTry each exercise in the lesson first.'):
    cells = [_md(title), _code('from fastcore.test import *')]
    for k in range(1, n + write + 1):
        cells += [_md(f'## Exercise {k}\n\nThe task.'), _code(sol(k) if k <= n else written.format(k=k), list(tags))]
    return cells

def _swap(cells, i, j):
    cells = list(cells); cells[i], cells[j] = cells[j], cells[i]; return cells

def test_checker_accepts_the_format():
    for n, write in [(2, 0), (3, 0), (2, 1), (3, 2)]:
        assert problems(_lesson(n, write), NAME) == [] == solution_problems(_lesson(n, write), _solutions(n, write), NAME, 'Lesson X')
    assert problems(_lesson(start=None), NAME) == [] == solution_problems(_lesson(start=None), _solutions(), NAME)  # no starting point
    two_cells = _solutions(); two_cells.insert(4, _code('test_eq(2, 2)', ['solution']))            # a solution in two cells
    assert solution_problems(_lesson(), two_cells, NAME) == []
    assert title_of(_lesson()) == 'Lesson X'

@pytest.mark.parametrize('cells, needle', [
    (_lesson()[:2], 'no "## Exercises" section'),
    (_lesson(1), '1 predict-then-check exercises'),
    (_lesson(4), '4 predict-then-check exercises'),
    (_lesson(3, write=3), '3 write-it-yourself exercises'),
    (_lesson(1, write=1), '1 predict-then-check exercises'),
    (_swap(_swap(_lesson(2, write=1), 3, 7), 4, 8), 'must come after'),
    (_lesson()[:-1], 'hidden nbdev_export cell'),
    (_swap(_lesson(), 3, 5), 'exercise 1: the question must be a markdown cell starting "**Exercise 1.**"'),
    (_lesson(link=''), 'exercise 1: the question must end with the line "*Solution: [solutions/01_x.ipynb]'),
    (_lesson(link=LINK.replace('01_x', '02_y')), 'exercise 2: the question must end with the line'),
    (_lesson(link=LINK.replace('exercise {k}', 'exercise 1')), 'exercise 2: the question must end with the line'),
    (_lesson(intro='Each solution is folded under its exercise.'), 'still says solutions are folded'),
    (_lesson()[:5] + [_code('# Solution 1\nassert True', ['solution'])] + _lesson()[5:], 'exercise 1: want the question and at most one'),
    (_lesson()[:3] + [_code('y = 2')] + _lesson()[3:], 'code before the first'),
    (_lesson(start='print(x)')[:4] + [{**_lesson()[4], 'outputs': OUT}] + _lesson()[5:], 'the starting point "print(x)" has saved outputs'),
    (_lesson(write=1, stub='def my_patchify(imgs, patch_size): return imgs\ncheck_patchify(my_patchify)'), 'is a stub'),
    (_lesson(write=1, stub=STUB.replace('check_patchify', 'check_patchyfy')), "it calls ['check_patchyfy']"),
])
def test_checker_catches(cells, needle):
    assert any(needle in p for p in problems(cells, NAME)), problems(cells, NAME)

@pytest.mark.parametrize('lesson, sols, needle', [
    (_lesson(), None, 'no solutions notebook'),
    (_lesson(), _solutions()[:4], 'exercise 2: no "## Exercise 2" section'),
    (_lesson(), _solutions(title='# Solutions\n\nTry each exercise in the lesson first.'), 'the first cell must be the title'),
    (_lesson(), _solutions(title='# Solutions: lesson 01, lesson x'), 'the first cell must be the title'),
    (_lesson(), _solutions(title='# Solutions: lesson 01, lesson y\n\nTry each exercise in the lesson first.'), 'the lesson is "Lesson X"'),
    (_lesson(), _solutions()[:1] + _solutions()[2:], 'want one setup code cell'),
    (_lesson(), _solutions()[:2] + [_code('y = 1')] + _solutions()[2:], 'want one setup code cell'),
    (_lesson(), _swap(_swap(_solutions(), 2, 4), 3, 5), 'the exercises come in the order [2, 1]'),
    (_lesson(), _solutions() + _solutions()[4:], 'two "## Exercise 2" sections'),
    (_lesson(), _solutions()[:4] + [_md('Why?')] + _solutions()[4:], 'exercise 1: only solution code cells'),
    (_lesson(), _solutions(tags=()), 'exercise 1: every code cell under "## Exercise 1" is tagged'),
    (_lesson(), _solutions(sol=lambda k: f'# Solution {k}\nprint(2)'), 'exercise 1: the solution checks nothing'),
    (_lesson(), _solutions(sol=lambda k: '# Answer\nassert True'), 'exercise 1: its first solution cell must start'),
    (_lesson(), _solutions(sol=lambda k: f'# Solution {k}0\nassert True'), 'exercise 1: its first solution cell must start'),
    (_lesson(), _solutions(sol=lambda k: f'#| eval: false\n# Solution {k}\nassert True'), 'must start with the line'),
    (_lesson(), _solutions()[:4] + [_code('#| eval: false\nassert True', ['solution'])] + _solutions()[4:], 'that nbdev_test skips'),
    (_lesson(), _solutions()[:4] + [_code('# Solution 2\nassert True', ['solution'])] + _solutions()[4:], '"# Solution 2" under "## Exercise 1"'),
    (_lesson(write=1), _solutions(write=1, written='# Solution {k}\ncheck_patchify(patchify)\nassert True'), 'must `assert check_patchify'),
])
def test_solution_checker_catches(lesson, sols, needle):
    found = solution_problems(lesson, sols, NAME, title_of(lesson))
    assert any(needle in p for p in found), found
