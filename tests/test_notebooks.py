"""Every notebook runs top to bottom, as `nbdev_test` runs it (IN_TEST set, `gpu`/`slow` cells skipped)."""
import os, subprocess, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT / 'nbs').parts))
LIMIT_S = 120  # the bar is 60 s per notebook on CPU; this is a hang guard, the timing is printed

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs(nb):
    t0 = time.time()
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    res = subprocess.run(['nbdev_test', '--path', str(nb), '--n_workers', '1'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=LIMIT_S)
    print(f'{nb.name}: {time.time() - t0:.1f} s')
    assert res.returncode == 0, f'{nb.name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}'

def test_found_notebooks():
    "Guard against a glob that silently finds nothing."
    assert len(NBS) >= 7, NBS
