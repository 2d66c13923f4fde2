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
READ_BY_STUDENTS = [*(ROOT / 'nbs').glob('*.ipynb'), ROOT / 'README.md', *MODULES,
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
