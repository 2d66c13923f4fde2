"""Run the benchmarks and print one table: teaching and fast figures measured side by side, their ratio, the machine.

    python bench/run.py                  # every benchmark (minutes on 2 cores); GPU rows only where CUDA is available
    python bench/run.py --quick          # a seconds-long smoke run of the same code with tiny models (figures mean nothing)
    python bench/run.py --json PATH      # also save the machine and the rows as JSON
    python bench/run.py --only step_cpu  # some modules only: masks, step_cpu, gpu_step
    python bench/run.py --no-compile     # skip the torch.compile rows of step_cpu (they take minutes to compile)
    python bench/run.py --ci             # instead: time nbdev_test over all notebooks and pytest over the whole suite
    python bench/run.py --wait-quiet 1800  # start each module only when no other process has been runnable for 3 s

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
    argv = sys.argv[1:] if argv is None else argv
    a = ap.parse_args(argv)
    load_start, m = os.getloadavg()[0], machine()                      # the date is the start's
    rows, failed, skipped = [], [], []
    if a.ci: rows = run_ci()
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
