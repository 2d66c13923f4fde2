"""Invariants of block sampling (ijepa_edu.blocks) over many seeds.

Tolerance for "sizes within the ranges": a block is made of whole patches. `block_size` takes
n = int(H*W*scale) patches and rounds each side of the exact block sqrt(n*aspect) x sqrt(n/aspect) to
the nearest integer, so each side may be off by at most half a patch (then it is clipped to [1, grid side]).
We therefore accept a sampled (h, w) exactly when some allowed scale and aspect ratio give exact sides
within half a patch of it (see `consistent`). That is the tightest rule rounding allows, and it is not
vacuous: on a 14 x 14 grid it accepts 11 target shapes and rejects e.g. 5 x 8 (aspect 0.63), 8 x 6
(area 0.245) or 4 x 4 (area 0.082), so a sampler with the aspect ratio inverted, or the scale applied to a
side instead of the area, fails it (tested below).
"""
import math
import numpy as np
import pytest
import torch

from ijepa_edu.blocks import block_indices, block_size, check_range, sample_block_position, sample_block_size

PAPER_TARGET = dict(scale=(0.15, 0.2), aspect=(0.75, 1.5))
PAPER_CONTEXT = dict(scale=(0.85, 1.0), aspect=(1.0, 1.0))
GRIDS = [(14, 14), (16, 16), (8, 8), (10, 16)]


def consistent(h, w, scale, aspect, grid):
    "Whether (h, w) is within half a patch per side of the exact block for some scale and aspect in the ranges."
    H, W = grid
    for n in range(int(H * W * scale[0]), int(H * W * scale[1]) + 1):
        if n == 0: return (h, w) == (1, 1)
        # sqrt(n*a) rounds to h  <=>  a in [(h-.5)^2/n, (h+.5)^2/n]; a side clipped to the grid or to 1 may be larger/smaller
        a_lo = [(h - 0.5) ** 2 / n if h > 1 else 0.0, n / (w + 0.5) ** 2 if w < W else 0.0]
        a_hi = [(h + 0.5) ** 2 / n if h < H else math.inf, n / (w - 0.5) ** 2 if w > 1 else math.inf]
        if max(a_lo + [aspect[0]]) <= min(a_hi + [aspect[1]]) + 1e-12: return True
    return False


def draw_sizes(seed, scale, aspect, grid, k=50):
    gen = torch.Generator().manual_seed(seed)
    return [sample_block_size(gen, scale, aspect, grid) for _ in range(k)]


@pytest.mark.parametrize('grid', GRIDS)
@pytest.mark.parametrize('setting', [PAPER_TARGET, PAPER_CONTEXT, dict(scale=(0.05, 0.6), aspect=(0.3, 3.0))],
                         ids=['target', 'context', 'wide'])
def test_sizes_within_ranges_up_to_rounding(grid, setting):
    for seed in range(40):
        for h, w in draw_sizes(seed, setting['scale'], setting['aspect'], grid):
            assert 1 <= h <= grid[0] and 1 <= w <= grid[1]
            assert consistent(h, w, setting['scale'], setting['aspect'], grid), (seed, h, w, setting, grid)


def test_tolerance_is_tight_on_the_paper_grid():
    "On 14 x 14 the rule accepts exactly the 11 shapes block_size can give, and a wrong sampler fails it."
    ok = {(h, w) for h in range(1, 15) for w in range(1, 15) if consistent(h, w, (0.15, 0.2), (0.75, 1.5), (14, 14))}
    reachable = {block_size(s, a, 14) for s in np.linspace(0.15, 0.2, 201) for a in np.linspace(0.75, 1.5, 201)}
    assert reachable == ok and len(ok) == 11
    assert not consistent(5, 8, (0.15, 0.2), (0.75, 1.5), (14, 14))         # aspect 0.63
    assert not consistent(8, 6, (0.15, 0.2), (0.75, 1.5), (14, 14))         # area 0.245
    # a sampler with the aspect ratio inverted (w / h) draws shapes outside the rule
    gen = torch.Generator().manual_seed(0)
    wrong = {block_size(float(torch.empty(1).uniform_(0.15, 0.2, generator=gen)),
                        1 / float(torch.empty(1).uniform_(0.75, 1.5, generator=gen)), 14) for _ in range(500)}
    assert any(not consistent(h, w, (0.15, 0.2), (0.75, 1.5), (14, 14)) for h, w in wrong)
    # scale applied to the side instead of the area: a 0.15-0.2 side is a 2-3 patch block
    assert not consistent(3, 3, (0.15, 0.2), (0.75, 1.5), (14, 14))


def test_sizes_fill_the_range():
    "The draws are spread over the whole range, centred on it, not stuck at one end."
    sizes = torch.tensor([hw for seed in range(40) for hw in draw_sizes(seed, **PAPER_TARGET, grid=(14, 14))])
    area = sizes.prod(1) / 196
    assert abs(area.mean().item() - 0.175) < 0.01
    assert area.min() < 0.155 and area.max() > 0.2
    ratio = sizes[:, 0] / sizes[:, 1]
    assert ratio.min() < 0.8 and ratio.max() > 1.4


def test_scale_and_aspect_drawn_independently():
    "Independent draws: area and aspect uncorrelated. The official coupled draw (one number for both) fails this."
    gen = torch.Generator().manual_seed(0)
    ours = torch.tensor([sample_block_size(gen, **PAPER_TARGET, grid=(14, 14)) for _ in range(3000)]).float()
    coupled = []
    for _ in range(3000):
        r = torch.rand(1, generator=gen).item()
        coupled.append(block_size(0.15 + r * 0.05, 0.75 + r * 0.75, 14))
    coupled = torch.tensor(coupled).float()
    corr = lambda s: np.corrcoef(s.prod(1).numpy(), (s[:, 0] / s[:, 1]).numpy())[0, 1]
    assert abs(corr(ours)) < 0.2
    assert corr(coupled) > 0.4


@pytest.mark.parametrize('grid', GRIDS)
def test_blocks_always_inside_the_grid(grid):
    H, W = grid
    for seed in range(60):
        gen = torch.Generator().manual_seed(seed)
        for scale, aspect in [PAPER_TARGET.values(), PAPER_CONTEXT.values(), ((0.5, 1.0), (0.2, 5.0))]:
            size = sample_block_size(gen, scale, aspect, grid)
            top, left = sample_block_position(gen, size, grid)
            assert 0 <= top <= H - size[0] and 0 <= left <= W - size[1]
            idx = block_indices(top, left, size, grid)
            assert idx.dtype == torch.long and len(idx) == size[0] * size[1] == len(set(idx.tolist()))
            assert idx.min() >= 0 and idx.max() < H * W
            rows, cols = idx // W, idx % W                       # exactly the rectangle, in raster order
            assert set(rows.tolist()) == set(range(top, top + size[0]))
            assert set(cols.tolist()) == set(range(left, left + size[1]))
            assert torch.equal(idx, idx.sort().values)


@pytest.mark.parametrize('size,grid', [((5, 6), (14, 14)), ((13, 13), (14, 14)), ((14, 14), (14, 14)),
                                       ((1, 1), (8, 8)), ((3, 7), (8, 8)), ((2, 9), (10, 16)), ((10, 1), (10, 16))])
def test_every_top_left_position_reachable(size, grid):
    (h, w), (H, W) = size, grid
    gen = torch.Generator().manual_seed(0)
    n = (H - h + 1) * (W - w + 1)
    seen = torch.zeros(H - h + 1, W - w + 1)
    for _ in range(max(40 * n, 50)):
        t, l = sample_block_position(gen, size, grid)
        seen[t, l] += 1
    assert (seen > 0).all(), 'some fitting corner is never drawn'
    assert seen[-1].sum() > 0 and seen[:, -1].sum() > 0          # blocks touch the last row and column
    if n > 1:                                                     # uniform: each corner about 1/n of the draws
        f = seen.flatten() / seen.sum()
        assert f.min() > 0.3 / n and f.max() < 2.0 / n, f


def test_same_seed_same_draws():
    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(30):
            size = sample_block_size(gen, **PAPER_TARGET, grid=(14, 14))
            out.append((size, sample_block_position(gen, size, (14, 14))))
        return out
    assert run(7) == run(7)
    assert run(7) != run(8)
    torch.manual_seed(3); a = [sample_block_size(None, **PAPER_TARGET, grid=(14, 14)) for _ in range(20)]
    torch.manual_seed(3); b = [sample_block_size(None, **PAPER_TARGET, grid=(14, 14)) for _ in range(20)]
    assert a == b                                                 # gen=None follows torch's global seed


@pytest.mark.parametrize('rng,msg', [((0.2, 0.15), 'reversed'), ((0.0, 0.2), 'must lie in'), ((0.5, 1.01), 'must lie in'),
                                     ((-1, 0.5), 'must lie in'), (0.2, 'pair of numbers'), ((0.1,), 'pair of numbers'),
                                     ((0.1, 0.2, 0.3), 'pair of numbers'), (('a', 'b'), 'pair of numbers'),
                                     ((None, 0.2), 'pair of numbers'), ((float('nan'), 0.2), 'finite'),
                                     ((0.1, float('nan')), 'finite')])
def test_check_range_rejects(rng, msg):
    with pytest.raises(ValueError, match=msg): check_range('pred_mask_scale', rng)


def test_check_range_accepts():
    assert check_range('s', (0.15, 0.2)) == (0.15, 0.2)
    assert check_range('s', [1, 1]) == (1.0, 1.0)
    assert check_range('a', (0.75, 1.5), 0.0, math.inf) == (0.75, 1.5)
    assert check_range('a', (0.0, 0.5), 0.0, 1.0, lo_inclusive=True) == (0.0, 0.5)
    with pytest.raises(ValueError, match='finite'): check_range('a', (0.75, math.inf), 0.0, math.inf)


def test_bad_blocks_rejected():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match='does not fit'): sample_block_position(gen, (15, 3), (14, 14))
    with pytest.raises(ValueError, match='does not fit'): sample_block_position(gen, (3, 0), (14, 14))
    with pytest.raises(ValueError, match='sticks out'): block_indices(10, 0, (5, 5), (14, 14))
    with pytest.raises(ValueError, match='sticks out'): block_indices(0, -1, (5, 5), (14, 14))
    with pytest.raises(ValueError, match=r'\(0, 1\]'): block_size(1.5, 1.0, 14)
    with pytest.raises(ValueError, match='positive'): block_size(0.2, -1.0, 14)
