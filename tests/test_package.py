"""The package a teacher installs: `python -m build` makes a wheel and an sdist; a fresh venv installs the wheel,
imports every module and runs every console script with --help (tools/check_package.py does the work; about 40 s,
and the isolated build fetches setuptools from PyPI)."""
import configparser, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
from check_package import check_package   # noqa: E402

def test_wheel_builds_installs_and_runs(tmp_path):
    rep = check_package(tmp_path, quiet=True)
    assert rep['problems'] == [], '\n'.join(rep['problems'])
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    assert rep['version'] == cfg['DEFAULT']['version']
    assert rep['imported'] == len([p for p in (ROOT / 'ijepa_edu').glob('*.py') if p.stem != '__init__'])
    assert set(rep['scripts']) == {s.split('=')[0] for s in cfg['DEFAULT']['console_scripts'].split()}
    assert all(s['rc'] == 0 for s in rep['scripts'].values())
