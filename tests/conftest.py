"""Shared fixtures and helpers of the training tests (test_train.py, test_faults.py)."""
import numpy as np
import pytest
import torch
from PIL import Image
from ijepa_edu.config import get_config
from ijepa_edu.checkpoint import load_checkpoint

@pytest.fixture
def one_thread():
    "Tiny models on 2 shared cores: one torch thread is as fast and does not fight the other jobs."
    n = torch.get_num_threads(); torch.set_num_threads(1); yield; torch.set_num_threads(n)

@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    "An ImageFolder tree of generated 32 px images: 48 train and 24 test, two classes (stripes, blobs)."
    root = tmp_path_factory.mktemp('toy')
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32] / 32
    for split, count in (('train', 48), ('test', 24)):
        for i in range(count):
            cls = i % 2
            a = np.sin(2 * np.pi * g.uniform(2, 5) * yy) if cls == 0 else np.exp(-((xx - g.uniform(.2, .8)) ** 2 + (yy - .5) ** 2) / .03)
            d = root / split / f'c{cls}'; d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(((np.stack([a, a.T, -a], -1) * .5 + .5) * 255).astype(np.uint8)).save(d / f'{i}.png')
    return root

TOY_RUN = dict(device='cpu', batch_size='16', epochs='2', warmup='0.5', log_every='1', diag_every='2', eval_probes='',
               eval_train_images='0', knn_every='0')   # the online monitor: tested on its own (test_train.py)

def cfg_for(toy, out, **kw):
    "cifar10_tiny on the toy tree: 48 images / 16 = 3 steps per epoch, 2 epochs, no evaluation unless asked."
    return get_config('cifar10_tiny', **{**TOY_RUN, 'data': str(toy), 'out': str(out), **kw})

def weights(path):
    "A checkpoint and its three networks' tensors under one flat name each."
    ck = load_checkpoint(path)
    return ck, {f'{k}.{n}': t for k in ('encoder', 'predictor', 'target_encoder') for n, t in ck[k].items()}

def assert_same(a, b):
    assert a.keys() == b.keys()
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f'{len(bad)} tensors differ, e.g. {bad[:3]}'
