"""GPU training-step benchmark: images/s, peak memory and model FLOPs utilisation (MFU) of the I-JEPA step.

FLOP count (matrix multiplies only, 2 FLOPs per multiply-add; norms, softmax and GELU are left out):
  a pre-norm block of width D, MLP ratio r, over a sequence of n tokens costs
      linear layers  2 n (4 + 2r) D^2     (qkv 3D^2, proj D^2, MLP 2rD^2)
      attention      4 n^2 D              (QK^T and attention x V)
  patch embedding    2 N (p^2 C) D        per image (every patch is embedded before masking)
  context encoder    forward over nenc sequences of Kc tokens (+ the patch embedding of all N patches)
  target encoder     forward over one sequence of N tokens, no backward
  predictor          embed 2 Kc D d per context; npred x nenc sequences of (Kc + Kt) tokens of width d; proj 2 Kt d D
  training step      3 x (context encoder + predictor forward) + target encoder forward
                     (backward ~ 2 x forward; the target encoder has none)
Kc and Kt are the mean kept token counts of the paper's masks (MaskCollator defaults) at that grid.
MFU = counted FLOPs per second / the card's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s).

    python bench/gpu_step.py --models vit_base:16 vit_large:16 vit_huge:14 --batch 128 [--compile] [--grad_ckpt]

`--grad_ckpt` turns on gradient checkpointing in the context encoder and the predictor (the memory option for
ViT-g: `python bench/gpu_step.py --models vit_giant:16 --batch 128 --grad_ckpt`). `bench/run.py` calls
`measure()`, which runs the three default models when CUDA is available; with `--device cpu` and a tiny model
the same code runs on the CPU (tests/test_bench.py does that to catch errors, not to time anything).
"""
import argparse, json, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import row
from ijepa_edu import encoder as E
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.step import IJEPA
from ijepa_edu.schedules import param_groups

PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}

def block_flops(n, D, r): return 2 * n * (4 + 2 * r) * D * D + 4 * n * n * D

def step_flops(*, N, Kc, Kt, D, depth, r, d, pdepth, patch_in, nenc=1, npred=4):
    "FLOPs of one training step for one image (see the module docstring)."
    embed = 2 * N * patch_in * D
    ctx = embed + nenc * depth * block_flops(Kc, D, r)
    tgt = embed + depth * block_flops(N, D, r)
    pred = nenc * 2 * Kc * D * d + npred * nenc * (pdepth * block_flops(Kc + Kt, d, 4.0) + 2 * Kt * d * D)
    return 3 * (ctx + pred) + tgt

def bench_one(name, patch, batch, img=224, steps=10, warmup=3, compile=False, pred_depth=12, device='cuda', dtype=torch.bfloat16,
              grad_ckpt=False, depth=None, pred_width=384):
    "One model's step: images/s, FLOPs, MFU and peak memory (on CUDA). `depth` overrides the encoder's (tests)."
    D, depth_, heads, r = E.VIT_SIZES[name]
    depth = depth or depth_
    enc = getattr(E, name)(img_size=img, patch_size=patch, depth=depth, grad_checkpointing=grad_ckpt)
    pred = vit_predictor(num_patches=enc.patch_embed.num_patches, embed_dim=D, predictor_embed_dim=pred_width, depth=pred_depth,
                         num_heads=heads, grad_checkpointing=grad_ckpt)
    model = IJEPA(enc, pred).to(device)
    opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-4, **({'fused': True} if device == 'cuda' else {}))
    net = torch.compile(model) if compile else model
    mc = MaskCollator(input_size=img, patch_size=patch, seed=0)
    pool = [mc.sample(batch) for _ in range(4)]
    Kc = sum(p[0][0].shape[1] for p in pool) / len(pool); Kt = sum(p[1][0].shape[1] for p in pool) / len(pool)
    pool = [([m.to(device) for m in me], [m.to(device) for m in mp]) for me, mp in pool]
    x = torch.randn(batch, 3, img, img, device=device)
    amp = torch.autocast(device, dtype=dtype) if device == 'cuda' else torch.autocast('cpu', enabled=False)
    def step(i):
        me, mp = pool[i % len(pool)]
        with amp: loss = net(x, me, mp)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True); model.ema_step(0.996)
        return loss
    if device == 'cuda': torch.cuda.reset_peak_memory_stats()
    t_c = time.time()
    for i in range(warmup): step(i)
    if device == 'cuda': torch.cuda.synchronize()
    t_warm = time.time() - t_c
    t0 = time.time()
    for i in range(steps): loss = step(i)
    if device == 'cuda': torch.cuda.synchronize()
    dt = (time.time() - t0) / steps
    N = enc.patch_embed.num_patches
    fl = step_flops(N=N, Kc=Kc, Kt=Kt, D=D, depth=depth, r=r, d=pred_width, pdepth=pred_depth, patch_in=patch * patch * 3)
    res = {'model': f'{name}/{patch}', 'img': img, 'batch': batch, 'compile': compile, 'grad_ckpt': grad_ckpt, 'device': device,
           'Kc': round(Kc, 1), 'Kt': round(Kt, 1),
           'step_s': round(dt, 4), 'img_per_s': round(batch / dt, 1), 'tflop_per_img': round(fl / 1e12, 4),
           'achieved_tflops': round(fl * batch / dt / 1e12, 1), 'warmup_s': round(t_warm, 1), 'loss': round(loss.item(), 4)}
    if device == 'cuda':
        name_gpu = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name_gpu), None)
        res.update(gpu=name_gpu, peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                   mfu=round(fl * batch / dt / peak, 3) if peak else None)
    del model, opt, net
    if device == 'cuda': torch.cuda.empty_cache()
    return res

def as_row(r):
    "A bench/run.py table row from one `bench_one` result: absolute figures, so only the 'fast' column is filled."
    if 'error' in r: return row('gpu step', f"{r['model']}, batch {r['batch']}", None, None, 'step', r['error'])
    extras = (' + compile' if r['compile'] else '') + (' + grad checkpointing' if r['grad_ckpt'] else '')
    note = f"{r['img_per_s']:.0f} img/s, {r['achieved_tflops']} TFLOP/s"
    if r.get('gpu'):
        note += f", MFU {100 * r['mfu']:.1f}%" if r.get('mfu') else ''
        note += f", peak {r['peak_mem_gib']} GiB on {r['gpu']}"
    precision = 'bf16' if r.get('device') == 'cuda' else 'fp32 on the CPU'
    return row('gpu step', f"{r['model']} at {r['img']} px, {precision}{extras}, batch {r['batch']}", None, r['step_s'],
               f"step ({r['batch']} img)", note)


def measure(quick=False, models=('vit_base:16', 'vit_large:16', 'vit_huge:14'), batch=128, **kw):
    "Rows for bench/run.py: one per model (quick: ViT-B/16 at batch 32, 3 steps). Needs CUDA unless device='cpu'."
    if quick: models, batch, kw = models[:1], 32, {'steps': 3, 'warmup': 1, **kw}
    rows = []
    for spec in models:
        name, patch = spec.split(':')
        try: r = bench_one(name, int(patch), batch, **kw)
        except torch.OutOfMemoryError: r = {'model': spec, 'batch': batch, 'error': 'out of memory'}
        rows.append(as_row(r))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', nargs='*', default=['vit_base:16', 'vit_large:16', 'vit_huge:14'])
    ap.add_argument('--batch', type=int, default=128); ap.add_argument('--img', type=int, default=224)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--compile', action='store_true')
    ap.add_argument('--grad_ckpt', action='store_true')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    for spec in a.models:
        name, patch = spec.split(':')
        try: r = bench_one(name, int(patch), a.batch, a.img, a.steps, compile=a.compile, device=a.device, grad_ckpt=a.grad_ckpt)
        except torch.OutOfMemoryError as e: r = {'model': spec, 'batch': a.batch, 'error': 'out of memory'}
        print(json.dumps(r), flush=True)

if __name__ == '__main__': main()
