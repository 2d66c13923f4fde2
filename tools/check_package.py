#!/usr/bin/env python
"""Build the wheel and the sdist as a teacher would, install the wheel in a fresh venv, and use it.

    python tools/check_package.py              # dist/ in a temporary folder; prints what it found
    python tools/check_package.py --keep DIR   # keep dist/ and the venv in DIR

Steps: `python -m build` (isolated: it fetches setuptools into its own build environment); the wheel must hold every
module of ijepa_edu/ and nothing else (no notebooks, no tests), its version must be settings.ini's, and it must
declare every console script in settings.ini; the sdist must hold what rebuilding needs (settings.ini, setup.py,
pyproject.toml, README.md) and the notebooks the modules come from (their solutions too), the course guide (docs/) and the
README's figure. Then a fresh venv that sees the packages of the
Python running this script, whether that is the machine's Python or a venv of its own (torch, 5.5 GB, is not installed
again: a .pth file adds this Python's site-packages folders after the venv's own, as `--system-site-packages` does for
the machine's, which a venv user's torch is not in; `--no-index` makes pip prove that the wheel's requirements are met
without downloading anything), `pip install` the wheel, and, from a folder outside the repository, import every module
(checking each comes from the venv, not from the repository's editable install) and run each console script with
`--help`.
"""
import argparse, configparser, json, shlex, subprocess, sys, tarfile, tempfile, time, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def settings():
    cp = configparser.ConfigParser(delimiters=['=']); cp.read(ROOT / 'settings.ini', encoding='utf-8')
    return cp['DEFAULT']

def run(cmd, cwd=None, timeout=600, **kw):
    "Run a command; raise with its output if it fails."
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode: raise RuntimeError(f'{shlex.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return r

def parent_site_dirs():
    "The site-packages folders of the Python running this (a venv's, the machine's or both), in its search order."
    return [p for p in dict.fromkeys(sys.path) if Path(p).name in ('site-packages', 'dist-packages') and Path(p).is_dir()]

def see_parent_packages(py):
    "Let the venv of interpreter `py` import this Python's packages, after its own: a .pth file of site.addsitedir calls."
    purelib = run([str(py), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))']).stdout.strip()
    lines = [f'import site; site.addsitedir({d!r})' for d in parent_site_dirs()]
    (Path(purelib) / '_parent_site_packages.pth').write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return len(lines)

IMPORT_ALL = """
import importlib, json, sys, pkgutil, importlib.metadata as md
import ijepa_edu
mods = sorted(m.name for m in pkgutil.iter_modules(ijepa_edu.__path__, 'ijepa_edu.'))
files = {m: importlib.import_module(m).__file__ for m in mods}
print(json.dumps(dict(version=ijepa_edu.__version__, dist_version=md.version('ijepa_edu'), modules=mods, files=files,
                      prefix=sys.prefix)))
"""

def check_package(work, quiet=False):
    "Build, inspect, install and use the package under `work`; return a report (dict) of what was found and timed."
    work, cfg, t = Path(work), settings(), {}
    version, lib = cfg['version'], cfg['lib_path']
    scripts = dict(s.split('=', 1) for s in cfg.get('console_scripts', '').split())
    modules = sorted(p.stem for p in (ROOT / lib).glob('*.py'))
    rep = dict(version=version, problems=[])
    bad = rep['problems'].append

    t0 = time.time()
    run([sys.executable, '-m', 'build', '--outdir', str(work / 'dist'), str(ROOT)])
    t['build_s'] = time.time() - t0
    wheels, sdists = list((work / 'dist').glob('*.whl')), list((work / 'dist').glob('*.tar.gz'))
    if len(wheels) != 1 or len(sdists) != 1: bad(f'expected one wheel and one sdist, got {wheels + sdists}'); return rep
    whl, sdist = wheels[0], sdists[0]
    rep.update(wheel=whl.name, sdist=sdist.name, wheel_kb=whl.stat().st_size // 1024, sdist_kb=sdist.stat().st_size // 1024)
    if f'-{version}-' not in whl.name or not sdist.name.endswith(f'-{version}.tar.gz'): bad(f'file names lack version {version}')

    names = zipfile.ZipFile(whl).namelist()
    in_wheel = sorted(Path(n).stem for n in names if n.startswith(f'{lib}/') and n.endswith('.py'))
    if in_wheel != modules: bad(f'wheel modules {in_wheel} != {lib}/*.py {modules}')
    strays = [n for n in names if not (n.startswith(f'{lib}/') or '.dist-info/' in n)]
    if strays: bad(f'wheel holds files outside the package: {strays[:5]}')
    info = {Path(n).name: zipfile.ZipFile(whl).read(n).decode() for n in names if '.dist-info/' in n}
    meta_version = next(l.split(': ', 1)[1] for l in info['METADATA'].splitlines() if l.startswith('Version: '))
    if meta_version != version: bad(f'wheel METADATA version {meta_version} != settings.ini {version}')
    eps = info.get('entry_points.txt', '')
    for name, target in scripts.items():
        if f'{name} = {target}' not in eps: bad(f'console script {name} = {target} not declared in the wheel')
    if not any(n.endswith('.dist-info/LICENSE') or '.dist-info/licenses/LICENSE' in n for n in names): bad('wheel lacks the LICENSE file')
    rep['wheel_files'] = len(names)

    with tarfile.open(sdist) as tf: members = [m.split('/', 1)[1] for m in tf.getnames() if '/' in m]
    for need in ['settings.ini', 'setup.py', 'pyproject.toml', 'README.md', 'CHANGELOG.md', 'LICENSE', 'MANIFEST.in'] + \
                [f'{lib}/{m}.py' for m in modules]:
        if need not in members: bad(f'sdist lacks {need}')
    nbs = sorted(p.relative_to(ROOT / 'nbs').as_posix() for p in [*(ROOT / 'nbs').glob('*.ipynb'), *(ROOT / 'nbs').glob('solutions/*.ipynb')])
    missing_nbs = [n for n in nbs if f'nbs/{n}' not in members]
    if missing_nbs: bad(f'sdist lacks notebooks {missing_nbs}')
    pages = sorted(p.relative_to(ROOT).as_posix() for p in [*(ROOT / 'docs').glob('*.md'), *(ROOT / 'README_files').glob('*.png')])
    missing_pages = [n for n in pages if n not in members]   # the course guide and the README's figure
    if missing_pages: bad(f'sdist lacks pages {missing_pages}')
    if any('.ipynb_checkpoints' in m or m.endswith('.pyc') for m in members): bad('sdist holds checkpoints or .pyc files')
    rep['sdist_files'] = len(members)
    rep['sdist_top'] = sorted({m.split('/')[0] for m in members})

    t0 = time.time()
    venv = work / 'venv'
    # --without-pip: the venv's own bundled pip and setuptools (65 on Python 3.11) would shadow this Python's, and torch
    # asks for setuptools>=77; this Python's pip, run by the venv's python, installs into the venv.
    # Not --system-site-packages: that shows the machine's packages, and a user who installed torch in a venv of their
    # own has it there, not on the machine; the .pth file shows whichever site-packages the running Python uses.
    run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    py, bin_ = venv / 'bin' / 'python', venv / 'bin'
    rep['parent_site_dirs'] = see_parent_packages(py)
    t['venv_s'] = time.time() - t0; t0 = time.time()
    run([str(py), '-m', 'pip', 'install', '--no-index', '--disable-pip-version-check', '--quiet', str(whl)])
    t['install_s'] = time.time() - t0; t0 = time.time()
    outside = work / 'elsewhere'; outside.mkdir()   # not the repository, whose folder would shadow the install
    got = json.loads(run([str(py), '-c', IMPORT_ALL], cwd=outside).stdout.strip().splitlines()[-1])
    t['import_s'] = time.time() - t0
    rep['imported'] = len(got['modules'])
    if [m.split('.', 1)[1] for m in got['modules']] != [m for m in modules if m != '__init__']:
        bad(f'modules imported {got["modules"]} != {modules}')
    foreign = {m: f for m, f in got['files'].items() if not Path(f).resolve().is_relative_to(venv.resolve())}
    if foreign: bad(f'modules imported from outside the venv: {foreign}')
    if got['version'] != version or got['dist_version'] != version:
        bad(f'installed version {got["version"]} / {got["dist_version"]} != {version}')

    rep['scripts'] = {}
    for name in scripts:
        t0 = time.time()
        exe = bin_ / name
        if not exe.exists(): bad(f'console script {name} not installed'); continue
        r = subprocess.run([str(exe), '--help'], cwd=outside, capture_output=True, text=True, timeout=300)
        rep['scripts'][name] = dict(rc=r.returncode, seconds=round(time.time() - t0, 1),
                                    first_line=(r.stdout.strip().splitlines() or [''])[0][:100])
        if r.returncode or 'usage' not in r.stdout.lower():
            bad(f'{name} --help failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}')
    rep['times'] = {k: round(v, 1) for k, v in t.items()}
    if not quiet: print(json.dumps(rep, indent=1))
    return rep

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep', default=None, help='work in this folder and keep it (default: a temporary one)')
    a = ap.parse_args()
    t0 = time.time()
    if a.keep: Path(a.keep).mkdir(parents=True, exist_ok=True); rep = check_package(a.keep)
    else:
        with tempfile.TemporaryDirectory(prefix='ijepa-pkg-') as d: rep = check_package(d)
    print(('OK' if not rep['problems'] else 'FAILED: ' + '; '.join(rep['problems'])) + f' ({time.time() - t0:.0f} s)')
    sys.exit(1 if rep['problems'] else 0)
