"""Experiment (2026-11-26): the EMA target encoder of a short run is a weight average of the random start and the
trained context encoder. Score the straight line between the two, theta(a) = a * theta_init + (1 - a) * theta_context,
with the run's own probes (k-NN and linear, average-pooled last layer), beside the target encoder itself.

    python bench/experiments/init_soup.py --ckpt runs/cifar10_tiny/latest.pt --data PATH [--train_images 10000]

Prints one line per point and appends them as JSON to bench/results/init_soup.jsonl.
"""
import argparse, copy, json, time
from pathlib import Path
from ijepa_edu.data import resolve_data
from ijepa_edu.probes import evaluate_encoder
from ijepa_edu.evaluate import load_run_encoder, random_init_encoder, probe_datasets

def interpolate(init, trained, a):
    "A copy of `trained` whose floating-point weights are a * init + (1 - a) * trained (buffers included)."
    out = copy.deepcopy(trained)
    sd_i, sd_t = init.state_dict(), trained.state_dict()
    out.load_state_dict({k: a * sd_i[k] + (1 - a) * v if v.is_floating_point() else v for k, v in sd_t.items()})
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--ckpt', required=True); ap.add_argument('--data', required=True)
    ap.add_argument('--train_images', type=int, default=10000); ap.add_argument('--test_images', type=int, default=10000)
    ap.add_argument('--alphas', type=float, nargs='*', default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'init_soup.jsonl'))
    a = ap.parse_args()
    ctx, cfg, ck = load_run_encoder(a.ckpt, 'context')
    tgt, _, _ = load_run_encoder(a.ckpt, 'target')
    init = random_init_encoder(cfg)
    root = resolve_data(a.data)
    tr, te = probe_datasets(cfg, root, a.train_images, a.test_images)     # the evaluation's one data path
    points = [(f'a={x:g}', interpolate(init, ctx, x)) for x in a.alphas] + [('target encoder', tgt)]
    for name, enc in points:
        t0 = time.time()
        r = evaluate_encoder(enc.eval(), tr, te, ('knn', 'linear'))
        row = dict(ckpt=a.ckpt, step=ck['step'], point=name, knn_top1=r['knn_top1'], linear_top1=r['linear_top1'],
                   train_images=len(tr), test_images=len(te), seconds=round(time.time() - t0, 1))
        print(json.dumps(row), flush=True)
        with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')

if __name__ == '__main__': main()
