"Tests of checkpoints (nbs/11_checkpoint.ipynb): atomic writes under crashes and kills, safe loading, errors, DDP keys."
import errno, io, os, shutil, signal, subprocess, sys, textwrap, time
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


def test_full_disk_as_torch_save_reports_it(tmp_path):
    """On a full disk torch.save's zip writer raises RuntimeError('... unexpected pos N vs M'), not OSError: it becomes one
    OSError(ENOSPC) saying the disk is full, where, how much the checkpoint needs and how much is free; the old file stays.
    The same message with room to spare on the disk would be wrong: then the RuntimeError passes unchanged."""
    p = atomic_save(payload(1), tmp_path / 'latest.pt')
    old = p.read_bytes()
    short = RuntimeError('[enforce fail at inline_container.cc:626] . unexpected pos 9499968 vs 9499856')
    real = shutil.disk_usage
    full = lambda path: real(tmp_path)._replace(free=3_000_000)
    with mock.patch.object(torch, 'save', partial_save(0.5, short)), mock.patch('shutil.disk_usage', full):
        with pytest.raises(OSError) as ei: atomic_save(payload(2, n=2_000_000), p)    # 8 MB of float32
    assert ei.value.errno == errno.ENOSPC and isinstance(ei.value.__cause__, RuntimeError)
    assert str(ei.value) == (f"[Errno 28] The disk is full: checkpoint {p} needs about 8.0 MB and {tmp_path} has 3.0 MB "
                             f"free. The previous checkpoint is intact: free some disk space or choose another --out, then "
                             f"continue with --resume.")
    with mock.patch.object(torch, 'save', partial_save(0.5, short)):          # this disk has room: another cause
        with pytest.raises(RuntimeError, match='unexpected pos'): atomic_save(payload(2), p)
    assert p.read_bytes() == old and [q.name for q in tmp_path.iterdir()] == ['latest.pt']


def test_rng_state_round_trip_per_rank():
    "Each rank takes its own generators back; a checkpoint of one process (or an older one) gives its state to rank 0."
    from ijepa_edu.checkpoint import rng_state, set_rng_state
    torch.manual_seed(1); r1 = rng_state(); a = torch.rand(3)
    torch.manual_seed(2); r2 = rng_state(); b = torch.rand(3)
    for rank, want in ((0, a), (1, b)):
        torch.manual_seed(9); set_rng_state({**r1, 'ranks': [r1, r2]}, rank); assert torch.equal(torch.rand(3), want)
    set_rng_state({'torch': r1['torch'], 'cuda': []}); assert torch.equal(torch.rand(3), a)   # the layout before 2026-12


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
@pytest.mark.slow
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
    from ijepa_edu.build import build_model
    from ijepa_edu.checkpoint import checkpoint_state
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


# ---- official releases (load_official) ---------------------------------------------------------------------
# Key names and shapes written out by hand from the official layout (ijepa-facts.md), not taken from our modules.
from ijepa_edu.official import load_official, OFFICIAL_RELEASES, read_architecture, match_release

def _block(prefix, D, hidden):
    return {f'{prefix}.norm1.weight': (D,), f'{prefix}.norm1.bias': (D,), f'{prefix}.attn.qkv.weight': (3 * D, D),
            f'{prefix}.attn.qkv.bias': (3 * D,), f'{prefix}.attn.proj.weight': (D, D), f'{prefix}.attn.proj.bias': (D,),
            f'{prefix}.norm2.weight': (D,), f'{prefix}.norm2.bias': (D,), f'{prefix}.mlp.fc1.weight': (hidden, D),
            f'{prefix}.mlp.fc1.bias': (hidden,), f'{prefix}.mlp.fc2.weight': (D, hidden), f'{prefix}.mlp.fc2.bias': (D,)}

def official_layout(D, depth, hidden, patch, N, d, pdepth):
    "The three networks' keys and shapes, as the official modules name them (without `module.`)."
    enc = {'pos_embed': (1, N, D), 'patch_embed.proj.weight': (D, 3, patch, patch), 'patch_embed.proj.bias': (D,)}
    for i in range(depth): enc.update(_block(f'blocks.{i}', D, hidden))
    enc.update({'norm.weight': (D,), 'norm.bias': (D,)})
    pred = {'mask_token': (1, 1, d), 'predictor_pos_embed': (1, N, d), 'predictor_embed.weight': (d, D), 'predictor_embed.bias': (d,)}
    for i in range(pdepth): pred.update(_block(f'predictor_blocks.{i}', d, 4 * d))
    pred.update({'predictor_norm.weight': (d,), 'predictor_norm.bias': (d,), 'predictor_proj.weight': (D, d), 'predictor_proj.bias': (D,)})
    return {'encoder': enc, 'target_encoder': dict(enc), 'predictor': pred}

# (width, depth, MLP hidden, patch, patches, predictor width, depth), and the counts measured on the official
# modules (ijepa-facts.md; for 448 px: the patch-16 trainable count plus 784 fixed positions)
RELEASES = {'in1k_vith14':     ((1280, 32, 5120, 14, 256, 384, 12), 630_762_240, 22_377_728),
            'in1k_vith16_448': ((1280, 32, 5120, 16, 784, 384, 12), 630_664_960 + 784 * 1280, 22_279_424 + 784 * 384),
            'in22k_vith14':    ((1280, 32, 5120, 14, 256, 384, 12), 630_762_240, 22_377_728),
            'in22k_vitg16':    ((1408, 40, 6144, 16, 196, 384, 16), 1_011_368_576, 29_550_976)}

def official_file(path, layout, make=lambda s: torch.empty(s, device='meta'), **extra):
    "Save a checkpoint in the official layout: `module.` keys, the optimiser and bookkeeping entries."
    ck = {k: {f'module.{n}': make(s) for n, s in sd.items()} for k, sd in layout.items()}
    ck.update(opt={'state': {}, 'param_groups': [{'lr': 1e-3, 'weight_decay': 0.04, 'WD_exclude': False, 'params': [0]}]},
              scaler=None, epoch=300, loss=0.01, batch_size=128, world_size=16, lr=1e-3, **extra)
    torch.save(ck, path)
    return ck


@pytest.mark.parametrize('name', list(RELEASES))
def test_official_release_fakes_load_with_full_shapes(tmp_path, name):
    "Meta-tensor fakes (names and full shapes, no data) of each release load strictly and are recognised."
    dims, n_enc, n_pred = RELEASES[name]
    path = tmp_path / OFFICIAL_RELEASES[name]['file']
    official_file(path, official_layout(*dims))
    assert path.stat().st_size < 300_000                                # shapes only: kilobytes for a billion numbers
    m = load_official(path)
    assert m.info['looks_like'] == [name] and m.info['meta']
    assert m.info['parameters'] == {'encoder': n_enc, 'target_encoder': n_enc, 'predictor': n_pred}
    a = m.info['architecture']
    assert (a['embed_dim'], a['depth'], a['patch_size'], a['img_size']) == (dims[0], dims[1], dims[3], OFFICIAL_RELEASES[name]['img_size'])
    assert (a['pred_emb_dim'], a['pred_depth'], a['num_heads']) == (384, dims[6], 16)
    assert all(t.is_meta for t in m.target_encoder.state_dict().values())
    assert sum(p.numel() for p in m.predictor.parameters()) + m.predictor.predictor_pos_embed.numel() == n_pred
    # the same file under another name: the shapes alone cannot tell the two ViT-H/14 apart
    other = tmp_path / 'renamed.pth.tar'; path.rename(other)
    hits = load_official(other, parts=('target_encoder',)).info['looks_like']
    assert name in hits and len(hits) == (2 if name.endswith('vith14') else 1)
    assert load_official(other, release=name).info['parameters']['encoder'] == n_enc


def test_small_official_fake_of_real_numbers_loads_and_runs(tmp_path):
    "Real numbers in the official layout: loaded tensors equal the file's, and the networks run and agree with a plain load."
    from ijepa_edu.predictor import vit_predictor
    g = torch.Generator().manual_seed(0)
    layout = official_layout(192, 2, 768, 8, 16, 96, 2)                 # width 192 (3 official heads), 4x4 grid of 8 px
    ck = official_file(tmp_path / 'small.pth.tar', layout, make=lambda s: 0.02 * torch.randn(s, generator=g))
    m = load_official(tmp_path / 'small.pth.tar')
    assert not m.info['meta'] and m.info['looks_like'] == [] and m.info['architecture']['img_size'] == 32
    for part in ('encoder', 'target_encoder', 'predictor'):
        mine = getattr(m, part).state_dict()
        assert mine.keys() == layout[part].keys()
        assert all(torch.equal(mine[k], ck[part][f'module.{k}']) for k in mine)
    ref_enc = VisionTransformer(img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3)
    ref_enc.load_state_dict(strip_module_prefix(ck['encoder']))          # the ordinary way: copy into a built model
    ref_pred = vit_predictor(num_patches=16, embed_dim=192, predictor_embed_dim=96, depth=2, num_heads=3)
    ref_pred.load_state_dict(strip_module_prefix(ck['predictor']))
    imgs, ctx, tgt = torch.randn(2, 3, 32, 32), [torch.tensor([[0, 1, 4, 5, 8]] * 2)], [torch.tensor([[10, 11, 15]] * 2)]
    with torch.no_grad():
        out = m.predictor(m.encoder(imgs, ctx), ctx, tgt)
        assert out.shape == (2, 3, 192) and torch.isfinite(out).all()
        torch.testing.assert_close(out, ref_pred(ref_enc(imgs, ctx), ctx, tgt))
        assert m.target_encoder(imgs).shape == (2, 16, 192)
    loss = m.predictor(m.encoder(imgs, ctx), ctx, tgt).square().mean()   # trainable: gradients reach the loaded weights
    loss.backward()
    assert m.encoder.blocks[0].attn.qkv.weight.grad is not None


def test_wrong_shapes_are_named_with_both_shapes(tmp_path):
    layout = official_layout(192, 2, 768, 8, 16, 96, 2)
    layout['encoder']['blocks.1.attn.proj.weight'] = (192, 100)
    official_file(tmp_path / 'bad.pth.tar', layout)
    with pytest.raises(CheckpointError) as ei: load_official(tmp_path / 'bad.pth.tar')
    msg = str(ei.value)
    assert "encoder" in msg and 'blocks.1.attn.proj.weight is (192, 100) in the file but (192, 192) in the model' in msg
    # a full-size ViT-H/14 file forced onto the ViT-g release: the first mismatch, and what the file looks like
    official_file(tmp_path / 'h14.pth.tar', official_layout(*RELEASES['in1k_vith14'][0]))
    with pytest.raises(CheckpointError) as ei: load_official(tmp_path / 'h14.pth.tar', release='in22k_vitg16')
    msg = str(ei.value)
    assert 'pos_embed is (1, 256, 1280) in the file but (1, 196, 1408) in the model' in msg
    assert 'missing key(s)' in msg and 'in1k_vith14' in msg and 'in22k_vith14' in msg
    # a predictor built for another encoder width
    layout = official_layout(192, 2, 768, 8, 16, 96, 2)
    layout['predictor']['predictor_proj.weight'], layout['predictor']['predictor_proj.bias'] = (384, 96), (384,)
    official_file(tmp_path / 'pred.pth.tar', layout)
    fct.test_fail(lambda: load_official(tmp_path / 'pred.pth.tar'), contains='predictor_proj.weight is (384, 96) in the file but (192, 96)')
    assert load_official(tmp_path / 'pred.pth.tar', parts=('target_encoder',)).target_encoder is not None   # other parts still load


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    layout = official_layout(192, 2, 768, 8, 16, 96, 2)
    layout['target_encoder']['cls_token'] = (1, 1, 192)                 # a timm-style ViT has one; I-JEPA's has not
    del layout['target_encoder']['norm.bias']
    official_file(tmp_path / 'keys.pth.tar', layout)
    with pytest.raises(CheckpointError) as ei: load_official(tmp_path / 'keys.pth.tar')
    msg = str(ei.value)
    assert "target_encoder" in msg and "1 missing key(s) ['norm.bias']" in msg and "1 unexpected key(s) ['cls_token']" in msg


def test_files_that_are_not_official_checkpoints(tmp_path):
    (tmp_path / 'page.pth.tar').write_text('<html>403 Forbidden</html>')   # a failed download saved under the name
    fct.test_fail(lambda: load_official(tmp_path / 'page.pth.tar'), contains='not a PyTorch checkpoint')
    fct.test_fail(lambda: load_official(tmp_path / 'missing.pth.tar'), contains='does not exist')
    torch.save([torch.zeros(2)], tmp_path / 'list.pt')
    fct.test_fail(lambda: load_official(tmp_path / 'list.pt'), contains='holds a list, not an I-JEPA checkpoint')
    layout = official_layout(192, 1, 768, 8, 16, 96, 1)
    torch.save({f'module.{k}': torch.zeros(s) for k, s in layout['encoder'].items()}, tmp_path / 'bare.pt')
    fct.test_fail(lambda: load_official(tmp_path / 'bare.pt'), contains="one network's state dict")
    official_file(tmp_path / 'nopred.pt', {k: layout[k] for k in ('encoder', 'target_encoder')})
    fct.test_fail(lambda: load_official(tmp_path / 'nopred.pt'), contains="no 'predictor' entry")
    assert load_official(tmp_path / 'nopred.pt', parts=('encoder', 'target_encoder')).predictor is None
    fct.test_fail(lambda: load_official(tmp_path / 'nopred.pt', parts=('decoder',)), contains='Unknown parts')
    fct.test_fail(lambda: load_official(tmp_path / 'nopred.pt', release='in1k_vith15'), contains='Unknown release')


def test_heads_and_grids_that_shapes_do_not_tell(tmp_path):
    "Heads are in no shape: official widths know them, other widths need num_heads; non-square grids need img_size."
    official_file(tmp_path / 'w96.pt', official_layout(96, 1, 384, 8, 16, 48, 1))
    fct.test_fail(lambda: load_official(tmp_path / 'w96.pt'), contains='pass num_heads=')
    assert load_official(tmp_path / 'w96.pt', num_heads=4).info['architecture']['num_heads'] == 4
    official_file(tmp_path / 'rect.pt', official_layout(192, 1, 768, 8, 15, 96, 1))   # 15 patches: 3 x 5
    fct.test_fail(lambda: load_official(tmp_path / 'rect.pt'), contains='img_size=(height, width)')
    m = load_official(tmp_path / 'rect.pt', img_size=(24, 40))
    assert m.target_encoder.patch_embed.grid == (3, 5) and m.info['architecture']['img_size'] == (24, 40)


def test_our_training_checkpoint_loads_too(tmp_path):
    "ijepa_edu's own checkpoints (no `module.`, a config with the heads) load, and the networks match the model's."
    from ijepa_edu.build import build_model
    from ijepa_edu.checkpoint import checkpoint_state
    from ijepa_edu.schedules import param_groups
    cfg = get_config('cifar10_tiny', embed_dim=40, depth=1, num_heads=5, pred_depth=1, pred_emb_dim=20)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor), lr=1e-3)
    path = atomic_save(checkpoint_state(model, opt, cfg, step=1, epoch=0, pos=1, loss=0.5), tmp_path / 'latest.pt')
    m = load_official(path)
    assert m.info['architecture']['num_heads'] == 5 and m.info['looks_like'] == []
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(): torch.testing.assert_close(m.target_encoder(x), model.target_encoder(x))


def test_meta_tensors_survive_save_and_weights_only_load(tmp_path):
    "What the fakes rely on: torch.save writes a meta tensor's shape without data, and weights_only gives it back."
    torch.save({'w': torch.empty(100_000, 1000, device='meta')}, tmp_path / 'm.pt')
    assert (tmp_path / 'm.pt').stat().st_size < 10_000
    w = load_checkpoint(tmp_path / 'm.pt')['w']
    assert w.is_meta and w.shape == (100_000, 1000)
    assert load_checkpoint(tmp_path / 'm.pt', mmap=True)['w'].is_meta

def test_full_states_keep_the_layout_and_name_the_optimiser_as_dcp_does():
    """Unsharded, `full_states` is the plain state dicts; the renaming between the optimiser's positions and parameter
    names (what FSDP's gathered state uses) agrees with torch.distributed.checkpoint's own names, and goes both ways."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, StateDictOptions
    from ijepa_edu.checkpoint import full_states, load_states, is_sharded, _positions, _named, _numbered
    from ijepa_edu.build import build_model
    from ijepa_edu.schedules import param_groups
    cfg = get_config('cifar10_tiny', embed_dim='32', depth='2', num_heads='2', pred_depth='1', pred_emb_dim='16')
    m = build_model(cfg); opt = torch.optim.AdamW(param_groups(m.encoder, m.predictor))
    for p in m.trainable_parameters(): p.grad = torch.randn_like(p)
    opt.step()
    st = full_states(m, opt)
    assert not is_sharded(m) and list(st) == ['encoder', 'predictor', 'target_encoder', 'opt']
    assert st['opt'] == opt.state_dict() and all(torch.equal(v, m.encoder.state_dict()[k]) for k, v in st['encoder'].items())
    names = _positions(m, opt)
    dcp = get_optimizer_state_dict(m, opt, options=StateDictOptions(full_state_dict=True))    # keyed by names
    named = _named(opt.state_dict(), names)
    assert named['state'].keys() == dcp['state'].keys() and named['param_groups'] == dcp['param_groups']
    back = _numbered(dcp, names, opt)
    assert back['param_groups'] == opt.state_dict()['param_groups']
    assert all(torch.equal(back['state'][i][k], v) for i, s in opt.state_dict()['state'].items() for k, v in s.items())
    m2 = build_model(cfg); opt2 = torch.optim.AdamW(param_groups(m2.encoder, m2.predictor))
    load_states(m2, opt2, st)
    assert torch.equal(opt2.state_dict()['state'][0]['exp_avg'], opt.state_dict()['state'][0]['exp_avg'])
