#!/usr/bin/env python
"""Run a lesson in a real JupyterLab, through its menus, in headless Chromium, as a student would.

    python tools/check_jupyterlab.py                      # nbs/01_patches.ipynb; screenshots in _screenshots/jupyterlab/
    python tools/check_jupyterlab.py nbs/04_masks.ipynb

It lays out a temporary project (settings.ini + nbs/assets/ + nbs/<the notebook>, outputs cleared, and one last cell added that prints a
random token), starts JupyterLab on 127.0.0.1 at a free port with a token and a throwaway config, opens the notebook in
headless Chromium, chooses Run > Run All Cells, waits for the token to appear under the last cell, saves with
File > Save Notebook, and checks the saved file: every code cell ran, none raised, the figures are there, and the
lesson's own export cell (`nbdev_export`) wrote the same module the repository holds. No request may leave the
machine. `preview_markdown_in_lab` opens a Markdown page of the course guide (docs/) the same way, with the file
browser's Open With > Markdown Preview, and reads what JupyterLab rendered. The server and its kernel are shut down at the end. `tests/test_jupyterlab.py` runs this; Chromium as in tools/check_site.py.
"""
import argparse, contextlib, json, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_site import browser, guard_network   # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SILENT_SETTINGS = {   # no news, no update check, no toasts: nothing that would reach out or cover the notebook
    '@jupyterlab/apputils-extension/notification.jupyterlab-settings':
        {'fetchNews': 'false', 'checkForUpdates': False, 'doNotDisturbMode': True}}

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def lay_out(nb_path, work, nonce):
    "`work/settings.ini`, `work/nbs/assets/` and `work/nbs/<nb>`: outputs and counts cleared, a last cell printing `nonce` appended."
    shutil.copy(ROOT / 'settings.ini', work / 'settings.ini')
    (work / 'nbs').mkdir()
    if (ROOT / 'nbs' / 'assets').is_dir():   # the small models and records that ship with the course (11 MB), as in a clone
        shutil.copytree(ROOT / 'nbs' / 'assets', work / 'nbs' / 'assets')
    nb = json.loads(Path(nb_path).read_text())
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None
    nb['cells'].append({'cell_type': 'code', 'execution_count': None, 'id': 'lab-check-last', 'metadata': {}, 'outputs': [],
                        'source': [f'print("ran to the end:", {nonce!r})']})
    dest = work / 'nbs' / Path(nb_path).name
    dest.write_text(json.dumps(nb, indent=1))
    return dest

@contextlib.contextmanager
def jupyterlab(root, log, unset=()):
    "A JupyterLab server on 127.0.0.1 serving `root` (environment variables in `unset` removed); yields `(base_url, token)`; shuts it and its kernels down after."
    port, token = free_port(), secrets.token_hex(16)
    cfg = Path(tempfile.mkdtemp(prefix='jlab-cfg-'))
    for rel, val in SILENT_SETTINGS.items():
        f = cfg / 'settings' / rel; f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(val))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(cfg / 'config'), 'JUPYTER_RUNTIME_DIR': str(cfg / 'runtime'),
           'JUPYTERLAB_SETTINGS_DIR': str(cfg / 'settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(cfg / 'workspaces'),
           'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    env.pop('IN_TEST', None)   # run the lesson in full, as a student does, not in nbdev_test's short mode
    for k in unset: env.pop(k, None)
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
           '--ServerApp.allow_root=True', '--LabApp.extension_manager=readonly',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: raise RuntimeError(f'JupyterLab exited with {proc.returncode}: see {log.name}')
            try:
                with urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2) as r:
                    if r.status == 200: break
            except OSError: pass
            if time.time() - t0 > 90: raise TimeoutError('JupyterLab did not answer within 90 s')
            time.sleep(0.3)
        yield base, token
    finally:
        with contextlib.suppress(OSError):   # the server's own shutdown ends its kernels
            urllib.request.urlopen(urllib.request.Request(f'{base}/api/shutdown?token={token}', method='POST'), timeout=5)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: pass
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)   # anything of this server left
        proc.wait()
        shutil.rmtree(cfg, ignore_errors=True)

def drive(page, base, token, nb_file, nonce, shots, timeout_s, times, t0):
    "Open the notebook, Run > Run All Cells, wait for the last output, File > Save; return the <img> count shown."
    page.goto(f'{base}/lab/tree/nbs/{nb_file.name}?token={token}')
    idle = page.locator('.jp-StatusBar-TextItem', has_text=re.compile(r'\|\s*Idle'))   # "Python 3 (ipykernel) | Idle"
    idle.first.wait_for(timeout=180_000)        # notebook open, its kernel started and connected
    times['lab_ready_s'] = time.time() - t0
    if shots: page.screenshot(path=str(shots / 'jupyterlab-opened.png'))
    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile(r'^Run$')).click()
    page.locator('.lm-Menu-itemLabel').get_by_text('Run All Cells', exact=True).click()
    t_run = time.time()
    last = page.locator('.jp-OutputArea-output').filter(has_text=f'ran to the end: {nonce}')
    last.wait_for(timeout=timeout_s * 1000)   # the last cell's output appeared
    times['run_all_s'] = time.time() - t_run
    idle.first.wait_for()
    last.scroll_into_view_if_needed()
    if shots: page.screenshot(path=str(shots / 'jupyterlab-last-cell.png'))
    n_img_dom = page.locator('.jp-NotebookPanel .jp-RenderedImage img').count()
    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile(r'^File$')).click()   # save through the UI (File > Save
    page.locator('.lm-Menu-itemLabel').get_by_text(re.compile(r'^Save( Notebook)?$')).first.click()   # Notebook) ...
    deadline = time.time() + 30
    while f'ran to the end: {nonce}' not in nb_file.read_text():   # ... and read what it wrote: the output, not the source
        if time.time() > deadline: raise TimeoutError('the notebook was not saved')
        page.wait_for_timeout(300)   # (not time.sleep: playwright's sync API handles the browser's events only in its calls)
    # a view of the first figure, for people
    if shots and n_img_dom:
        page.locator('.jp-NotebookPanel .jp-RenderedImage img').first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / 'jupyterlab-figure.png'))
    return n_img_dom

def run_all_in_lab(nb_path=ROOT / 'nbs' / '01_patches.ipynb', shots=None, timeout_s=300, quiet=False, unset=()):
    "Run every cell of a lesson through JupyterLab's menu; return a dict of what was seen and measured."
    nb_path = Path(nb_path)
    nonce = secrets.token_hex(6)
    times, t0 = {}, time.time()
    if shots is not None:
        shots = Path(shots); shots.mkdir(parents=True, exist_ok=True); (shots / 'jupyterlab-failure.png').unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix='jlab-run-') as tmp:
        work = Path(tmp)
        nb_file = lay_out(nb_path, work, nonce)
        n_code = sum(c['cell_type'] == 'code' for c in json.loads(nb_file.read_text())['cells'])
        with open(work / 'jupyterlab.log', 'w') as log, jupyterlab(work, log, unset) as (base, token), browser() as ctx:
            times['server_up_s'] = time.time() - t0
            left = guard_network(ctx)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(90_000)
            try: n_img_dom = drive(page, base, token, nb_file, nonce, shots, timeout_s, times, t0)
            except Exception as e:
                if shots: page.screenshot(path=str(shots / 'jupyterlab-failure.png'))
                log.flush()
                raise RuntimeError(f'{type(e).__name__}: {e}\n--- JupyterLab log (end) ---\n'
                                   + (work / 'jupyterlab.log').read_text()[-3000:]) from e
        times['total_s'] = time.time() - t0
        saved = json.loads(nb_file.read_text())
        code = [c for c in saved['cells'] if c['cell_type'] == 'code']
        exported = work / 'ijepa_edu' / f'{nb_module(nb_path)}.py'
        result = dict(
            notebook=nb_path.name, code_cells=n_code,
            cells_run=sum(c.get('execution_count') is not None for c in code),
            errors=[o.get('ename', '') + ': ' + o.get('evalue', '') for c in code for o in c['outputs'] if o['output_type'] == 'error'],
            figures_saved=sum(any(k.startswith('image/') for k in o.get('data', {})) for c in code for o in c['outputs']),
            figures_shown=n_img_dom,
            last_output=''.join(''.join(o.get('text', '')) for o in code[-1]['outputs']).strip(),
            nonce=nonce, requests_left_localhost=left,
            export_same=exported.exists() and exported.read_text() == (ROOT / 'ijepa_edu' / exported.name).read_text()
                        if nb_module(nb_path) else None,
            **{k: round(v, 1) for k, v in times.items()})
    if not quiet: print(json.dumps(result, indent=1))
    return result

def preview_markdown_in_lab(md_path=ROOT / 'docs' / 'syllabus.md', shots=None, quiet=False):
    """Open a Markdown page of the course guide in JupyterLab as a reader would: the file browser, right-click,
    Open With > Markdown Preview; return what the rendered page shows (title, headings, table rows, links)."""
    md_path = Path(md_path)
    if shots is not None: shots = Path(shots); shots.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='jlab-md-') as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / 'settings.ini', work / 'settings.ini')
        (work / 'docs').mkdir(); shutil.copy(md_path, work / 'docs' / md_path.name)
        with open(work / 'jupyterlab.log', 'w') as log, jupyterlab(work, log) as (base, token), browser() as ctx:
            left = guard_network(ctx)
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(90_000)
            try:
                page.goto(f'{base}/lab/tree/docs?token={token}')
                item = page.locator('.jp-DirListing-item', has_text=md_path.name)
                item.first.click(button='right')
                page.locator('.lm-Menu-itemLabel').get_by_text('Open With', exact=True).click()
                page.locator('.lm-Menu-itemLabel').get_by_text('Markdown Preview', exact=True).click()
                rendered = page.locator('.jp-RenderedMarkdown').filter(has=page.locator('h1'))
                rendered.first.wait_for()
                facts = rendered.first.evaluate("""el => ({
                    title: el.querySelector('h1').textContent.replace('¶', '').trim(),
                    headings: Array.from(el.querySelectorAll('h2')).map(h => h.textContent.replace('¶', '').trim()),
                    table_rows: el.querySelectorAll('table tbody tr').length,
                    links: el.querySelectorAll('a[href]').length})""")
                if shots: page.screenshot(path=str(shots / f'jupyterlab-{md_path.stem}.png'))
            except Exception as e:
                if shots: page.screenshot(path=str(shots / 'jupyterlab-failure.png'))
                log.flush()
                raise RuntimeError(f'{type(e).__name__}: {e}\n--- JupyterLab log (end) ---\n'
                                   + (work / 'jupyterlab.log').read_text()[-3000:]) from e
    result = dict(page=md_path.name, **facts, requests_left_localhost=left, total_s=round(time.time() - t0, 1))
    if not quiet: print(json.dumps(result, indent=1))
    return result

def nb_module(nb_path):
    "The module a notebook exports (`#| default_exp name`), or None."
    for c in json.loads(Path(nb_path).read_text())['cells']:
        src = ''.join(c['source'])
        for line in src.splitlines():
            if line.replace(' ', '').startswith('#|default_exp'): return line.split('default_exp', 1)[1].strip()
    return None

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('notebook', nargs='?', default=str(ROOT / 'nbs' / '01_patches.ipynb'))
    ap.add_argument('--shots', default=str(ROOT / '_screenshots' / 'jupyterlab'))
    a = ap.parse_args()
    r = run_all_in_lab(a.notebook, a.shots)
    ok = r['cells_run'] == r['code_cells'] and not r['errors'] and r['last_output'].endswith(r['nonce']) \
         and not r['requests_left_localhost'] and r['export_same'] is not False
    print('OK' if ok else 'FAILED', f'screenshots in {a.shots}')
    sys.exit(0 if ok else 1)
