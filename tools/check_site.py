#!/usr/bin/env python
"""Open every page of the built site in headless Chromium, offline, check it, and save screenshots.

    python tools/build_site.py && python tools/check_site.py     # screenshots in _screenshots/site/

The site is served from a local http server on 127.0.0.1 (a random free port). Every request that would leave the
machine is blocked and reported. For each page it checks: the sidebar lists every page and marks this one (a solutions
page, which is not in the sidebar, marks its lesson); the table of contents has the page's headings and each link has
its target; every figure the notebook saved is an <img> that loaded; formulas were typeset by the local MathJax; each
solution is folded (a closed <details>) and opens on a click; a lesson whose exercises have a solutions notebook shows
them folded under the exercises, and links to that notebook's page; every relative link leads to a file of the site; no
JavaScript error. Exit status 1 and a list of problems if anything is wrong.

Browser: Debian's Chromium (`apt-get install -y chromium`, /usr/bin/chromium; `CHROMIUM` overrides the path), driven by
Python playwright (a dev requirement; playwright's own browser download is not used).
"""
import argparse, contextlib, functools, http.server, json, os, re, shutil, sys, tempfile, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']

def chromium_path():
    "Debian's Chromium, or the one `CHROMIUM` names; None if there is none."
    p = os.environ.get('CHROMIUM') or shutil.which('chromium') or '/usr/bin/chromium'
    return p if Path(p).exists() else None

@contextlib.contextmanager
def serve(folder):
    "A quiet static http server for `folder` on 127.0.0.1 at a free port; yields its base URL."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(folder)))
    th = threading.Thread(target=srv.serve_forever, daemon=True); th.start()
    try: yield f'http://127.0.0.1:{srv.server_address[1]}'
    finally: srv.shutdown(); srv.server_close()

@contextlib.contextmanager
def browser(headless=True):
    "Headless Debian Chromium through playwright, with the flags that keep it off the network, and a fresh profile."
    from playwright.sync_api import sync_playwright
    exe = chromium_path()
    if exe is None: raise RuntimeError('Chromium not found: apt-get install -y chromium (or set CHROMIUM)')
    with tempfile.TemporaryDirectory(prefix='chromium-profile-') as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=exe, headless=headless, args=CHROMIUM_FLAGS,
                                                    viewport={'width': 1400, 'height': 900}, device_scale_factor=1)
        try: yield ctx
        finally: ctx.close()

# any URL with a scheme and a host that is not this machine (data:, blob: and about: have no `//` and never match)
EXTERNAL = re.compile(r'^[a-z][a-z0-9+.-]*://(?!(?:127\.0\.0\.1|localhost|\[::1\])(?:[:/]|$))', re.I)

def guard_network(ctx):
    """Abort every request and websocket to a host that is not this machine; return the list they are recorded in.
    Only those are routed (the pattern is matched inside the browser driver), so local traffic never waits on Python."""
    left = []
    def block(route):
        left.append(route.request.url); route.abort()
    ctx.route(EXTERNAL, block)
    def watch(page):
        page.on('websocket', lambda ws: left.append(ws.url) if EXTERNAL.match(ws.url) else None)
    ctx.on('page', watch)
    for p in ctx.pages: watch(p)
    return left

PAGE_FACTS = r"""() => {
  const q = s => Array.from(document.querySelectorAll(s));
  const imgs = q('main img');
  return {
    title: document.title,
    nav: q('nav.site-nav li a').map(a => a.getAttribute('href')),
    current: q('nav.site-nav a[aria-current="page"]').map(a => a.getAttribute('href')),
    toc: q('nav.page-toc a').map(a => a.getAttribute('href').slice(1)),
    toc_missing: q('nav.page-toc a').map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)),
    toc_visible: (() => { const t = document.querySelector('nav.page-toc'); return !!t && t.getBoundingClientRect().width > 0; })(),
    images: imgs.length,
    images_broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    details: q('details.solution').length,
    details_open: q('details.solution[open]').length,
    math: q('mjx-container').length,
    math_errors: q('mjx-merror, [data-mjx-error]').length,
    math_raw: q('.jp-MarkdownCell').filter(c => { const k = c.cloneNode(true); k.querySelectorAll('code, pre').forEach(e => e.remove());
                                                   return /\$[^$\s][^$]*\$/.test(k.textContent); }).length,
    code_cells: q('.jp-CodeCell').length,
    directives_shown: q('.jp-InputArea-editor').filter(e => /^\s*#\s*\|/m.test(e.innerText)).length,
    links: q('main a[href]').map(a => a.getAttribute('href')).filter(h => !/^([a-z][a-z0-9+.-]*:|#)/i.test(h)),
    solution_links: q('main .jp-MarkdownCell a[href^="solutions_"]').length,
  };
}"""

def wait_for_mathjax(page, timeout_s=30):
    "Resolve once MathJax (if the page loads it) has typeset everything."
    page.wait_for_function("() => !document.querySelector('script[src*=\"mathjax\"]')"
                           " || (window.MathJax && MathJax.startup && MathJax.startup.promise)", timeout=timeout_s * 1000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise.then(() => true) : true")

def check_page(page, base, entry, pages, shots=None):
    "Load one page and compare what the browser shows with what the builder wrote in the manifest; return (problems, facts)."
    problems, errors = [], []
    page.on('pageerror', lambda e: errors.append(str(e)))
    page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
    page.on('response', lambda r: errors.append(f'HTTP {r.status} {r.url}') if r.status >= 400 else None)
    resp = page.goto(f'{base}/{entry["href"]}', wait_until='load')
    if resp is None or resp.status != 200:   # nothing to look at: no facts, one problem
        return [f'{entry["href"]}: HTTP {resp and resp.status}'], dict(images=0, toc=[], math=0, details=0, links=[])
    wait_for_mathjax(page)
    f = page.evaluate(PAGE_FACTS)
    name = entry['href']
    want_nav = [p['href'] for p in pages if p.get('nav', True)]
    if f['nav'] != want_nav: problems.append(f'{name}: sidebar {f["nav"]} != {want_nav}')
    if f['current'] != [entry.get('current', name)]: problems.append(f'{name}: sidebar marks {f["current"]} as current')
    want_toc = [h['id'] for h in entry['headings']]
    if not want_toc: problems.append(f'{name}: no h2/h3 headings, so no table of contents')
    if f['toc'] != want_toc: problems.append(f'{name}: table of contents {f["toc"]} != headings {want_toc}')
    if f['toc_missing']: problems.append(f'{name}: table of contents links to missing ids {f["toc_missing"]}')
    if not f['toc_visible']: problems.append(f'{name}: table of contents not visible at 1400 px')
    if f['images'] < entry['images']: problems.append(f'{name}: {f["images"]} <img> for {entry["images"]} saved figures')
    if entry['images'] and not f['images']: problems.append(f'{name}: no figure shown')
    if f['images_broken']: problems.append(f'{name}: {f["images_broken"]} images did not load')
    if entry['math'] and not f['math']: problems.append(f'{name}: TeX in the notebook but nothing typeset by MathJax')
    if f['math_raw']: problems.append(f'{name}: {f["math_raw"]} markdown cells still show $...$ as text')
    if f['math_errors']: problems.append(f'{name}: {f["math_errors"]} MathJax errors')
    if f['details'] != entry['solutions']: problems.append(f'{name}: {f["details"]} folded solutions for {entry["solutions"]}')
    if f['details_open']: problems.append(f'{name}: {f["details_open"]} solutions are open on load')
    if entry.get('solutions_page'):   # a lesson with a solutions notebook: its answers folded here, and a link to them
        if entry.get('exercises') and not f['details']: problems.append(f'{name}: exercises, but no folded solution under them')
        if not f['solution_links']: problems.append(f'{name}: no link to {entry["solutions_page"]}')
    if entry.get('unplaced_solutions'): problems.append(f'{name}: solutions {entry["unplaced_solutions"]} match no **Exercise N.**')
    if f['directives_shown']: problems.append(f'{name}: {f["directives_shown"]} code cells still show nbdev directives')
    if errors: problems.append(f'{name}: JavaScript errors {errors[:3]}')
    if shots is not None:
        stem = Path(name).stem
        page.screenshot(path=str(shots / f'{stem}.png'))
        if entry['solutions']:   # the first exercise, its solution folded, then unfolded by a click
            det = page.locator('details.solution').first
            det.scroll_into_view_if_needed(); page.evaluate('() => window.scrollBy(0, -250)')
            page.screenshot(path=str(shots / f'{stem}-exercise-folded.png'))
            det.locator('summary').click()
            if not det.evaluate('d => d.open'): problems.append(f'{name}: a click does not open the solution')
            page.screenshot(path=str(shots / f'{stem}-exercise-open.png'))
        if f['math']:            # the first formula
            page.locator('mjx-container').first.scroll_into_view_if_needed(); page.evaluate('() => window.scrollBy(0, -200)')
            page.screenshot(path=str(shots / f'{stem}-math.png'))
        if entry['images']:      # the first figure
            page.locator('main img').first.scroll_into_view_if_needed(); page.evaluate('() => window.scrollBy(0, -120)')
            page.screenshot(path=str(shots / f'{stem}-figure.png'))
    return problems, f

def check_site(site=ROOT / '_site', shots=None, quiet=False):
    "Check every page of a built site; return `(problems, facts per page, requests that tried to leave localhost)`."
    site = Path(site)
    manifest = json.loads((site / 'manifest.json').read_text())
    pages = manifest['pages']
    if shots is not None: shots = Path(shots); shots.mkdir(parents=True, exist_ok=True)
    problems, facts = [], {}
    with serve(site) as base, browser() as ctx:
        left = guard_network(ctx)
        for p in ctx.pages: p.close()   # the blank tab a persistent context opens with
        for entry in pages:
            t0 = time.time()
            p = ctx.new_page()
            probs, f = check_page(p, base, entry, pages, shots)
            p.close()
            missing = sorted({h for h in f['links'] if not (site / h.split('#')[0].split('?')[0]).is_file()})
            if missing: probs.append(f'{entry["href"]}: links to files the site does not have: {missing[:5]}')
            problems += probs; facts[entry['href']] = f
            if not quiet: print(f'{entry["href"]:26s} {time.time() - t0:4.1f} s  {f["images"]:3d} img  {len(f["toc"]):3d} toc  '
                                f'{f["math"]:4d} math  {f["details"]} solutions  {"OK" if not probs else "; ".join(probs)}')
    if left: problems.append(f'{len(left)} requests tried to leave localhost: {sorted(set(left))[:5]}')
    return problems, facts, left

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT / '_site'))
    ap.add_argument('--shots', default=str(ROOT / '_screenshots' / 'site'), help='screenshot folder')
    a = ap.parse_args()
    t0 = time.time()
    problems, facts, left = check_site(a.site, Path(a.shots))
    print(f'{len(facts)} pages checked in {time.time() - t0:.1f} s; requests that tried to leave localhost: {len(left)}; '
          f'screenshots in {a.shots}')
    for p in problems: print('PROBLEM', p)
    sys.exit(1 if problems else 0)
