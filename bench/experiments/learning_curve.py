"""Learning curves of CPU recipes (issue 12): does more training give better features?

Each job is `ijepa_train --preset cifar10_tiny` with a recipe's overrides, a number of epochs and a seed, run as its
own one-thread, `nice` process (several side by side). The run's own evaluation scores the average-pooled target
encoder (k-NN and linear probe, beside the same network at its random init) with all 50,000 train images unless the
recipe says otherwise. Every finished job appends one JSON line (recipe, epochs, seed, overrides, the full config and
metrics.json) to `--results`.

    python bench/experiments/learning_curve.py --data PATH --recipe base --epochs 1 2 4 8 --seeds 0 [--jobs 2]
    python bench/experiments/learning_curve.py --table bench/results/learning_curve.jsonl   # print the measured curves
"""
import argparse, csv, json, os, subprocess, sys, time
from collections import defaultdict
from pathlib import Path

# Overrides on top of `cifar10_tiny`. 'base' is the preset as it stood before issue 12 (I-JEPA + VICReg penalty,
# additive sin-cos positions); 'paper' is the same network with the paper's loss and no penalty.
_OFF = ['rope=false', 'stop_std=0', 'target_layers=1', 'sigreg_weight=0']   # the levers of issue 12, all off
RECIPES = {
    'base':       [*_OFF, 'vc_weight=0.1'],                 # I-JEPA + VICReg penalty (the preset before issue 12)
    'paper':      [*_OFF, 'vc_weight=0'],                   # I-JEPA as the paper: no penalty
    'rope':       [*_OFF, 'rope=true', 'vc_weight=0.1'],    # + rotary positions
    'rope_pure':  [*_OFF, 'rope=true', 'vc_weight=0'],
    'rope_sig':   [*_OFF, 'rope=true', 'vc_weight=0', 'sigreg_weight=0.05'],
    'sincos_sig': [*_OFF, 'vc_weight=0', 'sigreg_weight=0.05'],
    'rope_tl4':   [*_OFF, 'rope=true', 'vc_weight=0.1', 'target_layers=4'],
    'rope_stop':  [*_OFF, 'rope=true', 'vc_weight=0.1', 'stop_std=0.25'],
    'rope_pad':   [*_OFF, 'rope=true', 'vc_weight=0.1', 'truncate=pad'],   # every drawn token trains (2.4x the step time)
    'rope_pure_tl4': [*_OFF, 'rope=true', 'vc_weight=0', 'target_layers=4'],   # pure I-JEPA, targets from the last 4 blocks
    'rope_pure_tl4_ema': [*_OFF, 'rope=true', 'vc_weight=0', 'target_layers=4', 'ema=0.996,0.996'],   # + a fixed EMA momentum
    'rope_pure_tl4_pd2': [*_OFF, 'rope=true', 'vc_weight=0', 'target_layers=4', 'pred_depth=2'],   # + a 2-block predictor
    'rope_tl4_ema': [*_OFF, 'rope=true', 'vc_weight=0.1', 'target_layers=4', 'ema=0.996,0.996'],   # the penalised recipe + both
    'rope_tl4_ema_b64': [*_OFF, 'rope=true', 'vc_weight=0.1', 'target_layers=4', 'ema=0.996,0.996', 'batch_size=64'],   # + twice the steps per epoch
}

def job_name(recipe, epochs, seed): return f'{recipe}_e{epochs:g}_s{seed}'

def start(recipe, epochs, seed, data, out, extra):
    "Start one job as a niced one-thread `ijepa_train` process; returns (Popen, run folder, overrides)."
    folder = Path(out) / job_name(recipe, epochs, seed)
    folder.mkdir(parents=True, exist_ok=True)
    overrides = [*RECIPES[recipe], f'epochs={epochs:g}', f'seed={seed}', *extra]
    cmd = ['nice', '-n', '10', sys.executable, '-m', 'ijepa_edu.train', '--preset', 'cifar10_tiny', '--data', data,
           '--out', str(folder), 'save_every_epochs=0', 'eval_train_images=0', *overrides]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    from ijepa_edu.config import get_config, parse_overrides   # the config as this code reads it, for the log
    cfg = get_config('cifar10_tiny', **parse_overrides(cmd[cmd.index('--out') + 2:])).to_dict()
    p = subprocess.Popen(cmd, stdout=open(folder / 'stdout.txt', 'w'), stderr=subprocess.STDOUT, env=env)
    return p, folder, overrides, cfg

def table(rows):
    "Markdown table: one line per recipe and length (mean over seeds, with the range where there are several)."
    groups = defaultdict(list)
    for r in rows: groups[(r['recipe'], r['epochs'], r['metrics'].get('eval_train_images', r['metrics'].get('train_images', 10000)) or 50000)].append(r['metrics'])
    def cell(ms, k):
        v = [m[k] for m in ms if k in m]
        if not v: return '-'
        return f'{sum(v) / len(v):.2f}' + (f' ({min(v):.1f}-{max(v):.1f})' if len(v) > 1 else '')
    lines = ['| recipe | epochs | probe images | seeds | train min | img/s | k-NN | linear | k-NN random | linear random |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for (rec, ep, n), ms in sorted(groups.items()):
        t = sum(m['train_seconds'] for m in ms) / len(ms) / 60
        ips = sum(m['img_per_s'] for m in ms) / len(ms)
        lines.append(f"| {rec} | {ep:g} | {n} | {len(ms)} | {t:.1f} | {ips:.0f} | {cell(ms, 'knn_top1')} | {cell(ms, 'linear_top1')} | "
                     f"{cell(ms, 'knn_top1_random_init')} | {cell(ms, 'linear_top1_random_init')} |")
    return '\n'.join(lines)

def flat_metrics(folder):
    "metrics.json of a run, with a later `ijepa_eval` entry flattened into the training summary's keys."
    m = json.loads((Path(folder) / 'metrics.json').read_text())
    ev = m.get('evaluation')
    if ev:                                             # scored by ijepa_eval after training (eval_probes='' in the run)
        if m.get('train_images') not in (None, ev['train_images']):   # the run's own scores used other probe images
            m = {k: v for k, v in m.items() if not k.endswith('_random_init')}
        m.update({k: ev[k] for k in ('knn_top1', 'linear_top1') if k in ev}, eval_train_images=ev['train_images'])
        m.update({f'{k}_random_init': v for k, v in ev.get('random_init', {}).items() if k in ('knn_top1', 'linear_top1')})
    if 'train_seconds' not in m:                       # a run whose end-of-run summary was not written: from its log
        with open(Path(folder) / 'log.csv') as f: last = [r for r in csv.DictReader(f) if r.get('elapsed_s')][-1]
        m.update(train_seconds=float(last['elapsed_s']), img_per_s=float(last['img_per_s']), steps=int(last['step']))
    return m

def log(results, job, folder, overrides, cfg, random_from=None):
    "Append one finished job (recipe, epochs, seed, overrides, config, metrics.json) to the results file and print it."
    m = flat_metrics(folder)
    if random_from: m = borrow_random_init(m, random_from)
    row = dict(recipe=job[0], epochs=job[1], seed=job[2], overrides=overrides, config=cfg, metrics=m,
               finished=time.strftime('%Y-%m-%d %H:%M'))
    with open(results, 'a') as f: f.write(json.dumps(row) + '\n')
    print(table([row]).splitlines()[2], flush=True)

def borrow_random_init(m, folder):
    "Fill a run's missing random-init scores from another run of the same seed and network (the init is the same)."
    other = flat_metrics(folder)
    if other.get('eval_train_images') != m.get('eval_train_images'): raise ValueError(f"{folder} was probed on other images.")
    for k in ('knn_top1_random_init', 'linear_top1_random_init'):
        if k not in m and k in other: m[k] = other[k]; m.setdefault('random_init_from', str(folder))
    return m

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data'); ap.add_argument('--out', default='runs/curve'); ap.add_argument('--jobs', type=int, default=1)
    ap.add_argument('--recipe', nargs='+', default=['base']); ap.add_argument('--epochs', type=float, nargs='+', default=[1])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--set', nargs='*', default=[], help='extra overrides for every job (key=value)')
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'learning_curve.jsonl'))
    ap.add_argument('--table', help='print the table of a results file and exit')
    ap.add_argument('--collect', nargs='*', help='log finished run folders named like RECIPE_eEPOCHS_sSEED (a runner that was stopped)')
    ap.add_argument('--random_from', help='with --collect: a run of the same seed and network whose random-init scores fill missing ones')
    a = ap.parse_args()
    if a.table: print(table([json.loads(l) for l in open(a.table)])); return
    if a.collect:
        for folder in map(Path, a.collect):
            recipe, e, s = folder.name.rsplit('_', 2)
            log(a.results, (recipe, float(e[1:]), int(s[1:])), folder, [*RECIPES[recipe], f'epochs={e[1:]}', f'seed={s[1:]}', *a.set], None,
                a.random_from)
        return
    if not a.data: ap.error('--data is required to run jobs (or pass --table FILE)')
    unknown = [r for r in a.recipe if r not in RECIPES]
    if unknown: ap.error(f'unknown recipes {unknown}; choose from {list(RECIPES)}')
    queue = [(r, e, s) for e in a.epochs for s in a.seeds for r in a.recipe]
    procs = {}
    while queue or procs:
        while queue and len(procs) < a.jobs:
            job = queue.pop(0); procs[job] = start(*job, a.data, a.out, a.set)
        time.sleep(5)
        for job, (p, folder, overrides, cfg) in list(procs.items()):
            if p.poll() is None: continue
            del procs[job]
            if p.returncode: print(f'{job_name(*job)}: failed, see {folder / "stdout.txt"}', file=sys.stderr); continue
            log(a.results, job, folder, overrides, cfg)

if __name__ == '__main__': main()
