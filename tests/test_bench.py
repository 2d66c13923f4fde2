"""The benchmark scripts run (smoke runs with tiny models; no timing is asserted), and their tools count right."""
import json, os, subprocess, sys, types
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))
import bench_util
import gpu_step
import jobs

KEYS = {'benchmark', 'case', 'teaching', 'fast', 'unit', 'note'}


def check_rows(rows):
    assert rows and all(set(r) == KEYS for r in rows), rows
    for r in rows:
        for k in ('teaching', 'fast'): assert r[k] is None or r[k] > 0, r


def test_run_quick_prints_the_table(tmp_path):
    "`bench/run.py --quick` (the CPU step module) prints the machine, a Markdown table and saves the JSON."
    out = tmp_path / 'rows.json'
    res = subprocess.run([sys.executable, 'bench/run.py', '--quick', '--only', 'step_cpu', 'gpu_step', '--threads', '1',
                          '--json', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert '| benchmark | case | teaching | fast |' in res.stdout and 'torch ' in res.stdout and 'cores' in res.stdout
    saved = json.loads(out.read_text())
    check_rows(saved['rows'])
    cases = {r['case'] for r in saved['rows']}
    assert any('teaching path -> fast path' in c for c in cases) and any('gradient checkpointing' in c for c in cases)
    if not torch.cuda.is_available(): assert any('gpu_step: skipped' in s for s in saved['skipped'])
    step = next(r for r in saved['rows'] if r['benchmark'] == 'cpu step')
    loss_diff = float(step['note'].split('|difference| ')[1].split(',')[0])
    assert loss_diff < 1e-5                                                     # the same loss on the same batch


def test_gpu_step_code_path_on_cpu():
    "gpu_step's step, FLOP count and row on the CPU with a one-block ViT-Ti (errors only; CPU timings mean nothing)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try: rows = gpu_step.measure(models=('vit_tiny:4',), batch=2, img=64, steps=1, warmup=1, pred_depth=1, device='cpu',
                                 depth=1, pred_width=48, grad_ckpt=True)
    finally: torch.set_num_threads(n)
    check_rows(rows)
    assert rows[0]['fast'] and 'grad checkpointing' in rows[0]['case']


@pytest.mark.parametrize('n,D,r', [(50, 64, 4.0), (197, 96, 48 / 11)])
def test_block_flops_match_pytorchs_counter(n, D, r):
    "The docstring's FLOP count of a block, 2n(4+2r)D^2 + 4n^2 D, against PyTorch's FlopCounterMode."
    from torch.utils.flop_counter import FlopCounterMode
    from ijepa_edu.encoder import Block
    blk = Block(D, num_heads=4, mlp_ratio=r, fused=False)                       # the counter does not see the CPU's SDPA kernel
    with FlopCounterMode(display=False) as fc, torch.no_grad(): blk(torch.randn(1, n, D))
    hidden = int(D * r)                                                         # the MLP's width is rounded down
    assert fc.get_total_flops() == pytest.approx(gpu_step.block_flops(n, D, hidden / D), rel=1e-12)


def test_peak_memory_counts_live_tensors():
    with bench_util.PeakMemory() as mem:
        a = torch.empty(1000, dtype=torch.float32)                              # 4000 bytes
        b = torch.empty(500, dtype=torch.float64)                               # 4000 bytes, both alive
        del a, b
        a_view = torch.empty(250, dtype=torch.float32)[:10]  # noqa: F841 (alive: 1000 bytes; a view counts its storage)
        assert mem.live == 1000
    assert mem.peak == 8000


def test_interleaved_alternates_and_reports_medians():
    calls = []
    med, all_ts = bench_util.interleaved({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')}, reps=3, warmup=1)
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b']                    # warm-up, then the order flips each round
    assert set(med) == {'a', 'b'} and all(len(v) == 3 for v in all_ts.values())


def test_quality_pretrains_then_scores_trained_random_and_pixels(toy, tmp_path):
    "bench/quality.py end to end on the toy tree: one JSON line with the three rows, each with its probes (no timing)."
    import quality
    res = quality.main(['--data', str(toy), '--out', str(tmp_path / 'run'), '--device', 'cpu',
                        '--results', str(tmp_path / 'q.jsonl'), 'batch_size=16', 'epochs=1', 'warmup=0.5', 'knn_every=0'])
    assert res['budget']['steps'] == 3
    for row in ('trained', 'random_init'): assert {'knn_top1', 'linear_top1', 'linear4_top1'} <= set(res[row])
    assert {'knn_top1', 'linear_top1'} <= set(res['pixels'])
    again = quality.main(['--data', str(toy), '--ckpt', str(tmp_path / 'run' / 'latest.pt'), '--device', 'cpu',
                          '--results', str(tmp_path / 'q.jsonl'), '--no_pixels'])
    assert again['trained'] == {**res['trained'], 'seconds': again['trained']['seconds']}   # the same run, rescored
    assert len((tmp_path / 'q.jsonl').read_text().splitlines()) == 2


def test_tiny_recipe_table_reports_gaps_and_seed_spread():
    "bench/experiments/tiny_recipe.py: the gap is trained minus random init, and seeds of one setting are grouped."
    sys.path.insert(0, str(ROOT / 'bench' / 'experiments'))
    import tiny_recipe
    m = lambda lin, rnd: dict(train_seconds=1.0, knn_top1=30.0, knn_top1_random_init=20.0, linear_top1=lin, linear_top1_random_init=rnd)
    rows = [dict(name='a', overrides=['epochs=1'], metrics=m(44.0, 34.0)), dict(name='a1', overrides=['epochs=1', 'seed=1'], metrics=m(45.0, 33.0)),
            dict(name='b', overrides=['lr=5e-4'], metrics=m(40.0, 34.5))]
    t = tiny_recipe.table(rows)
    assert '| a | epochs=1 | 1 | 30.00 | 20.00 | 44.00 | 34.00 | +10.00 |' in t
    assert '| b | lr=5e-4 | 1 | 30.00 | 20.00 | 40.00 | 34.50 | +5.50 |' in t
    assert '| epochs=1 | 2 | +11.00 | +10.00 | +12.00 |' in t          # the two seeds of one setting
    assert '| lr=5e-4 |' not in t.split('| setting |')[1]                # a single run makes no seed group
    assert set(tiny_recipe.VARIANTS) >= {json.loads(l)['name'] for l in open(ROOT / 'bench/results/2026-11-26_tiny_recipe.jsonl')}


# ---- bench/jobs.py: the job runner of bench's queues (small_sweep, learning_curve, tiny_recipe)

FAKE_TRAIN = """import json, os, sys
from pathlib import Path
out, resume, fail = Path(sys.argv[1]), '--resume' in sys.argv, 'fail=1' in sys.argv
with open(out.parent / 'calls.txt', 'a') as f: f.write(json.dumps([out.name, resume, os.environ['OMP_NUM_THREADS'], os.nice(0)]) + '\\n')
if fail: sys.exit('ijepa_train: the fake job fails as asked')
(out / 'log.csv').write_text('step,feat_std,pos_share\\n1,0.5,0.1\\n2,0.25,0.2\\n3,,\\n')
(out / 'metrics.json').write_text(json.dumps(dict(train_seconds=2.0, img_per_s=3.0, final_loss=0.5, knn_top1=40.0, resumed=resume)))
"""


class FakeJob(jobs.Job):
    "A job whose command is a tiny script: writes log.csv and metrics.json (or fails), and notes how it was called."
    def command(self, data, resume=False):
        return [sys.executable, '-c', FAKE_TRAIN, str(self.out), *(['--resume'] if resume else []), *self.overrides]


def fake_queue(tmp_path):
    return [FakeJob(n, ov, tmp_path / 'runs' / n, fields=dict(recipe=n[0])) for n, ov in
            (('a_done', ['lr=1e-3']), ('b_stopped', ['lr=2e-3']), ('c_new', ['lr=5e-4']), ('d_fails', ['fail=1']))]


def test_job_runner_runs_resumes_skips_and_collects(tmp_path, capsys):
    "bench/jobs.py: one thread and `nice` per job; a finished folder is logged, not run; a stopped one resumes; reruns add nothing."
    q, res = fake_queue(tmp_path), tmp_path / 'res.jsonl'
    q[0].out.mkdir(parents=True); (q[0].out / 'metrics.json').write_text(json.dumps(dict(train_seconds=1.0, img_per_s=1.0)))
    q[1].out.mkdir(parents=True); (q[1].out / 'latest.pt').touch()               # stopped in the middle: resumed
    rows, failed = jobs.run_queue(q, 'DATA', res, at_once=2, poll=0.1)
    assert failed == ['d_fails'] and 'the fake job fails as asked' in capsys.readouterr().err
    calls = {c[0]: c[1:] for c in map(json.loads, (tmp_path / 'runs' / 'calls.txt').read_text().splitlines())}
    assert set(calls) == {'b_stopped', 'c_new', 'd_fails'}                       # a_done was not run again
    assert calls['b_stopped'][0] and not calls['c_new'][0]                       # --resume only where a run was stopped
    assert all(c[1] == '1' and (c[2] >= os.nice(0) + 10 or c[2] == 19) for c in calls.values())   # one thread, niced
    logged = jobs.read_rows(res)
    assert [r['name'] for r in logged] == [r['name'] for r in rows]             # in the order they finished
    assert logged[0]['name'] == 'a_done' and sorted(r['name'] for r in logged[1:]) == ['b_stopped', 'c_new']
    b = next(r for r in logged if r['name'] == 'b_stopped')
    assert b['recipe'] == 'b' and b['overrides'] == ['lr=2e-3'] and b['config']['lr'] == 2e-3 and b['config']['preset'] == 'cifar10_tiny'
    assert b['metrics']['resumed'] and b['diag'] == {'feat_std': '0.25', 'pos_share': '0.2'} and b['wall_s'] > 0
    assert logged[0]['wall_s'] is None and Path(b['run']) == q[1].out
    assert jobs.run_queue(q[:3], 'DATA', res, poll=0.1) == ([], [])            # everything finished and logged: nothing to do
    assert 'already in' in capsys.readouterr().err and len(jobs.read_rows(res)) == 3


def test_job_runner_collect_logs_what_finished_while_it_was_stopped(tmp_path, capsys):
    "collect: finished folders the results file lacks are logged once; unfinished ones are named; the table prints them."
    q, res = fake_queue(tmp_path), tmp_path / 'res.jsonl'
    for j in q[:2]: j.out.mkdir(parents=True); (j.out / 'metrics.json').write_text(json.dumps(dict(train_seconds=1.0, img_per_s=1.0)))
    (q[1].out / 'metrics.json').write_text(json.dumps({'evaluation': {'train_images': 10, 'knn_top1': 30.0}}))   # ijepa_eval only
    (q[1].out / 'log.csv').write_text('step,img_per_s,elapsed_s\n5,10.0,60.0\n')
    assert [r['name'] for r in jobs.collect(q, res)] == ['a_done', 'b_stopped']
    assert 'c_new: not finished' in capsys.readouterr().err
    assert jobs.collect(q, res) == [] and len(jobs.read_rows(res)) == 2
    m = jobs.read_rows(res)[1]['metrics']
    assert (m['knn_top1'], m['train_seconds'], m['steps'], m['eval_train_images']) == (30.0, 60.0, 5, 10)   # flattened, from the log
    (q[2].out).mkdir(parents=True)                                                # this version's schema: rows and protocol
    (q[2].out / 'metrics.json').write_text(json.dumps(dict(train_seconds=3.0, img_per_s=4.0, evaluation=dict(
        rows=dict(pretrained=dict(knn_top1=40.0), random_init=dict(knn_top1=30.0)), protocol=dict(train_images=100, test_images=50)))))
    m = jobs.flat_metrics(q[2].out)
    assert (m['knn_top1'], m['knn_top1_random_init'], m['eval_train_images'], m['train_seconds']) == (40.0, 30.0, 100, 3.0)
    t = jobs.table(jobs.read_rows(res), [('run', lambda r: r['name'], 'l'), ('s', lambda r: r['metrics']['train_seconds'], 'r')])
    assert t.splitlines() == ['| run | s |', '|---|---:|', '| a_done | 1.0 |', '| b_stopped | 60.0 |']


def test_queue_scripts_print_the_saved_results_and_collect(tmp_path):
    "The three queue scripts: --table prints every results file they wrote; learning_curve --collect logs a folder once."
    sys.path.insert(0, str(ROOT / 'bench' / 'experiments'))
    import learning_curve, small_sweep
    run = lambda script, *args: subprocess.run([sys.executable, f'bench/experiments/{script}.py', *args], cwd=ROOT, capture_output=True, text=True)
    for script, f, line in (('small_sweep', '2026-11-26_h100_small_sweep_4ep.jsonl', '| official | - | 29.36 | 28.57 | 0.0265 |  |  |'),
                            ('tiny_recipe', '2026-11-26_tiny_recipe.jsonl', '| e1_base | epochs=1 | 228 | 37.51 | 26.13 | 43.61 | 34.08 | +9.53 |'),
                            ('learning_curve', 'learning_curve.jsonl', '| rope | 8 | 10000 | 1 | 42.9 | 136 | 43.03 | 46.12 | 29.07 | 37.29 |'),
                            ('learning_curve', 'table7.jsonl', '| rope_tl4_ema | 2 | 10000 | 2 |')):     # probe rows beside: skipped
        res = run(script, '--table', f'bench/results/{f}')
        assert res.returncode == 0 and line in res.stdout, (script, res.stderr[-1000:])
    folder = tmp_path / 'curve' / 'rope_e2_s1'; folder.mkdir(parents=True)
    (folder / 'metrics.json').write_text(json.dumps(dict(train_seconds=600.0, img_per_s=50.0, knn_top1=35.0, train_images=10000)))
    res_file = tmp_path / 'lc.jsonl'
    for _ in range(2): assert run('learning_curve', '--collect', str(folder), '--results', str(res_file), '--set', 'eval_probes=knn').returncode == 0
    (row,) = jobs.read_rows(res_file)
    assert (row['recipe'], row['epochs'], row['seed'], row['overrides'][-3:]) == ('rope', 2.0, 1, ['epochs=2', 'seed=1', 'eval_probes=knn'])
    assert row['config']['rope'] and row['config']['epochs'] == 2.0 and row['config']['save_every_epochs'] == 0
    assert '| rope | 2 | 10000 | 1 | 10.0 | 50 | 35.00 | - | - | - |' in learning_curve.table([row])
    assert row['config_from'] == 'code'                                          # no checkpoint: read from the overrides
    saved = {**row['config'], 'vc_weight': 0.25}                                 # what the run itself recorded
    torch.save({'config': saved}, folder / 'latest.pt')
    assert jobs.make_row(learning_curve.job_of(folder, ['eval_probes=knn']))['config'] == saved   # the run's own, not the code's
    assert jobs.make_row(learning_curve.job_of(folder, []))['config_from'] == 'checkpoint'
    a = types.SimpleNamespace(out=str(tmp_path), extra=[], device='cpu', epochs=4.0, workers=2, train_images=0)
    job = small_sweep.make_job('pos0.1', a)
    assert job.config()['pos_embed_scale'] == 0.1 and job.config()['epochs'] == 4.0 and job.out == tmp_path / 'pos0.1'


def test_learning_curve_runs_real_jobs_and_resumes_a_stopped_one(toy, tmp_path):
    "learning_curve.py end to end with `ijepa_train` on the toy tree (3 steps): a run, a rerun that skips it, a resume."
    cmd = [sys.executable, 'bench/experiments/learning_curve.py', '--data', str(toy), '--out', str(tmp_path / 'curve'), '--recipe',
           'paper', '--epochs', '1', '--results', str(tmp_path / 'lc.jsonl'), '--set', 'device=cpu', 'batch_size=16', 'eval_probes=',
           'knn_every=0', 'model=custom', 'embed_dim=32', 'depth=1', 'num_heads=2', 'pred_depth=1', 'pred_emb_dim=16']
    run = lambda: subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    res = run()
    assert res.returncode == 0, res.stdout[-1000:] + res.stderr[-2000:]
    folder = tmp_path / 'curve' / 'paper_e1_s0'
    (row,) = jobs.read_rows(tmp_path / 'lc.jsonl')
    assert row['metrics']['steps'] == 3 and row['config']['embed_dim'] == 32 and Path(row['run']) == folder
    assert '| paper | 1 | 10000 | 1 |' in res.stdout                            # (no probes: the table's old default)
    res = run()
    assert res.returncode == 0 and 'already in' in res.stderr and len(jobs.read_rows(tmp_path / 'lc.jsonl')) == 1
    (folder / 'metrics.json').unlink()                                           # as if stopped before its summary
    res = run()
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(jobs.read_rows(tmp_path / 'lc.jsonl')) == 2 and jobs.finished(folder)   # resumed (--resume), not refused


def test_init_soup_interpolates_between_init_and_trained():
    "bench/experiments/init_soup.py: a=1 gives the init's weights, a=0 the trained ones, a=0.5 their mean."
    sys.path.insert(0, str(ROOT / 'bench' / 'experiments'))
    import init_soup
    from ijepa_edu.encoder import VisionTransformer
    torch.manual_seed(0); init = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=3)
    torch.manual_seed(1); trained = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=3)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    for a in (0.0, 0.5, 1.0):
        mixed = init_soup.interpolate(init, trained, a).state_dict()
        for k, v in trained.state_dict().items():
            torch.testing.assert_close(mixed[k], a * init.state_dict()[k] + (1 - a) * v)
    for k, v in trained.state_dict().items(): torch.testing.assert_close(v, before[k])     # a copy: `trained` is unchanged
    assert trained.state_dict()['patch_embed.proj.weight'].ne(init.state_dict()['patch_embed.proj.weight']).any()


# ---- bench/gpu_step.py side by side with the official code, and bench/gpu_check.sh (their CPU toy modes)

OFFICIAL = os.environ.get('IJEPA_OFFICIAL')
ROW_KEYS = {'card', 'model', 'code', 'masks', 'batch', 'img_per_s', 'step_s', 'ctx_tokens_per_img', 'tgt_tokens_per_img',
            'Kc', 'Kt', 'tflop_per_img', 'loss'}
needs_official = pytest.mark.skipif(
    not OFFICIAL or not (Path(OFFICIAL) / 'src/models/vision_transformer.py').is_file(),
    reason='set IJEPA_OFFICIAL to the root of a facebookresearch/ijepa checkout (the folder holding src/) to compare with '
           'the official code; CI has none')


def check_step_rows(rows):
    "Every row measured (no error), with the expected keys and positive images/s, tokens and loss."
    assert rows, 'no rows'
    for r in rows:
        assert 'error' not in r, r
        assert ROW_KEYS <= set(r), sorted(ROW_KEYS - set(r))
        assert r['img_per_s'] > 0 and r['step_s'] > 0 and r['ctx_tokens_per_img'] > 0 and r['tgt_tokens_per_img'] > 0, r
        assert r['loss'] == r['loss'] and r['loss'] > 0, r                  # not NaN


def tokens(rows, code, masks):
    r = next(r for r in rows if r['code'] == code and r['masks'] == masks and not r['compile'])
    return r['ctx_tokens_per_img'], r['tgt_tokens_per_img']


def test_official_path_errors_name_the_missing_file(tmp_path):
    "A wrong --official path says which file is missing and what to pass instead."
    with pytest.raises(FileNotFoundError, match='no such folder'): gpu_step.import_official(tmp_path / 'nope')
    with pytest.raises(FileNotFoundError, match='src/utils/tensors.py'): gpu_step.import_official(tmp_path)
    for f in gpu_step.OFFICIAL_FILES: (tmp_path / f).parent.mkdir(parents=True, exist_ok=True); (tmp_path / f).touch()
    with pytest.raises(FileNotFoundError, match='its src/ folder'): gpu_step.import_official(tmp_path / 'src')


def test_mask_versions_are_one_draw():
    "The truncated masks are a subset of the padded draw, row by row; pad_to='max' holds the same tokens as 'batch'."
    pool = gpu_step.mask_pool(64, 4, 6, n=2)
    if pool[0]['pad'] is None: pytest.skip("this ijepa_edu's MaskCollator has no truncate='pad' yet")
    real = lambda m, b: set(m[b][m[b] >= 0].tolist())
    for p in pool:
        for (cut, pad, mx) in zip(p['random'][0] + p['random'][1], p['pad'][0] + p['pad'][1], p['pad_max'][0] + p['pad_max'][1]):
            assert (cut >= 0).all()                                              # truncated: no padding
            for b in range(len(cut)):
                assert real(cut, b) <= real(pad, b) and real(pad, b) == real(mx, b)
                assert cut[b].tolist() == sorted(cut[b].tolist())                # raster order
        widths = [m.shape[1] for m in p['random'][1]]
        assert len(set(widths)) == 1 and widths[0] == min((m >= 0).sum(-1).min().item() for m in p['pad'][1])
        assert gpu_step.tokens_per_image(p['pad'][0]) >= gpu_step.tokens_per_image(p['random'][0])


@needs_official
def test_gpu_step_toy_side_by_side_with_official(tmp_path):
    "gpu_step --toy with the official modules: one row per run, ratios against the official row, no `src` left imported."
    out = tmp_path / 'rows.jsonl'
    n = torch.get_num_threads()
    try: rows = gpu_step.main(['--toy', '--official', OFFICIAL, '--out', str(out)])
    finally: torch.set_num_threads(n)
    check_step_rows(rows)
    assert [(r['code'], r['masks']) for r in rows] == [('official', 'random'), ('ours', 'random'), ('ours', 'pad')]
    assert [json.loads(l) for l in out.read_text().splitlines()] == rows
    assert all(r['img_per_s_vs_official'] > 0 for r in rows[1:])
    assert tokens(rows, 'ours', 'random') == tokens(rows, 'official', 'random')          # the same masks
    assert all(p > t for p, t in zip(tokens(rows, 'ours', 'pad'), tokens(rows, 'ours', 'random')))   # padding keeps every drawn token
    assert not any(k == 'src' or k.startswith('src.') for k in sys.modules)            # the official package name is gone


def test_gpu_check_toy_runs_end_to_end(tmp_path):
    "bash bench/gpu_check.sh --toy: every part runs on the CPU and writes valid rows (with the official code if present)."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OFFICIAL': OFFICIAL or '', 'CIFAR10': '', 'IJEPA_DATA': ''}
    res = subprocess.run(['bash', 'bench/gpu_check.sh', '--toy', str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=420)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    status = dict(l.split('\t')[:2] for l in (tmp_path / 'status.tsv').read_text().splitlines()[1:])
    evals = '0' if (ROOT / 'bench' / 'eval_cost.py').is_file() else 'skipped'          # the eval part, once that file exists
    assert status == {'side': '0', 'giant': '0', 'compile': '0', 'recipe': 'skipped', 'eval': evals, 'fsdp': 'skipped'}, status
    side = [json.loads(l) for l in (tmp_path / 'side.jsonl').read_text().splitlines()]
    comp = [json.loads(l) for l in (tmp_path / 'compile.jsonl').read_text().splitlines()]
    giant = [json.loads(l) for l in (tmp_path / 'giant.jsonl').read_text().splitlines()]
    check_step_rows(side + comp + giant)
    assert all(r['grad_ckpt'] for r in giant) and [r['compile'] for r in comp] == [False, True]
    assert comp[1]['recompiles'] == 0 and comp[1]['frames_first_step'] > 0       # one mask width: nothing recompiles
    assert {r['masks'] for r in comp} == {'pad_max'} and len({r['Kc'] for r in comp}) == 1
    assert all(p > t for p, t in zip(tokens(side, 'ours', 'pad'), tokens(side, 'ours', 'random')))   # (rows differ in length here)
    assert ('official' in {r['code'] for r in side}) == bool(OFFICIAL)
    assert '| card | model |' in (tmp_path / 'table.md').read_text()
    if evals == '0':                                                              # the killed feature store resumed exactly
        (ev,) = [json.loads(l) for l in (tmp_path / 'eval.jsonl').read_text().splitlines()]
        assert ev['store'] and all(s['identical'] for s in ev['store'].values()), ev['store']


def test_padding_bench_counts_tokens_both_ways(tmp_path):
    "`bench/padding.py`: the same draws both ways; padding trains at least as many tokens, on rows at least as wide."
    out = tmp_path / 'pad.jsonl'
    res = subprocess.run([sys.executable, 'bench/padding.py', '--batch', '8', '--reps', '1', '--set', 'depth=1', 'pred_depth=1',
                          '--out', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = {r['way']: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {'random', 'pad'} and all(r['s_per_step'] > 0 for r in rows.values())
    assert rows['pad']['ctx_tokens_per_img'] > rows['random']['ctx_tokens_per_img']      # truncation drops context patches
    assert rows['pad']['tgt_tokens_per_img'] >= rows['random']['tgt_tokens_per_img']
    assert rows['pad']['places_per_row'] >= rows['pad']['ctx_tokens_per_img']             # real tokens fit in the rows
    assert 'pad / random:' in res.stdout
