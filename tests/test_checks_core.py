"""Lesson 00's graded exercise (issue 22, item 4): `check_make_targets` passes the toy's own `make_targets`, fails each
plausible wrong answer with a line that names it, never raises, and leaves torch's global generator alone."""
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from ijepa_edu.checks import check_make_targets
from ijepa_edu.toy import gather


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)


def blocks(y, tgt):
    "(B, N, d) -> the target blocks' rows, (B*M, T, d)."
    return rearrange(gather(y, rearrange(tgt, 'b m t -> b (m t)')), 'b (m t) d -> (b m) t d', m=tgt.shape[1])


def norm_patches(p, dim=-1, unbiased=True): return (p - p.mean(dim, keepdim=True)) / (p.std(dim, keepdim=True, unbiased=unbiased) + 1e-6)


def library(model, patches, tgt): return model.make_targets(patches, tgt)


def wrong(features=None, pixels=None):
    "The library's answer, except for the kind of targets given a wrong rule (a function of model, patches, tgt)."
    def fn(model, patches, tgt):
        rule = features if model.targets == 'features' else pixels
        return rule(model, patches, tgt) if rule else model.make_targets(patches, tgt)
    return fn


WRONG = [
    (wrong(features=lambda m, p, t: blocks(F.layer_norm(m.encoder(p), (64,)), t)), 'targets come from model.target_encoder'),
    (wrong(features=lambda m, p, t: blocks(m.target_encoder(p), t)), 'features not layer-normalised'),
    (wrong(features=lambda m, p, t: rearrange(F.layer_norm(m.target_encoder(p, rearrange(t, 'b m t -> b (m t)')), (64,)),
                                              'b (m t) d -> (b m) t d', m=t.shape[1])), 'it sees the whole image'),
    (wrong(pixels=lambda m, p, t: blocks(p, t)), 'pixels not normalised'),
    (wrong(pixels=lambda m, p, t: blocks(norm_patches(p, 1), t)), 'normalised over the patches (dim 1)'),
    (wrong(pixels=lambda m, p, t: blocks(norm_patches(p, unbiased=False), t)), 'the biased standard deviation'),
    (wrong(pixels=lambda m, p, t: gather(norm_patches(p), rearrange(t, 'b m t -> b (m t)'))), 'one sequence per image'),
    (lambda m, p, t: rearrange(m.make_targets(p, t), '(b m) t d -> (m b) t d', m=t.shape[1]), 'blocks ordered (m b)'),
]


def test_library_passes(capsys):
    assert check_make_targets(library) is True
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == 'check_make_targets: all 4 checks passed' and all(l.startswith('✓ ') for l in lines[:-1]), lines


@pytest.mark.parametrize('fn, words', WRONG, ids=[w for _, w in WRONG])
def test_wrong_answer_fails_and_is_named(fn, words, capsys):
    assert check_make_targets(fn) is False
    lines = capsys.readouterr().out.splitlines()
    assert any(l.startswith('✗ ') and words in l for l in lines), lines
    assert lines[-1].startswith('check_make_targets: ') and 'checks failed' in lines[-1], lines


def _stub(*args): raise NotImplementedError


@pytest.mark.parametrize('fn', [_stub, lambda *a: None, lambda *a: 'forty-two', lambda *a: torch.zeros(3)])
def test_never_raises(fn, capsys):
    assert check_make_targets(fn) is False
    lines = capsys.readouterr().out.splitlines()
    assert all(l.startswith(('✓ ', '✗ ')) for l in lines[:-1]) and 'checks failed' in lines[-1], lines


def test_leaves_torch_global_generator_alone(capsys):
    torch.manual_seed(0); before = torch.get_rng_state()
    check_make_targets(library)
    assert torch.equal(torch.get_rng_state(), before)


# ------------------------------------------------------------------ lesson 03: check_remove_overlap
from ijepa_edu.checks import check_remove_overlap, _remove_overlap


def _isin(context, targets): return context[~torch.isin(context, torch.cat(targets))] if targets else context


OVERLAP_WRONG = [
    (lambda c, t: c[~torch.isin(c, t[0])] if t else c, 'remove the patches of every target'),
    (lambda c, t: c[torch.isin(c, torch.cat(t))] if t else c, 'the overlap kept instead of removed'),
    (lambda c, t: _isin(c, t).flip(0), 'out of order'),
    (lambda c, t: torch.cat([c, *t]).unique(), 'the targets added to the context'),
    (lambda c, t: torch.tensor(sorted(set(c.tolist()) - {p for x in t for p in x.tolist()})), 'torch.tensor([]) is a float tensor'),
]


def test_remove_overlap_library_and_isin_pass(capsys):
    assert check_remove_overlap(_remove_overlap) is True and check_remove_overlap(_isin) is True


@pytest.mark.parametrize('fn, words', OVERLAP_WRONG, ids=[w for _, w in OVERLAP_WRONG])
def test_remove_overlap_wrong_answer_is_named(fn, words, capsys):
    assert check_remove_overlap(fn) is False
    lines = capsys.readouterr().out.splitlines()
    assert any(l.startswith('✗ ') and words in l for l in lines), lines


@pytest.mark.parametrize('fn', [_stub, lambda *a: None, lambda *a: 'forty-two'])
def test_remove_overlap_never_raises(fn, capsys):
    assert check_remove_overlap(fn) is False
    assert 'checks failed' in capsys.readouterr().out.splitlines()[-1]
