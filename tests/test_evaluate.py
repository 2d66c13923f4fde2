"Tests of frozen-feature evaluation (nbs/13_evaluate.ipynb): pooling, the k-NN against a naive loop, known accuracies."
import math
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
import fastcore.test as fct
from ijepa_edu.evaluate import extract_features, knn_predict, knn_accuracy
from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.data import make_dataset, make_transforms

torch.set_num_threads(1)


def gen(seed): return torch.Generator().manual_seed(seed)


def knn_naive(train_f, train_y, test_f, k, T, num_classes):
    out = torch.zeros(len(test_f), num_classes, dtype=torch.float64)
    tr = train_f.double() / train_f.double().norm(dim=1, keepdim=True)
    for i, q in enumerate(test_f.double()):
        sims = tr @ (q / q.norm())
        order = sorted(range(len(sims)), key=lambda j: -float(sims[j]))[:k]
        for j in order: out[i, int(train_y[j])] += math.exp(float(sims[j]) / T)
    return out


@pytest.mark.parametrize('k,T,chunk', [(1, 0.07, 5), (5, 0.07, 1), (20, 0.07, 1024), (7, 0.5, 13), (60, 1.0, 64)])
def test_knn_matches_naive_loop(k, T, chunk):
    g = gen(k)
    tr, ytr, te = torch.randn(60, 8, generator=g), torch.randint(0, 4, (60,), generator=g), torch.randn(29, 8, generator=g)
    fast = knn_predict(tr, ytr, te, k=k, T=T, num_classes=6, chunk=chunk)
    ref = knn_naive(tr, ytr, te, k, T, 6)
    assert fast.shape == (29, 6)
    assert torch.allclose(fast.double(), ref, rtol=1e-4, atol=1e-6 * ref.max())
    assert torch.equal(fast.argmax(1), ref.argmax(1))


def test_knn_invariances():
    g = gen(0)
    tr, ytr, te = torch.randn(100, 16, generator=g), torch.randint(0, 3, (100,), generator=g), torch.randn(40, 16, generator=g)
    base = knn_predict(tr, ytr, te)
    assert torch.allclose(knn_predict(5 * tr, ytr, 0.1 * te), base, rtol=1e-4)           # cosine: scale-free
    perm = torch.randperm(100, generator=g)
    assert torch.allclose(knn_predict(tr[perm], ytr[perm], te), base, rtol=1e-4)         # order of the references
    assert knn_predict(tr.half(), ytr, te.half()).isfinite().all()                        # exp(1/T) in float32
    # votes: k neighbours each add at most exp(1/T) and at least exp(-1/T)
    s = base.sum(1)
    assert (s <= 20 * math.exp(1 / 0.07) * 1.0001).all() and (s >= 20 * math.exp(-1 / 0.07)).all()


def clustered(n_per, C, D, seed, spread=1.0, centres_seed=123):
    means = 4 * torch.randn(C, D, generator=gen(centres_seed))
    y = torch.arange(C).repeat_interleave(n_per)
    return means[y] + spread * torch.randn(C * n_per, D, generator=gen(seed)), y


def test_known_accuracies():
    tr, ytr = clustered(40, 8, 24, 1)
    te, yte = clustered(20, 8, 24, 2)
    assert knn_accuracy(tr, ytr, te, yte) == 100.0
    assert knn_accuracy(tr, ytr, tr, ytr, k=1) == 100.0                                   # its own nearest neighbour
    accs = [knn_accuracy(tr, torch.randint(0, 8, (320,), generator=gen(s)), te, torch.randint(0, 8, (160,), generator=gen(s + 50)))
            for s in range(6)]
    assert abs(sum(accs) / len(accs) - 12.5) < 4, accs                                    # random labels: chance
    shuffled = ytr[torch.randperm(len(ytr), generator=gen(3))]
    assert knn_accuracy(tr, shuffled, te, yte) < 40


def test_errors():
    tr, ytr, te = torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(3, 4)
    fct.test_fail(lambda: knn_predict(tr, ytr, te, k=11), contains='must lie between 1 and the number of train features (10)')
    fct.test_fail(lambda: knn_predict(tr, ytr[:4], te), contains='4 labels for 10 train features')
    fct.test_fail(lambda: knn_predict(tr, ytr, torch.randn(3, 5)), contains='the same D')
    fct.test_fail(lambda: knn_accuracy(tr, ytr, te, torch.zeros(2)), contains='2 labels for 3 test features')


class IntLabels(Dataset):
    "Images with plain-int labels, as torchvision datasets return them."
    def __init__(self, x): self.x = x
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], i % 3


def test_extract_features_pools_in_order_and_restores_mode():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=3)
    x = torch.randn(11, 3, 16, 16)
    with torch.no_grad(): ref = enc(x).mean(1)                                           # (11, 24)
    for bs in (1, 4, 64):
        f, y = extract_features(enc, IntLabels(x), batch_size=bs)
        assert f.shape == (11, 24) and f.dtype == torch.float32 and not f.requires_grad
        assert torch.allclose(f, ref, atol=1e-5) and y.tolist() == [i % 3 for i in range(11)]
    assert enc.training                                                                   # restored
    enc.eval(); extract_features(enc, IntLabels(x)); assert not enc.training


def test_end_to_end_on_a_tiny_imagefolder(tmp_path):
    "Generated images in an ImageFolder tree, through make_dataset and the evaluation transforms, as train.py does."
    g = gen(0)
    for split, n in (('train', 12), ('test', 6)):
        for cls, base in (('dark', 40), ('bright', 215)):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                px = (base + 20 * torch.randn(40, 40, 3, generator=g)).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(px).save(tmp_path / split / cls / f'{i}.png')
    tfm = make_transforms(32, train=False)
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=3)
    ftr, ytr = extract_features(enc, make_dataset(tmp_path, 'train', transform=tfm), batch_size=5)
    fte, yte = extract_features(enc, make_dataset(tmp_path, 'test', transform=tfm))
    assert ftr.shape == (24, 24) and sorted(ytr.tolist()) == [0] * 12 + [1] * 12
    assert knn_accuracy(ftr, ytr, fte, yte, k=5) == 100.0                                # dark vs bright: trivial
