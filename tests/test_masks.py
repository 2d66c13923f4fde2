"""Property tests of the mask collator (ijepa_edu.masks) over many seeds, in both modes (the vectorised sampler and
the per-image loop it is tested against), the statistical test that they draw alike (ijepa_edu.mask_stats), and the
figure functions (ijepa_edu.mask_figures). The lessons' own tests live in nbs/03_context.ipynb, 04_masks.ipynb, 21_masks_fast.ipynb, 22_mask_stats.ipynb and
23_mask_figures.ipynb."""
import math

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
import fastcore.test as fct

from ijepa_edu.blocks import block_size, block_indices
from ijepa_edu.masks import MaskCollator, OFFICIAL_QUIRKS, block_sizes, boxes_to_masks
from ijepa_edu.mask_stats import mask_coverage, chi2_two_sample, coverage_test, compare_samplers
from ijepa_edu.mask_figures import show_masks, show_batch_masks, show_coverage, show_block_sizes, mask_explorer

PAPER = dict(input_size=224, patch_size=16)   # 14x14 grid, paper mask settings (the defaults)
TOY = dict(input_size=32, patch_size=4)       # 8x8 grid


def shape_of(idx, cols):
    "(h, w) of a block from its raster indices, and whether the indices fill that rectangle exactly."
    rows, cs = idx // cols, idx % cols
    h, w = rows.max().item() - rows.min().item() + 1, cs.max().item() - cs.min().item() + 1
    return (h, w), len(idx) == h * w == len(set(idx.tolist()))


def within_ranges(h, w, n_grid, scale, aspect):
    """Can (h, w) come from some patch count n = int(n_grid * s), s in `scale`, and aspect a in `aspect`,
    with h = round(sqrt(n a)) and w = round(sqrt(n / a))? Rounding moves each side by at most 1/2, so
    n = sqrt(n a) * sqrt(n / a) lies in [(h-.5)(w-.5), (h+.5)(w+.5)] and a in [(h-.5)/(w+.5), (h+.5)/(w-.5)]."""
    n_lo, n_hi = int(n_grid * scale[0]), int(n_grid * scale[1])
    a_lo, a_hi = (h - .5) / (w + .5), (h + .5) / max(w - .5, 1e-9)
    return (h - .5) * (w - .5) <= n_hi and (h + .5) * (w + .5) >= n_lo and a_lo <= aspect[1] and a_hi >= aspect[0]


@pytest.fixture(autouse=True)
def one_thread_no_figures():
    "Small tensors: one torch thread; and no figure left open between tests."
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n); plt.close('all')


@pytest.mark.parametrize('fast', [True, False])
@pytest.mark.parametrize('official', [False, True])
def test_block_sizes_within_ranges(official, fast):
    mc = MaskCollator(**PAPER, official=official, fast=fast, seed=0)
    H, W = mc.grid
    for _ in range(20):
        for ctx, tgts in mc.draw(16):
            for t in tgts:
                (h, w), full = shape_of(t, W)
                assert full, 'a target block must be a full rectangle before collation'
                assert within_ranges(h, w, H * W, mc.pred_mask_scale, mc.aspect_ratio), (h, w)
    raw = MaskCollator(**PAPER, allow_overlap=True, official=official, fast=fast, seed=1)  # the raw context block
    for _ in range(20):
        for (c,), _ in raw.draw(16):
            (h, w), full = shape_of(c, W)
            assert full and within_ranges(h, w, H * W, raw.enc_mask_scale, (1.0, 1.0)), (h, w)


def test_within_ranges_rejects_wrong_sizes():
    "The size check itself must fail on blocks outside the ranges (so the test above can fail)."
    assert within_ranges(6, 6, 196, (0.15, 0.2), (0.75, 1.5))
    assert not within_ranges(8, 8, 196, (0.15, 0.2), (0.75, 1.5))   # 64 patches: too large
    assert not within_ranges(3, 3, 196, (0.15, 0.2), (0.75, 1.5))   # 9 patches: too small
    assert not within_ranges(9, 4, 196, (0.15, 0.2), (0.75, 1.5))   # aspect 2.25: too tall


@pytest.mark.parametrize('fast', [True, False])
@pytest.mark.parametrize('kw', [dict(**PAPER), dict(**TOY, min_keep=10), dict(**TOY, min_keep=4, official=True),
                                dict(**TOY, min_keep=20, pred_mask_scale=(0.25, 0.3), nenc=2)])
def test_no_target_in_context_and_min_keep(kw, fast):
    mc = MaskCollator(seed=0, fast=fast, **kw)
    strict = mc.quirks and 'strict_min_keep' in mc.quirks
    for _ in range(10):
        for ctxs, tgts in mc.draw(32):
            union = torch.cat(tgts)
            for c in ctxs:
                if not strict: assert not torch.isin(c, union).any()   # the relaxed official rule may leak
                assert len(c) > mc.min_keep if strict else len(c) >= mc.min_keep
        masks_enc, masks_pred = mc.sample(32)
        for e in masks_enc:                                            # collation keeps subsets of the context
            for p in masks_pred: assert strict or not (e.unsqueeze(2) == p.unsqueeze(1)).any()


def test_every_patch_reachable_by_default():
    ctx, tgt = mask_coverage(MaskCollator(**PAPER, seed=0), n_batches=12, batch_size=64)
    assert ctx.shape == tgt.shape == (14, 14)
    assert (ctx > 0).all() and (tgt > 0).all()


@pytest.mark.parametrize('fast', [True, False])
def test_exclusive_bound_never_reaches_last_row_and_column(fast):
    ctx, tgt = mask_coverage(MaskCollator(**PAPER, official={'exclusive_bound'}, fast=fast, seed=0), n_batches=6, batch_size=64)
    for m in (ctx, tgt):
        assert m[-1].sum() == 0 and m[:, -1].sum() == 0
        assert (m[:-1, :-1] > 0).all()                     # everything else is reached
    # the raw context block is always the same 13x13 square at the origin
    raw = MaskCollator(**PAPER, official={'exclusive_bound'}, allow_overlap=True, fast=fast, seed=0)
    origin = torch.tensor([r * 14 + c for r in range(13) for c in range(13)])
    for (c,), _ in raw.draw(50): assert torch.equal(c, origin)


@pytest.mark.parametrize('fast', [True, False])
def test_same_seed_same_masks_different_seed_different_masks(fast):
    a, b, c = (MaskCollator(**PAPER, fast=fast, seed=s).sample(8) for s in (0, 0, 1))
    for x, y in zip(a[0] + a[1], b[0] + b[1]): assert torch.equal(x, y)
    assert any(x.shape != z.shape or not torch.equal(x, z) for x, z in zip(a[0] + a[1], c[0] + c[1]))
    torch.manual_seed(5); d = MaskCollator(**PAPER, fast=fast).sample(8)     # seed=None follows torch's seed
    torch.manual_seed(5); e = MaskCollator(**PAPER, fast=fast).sample(8)
    for x, y in zip(d[0] + d[1], e[0] + e[1]): assert torch.equal(x, y)


@pytest.mark.parametrize('fast', [True, False])
@pytest.mark.parametrize('official', [False, True])
def test_output_shapes_and_dtype(official, fast):
    mc = MaskCollator(**PAPER, nenc=2, npred=3, official=official, fast=fast, seed=0)
    masks_enc, masks_pred = mc.sample(5)
    assert len(masks_enc) == 2 and len(masks_pred) == 3
    for group in (masks_enc, masks_pred):
        ks = {m.shape[1] for m in group}
        assert len(ks) == 1                                     # one K per group (the batch minimum)
        for m in group:
            assert m.dtype == torch.long and m.ndim == 2 and m.shape[0] == 5
            assert m.min() >= 0 and m.max() < 196
            assert torch.equal(m, m.sort(dim=1).values)         # raster order within each row
            assert all(len(set(r.tolist())) == len(r) for r in m)  # no repeated patch


@pytest.mark.parametrize('fast', [True, False])
def test_truncation_keeps_first_or_random_subset(fast):
    "`draw` and `sample` with one seed see the same draw, in both modes, so the cut can be checked against it."
    drawn = MaskCollator(**PAPER, fast=fast, seed=3).draw(16)
    (ef,), pf = MaskCollator(**PAPER, truncate='first', fast=fast, seed=3).sample(16)
    (er,), pr = MaskCollator(**PAPER, truncate='random', fast=fast, seed=3).sample(16)
    k = min(len(c[0]) for c, _ in drawn)
    assert ef.shape == er.shape == (16, k)
    for b, ((c,), _) in enumerate(drawn):
        assert torch.equal(ef[b], c[:k])
        assert torch.isin(er[b], c).all()
    for b, (_, ts) in enumerate(drawn):                      # targets: a subset (or the head) of each block
        for j, t in enumerate(ts):
            assert torch.equal(pf[j][b], t[:pf[j].shape[1]]) and torch.isin(pr[j][b], t).all()


def test_truncation_bias():
    """'first' keeps the top of the context, 'random' does not. By symmetry (block positions and the random cut are
    symmetric top to bottom) the default's mean kept row is exactly the centre, 6.5, in expectation. Each batch's mean
    kept row is one sample (tokens of one batch are correlated, batches are independent); with 40 batches the
    standard error of the mean is sd / sqrt(40), about 0.04 rows here. We require 'random' within 4 standard errors
    (+0.1 row of slack) of the centre, a false alarm under 1 in 10,000 for a correct sampler, and 'first' more than
    1.5 rows above the centre: it sits about 2.4 rows above (over 25 of its standard errors), and any truncation
    that keeps a raster-order head must lose bottom rows."""
    centre = (14 - 1) / 2
    means = {}
    for t in ('first', 'random'):
        mc = MaskCollator(**PAPER, truncate=t, seed=0)
        means[t] = torch.stack([(mc.sample(32)[0][0] // 14).float().mean() for _ in range(40)])  # (40,) batch means
    se = means['random'].std() / math.sqrt(40)
    assert abs(means['random'].mean() - centre) < 4 * se + 0.1, (means['random'].mean(), se)
    assert means['first'].mean() < centre - 1.5, means['first'].mean()
    assert (means['random'].mean() - means['first'].mean()) > 10 * se


def test_official_quirks_each():
    sizes = lambda mc: {tuple(len(t) for t in p) for _, p in mc.draw(32)}
    assert len(sizes(MaskCollator(**PAPER, official={'shared_size'}, seed=0))) == 1
    assert len(sizes(MaskCollator(**PAPER, seed=0))) > 1
    assert MaskCollator(**PAPER, official={'truncate_first'}).truncate == 'first'
    # coupled draw: only the smallest blocks are wide (h < w) on 14x14
    mc = MaskCollator(**PAPER, official={'coupled_draw'}, seed=0)
    hw = torch.tensor([shape_of(t, 14)[0] for _, p in mc.draw(200) for t in p])
    wide = hw[:, 0] < hw[:, 1]
    assert wide.any() and (hw[wide].prod(1) == hw.prod(1).min()).all()
    # strict min_keep: strictly more than min_keep, and relaxed contexts may overlap a target
    kw = dict(**TOY, pred_mask_scale=(0.3, 0.35), min_keep=12)
    g = torch.Generator().manual_seed(0)
    strict = MaskCollator(official={'strict_min_keep'}, **kw)
    leaks = sum(bool(torch.isin(c, torch.cat(t)).any()) for (c,), t in (strict.sample_image(g) for _ in range(300)))
    assert leaks > 0


@pytest.mark.parametrize('fast', [True, False])
def test_official_hang_raises_instead(fast):
    "On 8x8 with min_keep=10 the official sampler loops forever for about half the batches; we raise."
    errors = 0
    for s in range(60):
        try: MaskCollator(**TOY, min_keep=10, official=True, fast=fast, seed=s).sample(4)
        except RuntimeError as e:
            assert 'loops forever' in str(e); errors += 1
    assert 10 < errors < 50
    for s in range(20): MaskCollator(**TOY, min_keep=10, fast=fast, seed=s).sample(4)   # default: min_keep is context-only


def _loader(mc, workers, seed=0):
    ds = TensorDataset(torch.rand(16, 3, 32, 32), torch.arange(16))
    torch.manual_seed(seed)
    return list(DataLoader(ds, batch_size=4, collate_fn=mc, num_workers=workers))


@pytest.mark.parametrize('workers', [0, 2])
def test_dataloader_collate_fn(workers):
    batches = _loader(MaskCollator(**TOY, min_keep=4), workers)
    assert len(batches) == 4
    for (imgs, labels), masks_enc, masks_pred in batches:
        assert imgs.shape == (4, 3, 32, 32) and labels.shape == (4,)
        assert len(masks_enc) == 1 and len(masks_pred) == 4
        assert all(m.dtype == torch.long and m.shape[0] == 4 for m in masks_enc + masks_pred)
    if workers:   # batch 0 comes from worker 0, batch 1 from worker 1: their masks must differ
        m0, m1 = batches[0][1][0], batches[1][1][0]
        assert m0.shape != m1.shape or not torch.equal(m0, m1)
        again = _loader(MaskCollator(**TOY, min_keep=4), workers)   # same torch seed: same masks
        for b, c in zip(batches, again):
            for x, y in zip(b[1] + b[2], c[1] + c[2]): assert torch.equal(x, y)


@pytest.mark.parametrize('kw, msg', [
    (dict(input_size=225), 'not divisible by patch size 16'),
    (dict(input_size=(224, 200), patch_size=16), 'not divisible'),
    (dict(pred_mask_scale=(0.0, 0.2)), 'must lie in (0.0, 1.0]'),
    (dict(enc_mask_scale=(0.85, 1.5)), 'must lie in (0.0, 1.0]'),
    (dict(pred_mask_scale=(0.2, 0.15)), 'reversed'),
    (dict(enc_mask_scale=(1.0, 0.85)), 'reversed'),
    (dict(aspect_ratio=(-1, 1.5)), 'aspect_ratio'),
    (dict(pred_mask_scale=0.2), 'pair of numbers'),
    (dict(input_size=16, official=True), 'at least 2x2'),
    (dict(**TOY, min_keep=70), 'min_keep=70 is impossible on a 8x8 grid'),
    (dict(**TOY, min_keep=60), 'is impossible'),
    (dict(**TOY, min_keep=50, official={'exclusive_bound'}, allow_overlap=True), 'is impossible'),  # 7x7 at most
    (dict(min_keep=0), 'min_keep must be an integer >= 1'),
    (dict(npred=0), 'npred must be an integer >= 1'),
    (dict(official={'shared_size', 'no_such_quirk'}), 'Unknown official quirks'),
    (dict(official='truncate'), 'Unknown official quirks'),
    (dict(truncate='last'), "truncate must be 'random', 'first' or 'pad'"), (dict(pad_to='longest'), "pad_to must be 'batch' or 'max'"),
])
def test_bad_inputs(kw, msg):
    with pytest.raises(ValueError) as e: MaskCollator(**kw)
    assert msg in str(e.value)


@pytest.mark.parametrize('fast', [True, False])
def test_hopeless_settings_raise_not_hang(fast):
    with pytest.raises(RuntimeError, match='could not keep 50 context patches in 100 draws'):
        MaskCollator(**TOY, min_keep=50, fast=fast, seed=0).sample(2)


def test_quirk_names():
    fct.test_eq(set(OFFICIAL_QUIRKS), {'shared_size', 'coupled_draw', 'exclusive_bound', 'strict_min_keep', 'truncate_first'})
    fct.test_eq(MaskCollator(official=True).quirks, set(OFFICIAL_QUIRKS))
    fct.test_eq(MaskCollator(official='coupled_draw').quirks, {'coupled_draw'})


# ---- the fast path against the teaching loop

def test_fast_is_the_default_and_the_switch_works():
    assert MaskCollator().fast and not MaskCollator(fast=False).fast
    assert 'fast=False' in repr(MaskCollator(fast=False)) and 'fast' not in repr(MaskCollator())
    (imgs,), masks_enc, masks_pred = MaskCollator(**TOY, min_keep=4, seed=0)([(torch.rand(3, 32, 32),)] * 5)  # __call__
    assert imgs.shape == (5, 3, 32, 32) and len(masks_enc) == 1 and len(masks_pred) == 4
    assert all(m.dtype == torch.long and m.shape[0] == 5 for m in masks_enc + masks_pred)


@pytest.mark.parametrize('grid', [(14, 14), (16, 16), (8, 8), (5, 9)])
def test_block_sizes_equal_block_size_exactly(grid):
    g = torch.Generator().manual_seed(0)
    s, a = torch.rand(3000, generator=g) * 0.99 + 0.01, torch.rand(3000, generator=g) * 4 + 0.2
    s[:100] = torch.tensor([k / (grid[0] * grid[1]) for k in range(1, 101)]).clamp(max=1)  # exact patch counts: rounding ties
    h, w = block_sizes(s, a, grid)
    ref = torch.tensor([block_size(si, ai, grid) for si, ai in zip(s.tolist(), a.tolist())])
    assert torch.equal(torch.stack([h, w], 1), ref)


def test_boxes_to_masks_equal_block_indices():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        H, W = torch.randint(1, 12, (2,), generator=g).tolist()
        h, w = torch.randint(1, H + 1, (1,), generator=g).item(), torch.randint(1, W + 1, (1,), generator=g).item()
        top, left = torch.randint(0, H - h + 1, (1,), generator=g).item(), torch.randint(0, W - w + 1, (1,), generator=g).item()
        m = boxes_to_masks(*(torch.tensor(v) for v in (top, left, h, w)), (H, W))
        assert m.shape == (H, W) and torch.equal(m.flatten().nonzero()[:, 0], block_indices(top, left, (h, w), (H, W)))


def test_fast_corners_reach_every_position():
    "Every corner 0..H-h is drawn (the last included), never beyond; the official quirk never draws the last."
    for quirks, last in ((False, 1), ({'exclusive_bound'}, 0)):
        mc = MaskCollator(**PAPER, official=quirks)
        h = torch.full((20000,), 5); g = torch.Generator().manual_seed(0)
        top, left = mc._corners(g, h, h)
        assert set(top.tolist()) == set(left.tolist()) == set(range(14 - 5 + last))


SAME = {'paper 14x14': dict(**PAPER),
        'paper 16x16, first': dict(input_size=224, patch_size=14, truncate='first'),
        '8x8 min_keep=20 (1 draw in 12 redrawn)': dict(**TOY, min_keep=20),
        'official, all but shared_size': dict(**PAPER, official={'coupled_draw', 'exclusive_bound', 'strict_min_keep', 'truncate_first'}),
        '8x8 official relaxation': dict(**TOY, official={'strict_min_keep'}, pred_mask_scale=(0.3, 0.35), min_keep=12)}


@pytest.mark.parametrize('name', list(SAME))
def test_fast_and_loop_draw_alike(name):
    """Two-sample tests (chi-square on the first target's height, width, top, left, the context size and the kept
    lengths; Bonferroni-corrected z-tests on per-patch coverage) between 768 images of each path. With these
    fixed seeds the smallest p-value of each setting is printed; a correct sampler has p < 0.001 on any one
    statistic with probability 0.001, and a wrong one by a patch scores below 1e-6 (next test)."""
    kw = SAME[name]
    p = compare_samplers(MaskCollator(**kw), MaskCollator(fast=False, **kw), n_batches=12, batch_size=64, seed=0)
    print(name, {k: round(v, 3) for k, v in p.items()})
    assert min(p.values()) > 1e-3, p


class _OffByOneCorner(MaskCollator):
    "The fast sampler with the official exclusive bound on corners: one position too few."
    def _corners(self, gen, h, w):
        H, W = self.grid
        u = torch.rand((2, *h.shape), generator=gen, dtype=torch.float64)
        return (u[0] * (H - h)).floor().long(), (u[1] * (W - w)).floor().long()


class _OffByOneWidth(MaskCollator):
    "The fast sampler with one target in five one patch narrower."
    def _sizes(self, gen, shape, scale, aspect):
        h, w = MaskCollator._sizes(self, gen, shape, scale, aspect)
        return h, torch.where(torch.rand(shape, generator=gen) < 0.2, (w - 1).clamp(min=1), w)


def test_statistical_test_catches_an_off_by_one():
    p = compare_samplers(_OffByOneCorner(**PAPER), MaskCollator(**PAPER, fast=False), n_batches=12, seed=0)
    print('off-by-one corner', {k: f'{v:.2g}' for k, v in p.items()})
    assert p['target top'] < 1e-6 and p['target left'] < 1e-6 and p['context coverage'] < 1e-9, p
    p = compare_samplers(_OffByOneWidth(**PAPER), MaskCollator(**PAPER, fast=False), n_batches=12, seed=0)
    print('off-by-one width', {k: f'{v:.2g}' for k, v in p.items()})
    assert p['target width'] < 1e-6, p


def test_truncation_mode_is_told_apart():
    "Kept coverage separates 'first' from 'random': the test also sees the collation, not only the draw."
    kept = lambda mc: torch.cat([torch.zeros(64, 196, dtype=torch.bool).scatter_(1, mc.sample(64)[0][0], True) for _ in range(10)])
    same = coverage_test(kept(MaskCollator(**PAPER, seed=0)), kept(MaskCollator(**PAPER, fast=False, seed=1)))
    diff = coverage_test(kept(MaskCollator(**PAPER, seed=0)), kept(MaskCollator(**PAPER, truncate='first', fast=False, seed=1)))
    assert diff < 1e-9 < 1e-3 < same, (same, diff)


def test_shared_size_fast_and_loop_alike():
    "Under 'shared_size' images of a batch share one size, so compare one value per batch: the batch's target area."
    area = lambda mc: torch.tensor([mc.draw_masks(4)[1][0, 0].sum().item() for _ in range(300)])
    kw = dict(**PAPER, official={'shared_size'})
    a, b = area(MaskCollator(**kw, seed=0)), area(MaskCollator(**kw, fast=False, seed=1))
    assert chi2_two_sample(a, b) > 1e-3
    ctx, tgt = MaskCollator(**kw, seed=2).draw_masks(16)
    assert len(set(tgt.sum((2, 3)).flatten().tolist())) == 1


def test_two_sample_tests_are_calibrated():
    "Under the null hypothesis p-values are roughly uniform: about 5% below 0.05, not many more (nor none)."
    g = torch.Generator().manual_seed(0)
    chi = torch.tensor([chi2_two_sample(torch.randint(0, 8, (500,), generator=g), torch.randint(0, 8, (500,), generator=g))
                        for _ in range(300)])
    assert 0.02 < (chi < 0.05).float().mean() < 0.09
    cov = torch.tensor([coverage_test(torch.rand(300, 50, generator=g) < 0.3, torch.rand(300, 50, generator=g) < 0.3)
                        for _ in range(200)])
    assert (cov < 0.05).float().mean() < 0.09                 # Bonferroni: conservative
    assert chi2_two_sample(torch.zeros(50, dtype=torch.long), torch.zeros(50, dtype=torch.long)) == 1.0


# ---- figures (Agg backend) on odd sizes

@pytest.mark.parametrize('kw, B', [(dict(input_size=(64, 96), patch_size=16, min_keep=4), 3),  # 4x6 grid
                                   (dict(input_size=(96, 32), patch_size=16, min_keep=2, npred=2), 5),  # 6x2 grid
                                   (dict(**PAPER), 1)])                                            # batch of one
def test_figures_on_odd_sizes(kw, B):
    mc = MaskCollator(seed=0, **kw)
    (imgs,), masks_enc, masks_pred = mc([(torch.randn(3, *mc.grid) * 2,)] * B)   # normalised-looking images
    fig = show_batch_masks(masks_enc, masks_pred, mc.grid, imgs=imgs, title='odd')
    assert isinstance(fig, plt.Figure) and len(fig.axes) == math.ceil(min(B, 8) / min(4, B)) * min(4, B)
    for f in (show_coverage(mc, 2, B), show_block_sizes(mc, 2, B), show_coverage(maps=mask_coverage(mc, 1, B))):
        assert isinstance(f, plt.Figure)
    assert isinstance(show_batch_masks(masks_enc[0][0], [m[0] for m in masks_pred], mc.grid), plt.Figure)  # one image's (K,)


def test_show_masks_keeps_returning_axes():
    ax = show_masks([torch.arange(5)], [torch.tensor([7, 8])], (3, 4), img=Image.new('RGB', (40, 30)))
    assert isinstance(ax, plt.Axes)


def test_explorer_static_path():
    fig = mask_explorer(rows=5, cols=9, npred=2, min_keep=2, batch_size=1, img=Image.new('RGB', (90, 50)))
    assert isinstance(fig, plt.Figure) and 'batch 1' in fig._suptitle.get_text()   # no kernel here: one static figure
    fig = mask_explorer(interactive=False, official=True, rows=12, cols=12, batch_size=16)
    assert '12x12 grid' in fig._suptitle.get_text()
    with pytest.raises(ValueError, match='min_keep=70 is impossible'): mask_explorer(interactive=False, rows=8, cols=8, min_keep=70)
    with pytest.raises(ValueError, match='Unknown explorer settings'): mask_explorer(targets=3)


def test_explorer_widget_builds_and_redraws():
    box = mask_explorer(interactive=True, rows=8, cols=8, min_keep=4)
    assert set(box.controls) >= {'pred_mask_scale', 'enc_mask_scale', 'aspect_ratio', 'npred', 'min_keep', 'rows', 'cols', 'official'}
    box.controls['npred'].value = 2                            # a redraw; bad settings show their error, not raise
    box.controls['min_keep'].value = 70
    box.controls['min_keep'].value = 4
    data = box._repr_mimebundle_()
    assert 'image/png' in data and 'text/plain' in data        # a still for renderers without widgets


def test_the_sampler_never_imports_matplotlib():
    """A DataLoader worker imports the sampler to draw masks, never to plot them: in a fresh interpreter, importing
    `ijepa_edu.masks` (and the training modules that use it) leaves matplotlib unloaded. The figures live in
    `ijepa_edu.mask_figures`, which does import it."""
    import subprocess, sys
    code = ("import sys, ijepa_edu.masks; a = 'matplotlib' in sys.modules; "
            "import ijepa_edu.mask_stats, ijepa_edu.data, ijepa_edu.build, ijepa_edu.train; b = 'matplotlib' in sys.modules; "
            "import ijepa_edu.mask_figures; print(a, b, 'matplotlib' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ['False', 'False', 'True'], r.stdout
