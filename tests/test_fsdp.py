"""FSDP2 (`fsdp=true`) on the CPU, which torch supports with gloo: two processes train the toy run as DDP does, the
EMA target encoder is sharded like the context encoder and updated shard by shard, and checkpoints keep the unsharded
layout (exact resume; one plain process loads them). The SLURM batch script beside lesson 18 parses and names what exists."""
import inspect, json, os, re, shutil, socket, subprocess, warnings
from pathlib import Path
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ijepa_edu.train as T
from ijepa_edu.config import get_config, PRESETS, TrainConfig
from ijepa_edu.checkpoint import load_checkpoint, restore, save_small, load_small
from ijepa_edu.build import build_model
from ijepa_edu.schedules import param_groups
from ijepa_edu.runlog import read_log
from conftest import cfg_for, weights, assert_same

ROOT = Path(__file__).resolve().parents[1]
TWO = dict(accum_steps='2', knn_every='1', monitor_images='48')   # accumulation (no_sync) and the monitor under FSDP too

def _port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _gathered(module):
    "A module's state, whole (DTensor shards gathered), on the CPU."
    return {k: (v.full_tensor() if hasattr(v, 'full_tensor') else v).detach().cpu() for k, v in module.state_dict().items()}

def _ema_checks(rank, tmp):
    "In a group of 2: the target's parameters are DTensors laid out as the encoder's, still after its forward; the EMA step and the gradient norm match one unsharded copy."
    from ijepa_edu.ema import ema_update
    from ijepa_edu.masks import MaskCollator
    cfg = get_config('cifar10_tiny', embed_dim='32', depth='2', num_heads='2', pred_depth='1', pred_emb_dim='16')
    torch.manual_seed(0); model = build_model(cfg); plain = build_model(cfg)
    plain.load_state_dict(model.state_dict())
    T.shard_model(model)
    tgt, enc = list(model.target_encoder.parameters()), list(model.encoder.parameters())
    out = dict(dtensor=all(type(p).__name__ == 'DTensor' for p in tgt), shard=tgt[0].to_local().numel() / tgt[0].numel(),
               same_layout=all(t.placements == e.placements and t.to_local().shape == e.to_local().shape for t, e in zip(tgt, enc)))
    torch.manual_seed(1); imgs = torch.randn(4, 3, 32, 32)             # the same batch in both processes
    _, me, mpred = MaskCollator(input_size=32, patch_size=4, min_keep=4)([(torch.zeros(1), 0)] * 4)
    for m in (model, plain):
        opt = torch.optim.AdamW(param_groups(m.encoder, m.predictor), lr=1e-2)
        m(imgs, me, mpred).backward(); opt.step(); opt.zero_grad()
    out['dtensor_after_forward'] = all(type(p).__name__ == 'DTensor' for p in model.target_encoder.parameters())
    model.ema_step(0.9); ema_update(plain.target_encoder, plain.encoder, 0.9)
    a, b = _gathered(model.target_encoder), _gathered(plain.target_encoder)
    out['ema_diff'] = max((a[k] - b[k]).abs().max().item() for k in a)
    model(imgs, me, mpred).backward(); plain(imgs, me, mpred).backward()
    norms = [torch.nn.utils.clip_grad_norm_(m.trainable_parameters(), 1.0) for m in (model, plain)]   # clipping works on shards
    out['grad_norms'] = [float(n.full_tensor() if hasattr(n, 'full_tensor') else n) for n in norms]
    if rank == 0: (tmp / 'ema.json').write_text(json.dumps(out))

def _worker(rank, world, ports, toy, tmp):
    torch.set_num_threads(1)
    def run(i, out, resume=False, model=None, **kw):      # what torchrun sets for each process, a fresh port per run
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(ports[i]))
        cfg = cfg_for(toy, tmp / out, **TWO, **kw)
        return T.train(cfg, model=model and model(cfg), resume=resume, quiet=True)
    run(0, 'ddp', max_steps='3', eval_probes='knn')
    run(1, 'fsdp', max_steps='3', eval_probes='knn', fsdp='true')
    run(2, 'cut', max_steps='2', fsdp='true')
    run(3, 'cut', resume=True, max_steps='3', eval_probes='knn', fsdp='true')
    def poisoned(cfg):                                       # rank 1 alone: an inf loss on its 3rd micro-batch (step 2)
        torch.manual_seed(cfg.seed); model, calls = build_model(cfg), [0]
        fwd = model.forward
        def forward(*a, **k):
            calls[0] += 1; loss = fwd(*a, **k)
            return loss * float('inf') if rank == 1 and calls[0] == 3 else loss
        model.forward = forward
        return model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        s = run(5, 'skip', model=poisoned, max_steps='3', fsdp='true', on_nan='skip')
    if rank == 0: (tmp / 'skip.json').write_text(json.dumps(s))
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{ports[4]}', rank=rank, world_size=world)
    try: _ema_checks(rank, tmp)
    finally: dist.destroy_process_group()

@pytest.fixture(scope='module')
def runs(toy, tmp_path_factory):
    "Two gloo processes (mp.spawn, no torchrun): DDP, FSDP, FSDP stopped at step 2 and resumed, an inf loss on one rank; the EMA checks."
    tmp = tmp_path_factory.mktemp('fsdp')
    mp.spawn(_worker, args=(2, [_port() for _ in range(6)], toy, tmp), nprocs=2)
    return tmp

@pytest.mark.slow
def test_fsdp_trains_as_ddp_does(runs):
    "Same data, same init: weights within 1e-5 of DDP's (measured: equal, as a sum over two ranks has one order), same log."
    (ck_d, a), (ck_f, b) = weights(runs / 'ddp' / 'latest.pt'), weights(runs / 'fsdp' / 'latest.pt')
    assert ck_f['config']['fsdp'] and not ck_d['config']['fsdp'] and ck_f['world_size'] == 2
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    ld, lf = read_log(runs / 'ddp' / 'log.csv'), read_log(runs / 'fsdp' / 'log.csv')
    for k in ('loss', 'knn_top1', 'rankme'):                      # the monitor and diagnostics ran on the shards
        (sx, x), (sy, y) = ld[k], lf[k]
        assert x and sx == sy and all(abs(p - q) < 1e-4 for p, q in zip(x, y)), (k, ld[k], lf[k])
    md, mf = (_top1(json.loads((runs / r / 'metrics.json').read_text())) for r in ('ddp', 'fsdp'))
    assert md and md == mf                                       # rank 0 evaluated an unsharded copy after the run

def _top1(d, at=''):
    "Every '*top1' number of a (nested) metrics dict, by its path."
    if not isinstance(d, dict): return {}
    return {**{at + k: v for k, v in d.items() if k.endswith('top1') and not isinstance(v, dict)},
            **{p: v for k, v in d.items() for p, v in _top1(v, f'{at}{k}.').items()}}

@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(runs):
    "on_nan='skip' under FSDP: rank 1's inf loss at step 2 reaches every shard; all ranks skip it, none applies it."
    s = json.loads((runs / 'skip.json').read_text())
    assert s['steps'] == 3 and s['skipped_steps'] == 1, s
    ck, w = weights(runs / 'skip' / 'latest.pt')
    assert all(t.isfinite().all() for t in w.values())
    assert {int(st['step']) for st in ck['opt']['state'].values()} == {2}     # AdamW stepped twice in three steps

@pytest.mark.slow
def test_ema_target_is_sharded_like_the_encoder(runs):
    r = json.loads((runs / 'ema.json').read_text())
    assert r['dtensor'] and r['same_layout'] and r['shard'] <= 0.5 and r['dtensor_after_forward'], r
    assert r['ema_diff'] < 1e-6, r                                 # each rank's lerp on its shard = the whole update
    assert abs(r['grad_norms'][0] - r['grad_norms'][1]) < 1e-5 * r['grad_norms'][1], r

@pytest.mark.slow
def test_fsdp_resume_is_exact(runs):
    from test_faults import assert_same_checkpoint
    assert_same_checkpoint(runs / 'fsdp' / 'latest.pt', runs / 'cut' / 'latest.pt')

@pytest.mark.slow
def test_fsdp_checkpoint_is_the_plain_layout(runs, toy, tmp_path):
    "Same keys, optimiser numbering and tensor shapes as DDP's file; one plain process restores it, resumes it, ships it."
    d, f = load_checkpoint(runs / 'ddp' / 'latest.pt'), load_checkpoint(runs / 'fsdp' / 'latest.pt')
    assert list(d) == list(f) and d['opt']['param_groups'] == f['opt']['param_groups']
    assert {i: {k: v.shape for k, v in s.items()} for i, s in d['opt']['state'].items()} == \
           {i: {k: v.shape for k, v in s.items()} for i, s in f['opt']['state'].items()}
    cfg = get_config('cifar10_tiny', **{'data': str(toy)})
    model = build_model(cfg); opt = torch.optim.AdamW(param_groups(model.encoder, model.predictor))
    assert restore(runs / 'fsdp' / 'latest.pt', model, opt, cfg) == (3, 1, 0)
    shutil.copytree(runs / 'fsdp', tmp_path / 'one')
    s = T.train(cfg_for(toy, tmp_path / 'one', max_steps='4'), resume=True, quiet=True)   # world size 2 -> 1, no FSDP
    assert s['steps'] == 4 and s['world_size'] == 1
    small, cfg_s, step = load_small(save_small(runs / 'fsdp' / 'latest.pt', tmp_path / 'small.pt'))
    assert step == 3 and cfg_s.fsdp

@pytest.mark.usefixtures('one_thread')
def test_fsdp_in_one_process_trains_as_without(toy, tmp_path):
    "fsdp=true with one process (a group of one, as on one GPU), also with each block recomputed: the plain run's weights."
    T.train(cfg_for(toy, tmp_path / 'plain', max_steps='2'), quiet=True)
    for name, kw in (('fsdp', {}), ('fsdp_gc', dict(grad_checkpointing='true'))):
        T.train(cfg_for(toy, tmp_path / name, max_steps='2', fsdp='true', **kw), quiet=True)
        assert not dist.is_initialized()                            # the group of one is gone again
        (_, a), (_, b) = weights(tmp_path / 'plain' / 'latest.pt'), weights(tmp_path / name / 'latest.pt')
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6, name

@pytest.mark.parametrize('kw, says', [(dict(compile='true'), 'set compile=false'),
                                      (dict(precision='fp16'), 'not fp16 with loss scaling'),
                                      (dict(device='mps'), 'runs on CUDA GPUs or the CPU')])
def test_fsdp_refuses_what_it_does_not_do_in_one_line(kw, says):
    cfg = get_config('cifar10_tiny', fsdp='true', **kw)
    with pytest.raises(ValueError, match=says) as e: T.fsdp_setup(cfg, 2, torch.device(cfg.device if cfg.device != 'auto' else 'cpu'))
    assert '\n' not in str(e.value) and 'fsdp=' in str(e.value)

SBATCH = ROOT / 'tools' / 'slurm_train.sbatch'

def test_slurm_script_parses_and_names_what_exists():
    "bash -n accepts it; its preset, its flags and its config fields exist; it runs torchrun under srun with a rendezvous."
    if shutil.which('bash') is None: pytest.skip('no bash')
    r = subprocess.run(['bash', '-n', str(SBATCH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = SBATCH.read_text()
    assert text.startswith('#!/bin/bash') and re.search(r'^#SBATCH --nodes=\d+', text, re.M)
    assert re.search(r'^srun .*torchrun', text, re.M) and '-m ijepa_edu.train' in text
    assert all(k in text for k in ('--rdzv_backend=c10d', '--rdzv_endpoint', '--nnodes', '--nproc_per_node', 'SLURM_JOB_NODELIST'))
    assert re.search(r'PRESET=\$\{PRESET:-(\w+)\}', text)[1] in PRESETS
    flags = {f'--{p}' for p in inspect.signature(T.main.__wrapped__).parameters}      # ijepa_train's options
    used = {*re.findall(r'(--\w+)', text.split('-m ijepa_edu.train', 1)[1]), *re.findall(r'RESUME="(--\w+)"', text)}
    assert used and used <= flags, used - flags
    fields = {f for f in TrainConfig.__dataclass_fields__}
    assert set(re.findall(r'(\w+)=', re.search(r'EXTRA=\$\{EXTRA:-([^}]*)\}', text)[1])) <= fields
