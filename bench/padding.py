"""Padded masks against the official truncation on the CPU (issue 15): tokens trained per image and time per step.

Both ways see the same images and the same mask draws (one seeded generator per batch: `truncate='pad'` keeps every
drawn patch, `truncate='random'` cuts each mask to the batch's shortest), with the model of a preset, one full training
step each (loss, backward, AdamW, EMA), timed alternately so the machine's noise hits both alike.

    python bench/padding.py [--preset cifar10_tiny] [--set rope=true] [--batch 128] [--reps 6] [--threads 1] [--out FILE]

Prints one line per way and the ratios; `--out` appends them as JSON lines. The GPU figures of the same comparison
(ViT-B/L/H, beside the official code) come from `bench/gpu_step.py`.
"""
import argparse, itertools, json, sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import interleaved, machine
from ijepa_edu.build import build_model, make_mask_collator
from ijepa_edu.config import get_config, parse_overrides
from ijepa_edu.schedules import param_groups
from ijepa_edu.step import train_step


def draws(cfg, B, n, seed=0):
    "n batches of random images with their masks both ways, from the same draws: {'random': [...], 'pad': [...]}."
    out = {'random': [], 'pad': []}
    for i in range(n):
        x = torch.randn(B, 3, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(seed + i))
        for way in out:
            mc = make_mask_collator(cfg, truncate=way)
            out[way].append((x, *mc.sample(B, gen=torch.Generator().manual_seed(1000 + seed + i))))
    return out


def tokens(pool):
    "Mean real context and target tokens per image (targets summed over the blocks) over a pool of batches."
    real = lambda m: (m >= 0).sum(1).float()                           # (B,) real patches of each image
    ctx = torch.cat([sum(real(m) for m in me) for _, me, _ in pool]).mean().item()
    tgt = torch.cat([sum(real(m) for m in mp) for _, _, mp in pool]).mean().item()
    width = sum(me[0].shape[1] + sum(m.shape[1] for m in mp) for _, me, mp in pool) / len(pool)
    return ctx, tgt, width


def stepper(cfg, pool):
    "One training step on the next batch of `pool` per call."
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-4, weight_decay=0.04)
    batches = itertools.cycle(pool)
    return lambda: train_step(model, opt, *next(batches), momentum=0.996)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='cifar10_tiny'); ap.add_argument('--set', nargs='*', default=[])
    ap.add_argument('--batch', type=int, default=128); ap.add_argument('--reps', type=int, default=6)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--out')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = get_config(a.preset, **parse_overrides(a.set))
    pools = draws(cfg, a.batch, 4)
    med, _ = interleaved({way: stepper(cfg, pool) for way, pool in pools.items()}, a.reps, warmup=2)
    rows = []
    for way, pool in pools.items():
        ctx, tgt, width = tokens(pool)
        rows.append(dict(benchmark='padding', preset=a.preset, overrides=a.set, batch=a.batch, threads=a.threads, way=way,
                         ctx_tokens_per_img=round(ctx, 2), tgt_tokens_per_img=round(tgt, 2), places_per_row=round(width, 1),
                         s_per_step=round(med[way], 4), img_per_s=round(a.batch / med[way], 1), machine=machine()))
        print(f"{way:7s} context {ctx:6.1f} and targets {tgt:6.1f} tokens per image trained, rows of {width:5.1f} places: "
              f"{med[way] * 1e3:7.1f} ms per step ({a.batch / med[way]:6.1f} img/s)")
    r, p = rows
    print(f"pad / random: {p['ctx_tokens_per_img'] / r['ctx_tokens_per_img']:.2f}x context tokens, "
          f"{p['tgt_tokens_per_img'] / r['tgt_tokens_per_img']:.2f}x target tokens, {p['s_per_step'] / r['s_per_step']:.2f}x time per step")
    if a.out:
        with open(a.out, 'a') as f:
            for row in rows: f.write(json.dumps(row) + '\n')


if __name__ == '__main__': main()
