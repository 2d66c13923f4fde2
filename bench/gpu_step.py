"""GPU training-step benchmark: images/s, peak memory and model FLOPs utilisation (MFU) of the I-JEPA step, ours and
the official code's (facebookresearch/ijepa) side by side on the same batch and the same masks.

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
Kc and Kt are the mean widths of the mask tensors run (padding included: the card computes it), so with padded masks
the count includes the padding; `ctx_tokens_per_img` / `tgt_tokens_per_img` say how many tokens are real.
MFU = counted FLOPs per second / the card's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s).

Side by side with the official code (its checkout is never copied here: pass its root, the folder holding `src/`):

    python bench/gpu_step.py --official PATH --models vit_base:16 vit_large:16 vit_huge:14 --batch 128 --out rows.jsonl
    python bench/gpu_step.py --official PATH --models vit_giant:16 --batch 128 --grad_ckpt
    python bench/gpu_step.py --runs compile --models vit_base:16 --batch 128          # ours: torch.compile against eager
    python bench/gpu_step.py --toy [--official PATH]       # the same code paths on the CPU, a one-block ViT-Ti (no timing)
    python bench/gpu_step.py --table rows.jsonl            # the Markdown table of saved rows

Each model is measured by runs (`--runs`, default: official random pad):
  official  the official modules (src/models/vision_transformer.py, src/masks/utils.py apply_masks) and the step of its
            src/train.py (target forward, smooth L1, backward, per-parameter EMA loop), on the masks cut to the batch's
            shortest (what its collator gives). `--grad_ckpt`: the official code has no flag, so each of its blocks is
            wrapped in torch.utils.checkpoint here (the row says so).
  random    ours on the same truncated masks (MaskCollator truncate='random')
  pad       ours on the same draws padded with -1 (truncate='pad', pad_to='batch'): every drawn token is trained
  compile   ours with pad_to='max' (one shape for every batch), eager and then torch.compile, with dynamo's frame count
Both sides: bf16 autocast on CUDA, fused AdamW over the same parameter groups on CUDA, the same images and draws.
Ours' eager rows say how many attention calls of the first forward pass got a key mask (`attn_masked`): none on cut
masks (each set's validity is None, decided on the CPU: the flash path), some on padded ones; otherwise the script fails.
Ours' rows carry the ratio ours / official of images/s and of peak memory. Each row is one JSON line on stdout (and in
`--out`); notes (a run skipped, and why) go to stderr. `bench/gpu_check.sh` runs all of it on one GPU.

`measure()` (bench/run.py's rows: ours, truncate='random') runs the three default models when CUDA is available; with
`device='cpu'` and a tiny model the same code runs on the CPU (tests/test_bench.py does that to catch errors).
"""
import argparse, copy, gc, importlib.util, json, sys, time, types
from contextlib import nullcontext
from pathlib import Path
import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import row
from ijepa_edu import encoder as E
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.step import IJEPA
from ijepa_edu.schedules import param_groups

PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}
OFFICIAL_FILES = ('src/utils/tensors.py', 'src/masks/utils.py', 'src/models/vision_transformer.py')  # in import order
RUNS = ('official', 'random', 'pad', 'compile')
TOY = dict(models=['vit_tiny:4'], batch=4, img=64, steps=1, warmup=1, depth=1, pred_depth=1, pred_width=48, device='cpu',
           compile_backend='eager')   # a one-block ViT-Ti on a 16x16 grid: seconds on one CPU thread

def block_flops(n, D, r): return 2 * n * (4 + 2 * r) * D * D + 4 * n * n * D

def step_flops(*, N, Kc, Kt, D, depth, r, d, pdepth, patch_in, nenc=1, npred=4):
    "FLOPs of one training step for one image (see the module docstring)."
    embed = 2 * N * patch_in * D
    ctx = embed + nenc * depth * block_flops(Kc, D, r)
    tgt = embed + depth * block_flops(N, D, r)
    pred = nenc * 2 * Kc * D * d + npred * nenc * (pdepth * block_flops(Kc + Kt, d, 4.0) + 2 * Kt * d * D)
    return 3 * (ctx + pred) + tgt

# ---------------------------------------------------------------- the official code, imported from its checkout

def _check_official(root):
    "The checkout's root as a Path, or an error that names the missing file and the fix."
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"--official {root}: no such folder. Pass the root of a facebookresearch/ijepa checkout "
                                f"(git clone https://github.com/facebookresearch/ijepa), the folder that holds src/.")
    for f in OFFICIAL_FILES:
        if not (root / f).is_file():
            hint = (" You passed its src/ folder: pass the folder above it." if (root / f.removeprefix('src/')).is_file()
                    else " Pass the root of a facebookresearch/ijepa checkout, the folder that holds src/.")
            raise FileNotFoundError(f"--official {root}: the official code has no {f} there.{hint}")
    return root

def import_official(root):
    """The official modules from the checkout at `root`: a namespace with `vit` (src/models/vision_transformer.py),
    `apply_masks` and `repeat_interleave_batch`. The official package is called `src`: its modules are loaded from their
    files under that name only while they import each other, then taken out of sys.modules (any `src` modules already
    there are put back), so no `src` name is left behind to clash with ours or anyone's."""
    root = _check_official(root)
    clash = lambda k: k == 'src' or k.startswith('src.')
    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if clash(k)]}
    mods = {}
    try:
        for pkg in ('src', 'src.utils', 'src.masks', 'src.models'):          # the packages, as plain namespaces
            m = types.ModuleType(pkg); m.__path__ = [str(root / pkg.replace('.', '/'))]; sys.modules[pkg] = m
        for f in OFFICIAL_FILES:
            name = f.removesuffix('.py').replace('/', '.')
            spec = importlib.util.spec_from_file_location(name, root / f)
            mods[name] = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mods[name])
    finally:
        for k in [k for k in sys.modules if clash(k)]: del sys.modules[k]
        sys.modules.update(saved)
    t, vit = mods['src.utils.tensors'], mods['src.models.vision_transformer']
    return types.SimpleNamespace(root=root, vit=vit, apply_masks=mods['src.masks.utils'].apply_masks,
                                 repeat_interleave_batch=t.repeat_interleave_batch)

class Checkpointed(nn.Module):
    "An official block recomputed in the backward pass (torch.utils.checkpoint): the official code has no such flag."
    def __init__(self, blk): super().__init__(); self.blk = blk
    def forward(self, x):
        return checkpoint(self.blk, x, use_reentrant=False) if torch.is_grad_enabled() else self.blk(x)

class OfficialStep(nn.Module):
    "The official training step's forward (src/train.py: forward_target, forward_context, loss_fn) over its modules."
    def __init__(self, off, encoder, predictor):
        super().__init__()
        self.off, self.encoder, self.predictor = off, encoder, predictor
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)

    def forward(self, imgs, masks_enc, masks_pred, valid_enc=None, valid_pred=None):
        "The loss; the official code has no padding, so it runs on cut masks only (validity None)."
        if valid_enc is not None or valid_pred is not None: raise ValueError('the official step takes no padded masks')
        with torch.no_grad():
            h = self.target_encoder(imgs)
            h = F.layer_norm(h, (h.size(-1),))                                 # normalise over the feature dim
            h = self.off.repeat_interleave_batch(self.off.apply_masks(h, masks_pred), len(imgs), repeat=len(masks_enc))
        z = self.predictor(self.encoder(imgs, masks_enc), masks_enc, masks_pred)
        return F.smooth_l1_loss(z, h)

    @torch.no_grad()
    def ema_step(self, m):
        "src/train.py's step 3: one in-place update per parameter."
        for q, k in zip(self.encoder.parameters(), self.target_encoder.parameters()): k.data.mul_(m).add_((1. - m) * q.detach().data)

def build_official(off, name, patch, img, depth=None, pred_depth=12, pred_width=384, grad_ckpt=False):
    "The official encoder and predictor as src/helper.py's init_model builds them (`depth` cuts the blocks, for toys)."
    enc = getattr(off.vit, name)(img_size=[img], patch_size=patch)
    if depth: enc.blocks = enc.blocks[:depth]
    pred = off.vit.vit_predictor(num_patches=enc.patch_embed.num_patches, embed_dim=enc.embed_dim,
                                 predictor_embed_dim=pred_width, depth=pred_depth, num_heads=enc.num_heads)
    model = OfficialStep(off, enc, pred)                                       # the target encoder is copied unwrapped
    if grad_ckpt:
        enc.blocks = nn.ModuleList(Checkpointed(b) for b in enc.blocks)
        pred.predictor_blocks = nn.ModuleList(Checkpointed(b) for b in pred.predictor_blocks)
    return model

# ---------------------------------------------------------------- ours

def build_ours(name, patch, img, depth=None, pred_depth=12, pred_width=384, grad_ckpt=False):
    "Our IJEPA: the encoder of `name` (depth overridable, for tests) and a predictor of the official shape."
    D, _, heads, _ = E.VIT_SIZES[name]
    enc = getattr(E, name)(img_size=img, patch_size=patch, grad_checkpointing=grad_ckpt, **({'depth': depth} if depth else {}))
    pred = vit_predictor(num_patches=enc.patch_embed.num_patches, embed_dim=D, predictor_embed_dim=pred_width, depth=pred_depth,
                         num_heads=heads, grad_checkpointing=grad_ckpt)
    return IJEPA(enc, pred)

# ---------------------------------------------------------------- masks: one set of draws for every run

def collator(img, patch, truncate='random', pad_to=None, seed=0):
    "A MaskCollator with the paper's masks; None when this library's MaskCollator does not take `truncate='pad'` yet."
    kw = {} if truncate != 'pad' else {'pad_to': pad_to}
    try: return MaskCollator(input_size=img, patch_size=patch, truncate=truncate, seed=seed, **kw)
    except (TypeError, ValueError) as e:
        if truncate != 'pad': raise
        print(f"note: MaskCollator(truncate='pad', pad_to={pad_to!r}) is not in this ijepa_edu yet ({e}); "
              f"the padded runs are skipped.", file=sys.stderr)
        return None

def truncate_random(masks, gen):
    "Padded masks (-1 = no token) cut to the shortest row of all of them: a random subset of each row, in raster order."
    idx = torch.stack(masks)                                                   # (M, B, K)
    valid = idx >= 0
    k = int(valid.sum(-1).min())
    key = torch.rand(idx.shape, generator=gen).masked_fill(~valid, 2.0)       # padding sorts last, never kept
    keep = idx.gather(-1, key.topk(k, dim=-1, largest=False).indices)          # (M, B, k)
    return list(keep.sort(-1).values)

def mask_pool(img, patch, batch, n=4, seed=0):
    """`n` batches of masks, each a dict of the runs' versions of one draw: 'random' (cut to the batch's shortest, what
    the official collator gives), 'pad' (padded with -1 to the batch's longest) and 'pad_max' (padded to one fixed
    width). Without padding in the library, 'random' is MaskCollator(truncate='random')'s and the padded ones are None."""
    mc_batch, mc_max = collator(img, patch, 'pad', 'batch'), collator(img, patch, 'pad', 'max')
    pool = []
    for i in range(n):
        g = lambda: torch.Generator().manual_seed(seed * 1000 + i)             # the same draw for every version
        if mc_batch is None:
            pool.append({'random': collator(img, patch).sample(batch, g()), 'pad': None, 'pad_max': None}); continue
        me, mp = mc_batch.sample(batch, g())
        cut = torch.Generator().manual_seed(10**6 + seed * 1000 + i)           # the random subset the cut keeps
        pool.append({'random': (truncate_random(me, cut), truncate_random(mp, cut)), 'pad': (me, mp),
                     'pad_max': mc_max.sample(batch, g()) if mc_max else None})
    return pool

def tokens_per_image(masks):
    "Real tokens (index >= 0) per image summed over a list of (B, K) masks, averaged over the batch."
    return float(sum((m >= 0).sum(-1).float() for m in masks).mean())

def pool_stats(pool):
    "Mean mask widths run (Kc, Kt: padding included) and real context and target tokens per image over the pool."
    mean = lambda f: sum(f(me, mp) for me, mp, *_ in pool) / len(pool)
    return dict(Kc=round(mean(lambda me, mp: me[0].shape[1]), 1), Kt=round(mean(lambda me, mp: mp[0].shape[1]), 1),
                ctx_tokens_per_img=round(mean(lambda me, mp: tokens_per_image(me)), 1),
                tgt_tokens_per_img=round(mean(lambda me, mp: tokens_per_image(mp)), 1))

# ---------------------------------------------------------------- timing one run

def card(device):
    "The card's name as CUDA reports it, or what a CPU row is."
    return torch.cuda.get_device_name() if device == 'cuda' else 'CPU (toy check of the code path, not a timing)'

def dynamo_frames():
    "Frames torch.compile has compiled so far (torch._dynamo's counters), or None where they cannot be read."
    try:
        from torch._dynamo.utils import counters
        return int(counters['frames']['ok'])
    except Exception: return None

def free(device):
    "Release what the last run left, so the next run's peak memory is its own."
    gc.collect()
    if device == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

def attention_spy(model):
    "Hooks on our attention layers counting calls and calls given a key mask ({'calls', 'masked'}), and their remover."
    seen = {'calls': 0, 'masked': 0}
    def hook(mod, args): seen['calls'] += 1; seen['masked'] += args[2] is not None      # Block calls attn(x, angles, mask)
    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, E.Attention)]
    return seen, lambda: [h.remove() for h in hooks]

def time_steps(model, net, x, pool, *, steps, warmup, device, dtype, fused, spy=False):
    """Warm-up and timed steps (loss, backward, AdamW, EMA) of `net`: seconds per step, warm-up seconds, the last loss,
    dynamo's frames compiled by the first step and after it (recompiles; None without torch._dynamo's counters), and with
    `spy` the attention calls of the first forward pass that got a key mask (`attention_spy`)."""
    opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-4, **({'fused': True} if fused else {}))
    amp = torch.autocast('cuda', dtype=dtype) if device == 'cuda' else nullcontext()
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    def step(i, after_forward=lambda: None):
        me, mp, valid = pool[i % len(pool)]
        with amp: loss = net(x, me, mp, **valid)
        after_forward()
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True); model.ema_step(0.996)
        return loss
    before = dynamo_frames()
    seen, unhook = attention_spy(model) if spy else ({}, lambda: None)
    t = time.time(); step(0, unhook); sync(); first = dynamo_frames()
    for i in range(1, warmup): step(i)
    sync(); t_warm = time.time() - t
    t0 = time.time()
    for i in range(steps): loss = step(warmup + i)
    sync()
    end = dynamo_frames()
    return dict(step_s=(time.time() - t0) / steps, warmup_s=t_warm, loss=loss.item(), attn=seen,
                recompiles=None if first is None or end is None else end - first,
                frames=None if first is None or before is None else first - before)

def run_one(kind, spec, x, pool, *, off=None, img=224, steps=10, warmup=3, device='cuda', dtype=torch.bfloat16, grad_ckpt=False,
            depth=None, pred_depth=12, pred_width=384, compile=False, compile_backend='inductor', masks='random'):
    "One measured run: `kind` 'official' or 'ours' on `pool` (a list of (masks_enc, masks_pred)); one result dict."
    name, patch = spec.split(':'); patch = int(patch)
    sizes = dict(depth=depth, pred_depth=pred_depth, pred_width=pred_width, grad_ckpt=grad_ckpt)
    free(device)
    with torch.device(device):
        model = build_official(off, name, patch, img, **sizes) if kind == 'official' else build_ours(name, patch, img, **sizes)
    net = model
    if compile:
        torch._dynamo.reset()
        net = torch.compile(model, backend=compile_backend)
    t = time_steps(model, net, x, pool, steps=steps, warmup=warmup, device=device, dtype=dtype, fused=device == 'cuda',
                   spy=kind == 'ours' and not compile)                         # hooks would change what dynamo compiles
    D, depth_, _, r = E.VIT_SIZES[name]
    st = pool_stats(pool)
    N = (img // patch) ** 2
    fl = step_flops(N=N, Kc=st['Kc'], Kt=st['Kt'], D=D, depth=depth or depth_, r=r, d=pred_width, pdepth=pred_depth,
                    patch_in=patch * patch * 3)
    res = dict(card=card(device), model=spec.replace(':', '/'), code=kind, masks=masks, img=img, batch=len(x),
               compile=compile, grad_ckpt=grad_ckpt, device=device, **st, step_s=round(t['step_s'], 4),
               img_per_s=round(len(x) / t['step_s'], 1), tflop_per_img=round(fl / 1e12, 4),
               achieved_tflops=round(fl * len(x) / t['step_s'] / 1e12, 1), warmup_s=round(t['warmup_s'], 1), loss=round(t['loss'], 4))
    if t['attn']:                                                              # padding reaches attention only where there is some
        given = any(v is not None for v in pool[0][2].values())
        res.update(attn_masked=f"{t['attn']['masked']} of {t['attn']['calls']}", attn_mask_ok=(t['attn']['masked'] > 0) == given)
    if kind == 'official' and grad_ckpt: res['note'] = 'official blocks wrapped in torch.utils.checkpoint here (no flag in the official code)'
    if compile: res.update(compile_backend=compile_backend, frames_first_step=t['frames'], recompiles=t['recompiles'])
    if device == 'cuda':
        peak = next((v for k, v in PEAK_BF16.items() if k in res['card']), None)
        res.update(gpu=res['card'], peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                   mfu=round(fl * len(x) / t['step_s'] / peak, 3) if peak else None)
    del model, net
    free(device)
    return res

def safe(fn, spec, batch, **what):
    "fn()'s row, or a row naming the error (out of memory, or a failure printed to stderr): no figure is made up."
    try: return fn()
    except torch.OutOfMemoryError: err = 'out of memory'
    except Exception as e:                                                     # e.g. masks the model does not take yet
        import traceback; traceback.print_exc(); err = f'{type(e).__name__}: {str(e)[:300]}'
    return {'model': spec.replace(':', '/'), 'batch': batch, **what, 'error': err}

# ---------------------------------------------------------------- the side-by-side runs of one model

def with_ratio(r, official):
    "Add ours / official for images/s and peak memory to our row `r` (when both were measured)."
    if official and 'error' not in official and 'error' not in r:
        r['img_per_s_vs_official'] = round(r['img_per_s'] / official['img_per_s'], 3)
        if r.get('peak_mem_gib') and official.get('peak_mem_gib'):
            r['peak_mem_vs_official'] = round(r['peak_mem_gib'] / official['peak_mem_gib'], 3)
    return r

def side_by_side(spec, runs=('official', 'random', 'pad'), *, off=None, batch=128, img=224, device='cuda', seed=0, **kw):
    "Rows of one model: each run of `runs` on the same images and the same draws of masks, in that order."
    name, patch = spec.split(':')
    torch.manual_seed(seed)
    x = torch.randn(batch, 3, img, img, device=device)
    pools = mask_pool(img, int(patch), batch, seed=seed)
    get = lambda key: [to(*p[key], device) for p in pools] if pools[0][key] else None
    rows, official = [], None
    for run in runs:
        if run == 'official':
            if off is None: print('note: no --official checkout: the official run is skipped.', file=sys.stderr); continue
            official = safe(lambda: run_one('official', spec, x, get('random'), off=off, img=img, device=device, masks='random', **kw),
                            spec, batch, code='official')
            rows.append(official)
        elif run in ('random', 'pad'):
            pool = get(run)
            if pool is None: continue                                          # padding not in the library yet (noted)
            rows.append(with_ratio(safe(lambda: run_one('ours', spec, x, pool, img=img, device=device, masks=run, **kw),
                                        spec, batch, code='ours', masks=run), official))
        elif run == 'compile':
            rows += compile_rows(spec, x, pools, img=img, device=device, **kw)
        else: raise ValueError(f"Unknown run {run!r}: choose from {RUNS}.")
    return rows

def compile_rows(spec, x, pools, *, img, device, compile_backend='inductor', **kw):
    "Ours eager, then torch.compile, on masks of one fixed width (pad_to='max'); the truncated ones if padding is missing."
    key = 'pad_max' if pools[0]['pad_max'] else 'random'
    if key == 'random': print('note: no pad_to="max" in this ijepa_edu: compile runs on truncated masks (their width '
                              'changes from batch to batch, so expect recompiles).', file=sys.stderr)
    pool = [to(*p[key], device) for p in pools]
    masks = 'pad_max' if key == 'pad_max' else 'random'
    one = lambda c: safe(lambda: run_one('ours', spec, x, pool, img=img, device=device, masks=masks, compile=c,
                                         compile_backend=compile_backend, **kw), spec, len(x), code='ours', masks=masks, compile=c)
    eager = one(False)
    comp = one(True)
    if 'error' not in eager and 'error' not in comp: comp['img_per_s_vs_eager'] = round(comp['img_per_s'] / eager['img_per_s'], 3)
    return [eager, comp]

def to(masks_enc, masks_pred, device):
    """Masks on `device` and the model's keywords `valid_enc`, `valid_pred`: each set's validity, (M, B, K) bool or None
    where nothing is padded, read here on the CPU before the move, as the training loop's `_to` does (no wait for the GPU)."""
    from ijepa_edu.encoder import mask_validity
    move = lambda t: None if t is None else t.to(device)
    return ([move(m) for m in masks_enc], [move(m) for m in masks_pred],
            dict(valid_enc=move(mask_validity(masks_enc)), valid_pred=move(mask_validity(masks_pred))))

# ---------------------------------------------------------------- bench/run.py's rows (ours only) and the CLI

def bench_one(name, patch, batch, img=224, steps=10, warmup=3, compile=False, pred_depth=12, device='cuda', dtype=torch.bfloat16,
              grad_ckpt=False, depth=None, pred_width=384):
    "One model's step (ours, truncate='random'): images/s, FLOPs, MFU and peak memory (on CUDA). `depth` overrides the encoder's (tests)."
    torch.manual_seed(0)
    x = torch.randn(batch, 3, img, img, device=device)
    mc = collator(img, patch)
    pool = [to(me, mp, device) for me, mp in (mc.sample(batch) for _ in range(4))]
    return run_one('ours', f'{name}:{patch}', x, pool, img=img, steps=steps, warmup=warmup, device=device, dtype=dtype,
                   grad_ckpt=grad_ckpt, depth=depth, pred_depth=pred_depth, pred_width=pred_width, compile=compile)

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

COLUMNS = [('card', 'card'), ('model', 'model'), ('code', 'code'), ('masks', 'masks'), ('grad_ckpt', 'grad ckpt'),
           ('compile', 'compile'), ('ctx_tokens_per_img', 'context tokens / img'), ('tgt_tokens_per_img', 'target tokens / img'),
           ('img_per_s', 'images/s'), ('img_per_s_vs_official', 'ours / official img/s'), ('peak_mem_gib', 'peak GiB'),
           ('peak_mem_vs_official', 'ours / official memory'), ('mfu', 'MFU'), ('recompiles', 'recompiles'),
           ('attn_masked', 'attention calls masked')]

def table(rows):
    "A Markdown table of saved rows (JSON lines), one line per measured run; blank where a figure does not apply."
    cell = lambda r, k: r.get('error', '') if k == 'img_per_s' and 'error' in r else ('' if r.get(k) is None else str(r[k]))
    lines = ['| ' + ' | '.join(h for _, h in COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    return '\n'.join(lines + ['| ' + ' | '.join(cell(r, k) for k, _ in COLUMNS) + ' |' for r in rows])

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='*', default=['vit_base:16', 'vit_large:16', 'vit_huge:14'])
    ap.add_argument('--batch', type=int, default=128); ap.add_argument('--img', type=int, default=224)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--official', help="root of a facebookresearch/ijepa checkout (the folder holding src/); never copied here")
    ap.add_argument('--runs', nargs='*', choices=RUNS, help='default: official (when --official is given) random pad')
    ap.add_argument('--compile', action='store_true', help="add the 'compile' run (ours, pad_to='max', eager and compiled)")
    ap.add_argument('--compile-backend', default='inductor', help="torch.compile's backend ('eager' checks the path cheaply)")
    ap.add_argument('--grad_ckpt', action='store_true', help='gradient checkpointing on both sides (the memory option for ViT-g)')
    ap.add_argument('--pred_depth', type=int, default=None, help='default: 16 for vit_giant, else 12 (the official configs)')
    ap.add_argument('--pred_width', type=int, default=384)
    ap.add_argument('--depth', type=int, default=None, help='cut the encoder to this many blocks (toys only)')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--toy', action='store_true', help='a one-block ViT-Ti on the CPU: runs every code path, times nothing')
    ap.add_argument('--out', help='also append the rows (JSON lines) to this file')
    ap.add_argument('--table', metavar='JSONL', help='print the Markdown table of saved rows and stop')
    a = ap.parse_args(argv)
    if a.toy: ap.set_defaults(**TOY); a = ap.parse_args(argv)                  # toy sizes, unless given explicitly
    a.runs = a.runs or (['official'] if a.official else []) + ['random', 'pad']
    if a.compile and 'compile' not in a.runs: a.runs.append('compile')
    return a

def main(argv=None):
    "Run every model of `--models` side by side; returns the rows (also printed, one JSON line each)."
    a = parse(argv)
    if a.table: print(table([json.loads(l) for l in open(a.table) if l.strip()])); return []
    if a.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('bench/gpu_step.py: --device cuda but CUDA is not available; on the CPU run: python bench/gpu_step.py --toy')
    if a.device == 'cpu': torch.set_num_threads(1)
    else: torch.backends.cuda.matmul.allow_tf32 = True
    try: off = import_official(a.official) if a.official and 'official' in a.runs else None
    except FileNotFoundError as e: sys.exit(f'bench/gpu_step.py: {e}')
    rows = []
    for spec in a.models:
        pd = a.pred_depth or (16 if spec.startswith('vit_giant') else 12)     # in22k_vitg16: 16; vith14 configs: 12
        for r in side_by_side(spec, a.runs, off=off, batch=a.batch, img=a.img, device=a.device, steps=a.steps, warmup=a.warmup,
                              grad_ckpt=a.grad_ckpt, depth=a.depth, pred_depth=pd, pred_width=a.pred_width,
                              compile_backend=a.compile_backend):
            r.setdefault('card', card(a.device))
            print(json.dumps(r), flush=True)
            if a.out:
                with open(a.out, 'a') as f: f.write(json.dumps(r) + '\n')
            rows.append(r)
    return rows

if __name__ == '__main__':
    wrong = [f"{r['model']} {r['masks']}: {r['attn_masked']}" for r in main() if r.get('attn_mask_ok') is False]
    if wrong: sys.exit(f"bench/gpu_step.py: attention got a key mask although nothing was padded, or none although "
                       f"something was (masked calls of the first forward pass): {'; '.join(wrong)}")
