"""CPU training step of the `cifar10_tiny` preset: the teaching path against the fast path, lever by lever.

The step is the library's own: `build_model(get_config('cifar10_tiny'))` (encoder width 128, depth 4; predictor
width 64, depth 4; the variance-covariance penalty of lesson 11) and `train_step`, on batches of 128 random
32 px images with masks from the preset's `MaskCollator` (a pool of a few mask sets, so the context length
varies as in training).

  teaching path  written-out attention, one gather per (mask, image), one predictor pass per target block
                 (`set_fast_paths(model, False)`, lessons 05, 06, 08), AdamW's CPU default (a Python for-loop over
                 the tensors), the loss read with `.item()` every step, no compile
  fast path      SDPA, one gather per mask set, all target blocks in one predictor batch, fused AdamW, the loss
                 kept as a tensor; `torch.compile` and bf16 autocast measured separately on top (compile time reported
                 apart; bf16 changes the numbers, so it is not part of the equal-loss fast path)

Each lever is measured alone (the teaching path with only that lever switched), then all together. Within a
row the two variants alternate step by step on the same batches, so the shared machine's noise hits both
alike; the figures are medians. Also measured: gradient checkpointing (peak memory and time), and the
DataLoader of the preset (workers, persistent workers) on a generated ImageFolder tree in a temp folder.

    python bench/step_cpu.py [--quick] [--no-compile] [--threads 2] [--timer wall|cpu] [--parts step memory loader] [--json PATH]
    python bench/step_cpu.py --profile --threads 1     # where a step's time goes (torch.profiler)
"""
import argparse, copy, itertools, json, shutil, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import row, interleaved, machine, PeakMemory, wait_until_quiet
from ijepa_edu.config import get_config
from ijepa_edu.build import build_model, make_mask_collator
from ijepa_edu.step import IJEPA, train_step, set_fast_paths
from ijepa_edu.schedules import param_groups
from ijepa_edu.encoder import vit_small
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.data import make_dataset, make_transforms, SeededSamples, ResumableSampler, MaskedBatchCollate

TEACHING = dict(levers=dict(on=False), adam='for-loop', item=True)
FAST = dict(levers=dict(on=True), adam='fused', item=False)
LEVERS = [  # (row name, what changes from the teaching path)
    ('SDPA attention', dict(levers=dict(on=False, sdpa=True))),
    ('one batched gather', dict(levers=dict(on=False, batched_gather=True))),
    ('all target blocks in one predictor pass', dict(levers=dict(on=False, batched_blocks=True))),
    ('foreach AdamW', dict(adam='foreach')),
    ('fused AdamW', dict(adam='fused')),
    ('no .item() each step', dict(item=False)),
]
ADAM = {'for-loop': dict(foreach=False), 'foreach': dict(foreach=True), 'fused': dict(fused=True)}
TINY = dict(embed_dim=32, depth=1, num_heads=4, pred_emb_dim=16, pred_depth=1)   # --quick: a smoke test, not a figure


def preset(quick):
    "The cifar10_tiny config; with `quick`, a one-block model of width 32 so a smoke run takes seconds."
    return get_config('cifar10_tiny', **(TINY if quick else {}))


def make_opt(model, adam):
    "AdamW over the trainable parameters, as `train` builds it, in one of its three implementations."
    return torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-4, weight_decay=0.04, **ADAM[adam])


def make_batches(cfg, B, n, seed=0):
    "n batches (images (B, 3, H, W), masks_enc, masks_pred): random images, masks from the preset's collator."
    mc, g = make_mask_collator(cfg), torch.Generator().manual_seed(seed)
    return [(torch.randn(B, 3, cfg.img_size, cfg.img_size, generator=g), *mc.sample(B, gen=g)) for _ in range(n)]


def stepper(model, pool, levers, adam, item, bf16=False):
    "A callable that does one `train_step` on the next batch of `pool` with the given paths."
    opt, batches = make_opt(model, adam), itertools.cycle(pool)
    def step():
        set_fast_paths(model, **levers)
        imgs, masks_enc, masks_pred = next(batches)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            loss = train_step(model, opt, imgs, masks_enc, masks_pred, momentum=0.996)
        if item: loss.item()
        return loss
    return step


def agreement(model, batch):
    "(|loss difference|, largest gradient difference relative to the gradient's scale): teaching vs fast path."
    m = copy.deepcopy(model)
    res = []
    for on in (False, True):
        set_fast_paths(m, on)
        for p in m.trainable_parameters(): p.grad = None
        loss = m(*batch)
        loss.backward()
        res.append((loss.item(), [p.grad.clone() for p in m.trainable_parameters()]))
    (l_t, g_t), (l_f, g_f) = res
    rel = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(g_t, g_f))
    return abs(l_t - l_f), rel, l_f


def compile_model(model):
    "torch.compile the three networks in place, as `train` does with compile=True."
    for m in (model.encoder, model.predictor, model.target_encoder): m.compile()
    return model


def measure_step(quick=False, compile=True, reps=None, timer='wall', levers=True):
    "Rows: the whole teaching path against the whole fast path, each lever alone, torch.compile."
    B = 8 if quick else 128
    reps = reps or (1 if quick else 5)
    cfg = preset(quick)
    torch.manual_seed(0)
    model = build_model(cfg)
    pool = make_batches(cfg, B, 4)
    unit = f'step ({B} img)' + (', CPU s' if timer == 'cpu' else '')
    dl, dg, loss = agreement(model, pool[0])
    eq = f'same batch: loss {loss:.4f}, |difference| {dl:.1e}, gradients within {dg:.1e} (relative)'
    rows = []
    med, _ = interleaved({'t': stepper(model, pool, **TEACHING), 'f': stepper(model, pool, **FAST)}, reps, timer=timer)
    ratio = med['t'] / med['f']
    per_s = 'img per CPU second' if timer == 'cpu' else 'img/s'
    rows.append(row('cpu step', 'teaching path -> fast path, eager (all levers below)', med['t'], med['f'], unit,
                    f"{B / med['t']:.0f} -> {B / med['f']:.0f} {per_s} ({'meets' if ratio >= 1.5 else 'misses'} the 1.5x "
                    f"target); {eq}"))
    for name, change in (LEVERS if levers else []):
        fast = {**TEACHING, **change}
        try: med, _ = interleaved({'t': stepper(model, pool, **TEACHING), 'f': stepper(model, pool, **fast)}, reps, timer=timer)
        except RuntimeError as e:                                   # e.g. an AdamW implementation this build lacks
            rows.append(row('cpu step lever', name, None, None, unit, f'not supported here: {str(e)[:80]}')); continue
        rows.append(row('cpu step lever', name, med['t'], med['f'], unit, 'alone, from the teaching path'))
    if not levers: return rows
    m16 = copy.deepcopy(model)                                       # bf16 autocast: not the same numbers, so compared apart
    with torch.no_grad():
        l32 = m16(*pool[0]).item()
        with torch.autocast('cpu', dtype=torch.bfloat16): l16 = m16(*pool[0]).item()
    med, _ = interleaved({'f': stepper(model, pool, **FAST), 'b': stepper(model, pool, **FAST, bf16=True)}, reps, timer=timer)
    rows.append(row('cpu step lever', 'bf16 autocast (on top of the fast path)', med['f'], med['b'], unit,
                    f'changes the numbers: same batch, loss {l32:.6f} in fp32, {l16:.6f} in bf16'))
    if compile and not quick:
        compiled = set_fast_paths(copy.deepcopy(model))
        with torch.no_grad(): eager_loss = compiled(*pool[0]).item()     # the same weights, before compiling
        step_c = stepper(compile_model(compiled), pool, **FAST)
        t0 = time.perf_counter()
        warm = [step_c().item()]                                    # the first compiled step: pool[0], same weights
        for _ in range(2 * len(pool) - 1): step_c()                 # every mask length of the pool, twice
        warm_s = time.perf_counter() - t0
        med, _ = interleaved({'e': stepper(model, pool, **FAST), 'c': step_c}, reps, warmup=0, timer=timer)
        compile_s = warm_s - 2 * len(pool) * statistics.median(interleaved({'c': step_c}, 3, warmup=0)[1]['c'])   # wall
        rows.append(row('cpu step lever', 'torch.compile (on top of the fast path)', med['e'], med['c'], unit,
                        f'compile and recompiles for {len(pool)} mask lengths: {compile_s:.0f} s, not in the figures; '
                        f'same batch: loss |difference| {abs(warm[0] - eager_loss):.1e}'))
        med, _ = interleaved({'t': stepper(model, pool, **TEACHING), 'c': step_c}, reps, warmup=0, timer=timer)
        rows.append(row('cpu step', 'teaching path -> fast path + torch.compile', med['t'], med['c'], unit,
                        f"{B / med['t']:.0f} -> {B / med['c']:.0f} {per_s}"))
    return rows


def measure_checkpointing(quick=False, reps=None, timer='wall'):
    "Rows: gradient checkpointing off ('teaching' column) and on ('fast' column): time and peak memory of a step."
    reps = reps or (1 if quick else 5)
    cases = [('cifar10_tiny', 8 if quick else 128)] + ([] if quick else [('vit_small/16 at 224 px', 8)])
    rows = []
    for name, B in cases:
        torch.manual_seed(0)
        if name == 'cifar10_tiny':
            cfg = preset(quick); model = build_model(cfg); pool = make_batches(cfg, B, 2)
        else:
            enc = vit_small(img_size=224, patch_size=16)
            pred = vit_predictor(num_patches=196, embed_dim=384, predictor_embed_dim=192, depth=6, num_heads=6)
            model, mc, g = IJEPA(enc, pred), MaskCollator(input_size=224, patch_size=16), torch.Generator().manual_seed(0)
            pool = [(torch.randn(B, 3, 224, 224, generator=g), *mc.sample(B, gen=g)) for _ in range(2)]
        ckpt = copy.deepcopy(model)
        ckpt.encoder.grad_checkpointing = ckpt.predictor.grad_checkpointing = True
        peaks = []
        for m in (model, ckpt):
            opt = make_opt(m, 'for-loop')
            train_step(m, opt, *pool[0], momentum=0.996)             # optimiser state exists before the measured step
            with PeakMemory() as mem: train_step(m, opt, *pool[1], momentum=0.996)
            peaks.append(mem.peak / 2**20)
        med, _ = interleaved({'off': stepper(model, pool, **FAST), 'on': stepper(ckpt, pool, **FAST)}, reps, timer=timer)
        rows.append(row('memory', f'gradient checkpointing, {name}, batch {B} (columns: off / on)', med['off'], med['on'],
                        f'step ({B} img)' + (', CPU s' if timer == 'cpu' else ''), f'peak tensor memory of a step {peaks[0]:.0f} -> {peaks[1]:.0f} MiB '
                        f'({peaks[0] / peaks[1]:.2f}x less); costs time, saves memory'))
    return rows


def image_tree(root, n, size=32, seed=0):
    "An ImageFolder tree of n generated JPEG images (two classes) under root/train."
    g = np.random.default_rng(seed)
    for i in range(n):
        d = root / 'train' / f'c{i % 2}'; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f'{i}.jpg', quality=90)
    return root


def make_loader(cfg, root, micro, workers, persistent=True, pin=False):
    "The training DataLoader as `ijepa_edu.train.make_loader` builds it, with workers and persistence as given."
    ds = make_dataset(root, 'train', 'imagefolder', transform=make_transforms(cfg.img_size, cfg.crop_scale))
    sampler = ResumableSampler(len(ds), batch_size=micro, seed=0)
    return DataLoader(SeededSamples(ds), batch_size=micro, sampler=sampler, num_workers=workers,
                      collate_fn=MaskedBatchCollate(make_mask_collator(cfg)), pin_memory=pin,
                      persistent_workers=persistent and workers > 0), sampler


def epoch_times(loader, sampler, epoch, work=None):
    "(seconds to the first batch, [seconds per later batch], seconds for the whole epoch), with `work` done on each batch."
    sampler.set_epoch(epoch)
    start = t0 = time.perf_counter(); ts = []
    for batch in loader:
        if work: work(batch)
        t1 = time.perf_counter(); ts.append(t1 - t0); t0 = t1
    return ts[0], ts[1:], t0 - start


def measure_loader(quick=False, rounds=None):
    "Rows: DataLoader workers alone and with the training step, persistent workers, pinned memory."
    micro, n = (8, 32) if quick else (128, 3840)
    rounds = rounds or (1 if quick else 3)
    workers = 1 if quick else 2
    cfg = preset(quick)
    root = image_tree(Path(tempfile.mkdtemp(prefix='ijepa_bench_')), n)
    try:
        torch.manual_seed(0)
        model = build_model(cfg)
        opt = make_opt(model, 'fused')
        def train_on(batch):
            (imgs, _labels), masks_enc, masks_pred = batch
            train_step(model, opt, imgs, masks_enc, masks_pred, momentum=0.996)
        res = {k: [] for k in ('alone0', 'alone1', 'step0', 'step1', 'start0', 'start1')}
        for _ in range(rounds):
            for w in (0, workers):
                loader, sampler = make_loader(cfg, root, micro, w)      # a fresh loader: its start-up is counted
                res[f'alone{int(w > 0)}'].append(epoch_times(loader, sampler, 0)[2] / sampler.batches_per_epoch)
                res[f'step{int(w > 0)}'] += epoch_times(loader, sampler, 1, train_on)[1]   # steady state: after the first
                del loader
            for persistent in (False, True):
                loader, sampler = make_loader(cfg, root, micro, workers, persistent)
                epoch_times(loader, sampler, 0)
                res[f'start{int(persistent)}'].append(epoch_times(loader, sampler, 1)[0])
                del loader
        med = {k: float(np.median(v)) for k, v in res.items()}
        unit = f'batch ({micro} img)'
        rows = [row('dataloader', f'loader alone: 0 -> {workers} workers', med['alone0'], med['alone1'], unit,
                    f"{micro / med['alone0']:.0f} -> {micro / med['alone1']:.0f} img/s over an epoch of {n // micro} batches, "
                    f"worker start-up included (crops and masks drawn in the workers)"),
                row('dataloader', f'loader + training step: 0 -> {workers} workers', med['step0'], med['step1'], unit,
                    f"the step (fast path) shares the {torch.get_num_threads()} threads' cores with the workers"),
                row('dataloader', f'epoch start, {workers} workers: persistent off -> on', med['start0'], med['start1'],
                    'epoch start', 'seconds to the first batch of an epoch (worker start-up)'),
                row('dataloader', 'pinned memory', None, None, unit,
                    'unmeasured: pinning only speeds host-to-GPU copies, and this machine has no GPU')]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def profile_step(steps=2):
    "Where one step's CPU time goes, teaching and fast path: the profiler's top operators (printed)."
    from torch.profiler import profile, ProfilerActivity
    cfg = get_config('cifar10_tiny'); torch.manual_seed(0)
    model, pool = build_model(cfg), make_batches(cfg, 128, 2)
    for name, paths in (('fast path', FAST), ('teaching path', TEACHING)):
        step = stepper(model, pool, **paths); step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps): step()
        ops = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ops)
        mm = sum(e.self_cpu_time_total for e in ops if e.key in ('aten::addmm', 'aten::mm', 'aten::bmm'))
        print(f"{name}: {100 * mm / total:.0f}% of the operators' time in matrix multiplies (addmm, mm, bmm)")
        print(ops.table(sort_by='self_cpu_time_total', row_limit=8, max_name_column_width=40))


def measure(quick=False, compile=True, threads=2, timer='wall', parts=('step', 'memory', 'loader')):
    "All CPU rows of this module (see the module docstring); `quick` runs a seconds-long smoke version; `parts` picks."
    n = torch.get_num_threads(); torch.set_num_threads(threads)
    try:   # the DataLoader rows use wall time whatever `timer` says: the workers are other processes
        return ((measure_step(quick, compile, timer=timer) if 'step' in parts else []) +
                (measure_step(quick, timer=timer, levers=False) if 'main' in parts else []) +
                (measure_checkpointing(quick, timer=timer) if 'memory' in parts else []) +
                (measure_loader(quick) if 'loader' in parts else []))
    finally: torch.set_num_threads(n)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--json')
    ap.add_argument('--timer', choices=['wall', 'cpu'], default='wall')
    ap.add_argument('--profile', action='store_true', help="print where a step's time goes instead (profiler)")
    ap.add_argument('--wait-quiet', type=float, default=0, metavar='SECONDS',
                    help='first wait up to this long for a moment when no other process is runnable')
    ap.add_argument('--parts', nargs='*', default=['step', 'memory', 'loader'], choices=['step', 'main', 'memory', 'loader'],
                    help='main: only the first row (whole teaching path against whole fast path)')
    a = ap.parse_args()
    if a.profile:
        torch.set_num_threads(a.threads); profile_step(); sys.exit()
    import os
    if a.wait_quiet and not wait_until_quiet(a.wait_quiet): print('the machine was never quiet; measuring anyway', file=sys.stderr)
    m, load = machine(), os.getloadavg()[0]
    rows = measure(a.quick, not a.no_compile, a.threads, a.timer, a.parts)
    for r in rows: print(json.dumps(r))
    if a.json:
        m.update(threads=a.threads, timer=a.timer, load_start=load, load_end=os.getloadavg()[0], argv=sys.argv[1:])
        Path(a.json).write_text(json.dumps({'machine': m, 'rows': rows}, indent=1))
