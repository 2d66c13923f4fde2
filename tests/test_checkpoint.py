"Tests of checkpoints (nbs/11_checkpoint.ipynb): atomic writes under crashes and kills, safe loading, errors, DDP keys."
import errno, io, os, signal, subprocess, sys, textwrap, time
from unittest import mock
import pytest
import torch
from torch import nn
import fastcore.test as fct
from ijepa_edu.checkpoint import CheckpointError, atomic_save, load_checkpoint, strip_module_prefix
from ijepa_edu.config import get_config
from ijepa_edu.encoder import VisionTransformer

torch.set_num_threads(1)
REAL_SAVE = torch.save


def payload(i, n=2000):
    return {'w': torch.full((n,), float(i)), 'step': i, 'config': {'lr': 1e-3, 'scale': (0.3, 1.0)}}


def partial_save(fraction, exc=RuntimeError('simulated crash')):
    "A torch.save that writes `fraction` of the real bytes to the file, then raises `exc`."
    def save(obj, f, *a, **k):
        buf = io.BytesIO(); REAL_SAVE(obj, buf)
        data = buf.getvalue()
        if isinstance(f, (str, os.PathLike)):
            with open(f, 'wb') as fh: fh.write(data[:int(len(data) * fraction)])
        else: f.write(data[:int(len(data) * fraction)]); f.flush()
        raise exc
    return save


def test_roundtrip_and_folder_creation(tmp_path):
    p = atomic_save(payload(3), tmp_path / 'a' / 'b' / 'latest.pt')
    assert p == tmp_path / 'a' / 'b' / 'latest.pt'
    back = load_checkpoint(p)
    assert back['step'] == 3 and torch.equal(back['w'], payload(3)['w']) and back['config']['scale'] == (0.3, 1.0)
    assert [q.name for q in p.parent.iterdir()] == ['latest.pt']


@pytest.mark.parametrize('fraction', [0.0, 0.01, 0.5, 0.99, 1.0])
def test_crash_mid_write_keeps_the_old_checkpoint(tmp_path, fraction):
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    old = p.read_bytes()
    with mock.patch.object(torch, 'save', partial_save(fraction)):
        with pytest.raises(RuntimeError, match='simulated crash'): atomic_save(payload(2), p)
    assert p.read_bytes() == old
    assert [q.name for q in tmp_path.iterdir()] == ['latest.pt']        # the temporary is gone
    # the naive way, for contrast: the same crash destroys the only copy (unless it wrote everything)
    with mock.patch.object(torch, 'save', partial_save(fraction)):
        with pytest.raises(RuntimeError): torch.save(payload(2), p)
    if fraction < 1.0:
        with pytest.raises(CheckpointError): load_checkpoint(p)


def test_disk_full_and_permission_errors(tmp_path):
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    old = p.read_bytes()
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch.object(torch, 'save', partial_save(0.3, full)):
        with pytest.raises(OSError) as ei: atomic_save(payload(2), p)
    assert ei.value.errno == errno.ENOSPC
    assert 'previous checkpoint is intact' in str(ei.value) and 'free some disk space' in str(ei.value)
    assert isinstance(ei.value.__cause__, OSError)
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    with mock.patch.object(torch, 'save', partial_save(0.0, denied)):
        with pytest.raises(PermissionError, match='writable'): atomic_save(payload(2), p)
    assert p.read_bytes() == old and len(list(tmp_path.iterdir())) == 1


def test_keyboard_interrupt_cleans_up_and_propagates(tmp_path):
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    with mock.patch.object(torch, 'save', partial_save(0.5, KeyboardInterrupt())):
        with pytest.raises(KeyboardInterrupt): atomic_save(payload(2), p)
    assert load_checkpoint(p)['step'] == 1 and len(list(tmp_path.iterdir())) == 1


WRITER = textwrap.dedent('''
    import sys, torch
    from ijepa_edu.checkpoint import atomic_save
    torch.set_num_threads(1)
    i = 0
    while True:                              # a big checkpoint, rewritten as fast as possible until killed
        i += 1
        atomic_save({'w': torch.full((1_000_000,), float(i)), 'step': i}, sys.argv[1])
        if i == 1: print('saved', flush=True)
''')


@pytest.mark.skipif(os.name != 'posix', reason='SIGKILL')
def test_sigkill_never_leaves_a_corrupt_latest(tmp_path):
    "A writer killed at random moments: latest.pt always loads and is self-consistent; stale temporaries get removed."
    latest = tmp_path / 'latest.pt'
    steps = []
    for delay in (0.3,):                                                 # one writer: importing torch costs ~2 s
        proc = subprocess.Popen([sys.executable, '-c', WRITER, str(latest)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == 'saved'                 # at least one complete save
        t0 = time.time()
        while time.time() - t0 < delay:                                   # readers never see a partial file
            assert load_checkpoint(latest)['w'].numel() == 1_000_000
        proc.send_signal(signal.SIGKILL); proc.wait()
        ck = load_checkpoint(latest)
        assert torch.equal(ck['w'], torch.full((1_000_000,), float(ck['step'])))   # the tensor matches its step
        steps.append(ck['step'])
    assert max(steps) > 1                                                # it was killed while rewriting, not before
    atomic_save(payload(0), latest)                                      # a later save clears killed writers' leftovers
    assert [q.name for q in tmp_path.iterdir()] == ['latest.pt']


def test_stale_temporaries_of_live_processes_are_kept(tmp_path):
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    live = tmp_path / f'.latest.pt.tmp{os.getppid()}'; live.write_bytes(b'x')
    other = tmp_path / '.other.pt.tmp999999999'; other.write_bytes(b'x')   # another checkpoint's: not ours to touch
    atomic_save(payload(2), p)
    assert live.exists() and other.exists()


def test_truncated_at_any_length_is_a_checkpoint_error(tmp_path):
    data = atomic_save(payload(5), tmp_path / 'good.pt').read_bytes()
    bad = tmp_path / 'bad.pt'
    for n in sorted({1, 3, 4, 10, 100, *range(0, len(data), max(1, len(data) // 40)), len(data) - 1}):
        if n == 0: continue
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError) as ei: load_checkpoint(bad)
        if n >= 4: assert 'truncated' in str(ei.value), (n, str(ei.value))


def test_clear_messages(tmp_path):
    (tmp_path / 'empty.pt').touch()
    (tmp_path / 'text.pt').write_text('not a checkpoint at all')
    fct.test_fail(lambda: load_checkpoint(tmp_path / 'missing.pt'), contains='does not exist')
    fct.test_fail(lambda: load_checkpoint(tmp_path), contains='is a folder')
    fct.test_fail(lambda: load_checkpoint(tmp_path / 'empty.pt'), contains='is empty')
    fct.test_fail(lambda: load_checkpoint(tmp_path / 'text.pt'), contains='not a PyTorch checkpoint')
    fct.test_fail(lambda: load_checkpoint(tmp_path / 'text.pt'), contains='text.pt')
    good = atomic_save(payload(1), tmp_path / 'good.pt')
    fct.test_fail(lambda: load_checkpoint(good, map_location='no_such_device'), contains='Check map_location')


def test_oserror_without_errno(tmp_path):
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    with mock.patch.object(torch, 'save', partial_save(0.5, OSError('device went away'))):
        with pytest.raises(OSError, match='device went away.*previous checkpoint is intact') as ei: atomic_save(payload(2), p)
    assert '[Errno None]' not in str(ei.value) and load_checkpoint(p)['step'] == 1


class _Marker:
    "Unpickling this calls `_record`: a stand-in for code a malicious checkpoint would run."
    def __reduce__(self): return (_record, ('ran',))

_CALLS = []
def _record(x): _CALLS.append(x); return x


def test_untrusted_objects_are_refused_without_running(tmp_path):
    p = tmp_path / 'evil.pt'
    REAL_SAVE({'w': torch.ones(2), 'x': _Marker()}, p)
    _CALLS.clear()
    with pytest.raises(CheckpointError, match='trusted=True') as ei: load_checkpoint(p)
    assert '_record' in str(ei.value) and _CALLS == []                 # names the culprit, ran nothing
    assert load_checkpoint(p, trusted=True)['x'] == 'ran' and _CALLS == ['ran']


def test_training_layout_loads_with_weights_only(tmp_path):
    "The checkpoint train.py writes (official keys + exact-resume keys) needs no full unpickling."
    from ijepa_edu.train import build_model, checkpoint_state
    from ijepa_edu.schedules import param_groups
    cfg = get_config('cifar10_tiny', embed_dim=24, depth=1, num_heads=3, pred_depth=1, pred_emb_dim=12)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-3)
    model.encoder.norm.weight.grad = torch.ones_like(model.encoder.norm.weight); opt.step()   # some optimiser state
    ck = load_checkpoint(atomic_save(checkpoint_state(model, opt, cfg, step=7, epoch=0, pos=7, loss=0.5), tmp_path / "latest.pt"))
    official = ['encoder', 'predictor', 'target_encoder', 'opt', 'scaler', 'epoch', 'loss', 'batch_size', 'world_size', 'lr']
    assert set(ck) == set(official) | {'step', 'epoch_batch', 'config', 'format', 'rng'}, sorted(ck)
    assert ck['step'] == 7 and ck['config'] == cfg.to_dict() and ck['format'] == 'ijepa_edu-1'
    for k in ('encoder', 'predictor', 'target_encoder'):
        assert not any(key.startswith('module.') for key in ck[k])
        for key, t in getattr(model, k).state_dict().items(): assert torch.equal(ck[k][key], t)
    opt.load_state_dict(ck['opt'])


def test_strip_module_prefix_on_real_ddp_keys(tmp_path):
    "Keys of a real DistributedDataParallel (gloo, one process) load into a bare encoder after stripping."
    import torch.distributed as dist
    if not dist.is_available(): pytest.skip('torch.distributed unavailable')
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=3)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try: sd = nn.parallel.DistributedDataParallel(enc).state_dict()
    finally: dist.destroy_process_group()
    assert all(k.startswith('module.') for k in sd)
    fresh = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=3)
    with pytest.raises(RuntimeError, match='Missing key'): fresh.load_state_dict(sd)
    fresh.load_state_dict(strip_module_prefix(sd))
    for k, t in enc.state_dict().items(): assert torch.equal(fresh.state_dict()[k], t)


def test_strip_module_prefix_rules():
    sd = {'module.a': 1, 'module.b.module.c': 2, 'd': 3}
    assert strip_module_prefix(sd) == {'a': 1, 'b.module.c': 2, 'd': 3}
    assert sd == {'module.a': 1, 'module.b.module.c': 2, 'd': 3}          # the input is not modified
    assert strip_module_prefix({'_orig_mod.x': 1}, prefix='_orig_mod.') == {'x': 1}
    assert list(strip_module_prefix({'module.z': 0, 'module.a': 1})) == ['z', 'a']   # order kept
    fct.test_fail(lambda: strip_module_prefix({'module.w': 1, 'w': 2}), contains='collide')
