"""The exercise format of issue 7: a lesson ends with `## Exercises`, 2-3 exercises, each a question, a starting point
and a folded solution that checks its own claim (so nbdev_test fails if the library stops agreeing with it)."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))
LESSONS = sorted((ROOT / 'nbs').glob('[0-9][0-9]_*.ipynb'))
HEADER = '## Exercises'
CHECK = re.compile(r'^\s*assert\b|\btest_(eq|ne|close|fail|is|eq_type|shuffled|stdout|warns)\s*\(', re.M)


def src(cell): return ''.join(cell['source'])


def load(nb): return json.loads(Path(nb).read_text())['cells']


def exercise_section(cells):
    "Index of the `## Exercises` markdown cell, or None."
    hits = [i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and src(c).lstrip().startswith(HEADER)]
    assert len(hits) <= 1, f'{len(hits)} "{HEADER}" sections'
    return hits[0] if hits else None


def is_solution(cell):
    meta = cell.get('metadata', {})
    return 'solution' in meta.get('tags', []) or meta.get('jupyter', {}).get('source_hidden', False)


def problems(cells):
    "Everything wrong with a notebook's exercise section (an empty list when it follows the format)."
    start = exercise_section(cells)
    if start is None: return [f'no "{HEADER}" section']
    out, body = [], cells[start + 1:]
    if not body or not (body[-1]['cell_type'] == 'code' and src(body[-1]).startswith('#| hide') and 'nbdev_export' in src(body[-1])):
        out.append('the section must be followed only by the hidden nbdev_export cell, last in the notebook')
    else: body = body[:-1]
    groups, k = [], 0
    while k < len(body) and body[k]['cell_type'] == 'markdown' and not src(body[k]).startswith('**Exercise'): k += 1  # intro
    while k < len(body):
        groups.append(body[k:k + 3]); k += 3
    if not 2 <= len(groups) <= 3: out.append(f'{len(groups)} exercises; want 2 or 3')
    for n, g in enumerate(groups, 1):
        if len(g) < 3:
            out.append(f'exercise {n}: want 3 cells (question, starting point, solution), got {len(g)}'); continue
        q, start_cell, sol = g
        if q['cell_type'] != 'markdown' or not src(q).startswith(f'**Exercise {n}.**'):
            out.append(f'exercise {n}: the question must be a markdown cell starting "**Exercise {n}.**"')
        if start_cell['cell_type'] != 'code' or is_solution(start_cell):
            out.append(f'exercise {n}: the second cell must be a runnable starting point (code, not a solution)')
        meta = sol.get('metadata', {})
        if sol['cell_type'] != 'code': out.append(f'exercise {n}: the solution must be a code cell'); continue
        if meta.get('jupyter', {}).get('source_hidden') is not True: out.append(f'exercise {n}: solution not folded (jupyter.source_hidden)')
        if 'solution' not in meta.get('tags', []): out.append(f'exercise {n}: solution lacks the "solution" tag')
        if not src(sol).startswith(f'# Solution {n}'):  # also rules out a leading `#| eval: false` or `#| gpu`: it always runs
            out.append(f'exercise {n}: solution must start with "# Solution {n}"')
        if not CHECK.search(src(sol)): out.append(f'exercise {n}: solution checks nothing (no assert or test_* call)')
    return out


WITH_EXERCISES = [nb for nb in NBS if exercise_section(load(nb)) is not None]


@pytest.mark.parametrize('nb', WITH_EXERCISES, ids=[p.stem for p in WITH_EXERCISES])
def test_exercise_format(nb):
    assert problems(load(nb)) == [], nb.name


def test_every_lesson_has_exercises():
    missing = [nb.name for nb in LESSONS if nb not in WITH_EXERCISES]
    assert not missing, f'lessons without "{HEADER}": {missing}'


def test_found_lessons():
    "Guard against a glob that silently finds nothing."
    assert len(LESSONS) >= 7, LESSONS


# The checker itself must be able to fail: a good section, then one defect at a time.
def _md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': [s]}
def _code(s, meta=None): return {'cell_type': 'code', 'metadata': meta or {}, 'source': [s], 'outputs': []}
FOLDED = {'jupyter': {'source_hidden': True}, 'tags': ['solution']}

def _notebook(n=2, sol=lambda k: f'# Solution {k}\ntest_eq(1 + 1, 2)', meta=FOLDED):
    cells = [_md('# Lesson'), _code('x = 1'), _md(f'{HEADER}\n\nPredict first, then run the cell to check.')]
    for k in range(1, n + 1): cells += [_md(f'**Exercise {k}.** Predict.'), _code('print(x)'), _code(sol(k), meta)]
    return cells + [_code('#| hide\nimport nbdev; nbdev.nbdev_export()')]

def test_checker_accepts_the_format():
    assert problems(_notebook(2)) == [] and problems(_notebook(3)) == []

@pytest.mark.parametrize('cells, needle', [
    (_notebook(1), '1 exercises'),
    (_notebook(4), '4 exercises'),
    (_notebook(sol=lambda k: f'# Solution {k}\nprint(2)'), 'checks nothing'),
    (_notebook(sol=lambda k: '# Answer\nassert True'), 'must start with "# Solution 1"'),
    (_notebook(sol=lambda k: f'#| eval: false\n# Solution {k}\nassert True'), 'must start with'),
    (_notebook(meta={'tags': ['solution']}), 'not folded'),
    (_notebook(meta={'jupyter': {'source_hidden': True}}), 'lacks the "solution" tag'),
    (_notebook()[:-1], 'hidden nbdev_export cell'),
    (_notebook()[:3] + _notebook()[4:], 'exercise 1: the question'),
])
def test_checker_catches(cells, needle):
    assert any(needle in p for p in problems(cells)), problems(cells)
