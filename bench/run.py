"""Run the benchmarks and print one table: teaching and fast figures measured side by side, their ratio, the machine.

    python bench/run.py                  # every benchmark (minutes on 2 cores); GPU rows only where CUDA is available
    python bench/run.py --quick          # a seconds-long smoke run of the same code with tiny models (figures mean nothing)
    python bench/run.py --json PATH      # also save the machine and the rows as JSON
    python bench/run.py --only step_cpu  # some modules only: masks, step_cpu, gpu_step
    python bench/run.py --no-compile     # skip the torch.compile rows of step_cpu (they take minutes to compile)
    python bench/run.py --ci             # instead: time nbdev_test over all notebooks and pytest over the whole suite
    python bench/run.py --wait-quiet 1800  # start each module only when no other process has been runnable for 3 s
    python bench/run.py --ref PATH [--rounds 3]   # the training step of this checkout against the checkout at PATH

`--ref PATH` times the training step of two checkouts in one run: each side runs its own bench/step_cpu.py (the first
row: teaching path and fast path of cifar10_tiny, no compile) and, where CUDA is available (or with --quick, as a toy on
the CPU), its own bench/gpu_step.py (ViT-B/16 at batch 128, truncated and padded masks), in a subprocess that imports
that checkout's ijepa_edu (PYTHONPATH). The sides alternate round by round (this, ref; then ref, this; ...) and the
table gives each figure's median over the rounds; the ratio column is ref / this: 1.00x or more means this checkout is
no slower. Make PATH from a commit with `git worktree add /tmp/ijepa_ref COMMIT` (or `git archive COMMIT | tar -x -C
/tmp/ijepa_ref`). `--timer cpu --threads 1` gives the CPU work of a step, which other jobs cannot inflate.

Each module (bench/<name>.py) has `measure(quick=False) -> list[dict]`; a row holds benchmark, case, teaching and
fast (seconds per unit of work, None where not measured), unit and note. The ratio column is teaching / fast: how
many times faster the fast path does the same work. The --ci mode runs the whole test suite: run it alone, on a
quiet machine, never while others work.
"""
import argparse, importlib.util, inspect, json, os, subprocess, sys, time, traceback
from pathlib import Path
import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_util import machine, row, wait_until_quiet

MODULES = ['masks', 'step_cpu', 'gpu_step']
GPU_ONLY = {'gpu_step'}


def load(name):
    "Import bench/<name>.py under a private name (so `masks` cannot shadow anything)."
    spec = importlib.util.spec_from_file_location(f'bench_{name}', BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def fmt_s(s):
    "Seconds in a readable unit."
    if s is None: return '-'
    if s >= 1: return f'{s:.2f} s'
    if s >= 1e-3: return f'{1e3 * s:.1f} ms'
    return f'{1e6 * s:.0f} us'


def ratio(r):
    "teaching / fast, as text ('-' where either is missing)."
    t, f = r.get('teaching'), r.get('fast')
    return f'{t / f:.2f}x' if t and f else '-'


def table(rows):
    "The rows as a Markdown table."
    out = ['| benchmark | case | teaching | fast | unit | teaching / fast | note |', '|---|---|---|---|---|---|---|']
    for r in rows:
        out.append(f"| {r['benchmark']} | {r['case']} | {fmt_s(r.get('teaching'))} | {fmt_s(r.get('fast'))} | {r['unit']} | "
                   f"{ratio(r)} | {r.get('note', '')} |")
    return '\n'.join(out)


def header(m, load_start, load_end, argv):
    gpu = f", GPU {m['gpu']}" if m['gpu'] else ', no GPU'
    return (f"{m['date']}, {m['cpu']} ({m['cores']} cores{gpu}), torch {m['torch']}, Python {m['python']}; step_cpu rows: "
            f"{m['threads']} threads, {m['timer']} time (other modules: see their notes); "
            f"load average {load_start:.1f} at the start, {load_end:.1f} at the end\ncommand: python bench/run.py {' '.join(argv)}")


def run_ci():
    "Rows: wall time of nbdev_test over every notebook, and of pytest over the whole suite (.ci/run's test step)."
    rows = []
    for case, cmd, target in (('nbdev_test, all notebooks', ['nbdev_test'], 'issue target: under 3 minutes'),
                              ('pytest, the whole suite (what .ci/run runs after install, clean and export checks)',
                               [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'],
                               'issue target for all of .ci/run: under 20 minutes')):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        tail = (res.stdout.strip().splitlines() or [''])[-1][:120]
        rows.append(row('ci', case, None, dt, 'run', f"exit {res.returncode}; {target}; {tail}"))
        print(f"{case}: {dt:.0f} s (exit {res.returncode})", flush=True)
    return rows


def checkout_name(path):
    "A checkout's short commit, with '+ changes' when its work tree differs from it (or its folder name, outside git)."
    git = lambda *a: subprocess.run(['git', '-C', str(path), *a], capture_output=True, text=True)
    head = git('rev-parse', '--short', 'HEAD')
    if head.returncode or Path(git('rev-parse', '--show-toplevel').stdout.strip() or '/').resolve() != Path(path).resolve():
        return Path(path).name
    dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'ijepa_edu', 'bench').stdout.strip()
    return head.stdout.strip() + (' + changes' if dirty else '')


def run_in(checkout, script, args, out):
    "Run `checkout`/bench/`script` with `args` in a subprocess that imports that checkout's ijepa_edu; returns the rows it saved."
    code = ('import runpy, sys, ijepa_edu; print("ijepa_edu from", ijepa_edu.__file__, file=sys.stderr); '
            f'sys.argv = {[script, *args]!r}; runpy.run_path({str(Path(checkout) / "bench" / script)!r}, run_name="__main__")')
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(checkout), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}
    res = subprocess.run([sys.executable, '-c', code], cwd=checkout, env=env, capture_output=True, text=True)
    used = next((l.split(' from ', 1)[1] for l in res.stderr.splitlines() if l.startswith('ijepa_edu from')), '')
    if res.returncode or not Path(used).resolve().is_relative_to(Path(checkout).resolve()):
        raise RuntimeError(f'{checkout}/bench/{script} failed (exit {res.returncode}, ijepa_edu from {used or "?"}): '
                           f'{(res.stderr.strip().splitlines() or [""])[-1][-300:]}')
    text = Path(out).read_text(); Path(out).unlink()
    return json.loads(text)['rows'] if script == 'step_cpu.py' else [json.loads(l) for l in text.splitlines() if l.strip()]


def step_figures(checkout, a, tmp):
    "{(benchmark, case, column): seconds} of one checkout: step_cpu's first row, and gpu_step's rows where it runs."
    figs = {}
    step = run_in(checkout, 'step_cpu.py', ['--parts', 'main', '--no-compile', '--threads', str(a.threads), '--timer', a.timer,
                                            *(['--quick'] if a.quick else []), '--json', str(tmp / 'step.json')], tmp / 'step.json')
    for col in ('teaching', 'fast'): figs[('cpu step', f'cifar10_tiny, {col} path', step[0]['unit'])] = step[0][col]
    if torch.cuda.is_available() or a.quick:
        gpu = ['--toy'] if not torch.cuda.is_available() else ['--models', 'vit_base:16', '--batch', '128']
        for r in run_in(checkout, 'gpu_step.py', [*gpu, '--runs', 'random', 'pad', '--out', str(tmp / 'gpu.jsonl')], tmp / 'gpu.jsonl'):
            if 'error' not in r: figs[('gpu step', f"{r['model']}, masks {r['masks']} ({r['card']})", f"step ({r['batch']} img)")] = r['step_s']
    return figs


def compare_checkouts(a):
    "Rows: each figure of step_figures, ref checkout ('teaching' column) against this one ('fast' column), medians over rounds."
    import statistics, tempfile
    sides = {'this': ROOT, 'ref': Path(a.ref).resolve()}
    if not (sides['ref'] / 'ijepa_edu' / '__init__.py').is_file() or not (sides['ref'] / 'bench' / 'step_cpu.py').is_file():
        raise SystemExit(f'bench/run.py: --ref {a.ref} is not a checkout of this project (no ijepa_edu/ or bench/step_cpu.py); '
                         f'make one with: git worktree add /tmp/ijepa_ref COMMIT')
    names = {k: checkout_name(p) for k, p in sides.items()}
    runs = {'this': [], 'ref': []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.rounds):
            for side in (('this', 'ref') if i % 2 == 0 else ('ref', 'this')):
                if a.wait_quiet and not wait_until_quiet(a.wait_quiet): print('the machine was never quiet; measuring anyway', file=sys.stderr)
                t0 = time.perf_counter(); runs[side].append(step_figures(sides[side], a, Path(tmp)))
                print(f'round {i + 1}, {side} ({names[side]}): {time.perf_counter() - t0:.0f} s', file=sys.stderr, flush=True)
    rows = []
    for key in runs['this'][0]:
        ref = [f[key] for f in runs['ref'] if key in f]; new = [f[key] for f in runs['this'] if key in f]
        if not ref: continue
        rows.append(row(key[0] + ', two checkouts', f'{key[1]}: ref {names["ref"]} -> this {names["this"]}', statistics.median(ref),
                        statistics.median(new), key[2], f'medians of {len(ref)} rounds; ref ' + ', '.join(fmt_s(x) for x in ref) +
                        '; this ' + ', '.join(fmt_s(x) for x in new) + '; ratio = ref / this (1.00x or more: no slower)'))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true', help='seconds-long smoke run with tiny models')
    ap.add_argument('--json', help='save {machine, rows} to this path')
    ap.add_argument('--only', nargs='*', choices=MODULES, help='run these modules only')
    ap.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows')
    ap.add_argument('--threads', type=int, default=2, help='torch threads for the CPU rows (default 2)')
    ap.add_argument('--timer', choices=['wall', 'cpu'], default='wall',
                    help="wall: elapsed seconds (default); cpu: this process's CPU seconds, which other jobs cannot inflate")
    ap.add_argument('--ci', action='store_true', help='time nbdev_test and pytest instead (run alone)')
    ap.add_argument('--wait-quiet', type=float, default=0, metavar='SECONDS',
                    help='before each module, wait up to this long for a moment when no other process is runnable')
    ap.add_argument('--ref', metavar='PATH', help="instead: the training step of this checkout against the checkout at PATH")
    ap.add_argument('--rounds', type=int, default=3, help='with --ref: rounds of both sides, alternating (default 3)')
    argv = sys.argv[1:] if argv is None else argv
    a = ap.parse_args(argv)
    load_start, m = os.getloadavg()[0], machine()                      # the date is the start's
    rows, failed, skipped = [], [], []
    if a.ci: rows = run_ci()
    elif a.ref:
        try: rows = compare_checkouts(a)
        except RuntimeError as e: failed.append(f'--ref: FAILED, {e}')
    else:
        for name in a.only or MODULES:
            if name in GPU_ONLY and not torch.cuda.is_available():
                skipped.append(f'{name}: skipped, no CUDA device here (see bench/README.md for GPU figures and their dates)'); continue
            if a.wait_quiet and not wait_until_quiet(a.wait_quiet):
                skipped.append(f'{name}: note, the machine was never quiet within {a.wait_quiet:.0f} s; measured anyway')
            t0 = time.perf_counter()
            try:
                mod = load(name)
                params = inspect.signature(mod.measure).parameters
                kw = {k: v for k, v in (('compile', not a.no_compile), ('threads', a.threads), ('timer', a.timer)) if k in params}
                new = mod.measure(quick=a.quick, **kw)
            except Exception as e:
                failed.append(f'{name}: FAILED, {type(e).__name__}: {e}'); traceback.print_exc(); continue
            rows += new
            print(f'{name}: {len(new)} rows in {time.perf_counter() - t0:.0f} s', file=sys.stderr, flush=True)
    m.update(threads=a.threads, timer=a.timer)
    print('\n' + header(m, load_start, os.getloadavg()[0], argv) + ('  [--quick: smoke run, not figures]' if a.quick else ''))
    print(table(rows))
    for line in skipped + failed: print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({'machine': {**m, 'load_start': load_start, 'load_end': os.getloadavg()[0],
                                                        'argv': argv}, 'rows': rows, 'skipped': skipped, 'failed': failed}, indent=1))
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
