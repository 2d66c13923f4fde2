"""Data in memory (lesson 26, issue 12): a training run with `data_in_memory=true` trains, resumes exactly, and draws
the same batches whatever the number of steps before a resume; bad settings are refused with the fix."""
import subprocess, sys
from pathlib import Path
import pytest
import torch
import ijepa_edu.train as T
from conftest import cfg_for, weights, assert_same

ROOT = Path(__file__).resolve().parents[1]


def test_memory_run_resumes_exactly(toy, tmp_path, one_thread):
    T.train(cfg_for(toy, tmp_path / 'full', data_in_memory='true'), quiet=True)
    T.train(cfg_for(toy, tmp_path / 'cut', data_in_memory='true', max_steps='4'), quiet=True)   # stops mid-epoch 1
    T.train(cfg_for(toy, tmp_path / 'cut', data_in_memory='true'), resume=True, quiet=True)
    _, a = weights(tmp_path / 'full' / 'latest.pt'); _, b = weights(tmp_path / 'cut' / 'latest.pt')
    assert_same(a, b)


def test_memory_run_differs_from_disk_run_but_learns_the_same_way(toy, tmp_path, one_thread):
    s_mem = T.train(cfg_for(toy, tmp_path / 'mem', data_in_memory='true'), quiet=True)
    s_disk = T.train(cfg_for(toy, tmp_path / 'disk'), quiet=True)
    assert s_mem['steps'] == s_disk['steps'] == 6 and s_mem['bad_images'] == 0
    _, a = weights(tmp_path / 'mem' / 'latest.pt'); _, b = weights(tmp_path / 'disk' / 'latest.pt')
    assert any(not torch.equal(a[k], b[k]) for k in a)       # other crops (bilinear on the batch, not PIL bicubic)


def test_memory_refuses_colour_jitter(toy, tmp_path):
    with pytest.raises(ValueError, match='color_jitter=0'):
        T.train(cfg_for(toy, tmp_path / 'cj', data_in_memory='true', color_jitter='0.5'), quiet=True)


def test_bench_memdata_quick():
    out = subprocess.run([sys.executable, 'bench/memdata.py', '--quick'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'disk' in out.stdout and 'memory' in out.stdout and 'per batch' in out.stdout


def test_gpu_recipe_toy(toy, tmp_path):
    "bench/gpu_recipe.py runs its calibration and its run on the CPU with a toy model and prints the learning curve."
    out = subprocess.run([sys.executable, 'bench/gpu_recipe.py', '--toy', '--quiet', '--data', str(toy), '--out', str(tmp_path),
                          '--minutes', '0.5', 'batch_size=16', 'eval_train_images=0'],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    assert 'learning curve' in out.stdout and 'k-NN' in out.stdout and 'final: knn_top1' in out.stdout, out.stdout
    assert (tmp_path / 'run' / 'metrics.json').exists()
