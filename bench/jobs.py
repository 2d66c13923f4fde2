"""One job runner for bench's queues of training runs (`experiments/small_sweep.py`, `learning_curve.py`, `tiny_recipe.py`).

A `Job` is a name, the `ijepa_train` overrides and a run folder. `run_queue` runs a queue of jobs N at a time, each its
own `nice` process on one thread (OMP, MKL and so torch), and appends every finished job to a JSONL file (the job's
fields, its overrides, the full config, metrics.json and the last diagnostics of its log). It is resumable: a job whose
folder already holds a finished metrics.json is skipped (and logged, if the file lacks it), and a job whose folder holds
an unfinished run continues it with `--resume`; so after a stop, start the same command again. `collect` logs finished
folders without running anything (runs that ended while no runner watched them). `table` prints Markdown from columns.
`add_args` gives a queue script the shared options (--data --out --jobs --results --table --collect).
"""
import csv, json, os, subprocess, sys, time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    name: str                      # unique in its queue; also the run folder's name
    overrides: list                # `ijepa_train` key=value overrides, logged with the row
    out: Path                      # the run folder
    preset: str = 'cifar10_tiny'
    base: list = field(default_factory=list)     # overrides every job of the queue passes first (not logged)
    fields: dict = field(default_factory=dict)   # extra keys of the JSONL row, e.g. recipe, epochs, seed

    def __post_init__(self): self.out = Path(self.out)

    def command(self, data, resume=False):
        "The `ijepa_train` command line of this job."
        return [sys.executable, '-m', 'ijepa_edu.train', '--preset', self.preset, '--data', str(data), '--out', str(self.out),
                *(['--resume'] if resume else []), *self.base, *self.overrides]

    def config(self):
        "The full config as this code reads the job's overrides (None, with a note, if it no longer can)."
        from ijepa_edu.config import get_config, parse_overrides
        try: return get_config(self.preset, **parse_overrides([*self.base, *self.overrides])).to_dict()
        except ValueError as e: print(f'{self.name}: config not logged ({e})', file=sys.stderr); return None


def finished(folder):
    "Whether a run folder holds a finished run: a metrics.json with the training summary or an `ijepa_eval` entry."
    try: m = json.loads((Path(folder) / 'metrics.json').read_text())
    except (OSError, ValueError): return False
    return 'train_seconds' in m or 'evaluation' in m


def flat_metrics(folder):
    "metrics.json of a run, flat (`knn_top1`, `knn_top1_random_init`, ...): its evaluation entry flattened into the summary's keys."
    m = json.loads((Path(folder) / 'metrics.json').read_text())
    ev = m.get('evaluation')
    if isinstance(ev, dict) and 'rows' in ev:          # the one results schema (issue 23): the library flattens it
        from ijepa_edu.evaluate import flat_results
        m = {**flat_results(m), 'eval_train_images': ev['protocol'].get('train_images'),
             'eval_precision': ev['protocol'].get('precision', 'fp32')}   # as encoded: 'auto' resolved by the host
    elif ev:                                           # older: scored by ijepa_eval after training (eval_probes='' in the run)
        if m.get('train_images') not in (None, ev['train_images']):   # the run's own scores used other probe images
            m = {k: v for k, v in m.items() if not k.endswith('_random_init')}
        m.update({k: ev[k] for k in ('knn_top1', 'linear_top1') if k in ev}, eval_train_images=ev['train_images'])
        m.update({f'{k}_random_init': v for k, v in ev.get('random_init', {}).items() if k in ('knn_top1', 'linear_top1')})
    if 'train_seconds' not in m:                       # a run whose end-of-run summary was not written: from its log
        last = last_log_row(folder, 'elapsed_s')
        m.update(train_seconds=float(last['elapsed_s']), img_per_s=float(last['img_per_s']), steps=int(last['step']))
    return m


def last_log_row(folder, key):
    "The last row of a run's log.csv with a value in `key` ({} if none)."
    try:
        with open(Path(folder) / 'log.csv') as f: rows = [r for r in csv.DictReader(f) if r.get(key)]
    except OSError: return {}
    return rows[-1] if rows else {}


def run_config(folder):
    "The config a run saved in its latest.pt: what it ran with (None without a readable checkpoint)."
    from ijepa_edu.checkpoint import load_checkpoint, CheckpointError
    try: ck = load_checkpoint(Path(folder) / 'latest.pt', mmap=True)
    except (CheckpointError, OSError, RuntimeError): return None
    return ck.get('config') if isinstance(ck, dict) else None


def make_row(job, metrics=None, wall_s=None):
    """The JSONL row of a finished job: its fields, name, overrides, config, metrics, last diagnostics, folder and time.
    The config is the one the run saved in its checkpoint; without one, this code's reading of the job's overrides
    (which a default changed since the run would misreport: `config_from` says which)."""
    diag, saved = last_log_row(job.out, 'feat_std'), run_config(job.out)
    return dict(**job.fields, name=job.name, overrides=job.overrides, config=saved or job.config(),
                config_from='checkpoint' if saved else 'code',
                metrics=flat_metrics(job.out) if metrics is None else metrics,
                diag={k: diag[k] for k in ('feat_std', 'rankme', 'pos_share') if diag.get(k)}, run=str(job.out),
                wall_s=wall_s, finished=time.strftime('%Y-%m-%d %H:%M', time.localtime((job.out / 'metrics.json').stat().st_mtime)))


def read_rows(path):
    "The rows of a results file (JSON lines; [] if it does not exist yet)."
    p = Path(path)
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()] if p.exists() else []


def row_folder(r):
    "The run folder a row came from, resolved (None for rows that did not record it)."
    f = r.get('run') or (Path(r['metrics']['checkpoint']).parent if 'checkpoint' in r.get('metrics', {}) else None)
    return Path(f).resolve() if f else None


def append(results, row, echo=None):
    "Append one row to the results file; `echo(row)` prints it (e.g. as a table line)."
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    with open(results, 'a') as f: f.write(json.dumps(row) + '\n')
    if echo: print(echo(row), flush=True)
    return row


def collect(jobs, results, make=make_row, echo=None):
    "Log the finished jobs whose folders the results file does not hold yet; names the rest. Returns the new rows."
    logged = {row_folder(r) for r in read_rows(results)}
    rows = []
    for job in jobs:
        if not finished(job.out): print(f'{job.name}: not finished ({job.out} has no finished metrics.json)', file=sys.stderr)
        elif job.out.resolve() in logged: print(f'{job.name}: already in {results}', file=sys.stderr)
        else: rows.append(append(results, make(job), echo))
    return rows


def thread_env(threads=1):
    "The environment of a job: this one, with OMP and MKL (and so torch) held to `threads` threads."
    return {**os.environ, **{k: str(threads) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}}


def start(job, data, threads=1, nice=10):
    "Start one job as a `nice`d process on `threads` threads (continuing an unfinished run); its output goes to stdout.txt."
    job.out.mkdir(parents=True, exist_ok=True)
    resume = (job.out / 'latest.pt').exists()
    cmd = [*(['nice', '-n', str(nice)] if nice else []), *job.command(data, resume)]
    with open(job.out / 'stdout.txt', 'a' if resume else 'w') as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=thread_env(threads))


def failure(job):
    "One line: the job failed, its output's last line, and where the rest is."
    try: last = ([l for l in (job.out / 'stdout.txt').read_text().splitlines() if l.strip()] or [''])[-1][-200:]
    except OSError: last = ''
    return f'{job.name}: failed ({last}); see {job.out / "stdout.txt"}'


def run_queue(jobs,             # the queue, in order
              data,             # --data for every job
              results,          # JSONL file each finished job is appended to
              at_once=1,        # jobs side by side
              make=make_row,    # make(job, wall_s=...) -> the JSONL row
              echo=None,        # echo(row) -> a line printed when a job finishes
              threads=1, nice=10, poll=2.0):
    "Run the jobs `at_once` at a time; skip (and log, if missing) finished ones. Returns (new rows, failed job names)."
    names = [j.name for j in jobs]
    if len(set(names)) != len(names): raise ValueError(f'two jobs share a name in {names}: give each job its own name.')
    done = [j for j in jobs if finished(j.out)]
    rows = collect(done, results, make, echo) if done else []
    queue, procs, failed = [j for j in jobs if j not in done], {}, []
    try:
        while queue or procs:
            while queue and len(procs) < at_once:
                job = queue.pop(0); procs[job.name] = (job, start(job, data, threads, nice), time.time())
            time.sleep(poll)
            for name, (job, p, t0) in list(procs.items()):
                if p.poll() is None: continue
                del procs[name]
                if p.returncode or not finished(job.out): print(failure(job), file=sys.stderr, flush=True); failed.append(name)
                else: rows.append(append(results, make(job, wall_s=round(time.time() - t0, 1)), echo))
    except KeyboardInterrupt:            # Ctrl-C reached the jobs too: each saves its checkpoint and stops
        for job, p, _ in procs.values(): p.wait()
        raise SystemExit(f'stopped: {len(procs)} runs saved where they were, {len(queue)} not started; '
                         'start the same command again to resume.')
    return rows, failed


def table(rows,      # the rows to print, one table line each
          columns):  # [(header, fn(row) -> text, align ('l' or 'r'))]
    "A Markdown table: one line per row, one column per (header, function, alignment)."
    lines = ['| ' + ' | '.join(h for h, _, _ in columns) + ' |', '|' + '|'.join('---:' if a == 'r' else '---' for _, _, a in columns) + '|']
    return '\n'.join(lines + ['| ' + ' | '.join(str(fn(r)) for _, fn, _ in columns) + ' |' for r in rows])


def add_args(ap, results, out, jobs=1):
    "The runner's options every queue script shares: --data --out --jobs --results --table --collect."
    ap.add_argument('--data', help='the training data (required to run jobs)')
    ap.add_argument('--out', default=out, help=f'folder of the run folders (default {out})')
    ap.add_argument('--jobs', type=int, default=jobs, help=f'jobs side by side, one thread each (default {jobs})')
    ap.add_argument('--results', default=str(results), help='JSONL file every finished job is appended to')
    ap.add_argument('--table', metavar='FILE', help='print the table of a results file and exit')
    ap.add_argument('--collect', nargs='*', metavar='FOLDER',
                    help="log finished run folders the results file lacks (runs that ended while the runner was stopped): "
                         "the folders named, or with none the queue's own")
    return ap



def chosen(ap, a, variants):
    """The variants a script's queue runs (the --collect folders' names, else --only, else all of `variants`; an unknown
    name ends with `ap.error`) and the parent folder of each collected one: ([names], {name: folder})."""
    names = [Path(f).name for f in a.collect] if a.collect else a.only or list(variants)
    unknown = [n for n in names if n not in variants]
    if unknown: ap.error(f'unknown variants {unknown}; choose from {list(variants)}')
    return names, {Path(f).name: Path(f).parent for f in a.collect or []}
