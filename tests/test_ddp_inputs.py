"""Padding travels as data (issue 23, item 3): each mask set's validity, an (M, B, K) bool tensor or None, is an argument of
the model, so it reaches every part through DistributedDataParallel's own input movement (which rebuilds lists, and so
dropped the flag that a list attribute carried) and is an input that torch.compile guards on. All on the CPU, in seconds."""
import copy
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.utils import _to_kwargs
from torch.nn.parallel import DistributedDataParallel
import torch.nn.parallel.distributed as ddp_module

import ijepa_edu.train as T
from ijepa_edu.step import IJEPA
from test_padding import nets, mixed_batch, real

pytestmark = pytest.mark.usefixtures('one_thread')
CASES = [(True, False), (False, True), (True, True), (False, False)]     # (context padded, targets padded)

@pytest.fixture
def gloo(tmp_path):
    "A one-process gloo group, as a one-GPU torchrun run has, left again after the test."
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    yield
    dist.destroy_process_group()

def per_image_loss(model, x, me, mp):
    "The loss as a loop over single images, each with its own real patches only (no padding anywhere): the reference."
    with torch.no_grad(): h = model.target_encoder(x); h = F.layer_norm(h, (h.size(-1),))   # (B, N, D) targets
    total, n = 0., 0
    for b in range(len(x)):
        c = real(me[0], b); zb = model.encoder(x[b:b + 1], [c])
        for m in mp:
            t = real(m, b)
            total = total + F.smooth_l1_loss(model.predictor(zb, [c], [t])[0], h[b, t[0]], reduction='none').mean(-1).sum()
            n += t.shape[1]
    return total / n

def check_validity(valid, me, mp, ctx_pad, tgt_pad):
    "Each set's validity arrived as what it was: the (M, B, K) flags of a padded set, None for one without padding."
    for pad, v, m in ((ctx_pad, valid['valid_enc'], me), (tgt_pad, valid['valid_pred'], mp)):
        if pad: assert v.shape == (len(m), *m[0].shape) and (v.is_meta or torch.equal(v, torch.stack(m) >= 0))
        else: assert v is None

@pytest.mark.parametrize('ctx_pad, tgt_pad', CASES)
def test_validity_survives_ddp_input_movement_and_the_loss_is_unchanged(ctx_pad, tgt_pad, gloo, monkeypatch):
    """DDP with device_ids set moves every input through torch.distributed.utils._to_kwargs before the forward. Forced
    onto that path on the CPU, the model receives each set's validity as `_to` made it, and the loss equals the plain
    model's and the per-image loop's."""
    model = IJEPA(*nets(rope=False))
    x, me, mp = mixed_batch(ctx_pad, tgt_pad)
    imgs, me, mp, valid = T._to(torch.device('cpu'), x, me, mp)
    ref = per_image_loss(model, imgs, me, mp)
    plain = model(imgs, me, mp)                                      # validity read from the masks ('auto')
    net = DistributedDataParallel(model)                             # CPU: device_ids None, so...
    net.device_ids = [0]                                             # ...take the path a GPU run takes
    moved, received = [], []
    spy = lambda *a: moved.append(a) or _to_kwargs(*a)
    monkeypatch.setattr(ddp_module, '_to_kwargs', spy)
    model.register_forward_pre_hook(lambda m, args, kw: received.append((args, kw)), with_kwargs=True)
    loss = net(imgs, me, mp, **valid)
    assert len(moved) == 1 and moved[0][2] == torch.device('cpu', 0)   # DDP moved the inputs itself
    (args, kw), = received
    check_validity(kw, args[1], args[2], ctx_pad, tgt_pad)
    assert torch.equal(loss, plain)
    torch.testing.assert_close(loss, ref)
    loss.backward()                                                  # DDP's reducer takes the gradients as usual

@pytest.mark.parametrize('ctx_pad, tgt_pad', CASES)
def test_ddp_rebuilds_lists_so_a_list_attribute_is_lost_but_validity_arrives(ctx_pad, tgt_pad):
    """Moving to another device (the meta device stands in for a GPU) rebuilds every list of masks: a flag set on the list,
    as the old `MaskList.padded` was, does not arrive; the validity keywords do, per set."""
    x, me, mp = mixed_batch(ctx_pad, tgt_pad)
    imgs, me, mp, valid = T._to(torch.device('cpu'), x, me, mp)
    tagged = type('Tagged', (list,), {})(me); tagged.padded = ctx_pad
    (args,), (kw,) = _to_kwargs((imgs, tagged, mp), valid, torch.device('meta'), False)
    assert type(args[1]) is list and not hasattr(args[1], 'padded') and args[1][0].device.type == 'meta'
    assert kw['valid_enc'] is None or kw['valid_enc'].device.type == 'meta'
    check_validity(kw, me, mp, ctx_pad, tgt_pad)

def full_batch(me, mp):
    "Masks of the same shapes as (me, mp) with no padding at all: every place a real (random) patch."
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 64, m.shape, generator=g) for m in me], [torch.randint(0, 64, m.shape, generator=g) for m in mp]

def test_compile_sees_validity_as_an_input():
    """torch.compile (the cheap 'eager' backend: dynamo's graph capture, no code generation) of the encoder and the
    predictor, with pad_to='max' shapes: a padded batch (validity tensors) and an unpadded one of the same shapes
    (validity None) give the eager model's losses, and switching between them compiles once more at most, then never."""
    from torch._dynamo.utils import counters
    from ijepa_edu.masks import MaskCollator
    from test_padding import TOY
    torch._dynamo.reset(); counters.clear()
    model = IJEPA(*nets(rope=True)).eval()
    eager = copy.deepcopy(model)
    model.encoder.compile(backend='eager'); model.predictor.compile(backend='eager')
    x = torch.randn(4, 3, 32, 32)
    me, mp = MaskCollator(**TOY, truncate='pad', pad_to='max', seed=0).sample(4)
    padded, unpadded = (me, mp), full_batch(me, mp)
    frames = []
    with torch.no_grad():
        for masks in (padded, unpadded, padded, unpadded):
            _, me_, mp_, valid = T._to(torch.device('cpu'), x, *masks)
            assert (valid['valid_enc'] is None) == (masks is unpadded)
            torch.testing.assert_close(model(x, me_, mp_, **valid), eager(x, me_, mp_, **valid))
            frames.append(int(counters['frames']['ok']))
    torch._dynamo.reset()
    assert frames[0] > 0 and frames[2:] == [frames[1]] * 2, frames   # after one padded and one unpadded batch: no more
    assert frames[1] - frames[0] <= frames[0], frames                  # None vs tensor: one more compile per frame at most
