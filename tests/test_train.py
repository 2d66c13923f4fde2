"""Integration tests of the training loop: outputs, determinism, exact resume, Ctrl-C, the CLI and two-process DDP."""
import json, os, signal, subprocess, sys
import numpy as np
import pytest
import torch

import ijepa_edu.train as T
from ijepa_edu.config import get_config
from conftest import cfg_for, weights, assert_same
from ijepa_edu.checkpoint import CheckpointError

pytestmark = pytest.mark.usefixtures('one_thread')

def test_run_writes_outputs_and_evaluates(toy, tmp_path):
    s = T.train(cfg_for(toy, tmp_path / 'r', eval_probes='knn linear', knn_every='1', save_every_epochs='1'), quiet=True)
    assert s['steps'] == 6 and s['total_steps'] == 6 and s['epochs_done'] == 2
    assert {p.name for p in (tmp_path / 'r').iterdir()} == {'.lock', 'latest.pt', 'ep1.pt', 'ep2.pt', 'log.csv', 'loss.png',
                                                             'metrics.json'}     # .lock: held while a run writes here
    assert torch.load(tmp_path / 'r' / 'ep1.pt', weights_only=True)['step'] == 3     # periodic: after epoch 1's 3 steps
    m = json.loads((tmp_path / 'r' / 'metrics.json').read_text())
    rows = m['evaluation']['rows']                                # the one results schema (lesson 27)
    for r in ('pretrained', 'random_init'): assert all(0 <= rows[r][k] <= 100 for k in ('knn_top1', 'linear_top1'))
    rows = (tmp_path / 'r' / 'log.csv').read_text().strip().splitlines()
    assert len(rows) == 1 + 6 + 3                                 # 6 steps, and the online k-NN at steps 0, 3 and 6
    assert T.read_log(tmp_path / 'r' / 'log.csv')['knn_top1'][0] == [0, 3, 6]
    ck = torch.load(tmp_path / 'r' / 'latest.pt', weights_only=True)
    official = {'encoder', 'predictor', 'target_encoder', 'opt', 'scaler', 'epoch', 'loss', 'batch_size', 'world_size', 'lr'}
    assert official <= ck.keys() and ck['step'] == 6 and ck['epoch'] == 2 and ck['epoch_batch'] == 0

def test_same_seed_same_checkpoint_other_seed_differs(toy, tmp_path):
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        T.train(cfg_for(toy, tmp_path / name, max_steps='3', seed=str(seed)), quiet=True)
    _, a = weights(tmp_path / 'a' / 'latest.pt'); _, b = weights(tmp_path / 'b' / 'latest.pt'); _, c = weights(tmp_path / 'c' / 'latest.pt')
    assert_same(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)

def test_resume_matches_uninterrupted_run(toy, tmp_path):
    T.train(cfg_for(toy, tmp_path / 'full'), quiet=True)
    T.train(cfg_for(toy, tmp_path / 'cut', max_steps='4'), quiet=True)      # stops mid-epoch 1 (3 steps per epoch)
    assert torch.load(tmp_path / 'cut' / 'latest.pt', weights_only=True)['epoch_batch'] == 1
    T.train(cfg_for(toy, tmp_path / 'cut'), resume=True, quiet=True)
    ck_a, a = weights(tmp_path / 'full' / 'latest.pt'); ck_b, b = weights(tmp_path / 'cut' / 'latest.pt')
    assert_same(a, b)
    sa, sb = ck_a['opt']['state'], ck_b['opt']['state']
    assert all(torch.equal(sa[i]['exp_avg_sq'], sb[i]['exp_avg_sq']) for i in sa)
    assert (tmp_path / 'full' / 'log.csv').read_text().splitlines()[1:] != []
    la = [r.split(',')[:6] for r in (tmp_path / 'full' / 'log.csv').read_text().splitlines()]
    lb = [r.split(',')[:6] for r in (tmp_path / 'cut' / 'log.csv').read_text().splitlines()]
    assert la == lb      # step, epoch, loss, lr, wd, momentum: the resumed log reads as one run

def test_ctrl_c_saves_the_finished_step_and_resumes_exactly(toy, tmp_path, monkeypatch):
    T.train(cfg_for(toy, tmp_path / 'full'), quiet=True)
    real = T.ema_momentum
    def press_ctrl_c(step, *a):
        if step == 3: os.kill(os.getpid(), signal.SIGINT)
        return real(step, *a)
    monkeypatch.setattr(T, 'ema_momentum', press_ctrl_c)
    with pytest.raises(KeyboardInterrupt): T.train(cfg_for(toy, tmp_path / 'int'), quiet=True)
    monkeypatch.setattr(T, 'ema_momentum', real)
    assert torch.load(tmp_path / 'int' / 'latest.pt', weights_only=True)['step'] == 4
    T.train(cfg_for(toy, tmp_path / 'int'), resume=True, quiet=True)
    assert_same(weights(tmp_path / 'full' / 'latest.pt')[1], weights(tmp_path / 'int' / 'latest.pt')[1])

def test_resume_refuses_other_preset_and_missing_checkpoint(toy, tmp_path):
    T.train(cfg_for(toy, tmp_path / 'r', max_steps='1'), quiet=True)
    other = get_config('cifar10_small', data=str(toy), out=str(tmp_path / 'r'), device='cpu', batch_size='16')
    with pytest.raises(CheckpointError, match="comes from preset 'cifar10_tiny'"): T.train(other, resume=True, quiet=True)
    with pytest.raises(CheckpointError, match='Nothing to resume'): T.train(cfg_for(toy, tmp_path / 'none'), resume=True, quiet=True)

def test_batch_must_split_over_processes_and_accumulation(toy, tmp_path):
    with pytest.raises(ValueError, match='not divisible'): T.train(cfg_for(toy, tmp_path / 'r', accum_steps='3'), quiet=True)

def test_accumulation_equals_one_big_batch_in_loss_scale(toy, tmp_path):
    "Two micro-batches of 8 make one step of 16: same number of steps, same data, finite loss."
    s = T.train(cfg_for(toy, tmp_path / 'acc', accum_steps='2', max_steps='3'), quiet=True)
    assert s['steps'] == 3 and np.isfinite(s['final_loss'])

def _run(cmd, cwd, timeout=180):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)

@pytest.mark.slow
def test_cli_prints_what_ran_and_where(toy, tmp_path):
    r = _run(['ijepa_train', '--preset', 'cifar10_tiny', '--data', str(toy), '--out', str(tmp_path / 'cli'),
              '--device', 'cpu', '--max_steps', '2', 'batch_size=16', 'eval_train_images=0'], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for text in ('Trained cifar10_tiny', '2 steps', 'k-NN', 'linear', 'target encoder', 'same net, random init',   # format_results
                 'checkpoint:', 'log:', 'plot:', 'metrics:'):
        assert text in r.stdout, (text, r.stdout)
    assert (tmp_path / 'cli' / 'latest.pt').exists()
    r = _run(['ijepa_train', '--preset', 'cifar10_tiny', '--data', str(toy), '--out', str(tmp_path / 'cli'),    # again
              '--device', 'cpu', '--max_steps', '2', 'batch_size=16'], tmp_path)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [           # one line, naming the three ways on
        f"ijepa_train: {tmp_path / 'cli'} already holds a run (latest.pt): continue it with --resume, choose another --out, "
        f"or pass --overwrite to delete it and start afresh."], r.stderr[-2000:]

@pytest.mark.slow
def test_cli_rejects_unknown_field(toy, tmp_path):
    r = _run(['ijepa_train', '--data', str(toy), 'not_a_field=1'], tmp_path)
    assert r.returncode != 0 and 'Unknown config fields' in r.stderr

@pytest.mark.slow
def test_torchrun_two_processes_gloo(toy, tmp_path):
    r = _run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'ijepa_edu.train',
              '--preset', 'cifar10_tiny', '--data', str(toy), '--out', str(tmp_path / 'ddp'), '--device', 'cpu',
              '--max_steps', '3', 'batch_size=16', 'eval_probes=', 'knn_every=0', 'log_every=1', 'epochs=2', 'warmup=0.5', 'diag_every=2'], tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    ck = torch.load(tmp_path / 'ddp' / 'latest.pt', weights_only=True)
    assert ck['world_size'] == 2 and ck['step'] == 3 and len(ck['rng']['ranks']) == 2     # every rank's generators
    assert len((tmp_path / 'ddp' / 'log.csv').read_text().strip().splitlines()) == 1 + 3   # rank 0 alone writes
    # two ranks of 8 see exactly what one process sees with two accumulated micro-batches of 8: same images, crops,
    # masks and averaged gradients, so the weights agree up to the order of floating-point sums
    T.train(cfg_for(toy, tmp_path / 'acc', accum_steps='2', max_steps='3'), quiet=True)
    _, a = weights(tmp_path / 'ddp' / 'latest.pt'); _, b = weights(tmp_path / 'acc' / 'latest.pt')
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst

@pytest.mark.slow
def test_torchrun_resume_with_stop_gives_each_rank_its_generators(toy, tmp_path):
    """Two gloo processes with StoP (each rank jitters its own mask tokens from its own generator): stopped at step 2
    (mid-epoch) and resumed, the checkpoint equals the uninterrupted run's, every rank's RNG state included. Restoring
    rank 0's generator on both ranks (the checkpoint before 2026-12) makes rank 1's jitter differ after the resume."""
    def ddp(out, *extra):
        r = _run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'ijepa_edu.train',
                  '--preset', 'cifar10_tiny', '--data', str(toy), '--out', str(tmp_path / out), '--device', 'cpu', *extra,
                  'batch_size=16', 'eval_probes=', 'knn_every=0', 'log_every=1', 'epochs=2', 'warmup=0.5', 'diag_every=0',
                  'rope=true', 'stop_std=0.25'], tmp_path, timeout=240)
        assert r.returncode == 0, r.stderr[-4000:]
    ddp('full', '--max_steps', '3'); ddp('cut', '--max_steps', '2'); ddp('cut', '--max_steps', '3', '--resume')
    from test_faults import assert_same_checkpoint
    assert_same_checkpoint(tmp_path / 'full' / 'latest.pt', tmp_path / 'cut' / 'latest.pt')

def test_unit_scaler_stays_at_one_after_a_skipped_step():
    """The GPU loop's scaler (bf16, fp32) only finds non-finite gradients: after a skipped step its scale is 1 again. A
    plain GradScaler halves it after every skip (after 150 skips it is 0 and every later step is skipped too)."""
    for cls, after in ((T.UnitScaler, 1.0), (torch.amp.GradScaler, 0.5)):
        scaler = cls('cpu', init_scale=1.0)
        p = torch.nn.Parameter(torch.ones(3)); opt = torch.optim.AdamW([p], lr=0.1)
        scaler.scale(p.sum() * float('inf')).backward(); scaler.step(opt); scaler.update(); opt.zero_grad()
        assert torch.equal(p.detach(), torch.ones(3)) and scaler.get_scale() == after   # skipped; the scale
        scaler.scale(p.sum()).backward(); scaler.step(opt); scaler.update()
        assert not torch.equal(p.detach(), torch.ones(3))                                 # the next step updates

def test_diagnostics_on_rank_zero_only(monkeypatch):
    "Only rank 0 computes (and logs) the collapse diagnostics; the others neither run the target encoder nor fail."
    calls = []
    monkeypatch.setattr(T, 'collapse_report', lambda enc, imgs: calls.append(1) or dict(feat_std=0.5, rankme=4.0, pos_share=0.1))
    cfg, watch = get_config('cifar10_tiny'), T.CollapseWatch()
    from types import SimpleNamespace
    args = (SimpleNamespace(target_encoder=None), None, torch.autocast('cpu', enabled=False), watch, cfg, 2, 1)
    assert T._diagnose(*args, False, torch.device('cpu')) == ({}, False) and calls == []
    assert T._diagnose(*args, True, torch.device('cpu'))[0]['rankme'] == 4.0 and calls == [1]
    assert 'rank 0' in T.collapse_message(2, {}, {}, 'latest.pt')

def test_cuda_rng_state_is_skipped_without_a_gpu():
    "A checkpoint written on a GPU resumes on the CPU: its CPU stream is set back, its CUDA state skipped (new and old layout)."
    from ijepa_edu.checkpoint import rng_state, set_rng_state
    if torch.cuda.is_available(): pytest.skip("on a GPU, bench/gpu_check.sh checks that the CUDA state is set back")
    torch.manual_seed(3); r = rng_state(); a = torch.rand(2)
    for cuda in (torch.zeros(16, dtype=torch.uint8), [torch.zeros(16, dtype=torch.uint8)]):   # as a GPU run saves it
        set_rng_state({**r, 'cuda': cuda}); assert torch.equal(torch.rand(2), a)

def test_train_takes_a_model_and_uses_its_targets(toy, tmp_path):
    """A variant is a subclass of IJEPA overriding one method, passed as train(cfg, model=...): the loop calls its
    `targets` every step (here zeros, so the run differs from the plain one), and its checkpoint is the usual layout."""
    from ijepa_edu.step import IJEPA
    calls = []
    class ZeroTargets(IJEPA):
        def targets(self, imgs, masks_enc, masks_pred):
            h = super().targets(imgs, masks_enc, masks_pred); calls.append(tuple(h.shape)); return torch.zeros_like(h)
    cfg = cfg_for(toy, tmp_path / 'zero', max_steps='2')
    torch.manual_seed(cfg.seed); base = T.build_model(cfg)
    s = T.train(cfg, model=ZeroTargets(base.encoder, base.predictor, loss=cfg.loss, target_layers=cfg.target_layers), quiet=True)
    plain = T.train(cfg_for(toy, tmp_path / 'plain', max_steps='2'), quiet=True)
    assert len(calls) == 2 and s['steps'] == 2 and s['final_loss'] != plain['final_loss']
    assert weights(tmp_path / 'zero' / 'latest.pt')[1].keys() == weights(tmp_path / 'plain' / 'latest.pt')[1].keys()

def test_center_targets_experiment_is_a_one_method_override(toy, tmp_path):
    """bench/experiments/center_targets.py: its `targets` are the library's (target_layers included) minus each position's
    batch mean, and a run with padded masks trains through train(cfg, model=...) without patching the library."""
    import importlib.util
    from pathlib import Path
    from ijepa_edu.step import target_features
    path = Path(__file__).resolve().parents[1] / 'bench' / 'experiments' / 'center_targets.py'
    spec = importlib.util.spec_from_file_location('center_targets', path); ct = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ct)
    cfg = cfg_for(toy, tmp_path / 'c', max_steps='2', target_layers='2', truncate='pad', vc_weight='0.1')
    torch.manual_seed(0); m = ct.centered(cfg)
    imgs, N = torch.randn(4, 3, 32, 32), m.target_encoder.patch_embed.num_patches
    every = [torch.arange(N).expand(4, N)]
    h = m.targets(imgs, every, every)                                          # (4, N, D): every position
    assert h.mean(0).abs().max() < 1e-5                                        # centred over the batch, per position
    lib = target_features(m.target_encoder, imgs, every, layers=2)
    assert torch.allclose(h, lib - lib.mean(0), atol=1e-6)                     # from the last two blocks' average
    last = target_features(m.target_encoder, imgs, every)                      # the last block alone: not these
    assert not torch.allclose(h, last - last.mean(0), atol=1e-3)
    s = T.train(cfg, model=m, quiet=True)
    assert s['steps'] == 2 and np.isfinite(s['final_loss']) and type(m).__name__ == 'Centered'

@pytest.mark.slow
def test_compile_refuses_changing_shapes_and_never_recompiles(toy, tmp_path, monkeypatch):
    """compile=true with masks whose lengths change every step (truncate='random' or 'first', pad_to='batch') is refused
    before anything runs, naming the fix; with truncate=pad (pad_to='auto' -> 'max') a compiled run (dynamo's 'eager'
    backend: the same graph capture, no code generation) compiles nothing after its first steps: 2 and 5 steps capture
    the same number of frames. Without the refusal a 'random' run recompiles as the lengths change."""
    for kw in (dict(truncate='random'), dict(truncate='first'), dict(truncate='pad', pad_to='batch')):
        with pytest.raises(ValueError, match=r"compile=true: .* so their lengths change every step .* Set truncate=pad pad_to=max"):
            T.train(cfg_for(toy, tmp_path / 'refused', compile='true', **kw), quiet=True)
    assert not (tmp_path / 'refused').exists()                                 # refused before the run folder is made
    from torch._dynamo.utils import counters
    real = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kw: real(self, backend='eager'))
    frames = []
    for steps in (2, 5):
        torch._dynamo.reset(); counters.clear()
        T.train(cfg_for(toy, tmp_path / f'c{steps}', compile='true', truncate='pad', max_steps=str(steps)), quiet=True)
        frames.append(int(counters['frames']['ok']))
    torch._dynamo.reset()
    assert frames[0] == frames[1] > 0, frames

def test_grad_checkpointing_reaches_encoder_and_predictor():
    "The config switch turns on the memory option of lessons 05 and 06 in both trained networks (off by default)."
    from ijepa_edu.config import get_config
    m = T.build_model(get_config('cifar10_tiny', grad_checkpointing='true'))
    assert m.encoder.grad_checkpointing and m.predictor.grad_checkpointing
    m = T.build_model(get_config('cifar10_tiny'))
    assert not m.encoder.grad_checkpointing and not m.predictor.grad_checkpointing

@pytest.mark.slow
def test_resume_with_the_online_monitor_is_exact(toy, tmp_path):
    """The online k-NN monitor's loaders draw on torch's global generator (a DataLoader draws its base seed there): the
    loop runs it under a forked generator, so a resume (which builds the monitor after restoring the generators) ends
    with every checkpoint tensor, RNG states included, equal to the uninterrupted run's. Before, StoP's draws after
    the resume shifted, and 363 of 484 tensors differed."""
    from test_faults import assert_same_checkpoint
    kw = dict(knn_every='1', monitor_images='48', rope='true', stop_std='0.25')   # StoP: training draws too
    T.train(cfg_for(toy, tmp_path / 'full', **kw), quiet=True)
    T.train(cfg_for(toy, tmp_path / 'cut', max_steps='2', **kw), quiet=True)      # mid-epoch: the monitor is built after the restore
    T.train(cfg_for(toy, tmp_path / 'cut', **kw), resume=True, quiet=True)
    assert_same_checkpoint(tmp_path / 'full' / 'latest.pt', tmp_path / 'cut' / 'latest.pt')
