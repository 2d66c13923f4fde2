"""Checks that lessons 05 and 06 ran in their notebooks before issue 22 moved rotary positions to lesson 11: the rotary
helpers (`rope_angles`, `apply_rope`), the encoder and the predictor with `rope=True`, and StoP's jitter. Kept here so the
library stays tested whatever lesson 11 shows."""
import pytest
import torch
import fastcore.test as fct

from ijepa_edu.encoder import VisionTransformer, apply_rope, rope_angles
from ijepa_edu.masks import MaskCollator
from ijepa_edu.predictor import vit_predictor

N = 64   # an 8x8 grid of 4-pixel patches on 32-pixel images


@pytest.fixture(scope='module')
def toy():
    torch.manual_seed(0)
    imgs = torch.randn(2, 3, 32, 32)
    masks_enc, masks_pred = MaskCollator(input_size=32, patch_size=4, min_keep=4, seed=0).sample(2)
    return imgs, masks_enc, masks_pred


def test_rotary_score_depends_only_on_the_offset():
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 16), torch.randn(2, 1, 1, 16)                 # one head of width 16, one token each
    def score(a, b):                                                          # rotated query at a, key at b
        ang = lambda p: rope_angles(torch.tensor([[p]], dtype=torch.float).expand(2, 1, 2), 16)   # (2, 1, 8)
        return (apply_rope(q, ang(a)) * apply_rope(k, ang(b))).sum(-1)
    fct.test_close(score((0, 0), (2, 3)), score((5, 1), (7, 4)), eps=1e-5)       # same offset (2, 3): same score
    assert not torch.allclose(score((0, 0), (2, 3)), score((0, 0), (3, 2)), atol=1e-3)   # another offset: another score
    fct.test_close(apply_rope(q, torch.zeros(2, 1, 8)), q)                       # angle 0: no rotation
    fct.test_close(apply_rope(q, rope_angles(torch.rand(2, 1, 2) * 8, 16)).norm(dim=-1), q.norm(dim=-1), eps=1e-5)  # lengths kept


def test_rotary_encoder(toy):
    imgs, masks_enc, _ = toy
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)
    enc_r = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3, rope=True)
    with torch.no_grad():
        full_r = enc_r(imgs)                                                  # (2, 64, 48)
        fct.test_close(enc_r(imgs, [torch.arange(64).repeat(2, 1)]), full_r, eps=1e-5)   # a mask of every token: the same
        flat = torch.ones(1, 3, 32, 32)                                       # every patch the same: with rotary positions
        fct.test_close(enc_r(flat).std(dim=1), torch.zeros(1, 48), eps=1e-4)      # every token's features are the same too
        assert enc(flat).std(dim=1).mean() > 0.1                              # with the added table they differ by position
        m = enc_r(imgs, masks_enc)                                            # the rotary angles follow the kept tokens:
        perm = torch.randperm(masks_enc[0].size(1))                           # permuting them permutes the output
        fct.test_close(enc_r(imgs, [masks_enc[0][:, perm]]), m[:, perm], eps=1e-5)
    fct.test_fail(lambda: VisionTransformer(img_size=32, patch_size=4, embed_dim=48, num_heads=8, rope=True), contains='multiple of 4')


def test_rotary_predictor_and_stop(toy):
    imgs, masks_enc, masks_pred = toy
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)
    with torch.no_grad(): z = enc(imgs, masks_enc)                            # (nenc * B, Kc, D)
    nenc, npred, B = len(masks_enc), len(masks_pred), 2
    rows_of = lambda p: slice(p * nenc * B, (p + 1) * nenc * B)               # rows of block p
    moved = [m.clone() for m in masks_pred]
    moved[1] = (moved[1] + 3) % N                                             # block 1 now asks about other patches
    pred_r = vit_predictor(num_patches=N, embed_dim=48, predictor_embed_dim=24, depth=2, num_heads=3, rope=True, stop_std=0.5).eval()
    with torch.no_grad():
        out_r, out_r2 = pred_r(z, masks_enc, masks_pred), pred_r(z, masks_enc, moved)   # (npred*nenc*B, Kt, D)
        pred_r.batched_blocks = False; fct.test_close(pred_r(z, masks_enc, masks_pred), out_r, eps=1e-5); pred_r.batched_blocks = True
    for p in range(npred):                                                    # moving block 1 changes block 1 only
        if p == 1: assert not torch.allclose(out_r2[rows_of(p)], out_r[rows_of(p)], atol=1e-4)
        else: fct.test_close(out_r2[rows_of(p)], out_r[rows_of(p)], eps=1e-5)
    with torch.no_grad():
        fct.test_eq(pred_r(z, masks_enc, masks_pred), out_r)                      # eval mode: no jitter, deterministic
        pred_r.train(); assert not torch.allclose(pred_r(z, masks_enc, masks_pred), out_r, atol=1e-4)   # training: jittered
    fct.test_fail(lambda: vit_predictor(num_patches=N, embed_dim=48, predictor_embed_dim=24, num_heads=3, stop_std=0.5), contains='rope=True')
