"""The exercise checkers (issue 13): each passes the library's own function, fails plausible wrong answers with a printed
line that names the mistake, and never raises, whatever the student's function does."""
import itertools, math
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import ijepa_edu.checks as checks
import ijepa_edu.checks_training as checks_training
from test_checks_training_new import LIBRARY as LIBRARY_11_13, WRONG as WRONG_11_13
from ijepa_edu.masks import MaskCollator
from ijepa_edu.patches import patchify
from ijepa_edu.blocks import block_indices, block_size, sample_block_position, sample_block_size
from ijepa_edu.encoder import apply_masks
from ijepa_edu.predictor import repeat_interleave_batch
from ijepa_edu.ema import ema_update
from ijepa_edu.step import target_features
from ijepa_edu.schedules import lr_at
from ijepa_edu.diagnostics import position_share
from ijepa_edu.probes import knn_predict


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest's: tiny cases on shared cores run as fast on one thread


def _equalise(gen, masks):
    "The collator's own random cut (`MaskCollator._equalise`), on one mask per image."
    return MaskCollator(truncate='random')._equalise(gen, [[m] for m in masks])[0]


def _equalise_unseeded(gen, masks, _calls=itertools.count()):
    "Ignores `gen`: two generators taken in turn, so two calls in a row never cut alike (seeds 0 and 1 differ here)."
    return _equalise(torch.Generator().manual_seed(next(_calls) % 2), masks)


def test_unseeded_cuts_differ():
    "The wrong answer above differs between calls on the checker's own case, so its report is certain."
    ms = [torch.arange(4), torch.arange(10)]
    assert not torch.equal(_equalise(torch.Generator().manual_seed(0), ms), _equalise(torch.Generator().manual_seed(1), ms))


def _target_block(gen, scale, aspect, grid):
    size = sample_block_size(gen, scale, aspect, grid)
    return block_indices(*sample_block_position(gen, size, grid), size, grid)


LIBRARY = {'check_patchify': patchify, 'check_block_indices': block_indices,
           'check_sample_block_position': sample_block_position, 'check_sample_target_block': _target_block,
           'check_equalise': _equalise,
           'check_apply_masks': apply_masks, 'check_repeat_interleave_batch': repeat_interleave_batch,
           'check_ema_update': ema_update, 'check_target_features': target_features, 'check_lr_schedule': lr_at,
           'check_position_share': position_share, 'check_knn_predict': knn_predict,
           'check_make_targets': lambda model, patches, tgt: model.make_targets(patches, tgt),
           'check_remove_overlap': checks._remove_overlap}
LIBRARY.update(LIBRARY_11_13)             # lessons 11-13's checkers: their cases live in test_checks_training_new.py
MODULES = (checks, checks_training)       # the checkers of lessons 01-06, and of the training lessons
CHECKER_OF = {n: getattr(m, n) for m in MODULES for n in m.__all__ if n.startswith('check_')}
CHECKERS = sorted(CHECKER_OF)


def grade(name, fn, capsys):
    "(returned value, printed lines) of checker `name` on `fn`."
    ok = CHECKER_OF[name](fn)
    return ok, capsys.readouterr().out.splitlines()


def test_every_checker_is_tested():
    assert sorted(LIBRARY) == CHECKERS


@pytest.mark.parametrize('name', CHECKERS)
def test_library_passes(name, capsys):
    ok, lines = grade(name, LIBRARY[name], capsys)
    assert ok is True, lines
    assert lines[-1] == f'{name}: all {len(lines) - 1} checks passed' and all(l.startswith('✓ ') for l in lines[:-1]), lines


# ------------------------------------------------------------------ plausible wrong answers, one per row
def _re(pattern): return lambda imgs, p: rearrange(imgs, pattern, p1=p, p2=p)

def _indices(top, left, h, w, stride): return (torch.arange(top, top + h)[:, None] * stride + torch.arange(left, left + w)).flatten()

def _corner(bound):
    def sample(gen, size, grid):
        return tuple(torch.randint(0, bound(n, k), (1,), generator=gen).item() for n, k in zip(grid, size))
    return sample

def _corner_global(gen, size, grid):
    return tuple(torch.randint(0, n - k + 1, (1,)).item() for n, k in zip(grid, size))

def _corner_skewed(gen, size, grid):   # the smaller of two draws: corners near the top far more likely
    top = torch.randint(0, grid[0] - size[0] + 1, (2,), generator=gen).min().item()
    return top, torch.randint(0, grid[1] - size[1] + 1, (1,), generator=gen).item()

def _block_coupled(gen, scale, aspect, grid):
    u = torch.rand(1, generator=gen).item()
    size = block_size(scale[0] + u * (scale[1] - scale[0]), aspect[0] + u * (aspect[1] - aspect[0]), grid)
    return block_indices(*sample_block_position(gen, size, grid), size, grid)

def _block_wide(gen, scale, aspect, grid):
    h, w = sample_block_size(gen, scale, aspect, grid)
    return block_indices(*sample_block_position(gen, (w, h), grid), (w, h), grid)

def _block_official_bound(gen, scale, aspect, grid):
    size = sample_block_size(gen, scale, aspect, grid)
    return block_indices(*_corner(lambda n, k: n - k)(gen, size, grid), size, grid)

def _block_global(gen, scale, aspect, grid):
    size = sample_block_size(None, scale, aspect, grid)
    return block_indices(*sample_block_position(None, size, grid), size, grid)

def _block_scattered(gen, scale, aspect, grid):   # the right number of patches, anywhere
    h, w = sample_block_size(gen, scale, aspect, grid)
    return torch.randperm(grid[0] * grid[1], generator=gen)[:h * w].sort().values

def _ema(rule):
    @torch.no_grad()
    def update(target, online, m):
        for t, s in zip(target.parameters(), online.parameters()): rule(t, s, m)
    return update

def _ema_rebind(target, online, m):
    for t, s in zip(target.parameters(), online.parameters()): t = m * t + (1 - m) * s

@torch.no_grad()
def _targets(target_encoder, imgs, masks, nenc=1, norm=lambda h: F.layer_norm(h, (h.size(-1),)), tile=False):
    h = apply_masks(norm(target_encoder(imgs)), masks)
    return h.repeat(nenc, 1, 1) if tile else repeat_interleave_batch(h, len(imgs), nenc)

def _targets_with_grad(target_encoder, imgs, masks, nenc=1):
    h = target_encoder(imgs)
    return repeat_interleave_batch(apply_masks(F.layer_norm(h, (h.size(-1),)), masks), len(imgs), nenc)

def _lr(span=None, floor=None, hold=True, start=None):
    def lr(step, w, T, start_lr=2e-4, ref_lr=1e-3, final_lr=1e-6):
        start_lr = start_lr if start is None else start
        if step < w: return start_lr + step / w * (ref_lr - start_lr)
        prog = (step - w) / max(1, T - w) if span is None else step / T
        lo = final_lr if floor is None else floor
        return lo + (ref_lr - lo) * 0.5 * (1 + math.cos(math.pi * (min(1.0, prog) if hold else prog)))
    return lr

def _share(per_axis=0, centre=True, sqrt=False):
    def share(h):
        c = h - h.mean((0, 1)) if centre else h
        v = (c.mean(per_axis).pow(2).mean() / c.pow(2).mean()).item()
        return math.sqrt(v) if sqrt else v
    return share

def _knn(sim_of, weight):
    def knn(train_f, train_y, test_f, k, T, C):
        w, idx = sim_of(train_f, test_f).topk(k, dim=1)
        return torch.zeros(len(test_f), C).scatter_add_(1, train_y[idx], weight(w, T))
    return knn

_cos = lambda a, b: F.normalize(b, dim=1) @ F.normalize(a, dim=1).T

WRONG = [  # (checker, wrong answer, words its report must contain)
    ('check_make_targets', lambda m, p, t: rearrange(m.make_targets(p, t), '(b m) t d -> (m b) t d', m=t.shape[1]),
     'blocks ordered (m b)'),    # more wrong answers of this checker: tests/test_checks_core.py
    ('check_remove_overlap', lambda c, t: c[~torch.isin(c, t[0])] if t else c, 'remove the patches of every target'),
    ('check_patchify', _re('b c (h p1) (w p2) -> b (h w) (c p1 p2)'), 'the library puts the channel last'),
    ('check_patchify', _re('b c (h p1) (w p2) -> b (w h) (p1 p2 c)'), 'patches listed column by column'),
    ('check_patchify', _re('b c (h p1) (w p2) -> b (h w) (p2 p1 c)'), 'rows and columns swapped inside each patch'),
    ('check_patchify', _re('b c (p1 h) (p2 w) -> b (h w) (p1 p2 c)'), 'every h-th pixel'),
    ('check_patchify', lambda imgs, p: imgs.reshape(len(imgs), -1, p * p * imgs.size(1)), 'a reshape alone'),
    ('check_block_indices', lambda t, l, s, g: _indices(t, l, *s, g[0]), 'a raster index is row * cols + col'),
    ('check_block_indices', lambda t, l, s, g: _indices(t, l, s[0] + 1, s[1] + 1, g[1]), 'one row and one column too many'),
    ('check_block_indices', lambda t, l, s, g: _indices(l, t, s[1], s[0], g[0]), 'column-major'),
    ('check_block_indices', lambda t, l, s, g: _indices(t, l, *s, g[1]).view(s).T.flatten(), 'out of order'),
    ('check_block_indices', lambda t, l, s, g: _indices(t, l, *s, g[1]).tolist(), 'expected a tensor, got a list'),
    ('check_block_indices', lambda t, l, s, g: _indices(t, l, s[1], s[0], g[1]), 'size is (height, width)'),
    ('check_sample_block_position', _corner(lambda n, k: n - k), "torch.randint's upper bound is exclusive"),
    ('check_sample_block_position', _corner(lambda n, k: n), '✗ the block always fits'),
    ('check_sample_block_position', _corner_global, 'draw with generator=gen'),
    ('check_sample_block_position', _corner_skewed, 'draw top and left uniformly'),
    ('check_sample_target_block', _block_coupled, 'draw the scale and the aspect ratio independently'),
    ('check_sample_target_block', _block_wide, 'the aspect ratio is height / width'),
    ('check_sample_target_block', _block_official_bound, "torch.randint's upper bound is exclusive"),
    ('check_sample_target_block', _block_global, 'pass generator=gen'),
    ('check_sample_target_block', _block_scattered, 'do not fill a rectangle'),
    ('check_equalise', lambda gen, ms: torch.stack([m[:min(map(len, ms))] for m in ms]), "truncate='first'"),
    ('check_equalise', lambda gen, ms: torch.stack([m[torch.randperm(len(m), generator=gen)[:min(map(len, ms))]] for m in ms]),
     'not a sorted subset'),
    ('check_equalise', lambda gen, ms: torch.stack([ms[0][:min(map(len, ms))] for m in ms]), 'not a sorted subset of its own mask'),
    ('check_equalise', _equalise_unseeded, 'draw every random number from `gen`'),
    ('check_apply_masks', lambda x, ms: torch.stack([x[b, m[b]] for b in range(len(x)) for m in ms]), 'rows ordered image by image'),
    ('check_apply_masks', lambda x, ms: torch.cat([x[:, m[0]] for m in ms]), "gathered with image 0's indices"),
    ('check_apply_masks', lambda x, ms: apply_masks(x, [m.sort(1).values for m in ms]), 'tokens re-sorted'),
    ('check_apply_masks', lambda x, ms: torch.cat([apply_masks(x, [m]) for m in ms], dim=1), 'masks joined along the tokens'),
    ('check_repeat_interleave_batch', lambda x, B, r: x.repeat(r, *[1] * (x.dim() - 1)), 'the whole batch tiled'),
    ('check_repeat_interleave_batch', lambda x, B, r: x.repeat_interleave(r, dim=0), 'each row repeated on its own'),
    ('check_ema_update', _ema(lambda t, s, m: t.mul_(1 - m).add_(s, alpha=m)), 'momentum the wrong way round'),
    ('check_ema_update', _ema_rebind, 'update its parameters in place'),
    ('check_ema_update', _ema(lambda t, s, m: s.mul_(m).add_(t, alpha=1 - m)), 'the online module changed'),
    ('check_ema_update', _ema(lambda t, s, m: t.copy_(s)), 'the target became a copy of the online module'),
    ('check_target_features', lambda *a: _targets(*a, norm=lambda h: h), 'not layer-normed'),
    ('check_target_features', lambda *a: _targets(*a, norm=lambda h: F.layer_norm(h.mT, (h.size(1),)).mT), 'over the patches'),
    ('check_target_features', lambda *a: _targets(*a, tile=True), 'blocks tiled'),
    ('check_target_features', _targets_with_grad, 'compute them under torch.no_grad()'),
    ('check_lr_schedule', _lr(span=True), 'the cosine starts at step 0'),
    ('check_lr_schedule', _lr(floor=0.0), 'the cosine ends at 0, not at final_lr'),
    ('check_lr_schedule', _lr(hold=False), 'after total_steps the rate rises again'),
    ('check_lr_schedule', _lr(start=0.0), 'the warmup starts at 0, not at start_lr'),
    ('check_position_share', _share(per_axis=1), 'the share of the image'),
    ('check_position_share', _share(centre=False), 'the mean token was not subtracted'),
    ('check_position_share', _share(sqrt=True), 'a ratio of standard deviations'),
    ('check_knn_predict', _knn(_cos, lambda w, T: torch.ones_like(w)), 'every neighbour votes 1'),
    ('check_knn_predict', _knn(lambda a, b: b @ a.T, lambda w, T: (w / T).exp()), 'raw dot products'),
    ('check_knn_predict', _knn(_cos, lambda w, T: w), 'weighted by the similarity itself'),
]
WRONG += WRONG_11_13


@pytest.mark.parametrize('name, fn, words', WRONG, ids=[f'{n}-{w[:30]}' for n, _, w in WRONG])
def test_wrong_answer_fails_and_is_named(name, fn, words, capsys):
    ok, lines = grade(name, fn, capsys)
    assert ok is False, lines
    assert any(l.startswith('✗ ') and words in l for l in lines), lines
    assert lines[-1].startswith(f'{name}: ') and 'checks failed' in lines[-1], lines


def test_every_checker_catches_a_wrong_answer():
    assert {n for n, _, _ in WRONG} == set(CHECKERS)


# ------------------------------------------------------------------ a checker never raises
def _stub(*args): raise NotImplementedError

def _raises(*args): raise ValueError('boom')

def _returns_none(*args): return None

def _returns_text(*args): return 'forty-two'


@pytest.mark.parametrize('name', CHECKERS)
@pytest.mark.parametrize('fn, words', [(_stub, 'not written yet (it raises NotImplementedError)'),
                                        (_raises, 'raised ValueError: boom'), (_returns_none, ''), (_returns_text, '')],
                         ids=['stub', 'raises', 'none', 'text'])
def test_never_raises(name, fn, words, capsys):
    ok, lines = grade(name, fn, capsys)
    assert ok is False and lines[-1].startswith(f'{name}: ') and 'checks failed' in lines[-1], lines
    assert all(l.startswith(('✓ ', '✗ ')) for l in lines[:-1]), lines     # one line per check, nothing else
    assert words in '\n'.join(lines), lines


def test_an_unforeseen_error_is_one_more_line(capsys):
    "An error inside a checker's `with Report(...)` block ends it with a ✗ line, not a traceback."
    r = checks.Report('demo')
    with r: raise RuntimeError('checker bug')
    assert r.done() is False
    assert capsys.readouterr().out.splitlines() == [
        '✗ the checker could not go on: RuntimeError: checker bug (your function returned something unexpected)',
        'demo: 1 of 1 checks failed']


@pytest.mark.parametrize('name', CHECKERS)
def test_leaves_torch_global_generator_alone(name, capsys):
    "Running a checker on the library's function does not change the student's random stream."
    torch.manual_seed(0); before = torch.get_rng_state()
    grade(name, LIBRARY[name], capsys)
    assert torch.equal(torch.get_rng_state(), before)
