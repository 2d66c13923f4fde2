"Tests of the target encoder and its EMA (nbs/06_ema.ipynb): arithmetic, edge cases, schedule, gradients, errors."
import math
import pytest
import torch
from torch import nn
import fastcore.test as fct
from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.ema import make_target_encoder, ema_update, ema_momentum
from ijepa_edu.step import IJEPA


def small_vit(seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3)


def ema_naive(target, online, m):
    with torch.no_grad():
        for p_t, p_o in zip(target.parameters(), online.parameters()): p_t.mul_(m).add_((1 - m) * p_o)


def perturb(module, seed, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters(): p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('m', [0.0, 0.5, 0.9, 0.996])
def test_closed_form_after_k_steps(seed, m):
    "With the online weights held at w, after k steps the target is w + m^k (t0 - w)."
    online = small_vit(seed)
    target = make_target_encoder(online)
    perturb(target, seed + 100, scale=1.0)  # start the target away from the online weights
    t0 = [p.clone() for p in target.parameters()]
    k = 3 + seed
    for _ in range(k): ema_update(target, online, m)
    for p_t, p_o, p_0 in zip(target.parameters(), online.parameters(), t0):
        fct.test_close(p_t, p_o.detach() + m**k * (p_0 - p_o.detach()), eps=1e-5)


def test_momentum_one_leaves_target_unchanged_and_zero_copies():
    online, target = small_vit(0), make_target_encoder(small_vit(1))
    before = [p.clone() for p in target.parameters()]
    ema_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), before))
    ema_update(target, online, 0.0)
    assert all(torch.equal(a, b.detach()) for a, b in zip(target.parameters(), online.parameters()))


@pytest.mark.parametrize('seed', range(3))
def test_fused_equals_naive_over_a_moving_online_model(seed):
    online = small_vit(seed)
    t_fused, t_naive = make_target_encoder(online), make_target_encoder(online)
    for step in range(6):
        perturb(online, seed * 10 + step, scale=0.05)
        m = ema_momentum(step, 6, start=0.9)
        ema_update(t_fused, online, m); ema_naive(t_naive, online, m)
    for a, b in zip(t_fused.parameters(), t_naive.parameters()): fct.test_close(a, b, eps=1e-6)
    assert not all(torch.equal(a, b.detach()) for a, b in zip(t_fused.parameters(), online.parameters()))  # it lags


def test_ema_moves_towards_the_online_weights_only():
    "One step moves every target parameter a fraction (1 - m) along the gap; buffers are not touched."
    online = small_vit(0); target = make_target_encoder(online)
    perturb(online, 1)
    gap = [(o.detach() - t).clone() for t, o in zip(target.parameters(), online.parameters())]
    t0 = [t.clone() for t in target.parameters()]
    ema_update(target, online, 0.75)
    for t, t_0, g in zip(target.parameters(), t0, gap): fct.test_close(t - t_0, 0.25 * g, eps=1e-6)
    assert torch.equal(target.pos_embed, online.pos_embed)


def test_make_target_encoder_is_a_frozen_independent_copy():
    online = small_vit(0)
    target = make_target_encoder(online)
    for p, q in zip(online.parameters(), target.parameters()):
        assert torch.equal(p.detach(), q) and p.data_ptr() != q.data_ptr()
        assert p.requires_grad and not q.requires_grad
    perturb(online, 3)
    assert not any(torch.equal(p.detach(), q) for p, q in zip(online.parameters(), target.parameters()) if p.numel() > 1)


def test_target_gets_no_gradient_through_ijepa():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=1, num_heads=3)
    pred = vit_predictor(num_patches=64, embed_dim=48, predictor_embed_dim=24, depth=1, num_heads=3)
    model = IJEPA(enc, pred)
    masks_enc, masks_pred = MaskCollator(input_size=32, patch_size=4, min_keep=4, seed=0).sample(4)
    model(torch.randn(4, 3, 32, 32), masks_enc, masks_pred).backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    ids = {id(p) for p in model.trainable_parameters()}
    assert not any(id(p) in ids for p in model.target_encoder.parameters())


def test_half_life():
    "A step change in the online weight is half covered after ceil(ln 0.5 / ln m) steps, not one sooner."
    for m in (0.9, 0.99, 0.996):
        online, target = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False).requires_grad_(False)
        nn.init.ones_(online.weight); nn.init.zeros_(target.weight)
        h = math.ceil(math.log(0.5) / math.log(m))
        for _ in range(h - 1): ema_update(target, online, m)
        assert target.weight.item() < 0.5
        ema_update(target, online, m)
        assert target.weight.item() >= 0.5


def official_generator(start, end, total):
    return (start + i * (end - start) / total for i in range(int(total) + 1))


@pytest.mark.parametrize('total', [1, 2, 10, 625, 187_500])
def test_schedule_matches_the_official_generator(total):
    official = list(official_generator(0.996, 1.0, total))
    assert len(official) == total + 1
    assert [ema_momentum(i, total) for i in range(total + 1)] == official


def test_schedule_endpoints_and_linearity():
    total = 1000
    ms = torch.tensor([ema_momentum(i, total) for i in range(total + 1)], dtype=torch.float64)
    assert ms[0] == 0.996 and ms[-1] == 1.0
    d = ms.diff()
    fct.test_close(d, torch.full_like(d, 0.004 / total), eps=1e-12)  # constant increments: linear
    assert ema_momentum(total + 50, total) == 1.0                     # held at the end
    assert ema_momentum(5, 10, start=0.9, end=0.99) == pytest.approx(0.945)


@pytest.mark.parametrize('m', [-0.1, 1.0001, 2.0, float('nan')])
def test_bad_momentum(m):
    with pytest.raises(ValueError, match=r'momentum must lie in \[0, 1\]'):
        ema_update(small_vit(0), small_vit(1), m)


def test_mismatched_modules():
    with pytest.raises(ValueError, match='different parameter lists'):
        ema_update(nn.Linear(3, 2), nn.Linear(3, 2, bias=False), 0.9)        # count differs
    with pytest.raises(ValueError, match='make_target_encoder'):
        ema_update(nn.Linear(3, 2), nn.Linear(2, 3), 0.9)                    # shapes differ
    with pytest.raises(ValueError, match='different parameter lists'):
        ema_update(nn.Linear(4, 3), nn.Sequential(nn.Linear(4, 1)), 0.9)     # would broadcast silently


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match='total_steps must be positive'): ema_momentum(0, 0)
    with pytest.raises(ValueError, match='step must be >= 0'): ema_momentum(-1, 10)
