"""Experiment (2026-11-26): which `cifar10_tiny` settings give the best *linear probe* of the last layer, measured
against the same network at its random init? Each variant is `ijepa_train --preset cifar10_tiny` with overrides,
run as its own one-thread process (several side by side); the run's own evaluation scores k-NN and the linear probe
of the average-pooled target encoder, trained and at random init, with 10,000 train images and all 10,000 test images.

    python bench/experiments/tiny_recipe.py --data PATH [--jobs 2] [--only NAME ...] [--out runs/recipe]
    python bench/experiments/tiny_recipe.py --collect [FOLDER ...] [--out runs/recipe]   # log finished runs the file lacks
    python bench/experiments/tiny_recipe.py --table bench/results/2026-11-26_tiny_recipe.jsonl   # print the measured table

Every finished run appends one JSON line (name, overrides, the full config, metrics.json) to `--results`; the runner
is bench/jobs.py (start the same command again after a stop: finished runs are skipped; `--collect` logs the ones that
ended while it was stopped). The table gives each variant's gap (trained minus random init, in points) and, where a
variant ran with several seeds, their mean and range: the seed-to-seed spread of one setting is about as large as most
of the differences between settings.
"""
import argparse, sys
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jobs

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

def make_job(name, out):
    "One variant: `ijepa_train --preset cifar10_tiny` with its overrides, in out/NAME."
    return jobs.Job(name, VARIANTS[name], Path(out) / name, base=['knn_every=0', 'save_every_epochs=0'])

def table(rows):
    "Markdown table: one line per variant, then seed groups (mean and range of the linear gap)."
    gap = lambda r: r['metrics']['linear_top1'] - r['metrics']['linear_top1_random_init']
    f2 = lambda k: lambda r: f"{r['metrics'][k]:.2f}"
    lines = [jobs.table(rows, [('variant', lambda r: r['name'], 'l'), ('overrides', lambda r: ' '.join(r['overrides']) or '-', 'l'),
                               ('train s', lambda r: f"{r['metrics']['train_seconds']:.0f}", 'r'), ('k-NN', f2('knn_top1'), 'r'),
                               ('k-NN random', f2('knn_top1_random_init'), 'r'), ('linear', f2('linear_top1'), 'r'),
                               ('linear random', f2('linear_top1_random_init'), 'r'), ('linear gap', lambda r: f'{gap(r):+.2f}', 'r')])]
    groups = defaultdict(list)
    for r in rows: groups[' '.join(o for o in r['overrides'] if not o.startswith('seed='))].append(gap(r))
    seeds = [(k, v) for k, v in groups.items() if len(v) > 1]
    lines += ['', jobs.table(seeds, [('setting', lambda g: g[0] or '-', 'l'), ('seeds', lambda g: len(g[1]), 'r'),
                                     ('linear gap: mean', lambda g: f'{sum(g[1]) / len(g[1]):+.2f}', 'r'),
                                     ('min', lambda g: f'{min(g[1]):+.2f}', 'r'), ('max', lambda g: f'{max(g[1]):+.2f}', 'r')])]
    return '\n'.join(lines)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_args(ap, Path(__file__).parents[1] / 'results' / 'tiny_recipe.jsonl', 'runs/recipe', jobs=2)
    ap.add_argument('--only', nargs='*', help='these variants only (default: all)')
    a = ap.parse_args(argv)
    if a.table: print(table(jobs.read_rows(a.table))); return
    names, outs = jobs.chosen(ap, a, VARIANTS)
    queue = [make_job(n, outs.get(n, a.out)) for n in names]
    echo = lambda row: table([row]).splitlines()[2]
    if a.collect is not None: jobs.collect(queue, a.results, echo=echo); return
    if not a.data: ap.error('--data is required to run variants (or pass --table FILE, or --collect)')
    return 1 if jobs.run_queue(queue, a.data, a.results, a.jobs, echo=echo)[1] else 0

if __name__ == '__main__': sys.exit(main())
