"Tests of the collapse diagnostics (nbs/12_diagnostics.ipynb): naive references, known values, invariances, errors."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
import fastcore.test as fct
from ijepa_edu.diagnostics import feature_std, effective_rank, position_share, collapse_report
from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.patches import get_2d_sincos_pos_embed

torch.set_num_threads(1)


def gen(seed): return torch.Generator().manual_seed(seed)


def feature_std_ref(x):
    x = np.asarray(x, dtype=np.float64)
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    return float(np.mean([z[:, j].std(ddof=1) for j in range(z.shape[1])]) * math.sqrt(z.shape[1]))


def rankme_ref(x, eps=1e-7):
    s = np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)   # small matrices: single-threaded LAPACK
    p = s / (s.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def position_share_ref(h):
    h = np.asarray(h, dtype=np.float64)
    grand = h.reshape(-1, h.shape[-1]).mean(0)
    between = sum(h.shape[0] * ((h[:, n].mean(0) - grand) ** 2).sum() for n in range(h.shape[1]))
    return float(between / ((h - grand) ** 2).sum())


@pytest.mark.parametrize('seed', range(4))
def test_against_naive_references(seed):
    g = gen(seed)
    B, D = 20 + 7 * seed, 12 + 5 * seed
    x = torch.randn(B, D, generator=g) * torch.rand(D, generator=g) + torch.randn(D, generator=g)  # uneven, offset
    assert abs(feature_std(x) - feature_std_ref(x)) < 1e-4
    assert abs(effective_rank(x) - rankme_ref(x)) < 1e-3 * rankme_ref(x)
    h = torch.randn(B, 9, D, generator=g) + torch.randn(9, D, generator=g)   # some position signal
    assert abs(position_share(h) - position_share_ref(h)) < 1e-4


def test_feature_std_known_values():
    g = gen(0)
    for D in (16, 64, 256):
        assert abs(feature_std(torch.randn(4096, D, generator=g)) - 1.0) < 0.03       # isotropic: about 1
    c = torch.randn(8, generator=g)
    assert feature_std(c.expand(32, 8)) == 0.0                                         # constant: exactly 0
    assert feature_std(c * (torch.rand(32, 1, generator=g) + 0.1)) == pytest.approx(0.0, abs=1e-5)  # one direction, any length
    x = torch.randn(64, 32, generator=g)
    assert feature_std(x) == pytest.approx(feature_std(3.7 * x), abs=1e-5)
    assert feature_std(x) == pytest.approx(feature_std(x[torch.randperm(64, generator=g)]), abs=1e-5)
    assert feature_std(x + 5) < 0.5 * feature_std(x)                                   # a shared offset lowers it


def test_effective_rank_known_values():
    g = gen(1)
    for k in (1, 2, 3, 5, 8):
        for B, D in ((100, 40), (30, 64)):
            x = torch.randn(B, k, generator=g) @ torch.randn(k, D, generator=g)       # rank k
            assert 0.9 <= effective_rank(x) <= k + 1e-2, (k, B, D, effective_rank(x))
        q, _ = torch.linalg.qr(torch.randn(50, k, generator=g, dtype=torch.float64))
        assert effective_rank(3 * q.float()) == pytest.approx(k, rel=1e-3)             # k equal singular values
    assert effective_rank(torch.ones(40, 10)) == pytest.approx(1.0, abs=1e-3)
    for B, D in ((16, 100), (100, 16)):
        assert effective_rank(torch.randn(B, D, generator=g)) <= min(B, D) + 1e-2
    x = torch.randn(80, 20, generator=g)
    assert effective_rank(x) == pytest.approx(effective_rank(1e-3 * x), rel=1e-3)
    narrow = x.clone(); narrow[:, 10:] = 0
    assert effective_rank(narrow) < effective_rank(x) - 5                              # dimensional collapse shows


def test_position_share_known_values():
    g = gen(2)
    pos = get_2d_sincos_pos_embed(32, 4)                                               # (16, 32)
    assert position_share(pos.expand(6, 16, 32)) == pytest.approx(1.0, abs=1e-5)      # position only
    for B in (8, 32, 128):
        s = position_share(torch.randn(B, 16, 32, generator=g))
        assert 0.7 / B < s < 1.3 / B, (B, s)                                           # noise: about 1/B
    h = pos + 0.5 * torch.randn(64, 16, 32, generator=g)
    s = position_share(h)
    assert 0 < s < 1
    assert position_share(2 * h + 3) == pytest.approx(s, abs=1e-5)
    assert position_share(h[torch.randperm(64, generator=g)]) == pytest.approx(s, abs=1e-5)
    assert position_share(pos + 0.1 * torch.randn(64, 16, 32, generator=g)) > s      # weaker content, larger share
    assert math.isnan(position_share(torch.ones(4, 16, 32)))                           # nothing varies


def test_errors():
    fct.test_fail(lambda: feature_std(torch.randn(1, 4)), contains='at least 2 images')
    fct.test_fail(lambda: feature_std(torch.randn(3, 4, 5)), contains='must be (B, D)')
    fct.test_fail(lambda: effective_rank(torch.randn(4)), contains='must be (B, D)')
    fct.test_fail(lambda: position_share(torch.randn(4, 5)), contains='(B, N, D)')
    fct.test_fail(lambda: position_share(torch.randn(1, 4, 5)), contains='B >= 2')


class ConstantEncoder(nn.Module):
    "A fully collapsed encoder: the same tokens for every image."
    embed_dim = 24
    def __init__(self): super().__init__(); self.t = nn.Parameter(torch.randn(16, 24))
    def forward(self, x): return self.t.expand(len(x), -1, -1)


def test_collapse_report():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3)
    imgs = torch.randn(32, 3, 16, 16)
    r = collapse_report(enc, imgs)
    assert set(r) == {'feat_std', 'rankme', 'pos_share'} and all(isinstance(v, float) for v in r.values())
    with torch.no_grad(): h = F.layer_norm(enc(imgs), (24,))
    assert r == {'feat_std': feature_std(h.mean(1)), 'rankme': effective_rank(h.mean(1)), 'pos_share': position_share(h)}
    c = collapse_report(ConstantEncoder(), imgs)
    assert c['feat_std'] < 1e-3 and c['rankme'] < 1.01 and c['pos_share'] == pytest.approx(1.0, abs=1e-4)
    assert c['feat_std'] < 0.1 and c['rankme'] < 2                                      # train.py's warning fires
    assert not (r['feat_std'] < 0.1 and r['rankme'] < 2)
    assert all(math.isnan(v) for v in collapse_report(enc, imgs[:1]).values())           # one image: a gap, not a crash


def test_small_patches_are_position_dominated():
    "At initialisation a 4-px patch embeds weakly, so position explains more of the targets than with 8-px patches."
    torch.manual_seed(0)
    imgs = torch.randn(32, 3, 32, 32)
    share = {}
    for patch in (4, 8):
        torch.manual_seed(0)
        enc = VisionTransformer(img_size=32, patch_size=patch, embed_dim=48, depth=2, num_heads=3)
        share[patch] = collapse_report(enc, imgs)['pos_share']
    assert share[4] > share[8] + 0.1, share
