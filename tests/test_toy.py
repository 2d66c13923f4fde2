"""The toy I-JEPA of lesson 00 (`ijepa_edu.toy`): masks, shapes, the EMA, the pixel/feature switch, the probes, and that
it learns on synthetic images in a few seconds."""
import numpy as np
import pytest
import torch
from einops import rearrange
from ijepa_edu.toy import (patchify, gather, sample_masks, ToyIJEPA, train_toy, toy_images, pooled_features,
                           knn_accuracy, linear_probe_accuracy)


def images(n=256, seed=0):
    u8, y = toy_images(n, seed)
    return rearrange((torch.as_tensor(u8).float() / 255 - 0.5) / 0.25, 'n h w c -> n c h w'), y   # (n, 3, 32, 32)


def test_patchify_and_gather():
    x = torch.arange(2 * 3 * 8 * 8.).view(2, 3, 8, 8)
    p = patchify(x, 4)                                                   # (2, 4, 48)
    assert p.shape == (2, 4, 48)
    assert torch.equal(p[1, 2], rearrange(x[1, :, 4:8, 0:4], 'c h w -> (h w c)'))   # patch 2: bottom-left
    assert torch.equal(gather(p, torch.tensor([[3, 0], [1, 1]])), torch.stack([p[0, [3, 0]], p[1, [1, 1]]]))


def test_masks_are_blocks_and_context_avoids_them():
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        ctx, tgt = sample_masks(16, generator=g)
        B, M, T = tgt.shape
        assert (B, M) == (16, 4) and T in (4, 6, 9) and ctx.shape[0] == 16 and ctx.shape[1] >= 64 - M * T
        for c, t in zip(ctx, tgt):
            assert len(set(c.tolist())) == len(c) and c.tolist() == sorted(c.tolist())   # distinct, sorted
            assert not set(c.tolist()) & set(t.flatten().tolist())                        # no context patch is a target
            for block in t:                                                               # each block a filled rectangle
                rows, cols = block // 8, block % 8
                h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
                assert h * w == T == len(set(block.tolist())) and {h, w} <= {2, 3}


def test_masks_follow_the_generator_only():
    torch.manual_seed(1); a = sample_masks(8, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(2); b = sample_masks(8, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize('targets, width', [('features', 64), ('pixels', 48)])
def test_shapes_and_no_gradient_to_the_target_encoder(targets, width):
    model = ToyIJEPA(targets)
    x = torch.randn(8, 3, 32, 32)
    ctx, tgt = sample_masks(8, generator=torch.Generator().manual_seed(0))
    assert model.make_targets(patchify(x), tgt).shape == (8 * 4, tgt.shape[2], width)
    model(x, ctx, tgt).backward()
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert model.predictor.mask_token.grad is not None


def test_unknown_targets_are_refused():
    with pytest.raises(ValueError, match="targets must be 'features' or 'pixels'"): ToyIJEPA('logits')


def test_ema():
    torch.manual_seed(0)
    model = ToyIJEPA()
    with torch.no_grad():
        for p in model.encoder.parameters(): p.add_(1.0)                 # the context encoder moves away
    old = [p.clone() for p in model.target_encoder.parameters()]
    model.ema(1.0)
    assert all(torch.equal(a, b) for a, b in zip(old, model.target_encoder.parameters()))
    model.ema(0.75)
    for o, t, c in zip(old, model.target_encoder.parameters(), model.encoder.parameters()):
        torch.testing.assert_close(t, 0.75 * o + 0.25 * c)
    model.ema(0.0)
    assert all(torch.equal(t, c) for t, c in zip(model.target_encoder.parameters(), model.encoder.parameters()))


def test_collapsed_targets_give_zero_loss():
    "Lesson 00's exercise 1: a constant target encoder and a zero predictor win with feature targets, not with pixels."
    x = images(16)[0]
    losses = {}
    for targets in ('features', 'pixels'):
        m = ToyIJEPA(targets)
        with torch.no_grad():
            if targets == 'features': m.target_encoder.norm.weight.zero_(); m.target_encoder.norm.bias.zero_()
            m.predictor.out.weight.zero_(); m.predictor.out.bias.zero_()
        losses[targets] = m(x, *sample_masks(16)).item()
    assert losses['features'] == 0.0 and 0.9 < losses['pixels'] < 1.0


def test_the_toy_learns_on_synthetic_images(one_thread):
    "Both variants lower their loss well below where it started, from one shared start, and the EMA moves the target."
    x, _ = images()
    runs = {t: train_toy(x, t, steps=30, batch_size=32, seed=0) for t in ('features', 'pixels')}
    (mf, sf, lf), (mp, sp, lp) = runs['features'], runs['pixels']
    assert np.mean(lf[-5:]) < 0.7 * lf[0], lf
    assert np.mean(lp[-5:]) < 0.9 * lp[0], lp
    assert all(torch.equal(a, b) for a, b in zip(sf.encoder.parameters(), sp.encoder.parameters()))   # same start
    moved = sum((a - b).abs().sum().item() for a, b in zip(mf.target_encoder.parameters(), sf.target_encoder.parameters()))
    assert moved > 0


def test_probes():
    torch.manual_seed(0)
    centres = torch.randn(3, 16) * 5
    y_tr, y_te = torch.arange(300) % 3, torch.arange(90) % 3
    f_tr, f_te = centres[y_tr] + torch.randn(300, 16), centres[y_te] + torch.randn(90, 16)
    assert knn_accuracy(f_tr, y_tr, f_te, y_te) == 100.0
    assert linear_probe_accuracy(f_tr, y_tr, f_te, y_te) == 100.0
    noise = torch.randn(300, 16)                                         # features that carry no label: about chance
    assert knn_accuracy(noise[:200], y_tr[:200], noise[200:], y_tr[200:]) < 60


def test_pooled_features_shape_and_batching():
    model = ToyIJEPA()
    x = torch.randn(7, 3, 32, 32)
    f = pooled_features(model.target_encoder, x, batch_size=3)           # batches of 3, 3, 1
    assert f.shape == (7, 64)
    torch.testing.assert_close(f, pooled_features(model.target_encoder, x, batch_size=7), rtol=1e-5, atol=1e-5)
