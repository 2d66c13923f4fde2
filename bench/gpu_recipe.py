"""One GPU, a few minutes (issue 12, item 5): pretrain `cifar10_small` for at most `--minutes` of wall time on one GPU
and print its learning curve (online k-NN along the run, then k-NN and linear probes of the target encoder on all
50,000 training images).

The data set lives in memory on the GPU (`data_in_memory=true`: decoded once, crops made there, masks drawn from the
batch's seed), so the run is not data-bound. The run's length is set by measurement, not guessed: a short calibration
run measures images/s on this GPU, and the real run gets the number of epochs that fits the budget after the
evaluation's share. Everything is logged under `--out` (log.csv, metrics.json, loss.png) and one JSON line with the
card's name, the config and the results is appended to `--results`.

    python bench/gpu_recipe.py --data PATH_TO_CIFAR10 [--minutes 8] [--preset cifar10_small] [key=value ...]
    python bench/gpu_recipe.py --data TOY --toy      # the same code on the CPU with a toy model (tests/test_bench.py)

`bench/gpu_recipe.sh` wraps it for the device machine.
"""
import argparse, csv, json, subprocess, sys, time
from pathlib import Path

TOY = ['model=custom', 'embed_dim=32', 'depth=1', 'num_heads=2', 'pred_depth=1', 'pred_emb_dim=16', 'batch_size=16',
       'monitor_images=40', 'eval_train_images=60', 'device=cpu']


def train(preset, data, out, overrides, quiet=False):
    "Run `ijepa_train` in a child process; returns its metrics.json as one flat dict (`knn_top1`, `knn_top1_random_init`, ...)."
    from ijepa_edu.evaluate import flat_results
    cmd = [sys.executable, '-m', 'ijepa_edu.train', '--preset', preset, '--data', data, '--out', str(out), *overrides]
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
    return flat_results(json.loads((Path(out) / 'metrics.json').read_text()))


def curve(log_csv):
    "(step, epoch, online k-NN) rows of a run's log."
    with open(log_csv) as f: return [(int(r['step']), r['epoch'], float(r['knn_top1'])) for r in csv.DictReader(f) if r.get('knn_top1')]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('--minutes', type=float, default=8.0)
    ap.add_argument('--preset', default='cifar10_small'); ap.add_argument('--out', default='runs/gpu_recipe')
    ap.add_argument('--eval-share', type=float, default=0.2, help='fraction of the budget kept for start-up and evaluation')
    ap.add_argument('--toy', action='store_true', help='a toy model on the CPU: checks the script, measures nothing')
    ap.add_argument('--quiet', action='store_true', help="hide the training runs' own output")
    ap.add_argument('--results', default=str(Path(__file__).parent / 'results' / 'gpu_recipe.jsonl'))
    ap.add_argument('overrides', nargs='*', help='config overrides key=value for both runs')
    a = ap.parse_args()
    t0, out = time.time(), Path(a.out)
    base = ['data_in_memory=true', 'save_every_epochs=0', *(TOY if a.toy else []), *a.overrides]
    cal = train(a.preset, a.data, out / 'calibrate', [*base, 'max_steps=5' if a.toy else 'max_steps=60', 'eval_probes=', 'knn_every=0'], a.quiet)
    ips, n = cal['img_per_s'], cal['images']
    train_s = max(a.minutes * 60 * (1 - a.eval_share) - (time.time() - t0), 1.0)
    epochs = max(round(train_s * ips / n, 1), 0.1)
    print(f"calibration: {ips:,.0f} images/s on {cal['device']}; {train_s:.0f} s of training -> {epochs:g} epochs", flush=True)
    m = train(a.preset, a.data, out / 'run', [*base, f'epochs={epochs}', f'warmup={min(epochs / 10, 5):.2f}',
                                               f'knn_every={epochs / 8:.3f}', 'eval_train_images=' + ('60' if a.toy else '0')], a.quiet)
    wall = time.time() - t0
    print(f"\nlearning curve ({a.preset}, {epochs:g} epochs, online k-NN on the monitor's subset):")
    for step, ep, knn in curve(out / 'run' / 'log.csv'): print(f"  step {step:>6}  epoch {ep:>4}  k-NN {knn:6.2f}")
    keys = [k for k in ('knn_top1', 'linear_top1', 'knn_top1_random_init', 'linear_top1_random_init') if k in m]
    print('final: ' + ', '.join(f'{k} {m[k]:.2f}' for k in keys))
    print(f"wall time {wall / 60:.1f} min (budget {a.minutes:g}), training {m['train_seconds']:.0f} s at {m['img_per_s']:,.0f} images/s")
    device = m['device']
    if 'cuda' in device:
        import torch; device = torch.cuda.get_device_name()
    row = dict(date=time.strftime('%Y-%m-%d %H:%M'), card=device, preset=a.preset, epochs=epochs, overrides=a.overrides,
               toy=a.toy, wall_minutes=round(wall / 60, 2), metrics=m, curve=curve(out / 'run' / 'log.csv'))
    if not a.toy:
        with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')
    return row


if __name__ == '__main__': main()
