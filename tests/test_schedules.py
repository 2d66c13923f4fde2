"Tests of the schedules and AdamW parameter groups (nbs/09_schedules.ipynb): values, official semantics, groups."
import copy
import math
import re
import pytest
import torch
from torch import nn
import fastcore.test as fct
from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.ema import ema_momentum, make_target_encoder
from ijepa_edu.schedules import lr_at, wd_at, schedule_lengths, param_groups, set_lr_wd

torch.set_num_threads(1)


# --- naive stateful re-implementations of the official schedulers' semantics -------------------------------

class OfficialLR:
    "Warmup + cosine, stateful; the counter is incremented before each value; T_max loses the warmup."
    def __init__(self, opt, warmup_steps, start_lr, ref_lr, T_max, final_lr=0.0):
        self.opt, self.w, self.s, self.r, self.f, self.T, self.n = opt, warmup_steps, start_lr, ref_lr, final_lr, T_max - warmup_steps, 0
    def step(self):
        self.n += 1
        if self.n < self.w: lr = self.s + (self.n / max(1, self.w)) * (self.r - self.s)
        else:
            t = (self.n - self.w) / max(1, self.T)
            lr = max(self.f, self.f + (self.r - self.f) * 0.5 * (1.0 + math.cos(math.pi * t)))
        for g in self.opt.param_groups: g['lr'] = lr
        return lr


class OfficialWD:
    "Cosine weight decay, stateful, clamped at final_wd; skips groups marked WD_exclude."
    def __init__(self, opt, ref_wd, T_max, final_wd=0.0):
        self.opt, self.r, self.f, self.T, self.n = opt, ref_wd, final_wd, T_max, 0
    def step(self):
        self.n += 1
        t = self.n / self.T
        wd = self.f + (self.r - self.f) * 0.5 * (1.0 + math.cos(math.pi * t))
        wd = max(self.f, wd) if self.f <= self.r else min(self.f, wd)
        for g in self.opt.param_groups:
            if not g.get('WD_exclude', False): g['weight_decay'] = wd
        return wd


def official_groups(encoder, predictor):
    dec = lambda m: [p for n, p in m.named_parameters() if 'bias' not in n and p.ndim != 1]
    exc = lambda m: [p for n, p in m.named_parameters() if 'bias' in n or p.ndim == 1]
    return [{'params': dec(encoder)}, {'params': dec(predictor)},
            {'params': exc(encoder), 'WD_exclude': True, 'weight_decay': 0},
            {'params': exc(predictor), 'WD_exclude': True, 'weight_decay': 0}]


def small_models(seed=0, dim=24, pdim=12, depth=1):
    torch.manual_seed(seed)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=dim, depth=depth, num_heads=2)   # 4x4 grid
    pred = vit_predictor(num_patches=16, embed_dim=dim, predictor_embed_dim=pdim, depth=depth, num_heads=2)
    return enc, pred


# --- values at chosen steps ---------------------------------------------------------------------------------

def test_lr_values_at_chosen_steps():
    w, T = 10, 110
    fct.test_close(lr_at(0, w, T), 2e-4, eps=1e-15)                 # the warmup's start (never used by an update)
    fct.test_close(lr_at(1, w, T), 2e-4 + 0.1 * 8e-4, eps=1e-15)     # the first update
    fct.test_close(lr_at(5, w, T), 6e-4, eps=1e-15)                  # halfway up
    fct.test_close(lr_at(10, w, T), 1e-3, eps=1e-15)                 # the peak, at the end of the warmup
    fct.test_close(lr_at(60, w, T), (1e-3 + 1e-6) / 2, eps=1e-15)    # halfway down the cosine: its midpoint
    fct.test_close(lr_at(35, w, T), 1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 4)), eps=1e-15)
    assert lr_at(110, w, T) == 1e-6                                  # exactly final_lr at the end
    assert lr_at(160, w, T) == 1e-6 and lr_at(210, w, T) == 1e-6     # and held after it
    assert lr_at(1, 0, T) == pytest.approx(1e-3, rel=1e-3)           # no warmup: starts at the peak


def test_wd_values_at_chosen_steps():
    T = 100
    assert wd_at(0, T) == pytest.approx(0.04)
    assert wd_at(50, T) == pytest.approx(0.22)
    assert wd_at(25, T) == pytest.approx(0.4 + (0.04 - 0.4) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert wd_at(100, T) == 0.4
    assert wd_at(150, T) == 0.4 and wd_at(200, T) == 0.4             # held at final_wd past the end (a cosine would come back)
    assert wd_at(150, T, ref_wd=0.4, final_wd=0.04) == 0.04          # a decreasing schedule is held from above


def test_schedule_lengths_of_the_paper_runs():
    ipe1k = 1_281_167 // 2048
    assert ipe1k == 625
    assert schedule_lengths(ipe1k, 300, 40) == (25_000, 187_500)     # in1k_vith14 and in1k_vith16_448
    assert schedule_lengths(ipe1k, 300, 40, ipe_scale=1.25) == (25_000, 234_375)   # the warmup is not stretched
    assert schedule_lengths(390, 2, 0.1) == (39, 780)                # fractional warmup truncates like int()


# --- the same numbers as the official stateful schedulers ----------------------------------------------------

@pytest.mark.parametrize('ipe,epochs,warmup,ipe_scale', [(10, 10, 2, 1.0), (7, 3, 0, 1.0), (13, 5, 0.5, 1.0),
                                                          (10, 8, 1, 1.25), (390, 2, 0.1, 1.0), (625, 30, 4, 1.0)])
def test_equal_to_official_schedulers_over_a_whole_run(ipe, epochs, warmup, ipe_scale):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{'params': [p]}, {'params': [], 'WD_exclude': True, 'weight_decay': 0}])
    w, T = schedule_lengths(ipe, epochs, warmup, ipe_scale)
    lr_s, wd_s = OfficialLR(opt, w, 2e-4, 1e-3, T, 1e-6), OfficialWD(opt, 0.04, T, 0.4)
    moms = (0.996 + i * (1.0 - 0.996) / (ipe * epochs * ipe_scale) for i in range(int(ipe * epochs * ipe_scale) + 1))
    for s in range(int(epochs * ipe)):
        assert lr_at(s + 1, w, T) == lr_s.step()
        assert wd_at(s + 1, T) == wd_s.step()
        assert ema_momentum(s, T) == next(moms)
    assert opt.param_groups[1]['weight_decay'] == 0                  # the excluded group never got a weight decay


def test_resume_needs_no_replay():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))])
    s = OfficialLR(opt, 100, 2e-4, 1e-3, 1000, 1e-6)
    for _ in range(537): s.step()
    assert s.step() == lr_at(538, 100, 1000)


def test_schedule_shapes():
    w, T = 50, 400
    lrs = [lr_at(s, w, T) for s in range(1, T + 1)]
    assert all(a < b for a, b in zip(lrs[:w - 1], lrs[1:w]))         # strictly up during the warmup
    assert all(a >= b for a, b in zip(lrs[w - 1:], lrs[w:]))          # never up after it
    assert all(1e-6 <= v <= 1e-3 + 1e-15 for v in lrs)
    wds = [wd_at(s, T) for s in range(T + 1)]
    assert all(a <= b for a, b in zip(wds, wds[1:])) and all(0.04 - 1e-15 <= v <= 0.4 for v in wds)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='step must be >= 0'): lr_at(-1, 10, 100)
    with pytest.raises(ValueError, match='warmup_steps must be >= 0'): lr_at(1, -1, 100)
    with pytest.raises(ValueError, match='total_steps must be positive'): lr_at(1, 0, 0)
    with pytest.raises(ValueError, match='total_steps must be positive'): wd_at(1, 0)
    with pytest.raises(ValueError, match='step must be >= 0'): wd_at(-1, 10)
    with pytest.raises(ValueError, match='smaller than one global batch'): schedule_lengths(0, 10, 1)


# --- parameter groups -----------------------------------------------------------------------------------------

DECAYED = re.compile(r'(patch_embed\.proj|qkv|attn\.proj|fc1|fc2|predictor_embed|predictor_proj)\.weight$|mask_token$')
NOT_DECAYED = re.compile(r'\.bias$|(norm1|norm2|norm|predictor_norm)\.weight$')


@pytest.mark.parametrize('depth', [1, 3])
def test_param_groups_hold_exactly_the_right_tensors(depth):
    enc, pred = small_models(depth=depth)
    named = {f'e.{n}': p for n, p in enc.named_parameters()} | {f'p.{n}': p for n, p in pred.named_parameters()}
    want_decay = {n for n in named if DECAYED.search(n)}
    want_plain = {n for n in named if NOT_DECAYED.search(n)}
    assert want_decay.isdisjoint(want_plain) and want_decay | want_plain == set(named)
    name_of = {id(p): n for n, p in named.items()}
    decay, plain = param_groups(enc, pred)
    assert [name_of[id(p)] for p in decay['params']] == [n for n in named if n in want_decay]   # same order too
    assert {name_of[id(p)] for p in plain['params']} == want_plain
    assert 'p.mask_token' in want_decay                              # decayed, as officially
    assert decay['apply_wd'] is True and plain['apply_wd'] is False and plain['weight_decay'] == 0.0
    # the same partition as the official four groups
    off = official_groups(enc, pred)
    assert {id(p) for p in decay['params']} == {id(p) for g in off[:2] for p in g['params']}
    assert {id(p) for p in plain['params']} == {id(p) for g in off[2:] for p in g['params']}


def test_param_groups_skip_frozen_and_repeated():
    enc, pred = small_models()
    base = [len(g['params']) for g in param_groups(enc, pred)]
    assert [len(g['params']) for g in param_groups(enc, pred, make_target_encoder(enc), pred, enc)] == base
    torch.optim.AdamW(param_groups(enc, pred, enc))                  # AdamW accepts it (no parameter in two groups)
    enc.norm.weight.requires_grad_(False)
    assert sum(len(g['params']) for g in param_groups(enc, pred)) == sum(base) - 1


def test_bare_module_bias_is_found_by_name():
    class TwoD(nn.Module):                                           # a 2-D parameter named 'bias' is still a bias
        def __init__(self):
            super().__init__(); self.weight = nn.Parameter(torch.ones(2, 2)); self.bias = nn.Parameter(torch.zeros(1, 2))
    decay, plain = param_groups(TwoD())
    assert [p.shape for p in decay['params']] == [(2, 2)] and [p.shape for p in plain['params']] == [(1, 2)]


def test_set_lr_wd_with_zero_gradients_only_decays_the_decayed_group():
    enc, pred = small_models()
    named = [*enc.named_parameters(), *pred.named_parameters()]
    start = {n: p.detach().clone() for n, p in named}
    decay_ids = {id(p) for p in param_groups(enc, pred)[0]['params']}
    opt = torch.optim.AdamW(param_groups(enc, pred), weight_decay=0.123)
    T, shrink = 12, 1.0
    for s in range(T):
        lr, wd = lr_at(s + 1, 4, T, start_lr=0.05, ref_lr=0.3), wd_at(s + 1, T)
        set_lr_wd(opt, lr, wd)
        assert [g['weight_decay'] for g in opt.param_groups] == [wd, 0.0] and all(g['lr'] == lr for g in opt.param_groups)
        for _, p in named: p.grad = torch.zeros_like(p)
        opt.step()
        shrink *= 1 - lr * wd
    for n, p in named:
        expect = start[n] * (shrink if id(p) in decay_ids else 1.0)
        fct.test_close(p.detach(), expect, eps=1e-6)


def test_set_lr_wd_on_plain_groups_sets_both():
    opt = torch.optim.AdamW([nn.Parameter(torch.ones(2, 2))], lr=1.0, weight_decay=0.0)
    set_lr_wd(opt, 3e-4, 0.07)
    assert opt.param_groups[0]['lr'] == 3e-4 and opt.param_groups[0]['weight_decay'] == 0.07


def test_training_matches_the_official_groups_and_schedulers():
    "Official four groups + stateful schedulers and ours drive two copies of a model to the same weights."
    enc, pred = small_models(seed=3)
    enc2, pred2 = copy.deepcopy(enc), copy.deepcopy(pred)
    w, T = schedule_lengths(3, 5, 1)
    opt1 = torch.optim.AdamW(official_groups(enc, pred))
    s1, s2 = OfficialLR(opt1, w, 2e-4, 1e-3, T, 1e-6), OfficialWD(opt1, 0.04, T, 0.4)
    opt2 = torch.optim.AdamW(param_groups(enc2, pred2))
    m_ctx, m_tgt = torch.tensor([[0, 1, 4, 5, 8, 9]] * 2), torch.tensor([[10, 11, 14, 15]] * 2)
    g = torch.Generator().manual_seed(0)
    for s in range(T):
        s1.step(); s2.step(); set_lr_wd(opt2, lr_at(s + 1, w, T), wd_at(s + 1, T))
        x, y = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 4, 24, generator=g)
        for e, p, opt in ((enc, pred, opt1), (enc2, pred2, opt2)):
            loss = (p(e(x, [m_ctx]), [m_ctx], [m_tgt]) - y).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step()
    for a, b in zip([*enc.parameters(), *pred.parameters()], [*enc2.parameters(), *pred2.parameters()]):
        fct.test_close(a, b, eps=1e-6)
