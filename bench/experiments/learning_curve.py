"""Learning curves of CPU recipes (issue 12): does more training give better features?

Each job is `ijepa_train --preset cifar10_tiny` with a recipe's overrides, a number of epochs and a seed, run by
bench/jobs.py as its own one-thread, `nice` process (several side by side). The run's own evaluation scores the
average-pooled target encoder (k-NN and linear probe, beside the same network at its random init) with all 50,000 train
images unless the recipe says otherwise. Every finished job appends one JSON line (recipe, epochs, seed, overrides, the
full config and metrics.json) to `--results`. Stopped? Start the same command again: finished jobs are skipped (and
logged if the file lacks them), unfinished ones resume; `--collect` logs runs that ended while no runner watched.

    python bench/experiments/learning_curve.py --data PATH --recipe base --epochs 1 2 4 8 --seeds 0 [--jobs 2]
    python bench/experiments/learning_curve.py --table bench/results/learning_curve.jsonl   # print the measured curves
    python bench/experiments/learning_curve.py --collect runs/curve/rope_e2_s0 [--random_from runs/curve/rope_e1_s0]
"""
import argparse, sys
from collections import defaultdict
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jobs
from jobs import flat_metrics

# Overrides on top of `cifar10_tiny`. 'base' is the preset as it stood before issue 12 (I-JEPA + VICReg penalty,
# additive sin-cos positions); 'paper' is the same network with the paper's loss and no penalty.
_OFF = ['rope=false', 'stop_std=0', 'target_layers=1', 'sigreg_weight=0']   # the levers of issue 12, all off
_MAIN = [*_OFF, 'rope=true', 'vc_weight=0.1', 'target_layers=4', 'ema=0.996,0.996']   # the five-epoch main job's recipe
_M99 = [*_MAIN, 'pred_depth=2', 'ema=0.99,0.99']   # the main job's recipe in the fifth and sixth rounds (`cifar10_cpu`)
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
    'rope_tl4_ema': _MAIN,                                  # the penalised recipe + both: `cifar10_cpu` until its 2-block predictor
    'rope_tl4_ema_b64': [*_MAIN, 'batch_size=64'],          # + twice the steps per epoch
    'rope_tl4_ema_crop6': [*_MAIN, 'crop_scale=0.6,1.0'],   # + milder crops
    'rope_tl4_ema_lr2': [*_MAIN, 'lr=0.002'],               # + twice the peak learning rate
    'rope_tl4_ema_lr3': [*_MAIN, 'lr=0.003'],               # + three times the peak learning rate
    'rope_tl4_ema_np2': [*_MAIN, 'num_pred_masks=2'],       # + two target blocks, not four (a larger context)
    'rope_tl4_ema_pd2': [*_MAIN, 'pred_depth=2'],           # + a 2-block predictor (`cifar10_cpu` in the fourth round, 6 epochs)
    'rope_tl4_ema_pd2_m99': _M99,                            # + a faster target, momentum 0.99 (`cifar10_cpu` in the fifth round)
    'rope_tl4_ema_pd2_m98': [*_MAIN, 'pred_depth=2', 'ema=0.98,0.98'],   # + a faster target still: momentum 0.98 (about 50 steps)
    # that recipe with targets from the last two of its four blocks: 'the last four' of a 4-block encoder is
    # every block, the first's near-pixel output too (data2vec, where the average comes from, takes the top 8 of 12)
    'rope_tl2_ema_pd2_m99': [*_M99, 'target_layers=2'],
    'rope_tl3_ema_pd2_m99': [*_M99, 'target_layers=3'],     # all but the first block
    'rope_tl1_ema_pd2_m99': [*_M99, 'target_layers=1'],     # the last block (the paper): `cifar10_cpu` in the seventh round
    'rope_tl1_ema_pd2_m99_np2': [*_M99, 'target_layers=1', 'num_pred_masks=2'],   # + two target blocks: `cifar10_cpu` since the eighth
    # the recipe with its data stream (order, crops, masks) seeded apart from its weights: with seed=S, the runs
    # rope_tl4_ema_dataD_eE_sS and rope_tl4_ema_eE_sD share their data and differ in their init, or the reverse (lesson 31)
    'rope_tl4_ema_data0': [*_MAIN, 'data_seed=0'],
    'rope_tl4_ema_data1': [*_MAIN, 'data_seed=1'],
}

def job_name(recipe, epochs, seed): return f'{recipe}_e{epochs:g}_s{seed}'

def make_job(recipe, epochs, seed, out, extra):
    "One run of a recipe: `ijepa_train --preset cifar10_tiny` with its overrides, the length and seed, and `extra`."
    return jobs.Job(job_name(recipe, epochs, seed), [*RECIPES[recipe], f'epochs={epochs:g}', f'seed={seed}', *extra],
                    Path(out) / job_name(recipe, epochs, seed), base=['save_every_epochs=0', 'eval_train_images=0'],
                    fields=dict(recipe=recipe, epochs=float(epochs), seed=int(seed)))

def job_of(folder, extra):
    "The job a run folder named RECIPE_eEPOCHS_sSEED holds (for --collect)."
    folder = Path(folder)
    recipe, e, s = folder.name.rsplit('_', 2)
    if recipe not in RECIPES or e[:1] != 'e' or s[:1] != 's':
        raise SystemExit(f'{folder}: not named RECIPE_eEPOCHS_sSEED with a recipe of {list(RECIPES)}; name a run folder of this script.')
    return make_job(recipe, float(e[1:]), int(s[1:]), folder.parent, extra)

def table(rows):
    "Markdown table: one line per recipe and length (mean over seeds, with the range where there are several)."
    groups = defaultdict(list)
    for r in rows:
        if 'recipe' not in r: continue                   # another script's row in a shared file (table7.jsonl)
        m = r['metrics']
        groups[(r['recipe'], r['epochs'], m.get('eval_train_images', m.get('train_images', 10000)) or 50000)].append(m)
    def cell(ms, k):
        v = [m[k] for m in ms if k in m]
        if not v: return '-'
        return f'{sum(v) / len(v):.2f}' + (f' ({min(v):.1f}-{max(v):.1f})' if len(v) > 1 else '')
    mean = lambda k: lambda g: sum(m[k] for m in g[1]) / len(g[1])
    cols = [('recipe', lambda g: g[0][0], 'l'), ('epochs', lambda g: f'{g[0][1]:g}', 'r'), ('probe images', lambda g: g[0][2], 'r'),
            ('seeds', lambda g: len(g[1]), 'r'), ('train min', lambda g: f"{mean('train_seconds')(g) / 60:.1f}", 'r'),
            ('img/s', lambda g: f"{mean('img_per_s')(g):.0f}", 'r'), ('k-NN', lambda g: cell(g[1], 'knn_top1'), 'r'),
            ('linear', lambda g: cell(g[1], 'linear_top1'), 'r'), ('k-NN random', lambda g: cell(g[1], 'knn_top1_random_init'), 'r'),
            ('linear random', lambda g: cell(g[1], 'linear_top1_random_init'), 'r')]
    return jobs.table(sorted(groups.items()), cols)

def borrow_random_init(m, folder):
    "Fill a run's missing random-init scores from another run of the same seed and network (the init is the same)."
    other = flat_metrics(folder)
    if other.get('eval_train_images') != m.get('eval_train_images'): raise ValueError(f"{folder} was probed on other images.")
    for k in ('knn_top1_random_init', 'linear_top1_random_init'):
        if k not in m and k in other: m[k] = other[k]; m.setdefault('random_init_from', str(folder))
    return m

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_args(ap, Path(__file__).parents[1] / 'results' / 'learning_curve.jsonl', 'runs/curve')
    ap.add_argument('--recipe', nargs='+', default=['base']); ap.add_argument('--epochs', type=float, nargs='+', default=[1])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0])
    ap.add_argument('--set', nargs='*', default=[], help='extra overrides for every job (key=value)')
    ap.add_argument('--threads', type=int, default=1, help='threads per job (default 1; 2 for one job alone on two cores)')
    ap.add_argument('--random_from', help='with --collect: a run of the same seed and network whose random-init scores fill missing ones')
    a = ap.parse_args(argv)
    if a.table: print(table(jobs.read_rows(a.table))); return
    unknown = [r for r in a.recipe if r not in RECIPES]
    if unknown: ap.error(f'unknown recipes {unknown}; choose from {list(RECIPES)}')
    queue = [make_job(r, e, s, a.out, a.set) for e in a.epochs for s in a.seeds for r in a.recipe]
    make = lambda job, wall_s=None: jobs.make_row(job, borrow_random_init(flat_metrics(job.out), a.random_from) if a.random_from
                                                  else None, wall_s)
    echo = lambda row: table([row]).splitlines()[2]
    if a.collect is not None:
        jobs.collect([job_of(f, a.set) for f in a.collect] if a.collect else queue, a.results, make, echo); return
    if not a.data: ap.error('--data is required to run jobs (or pass --table FILE, or --collect)')
    _, failed = jobs.run_queue(queue, a.data, a.results, a.jobs, make, echo, threads=a.threads)
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
