"""Experiment (issue 24): does a slower average of the target encoder, kept for evaluation only, score better?

The target encoder is an EMA of the context encoder at momentum 0.996 (in `cifar10_cpu`): it averages about the last
250 steps. This script trains the main job (`cifar10_cpu`, with `--set` overrides) and, beside the target encoder, keeps
averages of it that never feed training: `ema:M` (an EMA at momentum M, warmed up as min(M, (1 + n) / (10 + n)) so the
random start does not linger; the warm-up stays below 0.9967 for the 2,730 steps of seven epochs, so there `ema:0.998`
and `ema:0.999` are one and the same average, over about the last 300 steps) and `tail:F` (the uniform mean of the
target encoder over the last fraction F of the steps). Training is the main job's own, step for step (the averages read the weights after each EMA step, and draw
nothing); the run's evaluation scores the target encoder, then every average goes through the same probes on the same
images (features standardised with the train statistics).

    python bench/experiments/weight_average.py --data PATH --seed 0 --out runs/wavg/e7_s0 --set epochs=7 \
        --averages ema:0.998 ema:0.999 tail:0.5 [--threads 1]

Appends one JSON line per encoder (the target encoder first) to bench/results/weight_average.jsonl.
"""
import argparse, json, time
from pathlib import Path
import torch
from ijepa_edu.config import get_config, parse_overrides
from ijepa_edu.build import build_model
from ijepa_edu.train import train
from ijepa_edu.ema import make_target_encoder, ema_update
from ijepa_edu.data import resolve_data
from ijepa_edu.evaluate import probe_datasets
from ijepa_edu.probes import evaluate_encoder
from ijepa_edu.build import pick_eval_precision

class Average:
    "An evaluation-only average of a module's weights: `ema:M` or `tail:F` (see the module's docstring)."
    def __init__(self, spec, module, total_steps):
        self.name, (kind, x) = spec, spec.split(':')
        self.kind, self.x, self.n = kind, float(x), 0
        if kind not in ('ema', 'tail'): raise ValueError(f'{spec}: expected ema:M or tail:F')
        self.start = round(total_steps * (1 - self.x)) if kind == 'tail' else 0   # the tail's first step
        self.module = make_target_encoder(module)    # a frozen copy, moved only by `update`
    def update(self, module, step):                  # step: the number of optimisation steps done
        if step <= self.start: return
        self.n += 1
        m = 1 - 1 / self.n if self.kind == 'tail' else min(self.x, (1 + self.n) / (10 + self.n))   # weight of the old mean
        ema_update(self.module, module, m)          # lesson 07's step (the encoder's buffers are constant)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--preset', default='cifar10_cpu')
    ap.add_argument('--set', nargs='*', default=[], help='overrides of the preset (key=value)')
    ap.add_argument('--averages', nargs='+', default=['ema:0.998', 'ema:0.999', 'tail:0.5'])
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'weight_average.jsonl'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = get_config(a.preset, **{**parse_overrides(a.set), 'seed': str(a.seed), 'data': a.data, 'out': a.out,
                                  'eval_baselines': ''})
    torch.manual_seed(cfg.seed)                     # as `train` seeds before it builds the model itself
    model = build_model(cfg)
    total = int(cfg.epochs * (50000 // cfg.batch_size))   # CIFAR-10's 50,000 training images, whole batches
    avgs = [Average(s, model.target_encoder, total) for s in a.averages]
    ema_step, state = model.ema_step, {'step': 0}
    def ema_and_average(m):                         # the run's own EMA step, then every average reads its result
        ema_step(m); state['step'] += 1
        for av in avgs: av.update(model.target_encoder, state['step'])
    model.ema_step = ema_and_average
    t0 = time.time()
    s = train(cfg, model=model, quiet=True)
    train_s = s['train_seconds']
    ev = s['evaluation']
    base = dict(preset=a.preset, overrides=a.set, seed=a.seed, epochs=cfg.epochs, steps=s['steps'], train_seconds=train_s,
                img_per_s=s['img_per_s'], out=a.out, precision=ev['protocol']['precision'],   # how the probes encoded
                config=cfg.to_dict())
    rows = [dict(base, encoder='target', **ev['rows']['pretrained'])]
    print(json.dumps(rows[0]), flush=True)
    tr, te = probe_datasets(cfg, resolve_data(a.data), cfg.eval_train_images, cfg.eval_test_images)
    prec = pick_eval_precision(cfg.eval_precision, torch.device('cpu'))
    for av in avgs:
        r = evaluate_encoder(av.module.eval(), tr, te, probes=cfg.eval_probes, seed=cfg.seed, precision=prec)
        rows.append(dict(base, encoder=av.name, averaged_steps=av.n, **r)); print(json.dumps(rows[-1]), flush=True)
    with open(a.results, 'a') as f:
        for r in rows: f.write(json.dumps(r) + '\n')
    print(f'wall {time.time() - t0:.0f} s')

if __name__ == '__main__': main()
