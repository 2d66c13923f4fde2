"""Mask sampling: the vectorised sampler (`MaskCollator()`, the default) against the per-image loop that
nbs/03_context.ipynb and 04_masks.ipynb teach (`MaskCollator(fast=False)`), side by side in one run.

Cases: batches of 256 and 2048 at 224 px in patches of 16 (14x14 grid) and 14 (16x16 grid), with the paper's mask
settings (4 targets of 15-20%, aspect 0.75-1.5, one context of 85-100%, min_keep 10); plus batch 128 at 224/14 (the
per-GPU batch of the ViT-H/14 config) and batch 128 of the `cifar10_tiny` preset (32 px in patches of 4,
min_keep 4), to set beside a training step's time: does the DataLoader wait on the sampler?

Both run on one thread, as in a DataLoader worker (PyTorch gives each worker one thread). The two paths are timed
alternately, so load from other processes hits both alike. Each figure is the median over repetitions of the CPU
time the call used (`time.process_time`: on one thread, the wall time it would take on an idle core; on a shared
machine wall time also counts the time spent waiting for a core), in seconds per batch of `sample(B)`: draw,
overlap removal, min_keep, equal lengths, index tensors. The wall-time ratio is in the note.

    python bench/masks.py            # about a minute on 2 busy cores
    python bench/masks.py --quick    # fewer repetitions
    python bench/masks.py --json out.json
"""
import json, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import row, machine
from ijepa_edu.masks import MaskCollator

CASES = [  # (label, batch size, MaskCollator keyword arguments)
    ('B=256 224px/16', 256, dict(input_size=224, patch_size=16)),
    ('B=256 224px/14', 256, dict(input_size=224, patch_size=14)),
    ('B=2048 224px/16', 2048, dict(input_size=224, patch_size=16)),
    ('B=2048 224px/14', 2048, dict(input_size=224, patch_size=14)),
    ('B=128 224px/14 (one GPU, ViT-H/14)', 128, dict(input_size=224, patch_size=14)),
    ('B=128 32px/4 (cifar10_tiny)', 128, dict(input_size=32, patch_size=4, min_keep=4)),
]


def _timed(fn):
    "(CPU seconds, wall seconds) of one call."
    c, w = time.process_time(), time.perf_counter(); fn()
    return time.process_time() - c, time.perf_counter() - w


def measure(quick: bool = False) -> list[dict]:
    "CPU seconds per batch of the teaching loop and of the fast sampler (one thread), one row per case."
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        rows = []
        for label, B, kw in CASES:
            reps = (3 if B > 1000 else 7) if quick else (11 if B > 1000 else 31)
            gen = torch.Generator().manual_seed(0)
            fns = {'teaching': lambda mc=MaskCollator(fast=False, **kw): mc.sample(B, gen),
                   'fast': lambda mc=MaskCollator(**kw): mc.sample(B, gen)}
            for f in fns.values(): f()                                       # warm-up
            ts = {n: [] for n in fns}
            for r in range(reps):                                            # alternate; flip the order each round
                for n in (list(fns) if r % 2 == 0 else list(fns)[::-1]): ts[n].append(_timed(fns[n]))
            cpu = {n: statistics.median(c for c, _ in v) for n, v in ts.items()}
            wall = {n: statistics.median(w for _, w in v) for n, v in ts.items()}
            rows.append(row('mask sampling', label, cpu['teaching'], cpu['fast'], 's/batch',
                            f"{cpu['teaching'] / cpu['fast']:.1f}x faster (CPU time; wall time {wall['teaching'] / wall['fast']:.1f}x, "
                            f"fast {wall['fast'] * 1e3:.1f} ms); median of {reps}, 1 thread"))
        return rows
    finally: torch.set_num_threads(threads)


if __name__ == '__main__':
    rows = measure(quick='--quick' in sys.argv)
    m = machine()
    print(f"mask sampling, {m['cpu']} ({m['cores']} cores), torch {m['torch']}, 1 thread, {m['date']}; CPU ms per batch")
    print(f"{'case':36s} {'loop ms':>10s} {'fast ms':>10s} {'speedup':>8s}  note")
    for r in rows:
        print(f"{r['case']:36s} {r['teaching'] * 1e3:10.2f} {r['fast'] * 1e3:10.2f} {r['teaching'] / r['fast']:7.1f}x  {r['note']}")
    if '--json' in sys.argv:
        Path(sys.argv[sys.argv.index('--json') + 1]).write_text(json.dumps({'machine': m, 'rows': rows}, indent=1))
