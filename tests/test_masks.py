"Property tests of the mask collator (ijepa_edu.masks) over many seeds; the lesson's own tests live in nbs/03_masks.ipynb."
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
import fastcore.test as fct

from ijepa_edu.masks import MaskCollator, OFFICIAL_QUIRKS, mask_coverage

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


@pytest.mark.parametrize('official', [False, True])
def test_block_sizes_within_ranges(official):
    mc = MaskCollator(**PAPER, official=official, seed=0)
    H, W = mc.grid
    for _ in range(20):
        for ctx, tgts in mc.draw(16):
            for t in tgts:
                (h, w), full = shape_of(t, W)
                assert full, 'a target block must be a full rectangle before collation'
                assert within_ranges(h, w, H * W, mc.pred_mask_scale, mc.aspect_ratio), (h, w)
    raw = MaskCollator(**PAPER, allow_overlap=True, official=official, seed=1)  # the raw context block
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


@pytest.mark.parametrize('kw', [dict(**PAPER), dict(**TOY, min_keep=10), dict(**TOY, min_keep=4, official=True),
                                dict(**TOY, min_keep=20, pred_mask_scale=(0.25, 0.3), nenc=2)])
def test_no_target_in_context_and_min_keep(kw):
    mc = MaskCollator(seed=0, **kw)
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


def test_exclusive_bound_never_reaches_last_row_and_column():
    ctx, tgt = mask_coverage(MaskCollator(**PAPER, official={'exclusive_bound'}, seed=0), n_batches=6, batch_size=64)
    for m in (ctx, tgt):
        assert m[-1].sum() == 0 and m[:, -1].sum() == 0
        assert (m[:-1, :-1] > 0).all()                     # everything else is reached
    # the raw context block is always the same 13x13 square at the origin
    raw = MaskCollator(**PAPER, official={'exclusive_bound'}, allow_overlap=True, seed=0)
    origin = torch.tensor([r * 14 + c for r in range(13) for c in range(13)])
    for (c,), _ in raw.draw(50): assert torch.equal(c, origin)


def test_same_seed_same_masks_different_seed_different_masks():
    a, b, c = (MaskCollator(**PAPER, seed=s).sample(8) for s in (0, 0, 1))
    for x, y in zip(a[0] + a[1], b[0] + b[1]): assert torch.equal(x, y)
    assert any(x.shape != z.shape or not torch.equal(x, z) for x, z in zip(a[0] + a[1], c[0] + c[1]))
    torch.manual_seed(5); d = MaskCollator(**PAPER).sample(8)     # seed=None follows torch's seed
    torch.manual_seed(5); e = MaskCollator(**PAPER).sample(8)
    for x, y in zip(d[0] + d[1], e[0] + e[1]): assert torch.equal(x, y)


@pytest.mark.parametrize('official', [False, True])
def test_output_shapes_and_dtype(official):
    mc = MaskCollator(**PAPER, nenc=2, npred=3, official=official, seed=0)
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


def test_truncation_keeps_first_or_random_subset():
    drawn = MaskCollator(**PAPER, seed=3).draw(16)
    (ef,), _ = MaskCollator(**PAPER, truncate='first', seed=3).sample(16)
    (er,), _ = MaskCollator(**PAPER, truncate='random', seed=3).sample(16)
    k = min(len(c[0]) for c, _ in drawn)
    assert ef.shape == er.shape == (16, k)
    for b, ((c,), _) in enumerate(drawn):
        assert torch.equal(ef[b], c[:k])
        assert torch.isin(er[b], c).all()


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


def test_official_hang_raises_instead():
    "On 8x8 with min_keep=10 the official sampler loops forever for about half the batches; we raise."
    errors = 0
    for s in range(60):
        try: MaskCollator(**TOY, min_keep=10, official=True, seed=s).sample(4)
        except RuntimeError as e:
            assert 'loops forever' in str(e); errors += 1
    assert 10 < errors < 50
    for s in range(20): MaskCollator(**TOY, min_keep=10, seed=s).sample(4)   # default mode: min_keep is context-only


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
    (dict(truncate='last'), "truncate must be 'random' or 'first'"),
])
def test_bad_inputs(kw, msg):
    with pytest.raises(ValueError) as e: MaskCollator(**kw)
    assert msg in str(e.value)


def test_hopeless_settings_raise_not_hang():
    with pytest.raises(RuntimeError, match='could not keep 50 context patches in 100 draws'):
        MaskCollator(**TOY, min_keep=50, seed=0).sample(2)


def test_quirk_names():
    fct.test_eq(set(OFFICIAL_QUIRKS), {'shared_size', 'coupled_draw', 'exclusive_bound', 'strict_min_keep', 'truncate_first'})
    fct.test_eq(MaskCollator(official=True).quirks, set(OFFICIAL_QUIRKS))
    fct.test_eq(MaskCollator(official='coupled_draw').quirks, {'coupled_draw'})
