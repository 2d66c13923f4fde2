"Encoder: attention paths agree, official parameter counts, apply_masks, shapes, errors, official checkpoint layout."
import math

import pytest
import torch
import fastcore.test as fct

from ijepa_edu.encoder import (VIT_SIZES, Attention, VisionTransformer, apply_masks,
                               vit_tiny, vit_small, vit_base, vit_large, vit_huge, vit_giant)
from ijepa_edu.predictor import vit_predictor

FACTORIES = dict(vit_tiny=vit_tiny, vit_small=vit_small, vit_base=vit_base,
                 vit_large=vit_large, vit_huge=vit_huge, vit_giant=vit_giant)


def reference_attention(x, attn):
    "Per-sequence, per-head softmax(q k^T / sqrt(d)) v with the module's weights, written independently."
    B, N, D = x.shape
    h = attn.num_heads; d = D // h
    out = torch.empty_like(x)
    for b in range(B):
        qkv = x[b] @ attn.qkv.weight.T + attn.qkv.bias                     # (N, 3D), laid out (three, h, d)
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        heads = []
        for i in range(h):
            s = slice(i * d, (i + 1) * d)
            w = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), dim=-1)   # (N, N)
            heads.append(w @ v[:, s])
        out[b] = torch.cat(heads, -1) @ attn.proj.weight.T + attn.proj.bias
    return out


@pytest.mark.parametrize("B,N,D,heads", [(1, 1, 8, 1), (2, 7, 12, 3), (3, 16, 32, 4), (2, 50, 48, 6)])
def test_sdpa_equals_written_out(B, N, D, heads):
    torch.manual_seed(B * N + D)
    attn = Attention(D, heads)
    with torch.no_grad():
        for p in attn.parameters(): p.normal_(0, 0.5)                      # far from the init, so softmax is peaky
        x = torch.randn(B, N, D, dtype=torch.float32)
        fused = attn(x)
        attn.fused = False
        manual = attn(x)
        ref = reference_attention(x, attn)
    assert fused.shape == (B, N, D)
    torch.testing.assert_close(fused, manual, rtol=1e-4, atol=1e-4)       # outputs are O(1); a wrong method is off by O(1)
    torch.testing.assert_close(manual, ref, rtol=1e-4, atol=1e-4)


# The official modules' parameter counts (ijepa-facts.md): trainable, and with the fixed positional embedding.
OFFICIAL_COUNTS = {
    ('vit_tiny', 16): (5_486_400, 5_524_032),           ('vit_tiny', 14): (5_451_840, 5_500_992),
    ('vit_small', 16): (21_589_632, 21_664_896),        ('vit_small', 14): (21_520_512, 21_618_816),
    ('vit_base', 16): (85_646_592, 85_797_120),         ('vit_base', 14): (85_508_352, 85_704_960),
    ('vit_large', 16): (303_098_880, 303_299_584),      ('vit_large', 14): (302_914_560, 303_176_704),
    ('vit_huge', 16): (630_664_960, 630_915_840),       ('vit_huge', 14): (630_434_560, 630_762_240),
    ('vit_giant', 16): (1_011_092_608, 1_011_368_576),  ('vit_giant', 14): (1_010_839_168, 1_011_199_616)}


def counts(model, pos_name='pos_embed'):
    n = sum(p.numel() for p in model.parameters())
    return n, n + getattr(model, pos_name).numel()


@pytest.mark.parametrize("name,patch", list(OFFICIAL_COUNTS))
def test_official_parameter_counts(name, patch):
    with torch.device('meta'): m = FACTORIES[name](img_size=224, patch_size=patch)
    assert m.pos_embed.is_meta                                              # nothing was allocated
    assert counts(m) == OFFICIAL_COUNTS[name, patch]


def test_meta_counts_equal_real_counts():
    "Counting on the meta device gives what a real instantiation gives."
    real = vit_tiny(img_size=224, patch_size=16, depth=2)
    with torch.device('meta'): meta = vit_tiny(img_size=224, patch_size=16, depth=2)
    assert counts(real) == counts(meta)
    assert [(n, p.shape) for n, p in real.named_parameters()] == [(n, p.shape) for n, p in meta.named_parameters()]


def test_sizes_table():
    assert VIT_SIZES['vit_huge'][:3] == (1280, 32, 16) and VIT_SIZES['vit_giant'][:3] == (1408, 40, 16)
    assert int(1408 * VIT_SIZES['vit_giant'][3]) == 6144


def naive_apply_masks(x, masks):
    return torch.stack([torch.stack([x[b, i] for i in m[b]]) for m in masks for b in range(len(x))])


def test_apply_masks_semantics():
    x = (100 * torch.arange(2)[:, None] + torch.arange(16))[..., None].float()   # token value = 100 * image + index
    m0, m1 = torch.tensor([[0, 1, 5], [10, 11, 15]]), torch.tensor([[3, 7, 2], [12, 8, 4]])
    out = apply_masks(x, [m0, m1])
    assert out.shape == (4, 3, 1)
    assert out[..., 0].tolist() == [[0, 1, 5], [110, 111, 115], [3, 7, 2], [112, 108, 104]]  # mask by mask, order kept
    fct.test_eq(apply_masks(x, m0), apply_masks(x, [m0]))
    g = torch.Generator().manual_seed(0)
    for B, N, D, M, K in [(1, 4, 2, 1, 4), (3, 20, 5, 4, 7), (2, 64, 8, 2, 30)]:
        xr = torch.randn(B, N, D, generator=g)
        masks = [torch.randint(0, N, (B, K), generator=g) for _ in range(M)]
        fct.test_eq(apply_masks(xr, masks), naive_apply_masks(xr, masks))
    with pytest.raises(ValueError, match='one row of token indices per image'):
        apply_masks(x, [m0[:1]])


@pytest.fixture(scope='module')
def toy():
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3).eval()


def test_forward_shapes_and_masking(toy):
    imgs = torch.randn(2, 3, 32, 32)
    ctx = [torch.stack([torch.randperm(64)[:20] for _ in range(2)])]
    tgt = [torch.randint(0, 64, (2, 9)) for _ in range(4)]
    with torch.no_grad():
        full = toy(imgs)
        assert full.shape == (2, 64, 48)
        assert toy(imgs, ctx).shape == (2, 20, 48)
        assert toy(imgs, tgt).shape == (8, 9, 48)                           # 4 masks stacked along the batch
        torch.testing.assert_close(toy(imgs, [torch.arange(64).repeat(2, 1)]), full, rtol=1e-5, atol=1e-5)
        # dropped patches have no influence on the kept tokens' features
        kept = set(ctx[0][0].tolist()); drop = next(i for i in range(64) if i not in kept)
        r, c = divmod(drop, 8)
        imgs2 = imgs.clone(); imgs2[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 5.0
        torch.testing.assert_close(toy(imgs2, ctx), toy(imgs, ctx))
        # ... while a kept patch does change them
        r, c = divmod(ctx[0][0, 0].item(), 8)
        imgs3 = imgs.clone(); imgs3[0, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 5.0
        assert not torch.allclose(toy(imgs3, ctx)[0], toy(imgs, ctx)[0], atol=1e-4)


def test_bad_inputs(toy):
    with pytest.raises(ValueError, match='not divisible by patch size'): VisionTransformer(img_size=30, patch_size=4)
    with pytest.raises(ValueError, match='not divisible by patch size'): vit_tiny(img_size=225, patch_size=16)
    with pytest.raises(ValueError, match='Expected images of size 32x32'): toy(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        VisionTransformer(img_size=32, patch_size=4, embed_dim=40, depth=1, num_heads=3)


def test_init_is_official(toy):
    "Truncated normal 0.02 everywhere, no rescaling of the output projections, zero biases, unit LayerNorms."
    m = vit_tiny(depth=4)                                                  # layer 4 would be rescaled to 0.02 / sqrt(8)
    with torch.no_grad():
        for blk in (m.blocks[0], m.blocks[-1]):
            for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2):
                assert abs(lin.weight.std().item() - 0.02) < 0.002          # not 0.02 / sqrt(2 * layer)
                assert lin.weight.abs().max() <= 2.0 and lin.bias.abs().sum() == 0
            assert (blk.norm1.weight == 1).all() and (blk.norm1.bias == 0).all()
        assert abs(m.patch_embed.proj.weight.std().item() - 0.02) < 0.002


# ---- a fake official checkpoint ----------------------------------------------------------------------------
# Key names and shapes written out from the official layout (ijepa-facts.md), not from our own state dicts.
BLOCK_KEYS = ['norm1.weight', 'norm1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight', 'attn.proj.bias',
              'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias']


def block_shapes(D, hidden):
    return {'norm1.weight': (D,), 'norm1.bias': (D,), 'attn.qkv.weight': (3 * D, D), 'attn.qkv.bias': (3 * D,),
            'attn.proj.weight': (D, D), 'attn.proj.bias': (D,), 'norm2.weight': (D,), 'norm2.bias': (D,),
            'mlp.fc1.weight': (hidden, D), 'mlp.fc1.bias': (hidden,), 'mlp.fc2.weight': (D, hidden), 'mlp.fc2.bias': (D,)}


def official_encoder_layout(D, depth, patch, N, chans=3):
    layout = {'pos_embed': (1, N, D), 'patch_embed.proj.weight': (D, chans, patch, patch), 'patch_embed.proj.bias': (D,)}
    for i in range(depth):
        layout.update({f'blocks.{i}.{k}': s for k, s in block_shapes(D, 4 * D).items()})
    layout.update({'norm.weight': (D,), 'norm.bias': (D,)})
    return layout


def official_predictor_layout(D, d, depth, N):
    layout = {'mask_token': (1, 1, d), 'predictor_pos_embed': (1, N, d),
              'predictor_embed.weight': (d, D), 'predictor_embed.bias': (d,)}
    for i in range(depth):
        layout.update({f'predictor_blocks.{i}.{k}': s for k, s in block_shapes(d, 4 * d).items()})
    layout.update({'predictor_norm.weight': (d,), 'predictor_norm.bias': (d,),
                   'predictor_proj.weight': (D, d), 'predictor_proj.bias': (D,)})
    return layout


def test_layout_lists_every_official_key():
    "The hand-written layout has the official number of keys (guards the layout itself)."
    enc = official_encoder_layout(192, 2, 16, 196)
    assert len(enc) == 3 + 12 * 2 + 2 and set(BLOCK_KEYS) == set(block_shapes(4, 16))
    assert 'blocks.1.mlp.fc2.bias' in enc and 'cls_token' not in enc
    assert len(official_predictor_layout(192, 96, 2, 196)) == 4 + 12 * 2 + 4


def test_fake_official_checkpoint_loads_strict(tmp_path):
    D, depth, patch, N, d, pdepth = 192, 2, 16, 196, 96, 2                # vit_tiny/16 at 224, shallow
    g = torch.Generator().manual_seed(0)
    rand = lambda shape: torch.randn(shape, generator=g)
    enc_sd = {f'module.{k}': rand(s) for k, s in official_encoder_layout(D, depth, patch, N).items()}
    tgt_sd = {f'module.{k}': rand(s) for k, s in official_encoder_layout(D, depth, patch, N).items()}
    pred_sd = {f'module.{k}': rand(s) for k, s in official_predictor_layout(D, d, pdepth, N).items()}
    ckpt = {'encoder': enc_sd, 'predictor': pred_sd, 'target_encoder': tgt_sd,
            'opt': {'state': {}, 'param_groups': [{'lr': 1e-3, 'weight_decay': 0.04, 'params': [0, 1, 2]}]},
            'scaler': None, 'epoch': 3, 'loss': 0.0123, 'batch_size': 128, 'world_size': 16, 'lr': 1e-3}
    path = tmp_path / 'jepa-ep3.pth.tar'
    torch.save(ckpt, path)
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    assert loaded['scaler'] is None and loaded['epoch'] == 3

    strip = lambda sd: {k.removeprefix('module.'): v for k, v in sd.items()}
    encoder, target = vit_tiny(img_size=224, patch_size=16, depth=depth), vit_tiny(img_size=224, patch_size=16, depth=depth)
    predictor = vit_predictor(num_patches=N, embed_dim=D, predictor_embed_dim=d, depth=pdepth, num_heads=3)
    encoder.load_state_dict(strip(loaded['encoder']), strict=True)
    target.load_state_dict(strip(loaded['target_encoder']), strict=True)
    predictor.load_state_dict(strip(loaded['predictor']), strict=True)

    torch.testing.assert_close(encoder.blocks[1].attn.qkv.weight.detach(), enc_sd['module.blocks.1.attn.qkv.weight'])
    torch.testing.assert_close(target.norm.bias.detach(), tgt_sd['module.norm.bias'])
    torch.testing.assert_close(predictor.mask_token.detach(), pred_sd['module.mask_token'])
    with torch.no_grad():                                                  # the loaded models run
        ctx = [torch.arange(0, N, 2).repeat(1, 1)]
        z = encoder(torch.randn(1, 3, 224, 224), ctx)
        assert predictor(z, ctx, [torch.arange(1, 20, 2).repeat(1, 1)]).shape == (1, 10, D)


# ---- fast paths against teaching paths (issue 5) -------------------------------------------------------------
def gather_and_grad(x, masks, batched):
    "apply_masks' output and the gradient it sends back to the tokens, under a loss that weighs every row differently."
    x = x.clone().requires_grad_()
    out = apply_masks(x, masks, batched=batched)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("B,N,D,M,K", [(1, 4, 2, 1, 4), (3, 20, 5, 4, 7), (128, 64, 16, 4, 8)])
def test_batched_gather_equals_loop(B, N, D, M, K):
    "One gather for all masks = one index per (mask, image) = token by token: values and gradients."
    g = torch.Generator().manual_seed(B + M)
    x = torch.randn(B, N, D, generator=g)
    masks = [torch.randint(0, N, (B, K), generator=g) for _ in range(M)]       # repeated indices: gradients accumulate
    (o1, g1), (o2, g2) = gather_and_grad(x, masks, True), gather_and_grad(x, masks, False)
    fct.test_eq(o1, o2)
    fct.test_eq(o1, naive_apply_masks(x, masks))
    torch.testing.assert_close(g1, g2, rtol=1e-6, atol=1e-6)
    assert g1.abs().sum() > 0


def test_masks_of_different_lengths_are_refused():
    x = torch.randn(2, 16, 3)
    for batched in (True, False):
        with pytest.raises(ValueError, match='different numbers of tokens'):
            apply_masks(x, [torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long)], batched=batched)


def encoder_grads(model, imgs, masks):
    model.zero_grad(set_to_none=True)
    out = model(imgs, masks)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("switch", [dict(batched_gather=False), dict(grad_checkpointing=True), dict(fused_attn=False),
                                    dict(batched_gather=False, grad_checkpointing=True, fused_attn=False)])
def test_encoder_switches_change_no_number(switch):
    "Every speed or memory switch of the encoder gives the default's features and gradients."
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=4, embed_dim=48, depth=3, num_heads=3)
    ref, other = VisionTransformer(**kw), VisionTransformer(**kw, **switch)
    other.load_state_dict(ref.state_dict())
    imgs = torch.randn(4, 3, 32, 32)
    masks = [torch.stack([torch.randperm(64)[:20] for _ in range(4)])]
    (o1, g1), (o2, g2) = encoder_grads(ref, imgs, masks), encoder_grads(other, imgs, masks)
    torch.testing.assert_close(o2, o1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g2, g1): torch.testing.assert_close(a, b, rtol=1e-5, atol=max(1e-6, 1e-5 * b.abs().max().item()))  # float sums


def test_grad_checkpointing_recomputes_and_saves_memory():
    "With checkpointing each block's forward runs again in the backward pass, and fewer activations are kept."
    import sys, pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'bench'))
    from bench_util import PeakMemory
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=3)
    imgs, peaks, calls = torch.randn(8, 3, 32, 32), [], []
    for ckpt in (False, True):
        m = VisionTransformer(**kw, grad_checkpointing=ckpt)
        n = []
        m.blocks[0].register_forward_pre_hook(lambda *_: n.append(1))   # pre: the recompute may stop early
        with PeakMemory() as mem: m(imgs).square().mean().backward()
        peaks.append(mem.peak); calls.append(len(n))
        with torch.no_grad(): m(imgs)                                           # no gradients: no checkpointing
        calls[-1] = (calls[-1], len(n))
    assert calls == [(1, 2), (2, 3)]                                            # forward, recompute, then no_grad forward
    assert peaks[1] < 0.75 * peaks[0]
