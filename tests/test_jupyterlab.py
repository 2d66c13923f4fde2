"""A lesson runs in a real JupyterLab: server on 127.0.0.1, headless Chromium, Run > Run All Cells, the last output
appears, the saved file shows every cell ran (tools/check_jupyterlab.py does the work; about 40 s).

Needs Debian's Chromium: `.ci/run` installs it; without it the test is skipped on a developer's machine and fails in
CI (CI is set), so it can never pass by not running."""
import json, os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
from check_jupyterlab import preview_markdown_in_lab, run_all_in_lab   # noqa: E402
from check_site import chromium_path          # noqa: E402

# lesson 00 without IJEPA_DATA: a student offline gets its synthetic images (seconds), not the minutes of CIFAR-10 runs
LESSONS = {'01_patches': (), '00_big_picture': ('IJEPA_DATA',)}

def need_chromium():
    if chromium_path() is None:
        msg = "Debian's Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get('CI'): pytest.fail(msg + ': CI must install it (.ci/run does)')
        pytest.skip(msg)

def shots_dir(tmp_path):
    return Path(os.environ['SCREENSHOTS']) / 'jupyterlab' if os.environ.get('SCREENSHOTS') else tmp_path / 'shots'

@pytest.mark.parametrize('lesson', list(LESSONS))
def test_lesson_runs_in_jupyterlab(tmp_path, lesson):
    need_chromium()
    nb = ROOT / 'nbs' / f'{lesson}.ipynb'
    shots = shots_dir(tmp_path)
    r = run_all_in_lab(nb, shots=shots / lesson, quiet=True, unset=LESSONS[lesson])
    print(json.dumps(r, indent=1))
    saved = json.loads(nb.read_text())   # the figures the committed notebook holds: the lab run must make as many
    figures = sum(any(k.startswith('image/') for k in o.get('data', {})) for c in saved['cells'] if c['cell_type'] == 'code'
                  for o in c.get('outputs', []))
    assert r['last_output'] == f"ran to the end: {r['nonce']}"   # a fresh random token: this run printed it
    assert r['cells_run'] == r['code_cells'] > 10, r              # every code cell has an execution count in the saved file
    assert r['errors'] == []
    assert r['figures_saved'] == figures > 0
    assert r['export_same'] is True                               # the lesson's own nbdev_export cell ran and agrees
    assert r['requests_left_localhost'] == []
    assert (shots / lesson / 'jupyterlab-last-cell.png').stat().st_size > 10_000


def test_syllabus_reads_in_jupyterlab(tmp_path):
    "The teachers' syllabus (docs/syllabus.md) opens in JupyterLab's Markdown Preview with its headings, its table of meetings and its links."
    need_chromium()
    shots = shots_dir(tmp_path)
    r = preview_markdown_in_lab(ROOT / 'docs' / 'syllabus.md', shots=shots, quiet=True)
    print(json.dumps(r, indent=1))
    assert r['title'].startswith('Syllabus')
    assert 'The meetings' in r['headings'] and 'What runs where' in r['headings']
    assert r['table_rows'] >= 8 and r['links'] >= 14
    assert r['requests_left_localhost'] == []
    assert (shots / 'jupyterlab-syllabus.png').stat().st_size > 10_000
