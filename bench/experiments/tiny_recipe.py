"""Experiment (2026-11-26): which `cifar10_tiny` settings give the best *linear probe* of the last layer, measured
against the same network at its random init? Each variant is `ijepa_train --preset cifar10_tiny` with overrides,
run as its own one-thread process (several side by side); the run's own evaluation scores k-NN and the linear probe
of the average-pooled target encoder, trained and at random init, with 10,000 train images and all 10,000 test images.

    python bench/experiments/tiny_recipe.py --data PATH [--jobs 2] [--only NAME ...] [--out runs/recipe]
    python bench/experiments/tiny_recipe.py --table bench/results/2026-11-26_tiny_recipe.jsonl   # print the measured table

Every finished run appends one JSON line (name, overrides, metrics.json) to `--results`. The table gives each
variant's gap (trained minus random init, in points) and, where a variant ran with several seeds, their mean and range:
the seed-to-seed spread of one setting is about as large as most of the differences between settings.
"""
import argparse, json, os, subprocess, sys, time
from collections import defaultdict
from pathlib import Path

# Overrides on top of `cifar10_tiny` (one epoch since this experiment; it had two before): 'seed=N' rows measure the
# spread, e2_base is the old preset.
VARIANTS = {
    'e0.5_base':            ['epochs=0.5'],
    'e1_base':              ['epochs=1'],
    'e1_base_s1':           ['epochs=1', 'seed=1'],
    'e1_base_s2':           ['epochs=1', 'seed=2'],
    'e2_base':              ['epochs=2'],
    'c1.5_lr5e-4_np2_flip': ['epochs=1.5', 'lr=5e-4', 'num_pred_masks=2', 'horizontal_flip=true'],
    'e1_lr5e-4':            ['epochs=1', 'lr=5e-4'],
    'e1_lr5e-4_s1':         ['epochs=1', 'lr=5e-4', 'seed=1'],
    'e1_lr2e-3':            ['epochs=1', 'lr=2e-3'],
    'e1_ema.99':            ['epochs=1', 'ema=0.99,1.0'],
    'e1_ema.998':           ['epochs=1', 'ema=0.998,1.0'],
    'e1_vc.03':             ['epochs=1', 'vc_weight=0.03'],
    'e1_vc1':               ['epochs=1', 'vc_weight=1.0'],
    'e1_np2':               ['epochs=1', 'num_pred_masks=2'],
    'e1_np2_s1':            ['epochs=1', 'num_pred_masks=2', 'seed=1'],
    'e1_np2_s2':            ['epochs=1', 'num_pred_masks=2', 'seed=2'],
    'e1_np1':               ['epochs=1', 'num_pred_masks=1'],
    'e1_np2_shared':        ['epochs=1', 'num_pred_masks=2', 'official_masks=shared_size'],
    'e1_flip':              ['epochs=1', 'horizontal_flip=true'],
    'c1_lr5e-4_np2_flip':   ['epochs=1', 'lr=5e-4', 'num_pred_masks=2', 'horizontal_flip=true'],
    'e1_pd2':               ['epochs=1', 'pred_depth=2'],
    'e1_pred128':           ['epochs=1', 'pred_emb_dim=128'],
    'e1_depth6':            ['epochs=1', 'depth=6'],
    'e1_w192':              ['epochs=1', 'embed_dim=192', 'num_heads=6', 'pred_emb_dim=96'],
    'e1_bs64':              ['epochs=1', 'batch_size=64'],
    'e2_ema.998':           ['epochs=2', 'ema=0.998,1.0'],
    'e2_ema.998_s1':        ['epochs=2', 'ema=0.998,1.0', 'seed=1'],
}

def run(name, overrides, data, out):
    "Start one variant as a one-thread `ijepa_train` process; returns (Popen, run folder)."
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', 'ijepa_edu.train', '--preset', 'cifar10_tiny', '--data', data, '--out', str(folder),
           'knn_every=0', 'save_every_epochs=0', *overrides]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    return subprocess.Popen(cmd, stdout=open(folder / 'stdout.txt', 'w'), stderr=subprocess.STDOUT, env=env), folder

def table(rows):
    "Markdown table: one line per variant, then seed groups (mean and range of the linear gap)."
    lines = ['| variant | overrides | train s | k-NN | k-NN random | linear | linear random | linear gap |', '|---|---|---:|---:|---:|---:|---:|---:|']
    groups = defaultdict(list)
    for r in rows:
        m = r['metrics']
        gap = m['linear_top1'] - m['linear_top1_random_init']
        lines.append(f"| {r['name']} | {' '.join(r['overrides']) or '-'} | {m['train_seconds']:.0f} | {m['knn_top1']:.2f} | "
                     f"{m['knn_top1_random_init']:.2f} | {m['linear_top1']:.2f} | {m['linear_top1_random_init']:.2f} | {gap:+.2f} |")
        groups[' '.join(o for o in r['overrides'] if not o.startswith('seed='))].append(gap)
    lines += ['', '| setting | seeds | linear gap: mean | min | max |', '|---|---:|---:|---:|---:|']
    lines += [f"| {k or '-'} | {len(v)} | {sum(v) / len(v):+.2f} | {min(v):+.2f} | {max(v):+.2f} |" for k, v in groups.items() if len(v) > 1]
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data'); ap.add_argument('--out', default='runs/recipe'); ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--only', nargs='*'); ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'tiny_recipe.jsonl'))
    ap.add_argument('--table', help='print the table of a results file and exit')
    a = ap.parse_args()
    if a.table: print(table([json.loads(l) for l in open(a.table)])); return
    if not a.data: ap.error('--data is required to run variants (or pass --table FILE)')
    queue, procs = list(a.only or VARIANTS), {}
    unknown = [n for n in queue if n not in VARIANTS]
    if unknown: ap.error(f'unknown variants {unknown}; choose from {list(VARIANTS)}')
    while queue or procs:
        while queue and len(procs) < a.jobs:
            n = queue.pop(0); procs[n] = run(n, VARIANTS[n], a.data, a.out)
        time.sleep(2)
        for n, (p, folder) in list(procs.items()):
            if p.poll() is None: continue
            del procs[n]
            if p.returncode: print(f'{n}: failed, see {folder / "stdout.txt"}', file=sys.stderr); continue
            row = dict(name=n, overrides=VARIANTS[n], metrics=json.loads((folder / 'metrics.json').read_text()))
            with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')
            print(table([row]).splitlines()[2], flush=True)

if __name__ == '__main__': main()
