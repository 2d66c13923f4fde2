"""Properties of patches and positions (ijepa_edu.patches), checked against independent plain-loop versions."""
import math
import pytest
import torch
from torch import nn
from einops import rearrange

from ijepa_edu.patches import (PatchEmbed, get_1d_sincos_pos_embed, get_2d_sincos_pos_embed, grid_shape, patchify,
                               unpatchify)

SHAPES = [(1, 3, 32, 32, 4), (2, 3, 24, 40, 8), (3, 1, 12, 20, 2), (2, 4, 28, 14, 7)]   # (B, C, H, W, p)


@pytest.mark.parametrize('B,C,H,W,p', SHAPES)
def test_patchify_layout(B, C, H, W, p):
    "Element (b, r*gw + q, (y*p + x)*C + c) of the patches is pixel (b, c, r*p + y, q*p + x): raster order, (p1 p2 c)."
    x = torch.randn(B, C, H, W)
    P = patchify(x, p)
    gh, gw = H // p, W // p
    assert P.shape == (B, gh * gw, p * p * C)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        b, r, q, y, xx, c = (int(torch.randint(n, (1,), generator=g)) for n in (B, gh, gw, p, p, C))
        assert P[b, r * gw + q, (y * p + xx) * C + c] == x[b, c, r * p + y, q * p + xx]


@pytest.mark.parametrize('B,C,H,W,p', SHAPES)
def test_unpatchify_inverts_patchify(B, C, H, W, p):
    x = torch.randn(B, C, H, W)
    assert torch.equal(unpatchify(patchify(x, p), p, (H // p, W // p), channels=C), x)
    P = torch.randn(B, (H // p) * (W // p), p * p * C)
    assert torch.equal(patchify(unpatchify(P, p, (H // p, W // p), channels=C), p), P)


def test_grid_shape_and_errors():
    assert grid_shape(224, 16) == (14, 14) and grid_shape(224, 14) == (16, 16) and grid_shape((32, 48), 8) == (4, 6)
    for size, p in [(225, 16), ((224, 220), 16), (30, 4)]:
        with pytest.raises(ValueError, match='not divisible by patch size'): grid_shape(size, p)
    with pytest.raises(ValueError, match='positive'): grid_shape(224, 0)
    with pytest.raises(ValueError, match='not divisible'): patchify(torch.randn(1, 3, 30, 32), 4)


@pytest.mark.parametrize('img_size,p,C,D', [(32, 4, 3, 64), ((32, 48), 8, 3, 24), (28, 7, 1, 16), (224, 16, 3, 192)])
def test_patch_embed_is_linear_on_patches(img_size, p, C, D):
    "The strided conv equals a Linear on patchify's output once the weight is laid out (p1 p2 c) too."
    torch.manual_seed(0)
    pe = PatchEmbed(img_size=img_size, patch_size=p, in_chans=C, embed_dim=D)
    H, W = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, C, H, W)
    lin = nn.Linear(p * p * C, D)
    with torch.no_grad():
        lin.weight.copy_(rearrange(pe.proj.weight, 'd c p1 p2 -> d (p1 p2 c)'))
        lin.bias.copy_(pe.proj.bias)
    out = pe(x)
    assert out.shape == (2, pe.num_patches, D) and pe.grid == (H // p, W // p)
    torch.testing.assert_close(out, lin(patchify(x, p)), atol=1e-4, rtol=1e-4)
    if C > 1:   # the (c p1 p2) layout is a different map: the ordering matters
        with torch.no_grad(): lin.weight.copy_(pe.proj.weight.flatten(1))
        assert not torch.allclose(out, lin(patchify(x, p)), atol=1e-3)


def test_patch_embed_errors():
    with pytest.raises(ValueError, match='not divisible by patch size 16'): PatchEmbed(img_size=225, patch_size=16)
    with pytest.raises(ValueError, match='Expected images of size 224x224, got 192x192'):
        PatchEmbed(img_size=224, patch_size=16)(torch.randn(1, 3, 192, 192))


def pos_naive(D, gh, gw):
    "Plain-loop 2-D sin-cos table: [sin(col), cos(col), sin(row), cos(row)] at D/4 frequencies 10000^(-k/(D/4))."
    q, out = D // 4, []
    for r in range(gh):
        for c in range(gw):
            fr = [1 / 10000 ** (k / q) for k in range(q)]
            out.append([math.sin(c * f) for f in fr] + [math.cos(c * f) for f in fr]
                       + [math.sin(r * f) for f in fr] + [math.cos(r * f) for f in fr])
    return torch.tensor(out)


@pytest.mark.parametrize('D,grid', [(16, (3, 5)), (64, (7, 4)), (192, 14), (768, (14, 14)), (1280, 16)])
def test_2d_sincos_matches_loops(D, grid):
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    emb = get_2d_sincos_pos_embed(D, grid)
    assert emb.shape == (gh * gw, D) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, pos_naive(D, gh, gw).float(), atol=1e-5, rtol=0)


def test_2d_sincos_layout_column_then_row():
    "First half depends only on the column, second half only on the row (the official / MAE layout)."
    emb = rearrange(get_2d_sincos_pos_embed(32, (5, 7)), '(r c) d -> r c d', r=5)   # (5, 7, 32)
    assert torch.equal(emb[:, :, :16], emb[:1, :, :16].expand(5, 7, 16))
    assert torch.equal(emb[:, :, 16:], emb[:, :1, 16:].expand(5, 7, 16))
    assert emb[0, 1, 0] == pytest.approx(math.sin(1.0)) and emb[1, 0, 16] == pytest.approx(math.sin(1.0))
    assert len({tuple(v) for v in emb.flatten(0, 1).tolist()}) == 35            # every position distinct


def test_sincos_errors():
    with pytest.raises(ValueError, match='divisible by 4'): get_2d_sincos_pos_embed(190, 14)
    with pytest.raises(ValueError, match='even'): get_1d_sincos_pos_embed(7, torch.arange(3))


def test_position_dominates_tiny_patches_at_init():
    "The measured fact in ijepa-facts.md: patch 4 on 32 px, width 192, official init: position std ~0.5 >> content."
    torch.manual_seed(0)
    pe = PatchEmbed(img_size=32, patch_size=4, embed_dim=192)
    nn.init.trunc_normal_(pe.proj.weight, std=0.02); nn.init.zeros_(pe.proj.bias)
    with torch.no_grad(): content = pe(torch.randn(64, 3, 32, 32)).std().item()    # unit-variance pixels
    position = get_2d_sincos_pos_embed(192, 8).std().item()
    assert 0.45 < position < 0.6
    assert content == pytest.approx(0.02 * math.sqrt(48), rel=0.15)                 # about 0.14
    assert position > 3 * content
