"""Padded masks (issue 15): every drawn token trains. `truncate='pad'` keeps each image's masks whole, padded with -1 to
the batch's longest (or to fixed maximum lengths for torch.compile); attention never reads padding and the loss averages
over real tokens only. Each test compares the padded batch with a loop over single images that needs no padding."""
import pytest
import torch
import torch.nn.functional as F

import ijepa_edu.train as T
from ijepa_edu.build import make_mask_collator, pick_precision
from ijepa_edu.config import get_config
import ijepa_edu.encoder as E
from ijepa_edu.encoder import Attention, VisionTransformer, mask_validity, token_mask
from ijepa_edu.masks import MaskCollator
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.smallscale import RegularizedIJEPA
from ijepa_edu.step import IJEPA, jepa_loss, set_fast_paths
from conftest import cfg_for, weights, assert_same

pytestmark = pytest.mark.usefixtures('one_thread')
TOY = dict(input_size=32, patch_size=4, min_keep=4)

def real(m, b):
    "Image b's real indices of a padded (B, K) mask, as a (1, k) mask of one image."
    return m[b:b + 1][:, m[b] >= 0]

def nets(rope, seed=0):
    torch.manual_seed(seed)
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, rope=rope)
    pred = vit_predictor(num_patches=64, embed_dim=64, predictor_embed_dim=32, depth=2, num_heads=4, rope=rope)
    return enc, pred

@pytest.mark.parametrize('fast', [True, False])
def test_padded_masks_hold_every_drawn_patch(fast):
    "The real entries of each padded row are exactly the patches drawn for that image, in raster order; -1 comes after."
    mc = MaskCollator(**TOY, truncate='pad', fast=fast)
    me, mp = mc.sample(32, gen=torch.Generator().manual_seed(0))
    drawn = mc.draw(32, gen=torch.Generator().manual_seed(0))       # same generator: the same draw, before collation
    for b, (ctx, tgt) in enumerate(drawn):
        assert torch.equal(me[0][b][me[0][b] >= 0], ctx[0])
        for j in range(4): assert torch.equal(mp[j][b][mp[j][b] >= 0], tgt[j])
    for m in me + mp:
        assert m.shape[1] == max(int((r >= 0).sum()) for r in m)   # padded to the longest, no further
        pad = m < 0
        assert torch.equal(pad, pad.cummax(1).values)              # padding only at the end of a row
    cut, _ = MaskCollator(**TOY, fast=fast).sample(32, gen=torch.Generator().manual_seed(0))
    assert (me[0] >= 0).sum(1).float().mean() > cut[0].shape[1]     # truncation drops context patches; padding keeps them

def test_pad_to_max_gives_fixed_shapes():
    mc = MaskCollator(**TOY, truncate='pad', pad_to='max', seed=0)
    n_ctx, n_tgt = mc.max_lengths()
    assert (n_ctx, n_tgt) == (64, 12)                               # 8x8: the whole grid; 0.2 * 64 -> 12 patches at most
    for B in (1, 7, 64):
        me, mp = mc.sample(B)
        assert me[0].shape == (B, n_ctx) and all(m.shape == (B, n_tgt) for m in mp)
    drawn = [int(h * w) for h, w in zip(*mc._sizes(torch.Generator().manual_seed(1), (20000,), mc.pred_mask_scale, mc.aspect_ratio))]
    assert max(drawn) <= n_tgt
    assert MaskCollator(truncate='pad', pad_to='max').max_lengths() == (196, 42)   # 14x14: one block holds at most 42

@pytest.mark.parametrize('rope', [False, True])
@pytest.mark.parametrize('sdpa', [True, False])
def test_padded_encoder_and_predictor_equal_single_images(rope, sdpa):
    enc, pred = nets(rope)
    set_fast_paths(enc, sdpa=sdpa); set_fast_paths(pred, sdpa=sdpa)
    enc.eval(); pred.eval()
    x = torch.randn(5, 3, 32, 32)
    me, mp = MaskCollator(**TOY, truncate='pad', nenc=2, npred=3, seed=0).sample(5)
    assert token_mask(me) is not None and not token_mask(me).all()
    z, p = enc(x, me), None
    p = pred(z, me, mp)                                             # (npred * nenc * B, Kt, D)
    for b in range(5):
        for i in range(2):
            c = real(me[i], b)
            zb = enc(x[b:b + 1], [c])
            torch.testing.assert_close(z[i * 5 + b][me[i][b] >= 0], zb[0], atol=1e-5, rtol=1e-5)
            for j in range(3):
                pb = pred(zb, [c], [real(mp[j], b)])[0]
                torch.testing.assert_close(p[(j * 2 + i) * 5 + b][mp[j][b] >= 0], pb, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('rope', [False, True])
def test_padded_loss_and_gradients_equal_the_per_image_loop(rope):
    "The loss is the mean over every real target token, as a loop over images computes it; the gradients agree too."
    enc, pred = nets(rope)
    model = RegularizedIJEPA(enc, pred, vc_weight=0.0)
    x = torch.randn(6, 3, 32, 32)
    me, mp = MaskCollator(**TOY, truncate='pad', seed=1).sample(6)
    loss = model(x, me, mp)
    g = torch.autograd.grad(loss, list(enc.parameters()) + list(pred.parameters()))
    with torch.no_grad(): h = F.layer_norm(model.target_encoder(x), (64,))
    total, n = 0., 0
    for b in range(6):
        c = real(me[0], b); zb = enc(x[b:b + 1], [c])
        for j in range(4):
            t = real(mp[j], b)
            total = total + F.smooth_l1_loss(pred(zb, [c], [t])[0], h[b, t[0]], reduction='none').mean(-1).sum()
            n += t.shape[1]
    ref = total / n
    torch.testing.assert_close(loss, ref)
    g_ref = torch.autograd.grad(ref, list(enc.parameters()) + list(pred.parameters()))
    for a, r in zip(g, g_ref): torch.testing.assert_close(a, r, atol=1e-6, rtol=1e-4)

def test_truncated_masks_take_the_unpadded_path():
    "Without padding nothing changes: no attention mask, and the loss is the plain mean."
    me, mp = MaskCollator(**TOY, seed=0).sample(4)
    assert token_mask(me) is None and token_mask(mp) is None
    p, t = torch.randn(8, 5, 16), torch.randn(8, 5, 16)
    torch.testing.assert_close(jepa_loss(p, t, valid=torch.ones(8, 5, dtype=torch.bool)), jepa_loss(p, t))
    with pytest.raises(ValueError, match='valid'): jepa_loss(p, t, valid=torch.ones(8, 4, dtype=torch.bool))

def test_regularizer_pools_real_tokens_only():
    "VICReg's pooled vector of an image is the mean of its real context tokens: padding placeholders change nothing."
    enc, pred = nets(False)
    model = RegularizedIJEPA(enc, pred, vc_weight=0.1)
    z = torch.randn(4, 6, 64); valid = torch.tensor([[1, 1, 1, 0, 0, 0]] * 2 + [[1] * 6] * 2, dtype=torch.bool)
    z2 = z.clone(); z2[~valid] = 1e3                                # garbage where padding sits
    torch.testing.assert_close(model.regularizer(z, valid), model.regularizer(z2, valid))
    with pytest.raises(AssertionError): torch.testing.assert_close(model.regularizer(z), model.regularizer(z2))

def test_configs_pad_by_default_and_compile_gets_fixed_shapes():
    assert get_config('in1k_vith14').truncate == 'pad' and get_config('cifar10_small').truncate == 'pad'
    assert make_mask_collator(get_config('in1k_vith14')).pad_to == 'batch'
    assert make_mask_collator(get_config('in1k_vith14', compile='true')).pad_to == 'max'
    assert make_mask_collator(get_config('in1k_vith14'), truncate='random').truncate == 'random'
    with pytest.raises(ValueError, match="pad_to='long'"): make_mask_collator(get_config('in1k_vith14', pad_to='long'))

def test_precision_is_chosen_by_the_card():
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    assert pick_precision('auto', cpu) is None                      # float32 on the CPU
    assert pick_precision('auto', cuda, bf16_ok=True) == torch.bfloat16
    assert pick_precision('auto', cuda, bf16_ok=False) == torch.float16   # a T4: fp16, with a gradient scaler
    assert pick_precision('fp32', cuda, bf16_ok=True) is None
    with pytest.raises(ValueError, match='choose auto, bf16, fp16 or fp32'): pick_precision('fp8', cuda)

def test_fp16_run_scales_the_loss_and_resumes_exactly(toy, tmp_path):
    "fp16 autocast with a gradient scaler trains on the CPU too; the scale is saved and a resumed run matches."
    kw = dict(precision='fp16', truncate='pad')
    T.train(cfg_for(toy, tmp_path / 'full', **kw), quiet=True)
    T.train(cfg_for(toy, tmp_path / 'cut', max_steps='4', **kw), quiet=True)
    T.train(cfg_for(toy, tmp_path / 'cut', **kw), resume=True, quiet=True)
    ck_a, a = weights(tmp_path / 'full' / 'latest.pt'); ck_b, b = weights(tmp_path / 'cut' / 'latest.pt')
    assert ck_a['scaler'] is not None and ck_a['scaler']['scale'] > 0 and ck_a['scaler'] == ck_b['scaler']
    assert_same(a, b)
    assert all(torch.isfinite(t).all() for t in a.values() if t.is_floating_point())
    assert torch.load(tmp_path / 'full' / 'latest.pt', weights_only=True)['config']['truncate'] == 'pad'

def attention_spy(model):
    "Hooks on every attention layer: `got[name]` lists, call by call, whether that network's attention got a key mask."
    got = {name: [] for name in ('encoder', 'predictor', 'target_encoder')}
    for name in got:
        for m in getattr(model, name).modules():
            if isinstance(m, Attention):
                m.register_forward_pre_hook(lambda mod, args, kw, name=name: got[name].append(args[2] is not None), with_kwargs=True)
    return got

def mixed_batch(ctx_pad, tgt_pad, B=4, seed=0):
    "Images and masks whose context and targets are padded or cut independently (the same shapes either way)."
    way = lambda pad: MaskCollator(**TOY, truncate='pad' if pad else 'random', seed=seed).sample(B)
    return torch.randn(B, 3, 32, 32), way(ctx_pad)[0], way(tgt_pad)[1]

@pytest.mark.parametrize('ctx_pad, tgt_pad', [(False, False), (True, False), (False, True), (True, True)])
def test_validity_is_decided_per_mask_set_on_the_cpu_and_attention_gets_a_mask_only_where_needed(ctx_pad, tgt_pad, monkeypatch):
    """The loop's `_to` reads each mask set's validity on the CPU, before the batch moves: an (M, B, K) bool tensor for a
    padded set, None for a set without padding. Given it, the model never reads the masks again (on a GPU that read
    would wait for the device), the context encoder's attention gets a key mask only if the context is padded, the
    predictor's if either set is, the target encoder's never; and the loss is the one the masks alone give."""
    x, me, mp = mixed_batch(ctx_pad, tgt_pad)
    imgs, me2, mp2, valid = T._to(torch.device('cpu'), x, me, mp)
    assert type(me2) is list and type(mp2) is list
    for pad, v, m in ((ctx_pad, valid['valid_enc'], me), (tgt_pad, valid['valid_pred'], mp)):
        if pad: assert v.dtype == torch.bool and torch.equal(v, torch.stack(m) >= 0) and not v.all()
        else: assert v is None
    model = IJEPA(*nets(rope=True))
    expected = model(imgs, me2, mp2)                                # validity read from the masks ('auto')
    got = attention_spy(model)
    monkeypatch.setattr(E, 'mask_validity', lambda m: pytest.fail('the model read the masks although their validity was given'))
    loss = model(imgs, me2, mp2, **valid)
    assert got['encoder'] == [ctx_pad] * 2 and got['predictor'] == [ctx_pad or tgt_pad] * 2 and got['target_encoder'] == [False] * 2
    assert torch.equal(loss, expected)

def test_validity_fallback_reads_the_masks_and_never_drops_a_mask_on_a_device():
    """Plain lists of masks without validity still work: validity is read from `m >= 0`. On the CPU an unpadded set gives
    None (plain attention); on any other device the check would wait for it, so a mask is kept: right, if slower."""
    me, mp = MaskCollator(**TOY, seed=0).sample(4)
    assert mask_validity(me) is None and token_mask(me) is None and token_mask(mp) is None
    on_device = [m.to('meta') for m in me]                          # a stand-in for a GPU: never read back
    assert mask_validity(on_device).shape == (1, *me[0].shape) and token_mask(on_device).shape == me[0].shape
    assert token_mask(me, None) is None
    with pytest.raises(ValueError, match=r'valid has shape \(2, 4, 5\); expected \(M, B, K\) = \(1, 4, 5\).*mask_validity'):
        token_mask([torch.zeros(4, 5, dtype=torch.long)], torch.ones(2, 4, 5, dtype=torch.bool))

def test_gpu_style_sync_free_steps_skip_and_stop_at_the_check(toy, tmp_path, monkeypatch):
    """The GPU path (forced here on the CPU): no per-step read of the loss; a non-finite step's update is skipped by the
    scaler, counted on the device, and read at log steps. 'skip' goes on with finite weights; 'stop' stops at the check
    without saving the state after it."""
    import test_faults
    monkeypatch.setattr(T, '_sync_free', lambda device: True)
    monkeypatch.setattr(T, 'loss_is_finite', lambda *a: pytest.fail('the sync-free loop read the loss in the step'))
    test_faults.poison(monkeypatch, {2, 3}, value=float('inf'))
    with pytest.warns(UserWarning, match=r"steps 1-2: 1 step\(s\) had a non-finite loss: updates skipped"):
        s = T.train(cfg_for(toy, tmp_path / 's', on_nan='skip', max_steps='4', log_every='2'), quiet=True)
    assert s['steps'] == 4 and s['skipped_steps'] == 2 and torch.isfinite(torch.tensor(s['final_loss']))
    ck, w = weights(tmp_path / 's' / 'latest.pt')
    assert all(t.isfinite().all() for t in w.values())
    assert {int(st['step']) for st in ck['opt']['state'].values()} == {2}       # AdamW stepped twice, not four times
    monkeypatch.undo()
    monkeypatch.setattr(T, '_sync_free', lambda device: True)
    test_faults.poison(monkeypatch, {3})
    with pytest.raises(T.TrainingHalted, match=r"steps 3-3: 1 step\(s\) had a non-finite loss.*check of step 3 without saving.*holds step 2"):
        T.train(cfg_for(toy, tmp_path / 'h', max_steps='6', log_every='2', ckpt_every='2'), quiet=True)   # step 3 ends epoch 1: a save
    ck, w = weights(tmp_path / 'h' / 'latest.pt')
    assert ck['step'] == 2 and all(t.isfinite().all() for t in w.values())

@pytest.mark.parametrize('pad_to', ['max', 'batch'])
def test_compiled_steps_recompile_only_when_shapes_change(pad_to):
    """torch.compile (the cheap 'eager' backend: the same graph capture, no code generation) of the encoder and the
    predictor: with pad_to='max' every batch has one shape and nothing recompiles after the first step; with
    pad_to='batch' the lengths change from batch to batch and dynamo compiles again (so the count can fail)."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset(); counters.clear()
    enc, pred = nets(rope=True)
    model = IJEPA(enc, pred)
    model.encoder.compile(backend='eager'); model.predictor.compile(backend='eager')
    mc = MaskCollator(**TOY, truncate='pad', pad_to=pad_to, seed=0)
    x = torch.randn(8, 3, 32, 32)
    frames = []
    for _ in range(4):
        me, mp = mc.sample(8)
        model(x, me, mp, mask_validity(me), mask_validity(mp)).backward()   # validity as the loop gives it
        frames.append(int(counters['frames']['ok']))
    torch._dynamo.reset()
    if pad_to == 'max': assert frames[1:] == [frames[0]] * 3, frames
    else: assert frames[-1] > frames[0], frames
