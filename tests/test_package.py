"""The package a teacher installs: `python -m build` makes a wheel and an sdist; a fresh venv installs the wheel,
imports every module and runs every console script with --help (tools/check_package.py does the work; about a minute,
and the isolated build fetches setuptools from PyPI). The venv sees the packages of the Python running the tests, the
machine's or a venv's, so the test passes for a newcomer who installed torch in a venv of their own.
Then the commands' errors: one line, never a traceback."""
import configparser, shlex, sys
from pathlib import Path
import pytest

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

def test_requirements_are_ranges_and_ci_pins_them():
    "Install beside any torch of the same major version; CI's exact versions live in .ci/constraints.txt, passed by .ci/run."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    reqs = {r.split('>')[0].split('=')[0].split('<')[0]: r for r in shlex.split(cfg['DEFAULT']['requirements'])}
    for name in ('torch', 'torchvision'): assert '>=' in reqs[name] and ',<' in reqs[name] and '==' not in reqs[name], reqs[name]
    assert 'ipywidgets' not in reqs and 'ipywidgets' in cfg['DEFAULT']['widgets_requirements']
    pins = [l for l in (ROOT / '.ci' / 'constraints.txt').read_text().splitlines() if l and not l.startswith('#')]
    assert {'torch', 'torchvision', 'transformers', 'timm'} <= {l.split('==')[0] for l in pins} and all('==' in l for l in pins)
    assert '-c .ci/constraints.txt' in (ROOT / '.ci' / 'run').read_text()

def test_command_line_errors_are_one_line(tmp_path, monkeypatch):
    "ijepa_train's mistakes, and a CIFAR-10 download without internet, end in one line (SystemExit), not a traceback."
    import urllib.error
    import ijepa_edu.data as D
    from ijepa_edu.train import main
    def offline(*a, **k): raise urllib.error.URLError('[Errno -2] Name or service not known')
    monkeypatch.setattr(D, 'CIFAR10', offline)            # what torchvision raises offline, without trying the network
    empty = tmp_path / 'empty'; empty.mkdir()
    for kw, needle in [(dict(data=str(empty)), "Could not download or read torchvision's CIFAR-10"),
                       (dict(data=str(tmp_path / 'nowhere.tar.gz')), 'does not exist'),
                       (dict(data=str(empty), overrides=['not_a_field=1']), 'Unknown config fields')]:
        with pytest.raises(SystemExit) as e: main(**{'overrides': [], 'out': str(tmp_path / 'run'), 'device': 'cpu', **kw})
        msg = str(e.value.code)
        assert msg.startswith('ijepa_train: ') and needle in msg and '\n' not in msg, msg
