"Predictor: shapes, independence of target blocks, the repeat_interleave_batch convention, agreement with the targets."
import pytest
import torch
import fastcore.test as fct

from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.predictor import repeat_interleave_batch, vit_predictor
from ijepa_edu.step import target_features

B, N, D, d = 3, 64, 48, 24          # 8x8 grid of 4-pixel patches on 32-pixel images


def make_masks(nenc, npred, Kc=20, Kt=6, seed=0):
    "nenc context masks (B, Kc) and npred target masks (B, Kt) of distinct patch indices per image."
    g = torch.Generator().manual_seed(seed)
    enc = [torch.stack([torch.randperm(N, generator=g)[:Kc] for _ in range(B)]) for _ in range(nenc)]
    pred = [torch.stack([torch.randperm(N, generator=g)[:Kt] for _ in range(B)]) for _ in range(npred)]
    return enc, pred


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=D, depth=1, num_heads=3).eval()
    pred = vit_predictor(num_patches=N, embed_dim=D, predictor_embed_dim=d, depth=2, num_heads=3).eval()
    return enc, pred


@pytest.mark.parametrize("nenc", [1, 2])
@pytest.mark.parametrize("npred", [1, 4])
def test_output_shapes(models, nenc, npred):
    enc, pred = models
    masks_enc, masks_pred = make_masks(nenc, npred)
    with torch.no_grad():
        z = enc(torch.randn(B, 3, 32, 32), masks_enc)
        assert z.shape == (nenc * B, 20, D)
        out = pred(z, masks_enc, masks_pred)
    assert out.shape == (npred * nenc * B, 6, D)


@pytest.mark.parametrize("nenc", [1, 2])
def test_blocks_never_see_each_other(models, nenc):
    "Moving one block's query positions changes that block's predictions only."
    enc, pred = models
    npred = 4
    masks_enc, masks_pred = make_masks(nenc, npred, seed=1)
    with torch.no_grad():
        z = enc(torch.randn(B, 3, 32, 32), masks_enc)
        out = pred(z, masks_enc, masks_pred)
        for moved_block in range(npred):
            moved = [m.clone() for m in masks_pred]
            moved[moved_block] = (moved[moved_block] + 7) % N
            out2 = pred(z, masks_enc, moved)
            for p in range(npred):
                rows = slice(p * nenc * B, (p + 1) * nenc * B)       # npred groups of nenc * B rows
                if p == moved_block: assert not torch.allclose(out2[rows], out[rows], atol=1e-4)
                else: torch.testing.assert_close(out2[rows], out[rows], rtol=1e-5, atol=1e-6)


def test_repeat_interleave_batch_ordering():
    x = torch.tensor([0, 1, 10, 11, 20, 21])                          # 3 groups of B=2
    fct.test_eq(repeat_interleave_batch(x, 2, repeat=2), torch.tensor([0, 1, 0, 1, 10, 11, 10, 11, 20, 21, 20, 21]))
    fct.test_eq(repeat_interleave_batch(x, 2, repeat=1), x)
    fct.test_eq(repeat_interleave_batch(x, 3, repeat=2), torch.tensor([0, 1, 10, 0, 1, 10, 11, 20, 21, 11, 20, 21]))
    y = torch.randn(4 * 5, 3, 2)
    expected = y.view(4, 1, 5, 3, 2).expand(4, 3, 5, 3, 2).reshape(60, 3, 2)   # each group of 5 rows three times
    fct.test_eq(repeat_interleave_batch(y, 5, repeat=3), expected)


def test_naive_per_sequence_equals_forward(models):
    "Row (p * nenc + e) * B + b is block p of image b predicted from context mask e, computed alone."
    enc, pred = models
    nenc, npred = 2, 3
    masks_enc, masks_pred = make_masks(nenc, npred, seed=2)
    with torch.no_grad():
        z = enc(torch.randn(B, 3, 32, 32), masks_enc)
        out = pred(z, masks_enc, masks_pred)
        for p in range(npred):
            for e in range(nenc):
                for b in range(B):
                    alone = pred(z[e * B + b][None], [masks_enc[e][b][None]], [masks_pred[p][b][None]])
                    torch.testing.assert_close(out[(p * nenc + e) * B + b], alone[0], rtol=1e-4, atol=1e-5)


def changed_rows(a, b):
    return set(torch.nonzero((a - b).abs().flatten(1).amax(1) > 1e-5).flatten().tolist())


@pytest.mark.parametrize("nenc,npred", [(1, 4), (2, 4), (2, 1)])
def test_predictions_line_up_with_target_features(models, nenc, npred):
    "Each prediction row and the target row at the same index belong to the same image and the same target block."
    enc, pred = models
    masks_enc, masks_pred = make_masks(nenc, npred, seed=3)
    imgs = torch.randn(B, 3, 32, 32)
    with torch.no_grad():
        z = enc(imgs, masks_enc)
        out = pred(z, masks_enc, masks_pred)
        h = target_features(enc, imgs, masks_pred, nenc=nenc)
        assert h.shape == out.shape
        for p in range(npred):                 # change one (block, image) target position: the same rows move
            for b in range(B):
                moved = [m.clone() for m in masks_pred]
                moved[p][b, 0] = (moved[p][b, 0] + 1) % N
                rows_pred = changed_rows(pred(z, masks_enc, moved), out)
                rows_tgt = changed_rows(target_features(enc, imgs, moved, nenc=nenc), h)
                assert rows_pred == rows_tgt == {(p * nenc + e) * B + b for e in range(nenc)}
        for b in range(B):                     # change one image: the same rows move
            imgs2 = imgs.clone(); imgs2[b] += 1.0
            rows_pred = changed_rows(pred(enc(imgs2, masks_enc), masks_enc, masks_pred), out)
            rows_tgt = changed_rows(target_features(enc, imgs2, masks_pred, nenc=nenc), h)
            assert rows_pred == rows_tgt == {(p * nenc + e) * B + b for p in range(npred) for e in range(nenc)}


def test_official_predictor_counts():
    def counts(**kw):
        with torch.device('meta'): m = vit_predictor(**kw)
        n = sum(p.numel() for p in m.parameters())
        return n, n + m.predictor_pos_embed.numel()
    assert counts(num_patches=256, embed_dim=1280, predictor_embed_dim=384, depth=12, num_heads=16) == (22_279_424, 22_377_728)
    assert counts(num_patches=196, embed_dim=1408, predictor_embed_dim=384, depth=16, num_heads=16) == (29_475_712, 29_550_976)


def test_bad_inputs(models):
    enc, pred = models
    with pytest.raises(ValueError, match=r'pass grid=\(rows, cols\)'): vit_predictor(num_patches=60, embed_dim=D)
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        vit_predictor(num_patches=N, embed_dim=D, predictor_embed_dim=d, num_heads=5)
    masks_enc, masks_pred = make_masks(2, 1)
    z = torch.randn(2 * B, 20, D)
    with pytest.raises(ValueError, match='do not match masks_x'): pred(z[:B], masks_enc, masks_pred)     # one mask's worth
    with pytest.raises(ValueError, match='do not match masks_x'): pred(z[:, :10], masks_enc, masks_pred) # wrong Kc


# ---- fast paths against teaching paths (issue 5) -------------------------------------------------------------
def predictions_and_grads(pred, z, masks_enc, masks_pred):
    pred.zero_grad(set_to_none=True)
    z = z.clone().requires_grad_()
    out = pred(z, masks_enc, masks_pred)
    (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
    return out.detach(), [z.grad] + [p.grad.clone() for p in pred.parameters()]


@pytest.mark.parametrize("nenc,npred", [(1, 4), (2, 3)])
@pytest.mark.parametrize("switch", [dict(batched_blocks=False), dict(batched_gather=False), dict(grad_checkpointing=True),
                                    dict(fused_attn=False),
                                    dict(batched_blocks=False, batched_gather=False, grad_checkpointing=True, fused_attn=False)])
def test_predictor_switches_change_no_number(switch, nenc, npred):
    "One pass per block, the per-image gather, checkpointing, written-out attention: the default's outputs and gradients."
    torch.manual_seed(0)
    kw = dict(num_patches=N, embed_dim=D, predictor_embed_dim=d, depth=2, num_heads=3)
    ref, other = vit_predictor(**kw), vit_predictor(**kw, **switch)
    other.load_state_dict(ref.state_dict())
    masks_enc, masks_pred = make_masks(nenc, npred, seed=4)
    z = torch.randn(nenc * B, 20, D)
    (o1, g1), (o2, g2) = predictions_and_grads(ref, z, masks_enc, masks_pred), predictions_and_grads(other, z, masks_enc, masks_pred)
    torch.testing.assert_close(o2, o1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g2, g1): torch.testing.assert_close(a, b, rtol=1e-5, atol=max(1e-6, 1e-5 * b.abs().max().item()))  # float sums


def test_one_pass_per_block_is_the_paper_loop():
    "batched_blocks=False runs the predictor once per target block: the first block's forward is called npred times."
    pred = vit_predictor(num_patches=N, embed_dim=D, predictor_embed_dim=d, depth=1, num_heads=3, batched_blocks=False)
    shapes = []
    pred.predictor_blocks[0].register_forward_pre_hook(lambda mod, inp: shapes.append(tuple(inp[0].shape[:2])))
    masks_enc, masks_pred = make_masks(2, 4)
    with torch.no_grad(): pred(torch.randn(2 * B, 20, D), masks_enc, masks_pred)
    assert shapes == [(2 * B, 26)] * 4                                 # nenc * B sequences of Kc + Kt, four times
