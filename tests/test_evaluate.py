"Tests of frozen-feature evaluation: the probes (nbs/13_evaluate.ipynb: pooling, the k-NN against a naive loop, known accuracies) and whole runs (nbs/24_evaluate_runs.ipynb)."
import math
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
import fastcore.test as fct
from ijepa_edu.probes import extract_features, knn_predict, knn_accuracy
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


# ---- the last four blocks, the probes, the command (issue 4) ----
import json
from torch.utils.data import TensorDataset
from ijepa_edu.probes import (linear_probe, attentive_probe, AttentiveProbe, evaluate_encoder, evaluate_pixels,
                              parse_probes, standardize)
from ijepa_edu.evaluate import evaluate_checkpoint, write_metrics, main, format_results
from ijepa_edu.checkpoint import atomic_save, CheckpointError
from ijepa_edu.config import get_config
from conftest import cfg_for
from ijepa_edu.build import pick_eval_precision


def test_last_four_blocks_match_the_blocks_run_by_hand():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=5, num_heads=3)
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        h, outs = enc.patch_embed(x) + enc.pos_embed, []
        for blk in enc.blocks: h = blk(h); outs.append(h)                               # 5 x (6, 16, 24)
        normed = torch.cat([enc.norm(o).mean(1) for o in outs[1:]], 1)                  # blocks 2..5, each normed
        raw = torch.cat([o.mean(1) for o in outs[1:]], 1)
    f4, y = extract_features(enc, IntLabels(x), batch_size=4, layers=4)
    assert f4.shape == (6, 96) and y.tolist() == [i % 3 for i in range(6)]
    assert torch.allclose(f4, normed, atol=1e-5)
    assert torch.allclose(f4[:, -24:], extract_features(enc, IntLabels(x))[0], atol=1e-6)   # last quarter = layers=1
    assert torch.allclose(extract_features(enc, IntLabels(x), layers=4, norm=False)[0], raw, atol=1e-5)
    tok, _ = extract_features(enc, IntLabels(x), layers=2, pool='none')
    assert tok.shape == (6, 16, 48) and torch.allclose(tok.mean(1), f4[:, 48:], atol=1e-5)
    assert all(len(b._forward_hooks) == 0 for b in enc.blocks)                          # hooks removed
    with pytest.raises(ValueError, match='the encoder has 5 blocks'): extract_features(enc, IntLabels(x), layers=6)
    with pytest.raises(ValueError, match="choose 'avg'"): extract_features(enc, IntLabels(x), pool='cls')


def separable(n, seed, margin=1.0):
    "Points in 20-D labelled by the largest of 3 linear scores, kept where the top two differ by `margin`."
    W = torch.randn(20, 3, generator=gen(3))
    x = torch.randn(4 * n, 20, generator=gen(seed))
    s = (x @ W).sort(1).values
    x = x[s[:, -1] - s[:, -2] > margin][:n]
    return x, (x @ W).argmax(1)


def test_linear_probe_learns_separable_data_not_shuffled_labels():
    (xtr, ytr), (xte, yte) = separable(600, 1), separable(300, 2)
    r = linear_probe(5 * xtr + 3, ytr, 5 * xte + 3, yte)                                # scale and offset: standardised away
    assert r['train_top1'] == 100.0 and r['top1'] > 98, r
    assert r['weight_decay'] in r['val_top1'] and r['val_top1'][r['weight_decay']] == max(r['val_top1'].values())
    r2 = linear_probe(5 * xtr + 3, ytr, 5 * xte + 3, yte)
    assert r2['top1'] == r['top1'] and torch.equal(r2['model'].weight, r['model'].weight)   # deterministic for a seed
    shuffled = ytr[torch.randperm(len(ytr), generator=gen(4))]
    rs = linear_probe(xtr, shuffled, xte, yte)
    assert rs['top1'] < 100 / 3 + 8, rs['top1']                                          # chance is 33%
    with pytest.raises(ValueError, match='2 labels for 300 test samples'): linear_probe(xtr, ytr, xte, yte[:2])
    with pytest.raises(ValueError, match='same shape after N'): linear_probe(xtr, ytr, xte[:, :5], yte)


def test_linear_probe_reaches_the_regularised_optimum():
    "One fixed lambda: the probe's objective matches full-batch L-BFGS in float64 on the same standardised features."
    g = gen(5)
    x = torch.randn(500, 30, generator=g) @ torch.randn(30, 30, generator=g) + 2
    y = (x @ torch.randn(30, 4, generator=g) + 3 * torch.randn(500, 4, generator=g)).argmax(1)
    lam = 1e-2
    xs, = standardize(x)
    W = torch.zeros(30, 4, dtype=torch.float64, requires_grad=True); b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn='strong_wolfe')
    obj = lambda W, b: torch.nn.functional.cross_entropy(xs.double() @ W + b, y) + lam / 2 * W.pow(2).sum()
    def closure():
        opt.zero_grad(); l = obj(W, b); l.backward(); return l
    opt.step(closure)
    m = linear_probe(x, y, x, y, weight_decay=lam)['model']
    assert abs(obj(m.weight.double(), m.bias.double()).item() - obj(W, b).item()) < 1e-3


def one_token_task(n, seed, T=16, D=32, C=4):
    "The class is in one flagged token; the other tokens carry random classes, so their average says little."
    g = gen(seed)
    means = 2 * torch.randn(C, D, generator=gen(99))
    y = torch.randint(0, C, (n,), generator=g)
    x = means[torch.randint(0, C, (n, T), generator=g)] + torch.randn(n, T, D, generator=g)
    pos = torch.randint(0, T, (n,), generator=g)
    x[torch.arange(n), pos] = means[y] + torch.randn(n, D, generator=g)
    x[torch.arange(n), pos, 0] += 6.0
    return x, y


def test_attentive_probe_finds_the_token_that_average_pooling_dilutes():
    (xtr, ytr), (xte, yte) = one_token_task(1500, 1), one_token_task(400, 2)
    att = attentive_probe(xtr, ytr, xte, yte, epochs=15)
    avg = linear_probe(xtr.mean(1), ytr, xte.mean(1), yte)
    assert att['top1'] > 90 and avg['top1'] < 45, (att['top1'], avg['top1'])
    p = AttentiveProbe(32, 4)
    with torch.no_grad(): p.kv.bias.normal_(); p.query.normal_()
    assert torch.allclose(p(xte[:8], fast=True), p(xte[:8], fast=False), atol=1e-4)      # folded = readable attention
    with pytest.raises(ValueError, match='patch tokens'): attentive_probe(xtr.mean(1), ytr, xte.mean(1), yte)


def test_evaluate_encoder_runs_each_probe_on_one_pass():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=3)
    x, y = torch.randn(40, 3, 16, 16), torch.arange(40) % 2
    x[y == 1] += 1.0                                                                     # brighter class: easy
    tr, te = TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])
    kw = dict(weight_decay=1e-2)
    r = evaluate_encoder(enc, tr, te, probes='knn,linear,linear4', linear_kw=kw)
    f, _ = extract_features(enc, tr, layers=3); g_, _ = extract_features(enc, te, layers=3)
    fs, gs = standardize(f, g_)                                                          # one preprocessing for every probe
    assert r['knn_top1'] == round(knn_accuracy(fs[:, -24:], y[:30], gs[:, -24:], y[30:]), 2)
    assert r['linear4_top1'] == round(linear_probe(fs, y[:30], gs, y[30:], **kw)['top1'], 2) and r['linear4_layers'] == 3
    assert abs(r['linear4_top1'] - linear_probe(f, y[:30], g_, y[30:], **kw)['top1']) < 4          # the probe standardises anyway
    assert (r['train_images'], r['test_images']) == (30, 10) and 'attentive_top1' not in r
    px = evaluate_pixels(tr, te, probes=['knn'])
    assert set(px) == {'knn_top1', 'seconds'} and px['knn_top1'] == 100.0
    assert parse_probes(['attentive knn', 'linear4']) == ('knn', 'linear4', 'attentive')
    with pytest.raises(ValueError, match="Unknown probe 'svm'"): parse_probes('knn,svm')


def make_run(toy, out, step=2):
    "A checkpoint as ijepa_train writes it (checkpoint_state), a couple of I-JEPA steps in, and a training summary."
    from ijepa_edu.build import build_model, make_mask_collator
    from ijepa_edu.checkpoint import checkpoint_state
    cfg = cfg_for(toy, out)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    collate, loss = make_mask_collator(cfg), torch.tensor(float('nan'))
    for s in range(step):
        imgs = torch.randn(8, 3, 32, 32, generator=gen(s))
        loss = model(imgs, *collate.sample(8)); opt.zero_grad(); loss.backward(); opt.step(); model.ema_step(0.99)
    atomic_save(checkpoint_state(model, opt, cfg, step=step, epoch=0, pos=step, loss=loss.item()), out / 'latest.pt')
    (out / 'metrics.json').write_text(json.dumps({'preset': 'cifar10_tiny', 'steps': step, 'knn_top1': 12.5}))
    return out / 'latest.pt'


def test_main_adds_the_evaluation_to_metrics_and_keeps_the_summary(toy, tmp_path, capsys, one_thread):
    ck = make_run(toy, tmp_path / 'run')
    main(ckpt=str(ck), probe=['knn', 'linear'], baselines=True, device='cpu')
    out = capsys.readouterr().out
    assert 'k-NN' in out and 'linear' in out and 'random init' in out and 'raw pixels' in out, out
    m = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert (m['preset'], m['steps'], m['knn_top1']) == ('cifar10_tiny', 2, 12.5)            # training summary kept
    ev = m['evaluation']                                                                     # the one results schema
    p, rows, HW = ev['protocol'], ev['rows'], pick_eval_precision('auto', torch.device('cpu'))   # bf16 on AVX512-BF16/AMX
    assert (p['train_images'], p['test_images'], p['subset'], p['precision'], ev['step'], ev['encoder']) == (48, 24, False, HW, 2, 'target')
    assert set(rows) == {'pretrained', 'random_init', 'pixels'}
    for r in rows.values(): assert 0 <= r['knn_top1'] <= 100 and 0 <= r['linear_top1'] <= 100
    main(ckpt=str(ck), probe=['linear4'], device='cpu')                                      # same images: merged
    ev2 = json.loads((tmp_path / 'run' / 'metrics.json').read_text())['evaluation']
    assert ev2['rows']['pretrained']['knn_top1'] == rows['pretrained']['knn_top1'] and 'linear4_top1' in ev2['rows']['pretrained']
    assert 'pixels' in ev2['rows']
    main(ckpt=str(ck), probe=['knn'], train_images=24, device='cpu')                         # other images: replaced
    ev3 = json.loads((tmp_path / 'run' / 'metrics.json').read_text())['evaluation']
    assert ev3['protocol']['train_images'] == 24 and ev3['protocol']['subset'] and 'linear_top1' not in ev3['rows']['pretrained']
    main(ckpt=str(ck), probe=['knn'], encoder='context', device='cpu')
    assert json.loads((tmp_path / 'run' / 'metrics.json').read_text())['evaluation_context']['encoder'] == 'context'


def test_bad_input_names_the_fix(toy, tmp_path, one_thread):
    ck = make_run(toy, tmp_path / 'run', step=0)
    def fails(match, **kw):
        with pytest.raises(SystemExit) as e: main(**{'ckpt': str(ck), 'device': 'cpu', **kw})
        assert str(e.value.code).startswith('ijepa_eval: ') and match in str(e.value.code), e.value.code
    fails('does not exist', ckpt=str(tmp_path / 'missing.pt'))
    (tmp_path / 'cut.pt').write_bytes(ck.read_bytes()[:5000])
    fails('truncated', ckpt=str(tmp_path / 'cut.pt'))
    torch.save({'target_encoder': {}}, tmp_path / 'official.pt')
    fails('not written by ijepa_train', ckpt=str(tmp_path / 'official.pt'))
    fails("does not exist: check --data", data=str(tmp_path / 'nowhere'))
    fails("Unknown probe 'svm'", probe=['knn', 'svm'])
    fails("choose 'target'", encoder='student')
    fails('No checkpoint given', ckpt=None)
    c = torch.load(ck, weights_only=True); c['config']['embed_dim'] = 64; torch.save(c, tmp_path / 'edited.pt')
    fails("does not fit the model built for it: first wrong shape: pos_embed", ckpt=str(tmp_path / 'edited.pt'))
    c = torch.load(ck, weights_only=True); c['config']['data'] = 'elsewhere/cifar10'; torch.save(c, tmp_path / 'moved.pt')
    fails("run's own data path 'elsewhere/cifar10'", ckpt=str(tmp_path / 'moved.pt'))


def test_write_metrics_merges_same_images_and_moves_a_broken_file_aside(tmp_path):
    p = tmp_path / 'metrics.json'
    same = dict(checkpoint='a.pt', step=3, encoder='target', train_images=10, test_images=5)
    write_metrics(p, 'evaluation', {**same, 'knn_top1': 1.0, 'pixels': {'knn_top1': 2.0}})
    write_metrics(p, 'evaluation', {**same, 'linear_top1': 3.0, 'pixels': {'linear_top1': 4.0}})
    ev = json.loads(p.read_text())['evaluation']
    assert ev['knn_top1'] == 1.0 and ev['linear_top1'] == 3.0 and ev['pixels'] == {'knn_top1': 2.0, 'linear_top1': 4.0}
    write_metrics(p, 'evaluation', {**same, 'step': 4, 'knn_top1': 5.0})
    m = json.loads(p.read_text())
    assert 'linear_top1' not in m['evaluation']                                        # another step: replaced,
    assert [e['step'] for e in m['evaluation_previous']] == [3] and m['evaluation_previous'][0]['linear_top1'] == 3.0   # and kept
    write_metrics(p, 'evaluation', {**same, 'step': 5, 'knn_top1': 7.0})
    assert [e['step'] for e in json.loads(p.read_text())['evaluation_previous']] == [3, 4]   # oldest first
    assert 'evaluation_previous' not in write_metrics(tmp_path / 'new.json', 'evaluation', same)   # nothing replaced: no list
    p.write_text('{"half a json')
    with pytest.warns(UserWarning, match='moved to'): write_metrics(p, 'evaluation', {**same, 'knn_top1': 6.0})
    assert (tmp_path / 'metrics.json.bad').read_text() == '{"half a json'
    assert json.loads(p.read_text())['evaluation']['knn_top1'] == 6.0


def test_command_line_parses_probe_lists(toy, tmp_path, capsys, one_thread):
    "The console script's argument parser (as `ijepa_eval` builds it), run in-process: a comma list and plain lists."
    from fastcore.script import anno_parser
    ck = make_run(toy, tmp_path / 'run', step=0)
    parser = anno_parser(main.__wrapped__)
    args = vars(parser.parse_args(['--ckpt', str(ck), '--probe', 'knn,linear', '--device', 'cpu', '--train_images', '24',
                                   '--test_images', '12', '--baselines']))
    assert args['probe'] == ['knn,linear'] and args['baselines'] is True and args['train_images'] == 24
    main(**{k: v for k, v in args.items() if k not in ('xtra', 'pdb')})
    assert 'k-NN' in capsys.readouterr().out
    ev = json.loads((tmp_path / 'run' / 'metrics.json').read_text())['evaluation']
    rows = ev['rows']
    assert (ev['protocol']['train_images'], ev['protocol']['test_images']) == (24, 12) and {'knn_top1', 'linear_top1'} <= set(rows['pretrained'])
    assert rows['random_init']['knn_top1'] == rows['pretrained']['knn_top1']   # step 0: the run's initial weights (the
    assert rows['random_init']['linear_top1'] == rows['pretrained']['linear_top1']   # store's features equal the in-memory ones)
    assert vars(parser.parse_args(['--ckpt', 'x', '--probe', 'knn', 'attentive']))['probe'] == ['knn', 'attentive']


# ---- one protocol, baselines cached (issue 24 item 2) ----
import dataclasses, os
from ijepa_edu import evaluate as E
from ijepa_edu.evaluate import data_identity, baseline_key, cached_row, cache_path, cache_dir, _NET_FIELDS


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    "Every test here caches its baselines in its own folder, never in the user's."
    monkeypatch.setenv('IJEPA_CACHE', str(tmp_path / 'cache'))


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    assert cache_dir() == tmp_path / 'cache'
    monkeypatch.delenv('IJEPA_CACHE'); monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_dir() == tmp_path / 'xdg' / 'ijepa_edu'
    monkeypatch.delenv('XDG_CACHE_HOME'); monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert cache_dir() == tmp_path / 'home' / '.cache' / 'ijepa_edu'


def keys_differing_in_one_field():
    "A base key, and keys that each differ from it in exactly one thing the row depends on."
    cfg = get_config('cifar10_tiny')
    x, y = torch.randn(6, 3, 32, 32, generator=gen(0)), torch.arange(6) % 2
    ids = data_identity(TensorDataset(x, y)), data_identity(TensorDataset(x[:4], y[:4]))
    st = dict(k=20, T=0.07, seed=0, linear_kw={}, attentive_kw={})
    key = lambda row='random_init', c=cfg, tr=ids[0], te=ids[1], probes='knn linear', s=st: baseline_key(row, c, tr, te, probes, s)
    y2, x2 = y.clone(), x.clone(); y2[3] = 0; x2[5, 1, 7, 7] += 1e-3
    others = [key(row='pixels'), key(tr=data_identity(TensorDataset(x, y2))), key(tr=data_identity(TensorDataset(x2, y))),
              key(te=ids[0]), key(probes='knn'), key(c=dataclasses.replace(cfg, img_size=64)),
              *[key(s={**st, name: v}) for name, v in (('k', 10), ('T', 0.1), ('seed', 1), ('linear_kw', {'epochs': 5}),
                                                      ('attentive_kw', {'lr': 1e-3}))],
              *[key(c=dataclasses.replace(cfg, **{f: f'other {getattr(cfg, f)}'})) for f in _NET_FIELDS]]
    return key, others, cfg


def test_keys_differing_in_any_one_field_do_not_collide(tmp_path, monkeypatch):
    key, others, cfg = keys_differing_in_one_field()
    assert len({json.dumps(k, sort_keys=True) for k in [key(), *others]}) == len(others) + 1
    assert len({cache_path(k) for k in [key(), *others]}) == len(others) + 1                  # one file each
    assert key() == key() and cache_path(key()) == cache_path(key())                          # canonical: stable
    for i, k in enumerate([key(), *others]): cached_row(k, lambda i=i: {'knn_top1': float(i)})
    for i, k in enumerate([key(), *others]): assert cached_row(k, None) == ({'knn_top1': float(i)}, True)   # never mixed
    # the pixel row does not depend on the network: another seed or width shares it
    assert key(row='pixels', c=dataclasses.replace(cfg, seed=1, embed_dim=64)) == key(row='pixels')
    monkeypatch.setattr(E, 'PROTOCOL', E.PROTOCOL + 1)                                      # a new protocol: new rows
    assert cache_path(key()) not in {cache_path(k) for k in [*others]} and cached_row(key(), lambda: {'knn_top1': -1.0})[1] is False


def test_a_hit_returns_the_stored_row_without_computing_and_a_corrupt_file_is_recomputed(tmp_path):
    key, others, _ = keys_differing_in_one_field()
    k, calls = key(), []
    def compute(): calls.append(1); return {'knn_top1': 41.5, 'seconds': 3.0}
    assert cached_row(k, compute) == ({'knn_top1': 41.5, 'seconds': 3.0}, False) and len(calls) == 1
    def never(): raise AssertionError('a hit must not compute')
    assert cached_row(k, never) == ({'knn_top1': 41.5, 'seconds': 3.0}, True)
    path = cache_path(k)
    assert path.exists() and not [p for p in path.parent.iterdir() if '.tmp' in p.name]      # written atomically
    for bad in ('{"key": {"protocol"', '', '[1, 2]', json.dumps({'key': others[0], 'row': {'knn_top1': 99.0}}),
                json.dumps({'key': k, 'row': 'not a row'})):
        path.write_text(bad)                                                                  # corrupt, or another key's
        assert cached_row(k, compute) == ({'knn_top1': 41.5, 'seconds': 3.0}, False)          # recomputed, not trusted
        assert json.loads(path.read_text()) == {'key': k, 'row': {'knn_top1': 41.5, 'seconds': 3.0}}   # and repaired
    assert cached_row(k, compute, cache=False)[1] is False                                    # no cache: always computed
    assert len(calls) == 7


def test_evaluate_checkpoint_caches_both_baselines(toy, tmp_path, one_thread, monkeypatch):
    ck = make_run(toy, tmp_path / 'run')
    first = evaluate_checkpoint(ck, probes='knn', baselines=True, device='cpu', quiet=True, write=False)
    assert len(list((tmp_path / 'cache' / 'baselines').glob('*.json'))) == 2
    def never(*a, **k): raise AssertionError('cached rows must not be recomputed')
    monkeypatch.setattr(E, 'evaluate_pixels', never); monkeypatch.setattr(E, 'random_init_encoder', never)
    again = evaluate_checkpoint(ck, probes='knn', baselines=True, device='cpu', quiet=True, write=False)
    assert again['rows']['random_init'] == first['rows']['random_init'] and again['rows']['pixels'] == first['rows']['pixels']
    with pytest.raises(AssertionError, match='must not be recomputed'):                      # other settings: another key
        evaluate_checkpoint(ck, probes='knn', baselines=True, device='cpu', quiet=True, write=False, k=5)


def test_the_table_names_its_preprocessing_and_the_monitor_uses_it():
    entry = {'checkpoint': 'a.pt', 'steps': 1, 'train_images': 4, 'test_images': 2, 'knn_top1': 50.0,
             'knn_top1_random_init': 40.0, 'knn_top1_pixels': 45.0}
    text = format_results(entry)
    assert 'standardised with the train statistics' in text.splitlines()[0]
    assert [l.split()[0] for l in text.splitlines()[2:]] == ['target', 'same', 'raw']
    assert 'standardised' in format_results(entry, markdown=True).splitlines()[-1]


def test_progress_goes_to_stderr_and_changes_nothing(capsys, monkeypatch):
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3)
    x, y = torch.randn(40, 3, 16, 16), torch.arange(40) % 2
    tr, te = TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:])
    kw = dict(probes='knn linear', linear_kw=dict(weight_decay=1e-2, min_steps=20))
    quiet = evaluate_encoder(enc, tr, te, **kw)
    assert capsys.readouterr().err == ''
    import sys
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True, raising=False)            # as in a terminal
    loud = evaluate_encoder(enc, tr, te, progress=True, **kw)
    err = capsys.readouterr().err
    assert 'features of 30 images' in err and 'features of 10 images' in err and 'linear probe' in err, err
    drop = lambda r: {k: v for k, v in r.items() if k != 'seconds'}
    assert drop(loud) == drop(quiet)


# ---- evaluation at ImageNet size: features on disk, bf16, one results schema (issue 23 items 5 and 10) ----
from pathlib import Path
from ijepa_edu.data import open_store, extract_chunks, read_chunks, weights_hash
from ijepa_edu.probes import probe_pooled
from ijepa_edu.evaluate import results_of, flat_results, protocol, probe_datasets, evaluate_run

ASSETS = Path(__file__).parents[1] / 'nbs' / 'assets'


class Killed(Exception): pass


class DiesAt(Dataset):
    "A dataset that raises at item `at`: an extraction killed part-way through."
    def __init__(self, ds, at): self.ds, self.at = ds, at
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        if i >= self.at: raise Killed(f'killed at image {i}')
        return self.ds[i]


def toy_encoder_and_data(n_train=42, n_test=14, seed=0):
    torch.manual_seed(seed)
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=24, depth=3, num_heads=3).eval()
    x, y = torch.randn(n_train + n_test, 3, 16, 16, generator=gen(seed)), torch.arange(n_train + n_test) % 3
    x[y == 1] += 0.7
    return enc, TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def test_a_killed_extraction_resumes_bit_identical_to_the_in_memory_path(tmp_path, capsys):
    enc, tr, te = toy_encoder_and_data()
    ident = {'weights': weights_hash(enc), 'layers': 3}
    folder = open_store(tmp_path / 'store', ident)
    with pytest.raises(Killed): extract_chunks(enc, DiesAt(tr, 20), folder, 'train', chunk_size=8, batch_size=4, layers=3)
    assert sorted(p.name for p in folder.glob('train_*.pt')) == ['train_00000.pt', 'train_00001.pt']   # 2 whole chunks
    assert not [p for p in folder.iterdir() if '.tmp' in p.name]                                      # nothing half-written
    n = extract_chunks(enc, tr, folder, 'train', chunk_size=8, batch_size=4, layers=3, progress=True)    # resumed
    assert n == 6 and 'resuming at chunk 2 of 6' in capsys.readouterr().err
    f, y = read_chunks(folder, 'train', n)
    whole = open_store(tmp_path / 'whole', ident)                                                     # never killed
    assert torch.equal(f, read_chunks(whole, 'train', extract_chunks(enc, tr, whole, 'train', 8, batch_size=4, layers=3))[0])
    mem, ymem = extract_features(enc, tr, batch_size=4, layers=3)                                     # the in-memory path
    assert torch.equal(f, mem) and torch.equal(y, ymem) and f.dtype == torch.float32
    g, yt = read_chunks(folder, 'test', extract_chunks(enc, te, folder, 'test', 8, batch_size=4, layers=3))
    kw = dict(linear_kw=dict(weight_decay=1e-2, min_steps=50))
    stored = probe_pooled(f, y, g, yt, ('knn', 'linear', 'linear4'), 3, **kw)
    ref = evaluate_encoder(enc, tr, te, 'knn linear linear4', batch_size=4, **kw)
    assert stored == {k: v for k, v in ref.items() if k not in ('train_images', 'test_images', 'seconds')}
    (folder / 'test_00001.pt').unlink()
    with pytest.raises(FileNotFoundError, match='lacks test_00001.pt'): read_chunks(folder, 'test', 2)
    with pytest.raises(ValueError, match='multiple of batch_size'): extract_chunks(enc, tr, folder, 'train', 10, batch_size=4)


def test_a_store_of_other_features_is_refused_never_mixed(tmp_path):
    enc, tr, _ = toy_encoder_and_data()
    other, _, _ = toy_encoder_and_data(seed=1)
    open_store(tmp_path / 's', {'weights': weights_hash(enc), 'layers': 1})
    open_store(tmp_path / 's', {'weights': weights_hash(enc), 'layers': 1})                      # the same: reopened
    with pytest.raises(ValueError, match='differs in layers, weights'):
        open_store(tmp_path / 's', {'weights': weights_hash(other), 'layers': 4})
    (tmp_path / 'bare').mkdir(); torch.save({}, tmp_path / 'bare' / 'train_00000.pt')
    with pytest.raises(ValueError, match='no manifest.json'): open_store(tmp_path / 'bare', {})


def test_ijepa_eval_writes_chunks_once_and_refuses_another_checkpoints_store(toy, tmp_path, capsys, one_thread):
    a, b = make_run(toy, tmp_path / 'a', step=1), make_run(toy, tmp_path / 'b', step=2)
    kw = dict(probes='knn linear linear4', device='cpu', quiet=True, write=False, linear_kw=dict(weight_decay=1e-2, min_steps=50))
    stored = evaluate_checkpoint(a, chunk_images=16, batch_size=8, **kw)
    folder = Path(stored['features'])
    assert folder.parent == tmp_path / 'a' / 'features' and len(list(folder.glob('train_*.pt'))) == 3   # 48 images / 16
    mem = evaluate_checkpoint(a, features=False, batch_size=8, **kw)
    drop = lambda r: {k: v for k, v in r['rows']['pretrained'].items() if k != 'seconds'}
    assert drop(stored) == drop(mem) and 'features' not in mem                       # the same figures as in memory
    again = evaluate_checkpoint(a, chunk_images=16, batch_size=8, **kw)               # reused: nothing extracted again
    assert again['features'] == stored['features'] and again['rows'] == stored['rows']
    with pytest.raises(ValueError, match='holds features of another extraction .*step.*weights'):
        evaluate_checkpoint(b, features=folder, chunk_images=16, batch_size=8, **kw)
    with pytest.raises(SystemExit, match='ijepa_eval: .*holds features of another extraction'):
        main(ckpt=str(b), features=str(folder), chunk_images=16, batch_size=8, device='cpu')
    assert Path(evaluate_checkpoint(b, chunk_images=16, batch_size=8, **kw)['features']).parent == tmp_path / 'b' / 'features'


def test_bf16_encoding_agrees_with_fp32_and_bad_precision_is_refused(one_thread):
    enc, tr, te = toy_encoder_and_data()
    f32, _ = extract_features(enc, tr, layers=3); f16, _ = extract_features(enc, tr, layers=3, precision='bf16')
    assert f16.dtype == torch.float32 and not torch.equal(f16, f32)                   # autocast ran, features back in fp32
    assert (f16 - f32).abs().max() < 0.05 * f32.abs().max()
    kw = dict(probes='knn linear', linear_kw=dict(weight_decay=1e-2, min_steps=50))
    r32, r16 = evaluate_encoder(enc, tr, te, **kw), evaluate_encoder(enc, tr, te, precision='bf16', **kw)
    assert abs(r32['knn_top1'] - r16['knn_top1']) <= 100 / 14 + 0.01                 # one test image at most
    with pytest.raises(ValueError, match="precision='fp16': choose 'fp32' or 'bf16'"): extract_features(enc, tr, precision='fp16')


def test_a_bounded_end_of_run_evaluation_says_what_it_was(toy, tmp_path, one_thread):
    from ijepa_edu.build import build_model
    cfg = get_config('cifar10_tiny', eval_probes='knn', eval_train_images=24, eval_test_images=12, eval_precision='bf16',
                     eval_workers=1, eval_baselines='')
    torch.manual_seed(0)
    res = evaluate_run(cfg, build_model(cfg), toy, 'cpu', progress=False)
    ev = res['evaluation']
    assert set(res) == {'evaluation', 'eval_seconds'} and set(ev['rows']) == {'pretrained'}       # no baseline rows
    assert {k: ev['protocol'][k] for k in ('train_images', 'train_split', 'test_images', 'test_split', 'subset', 'precision')} == \
           dict(train_images=24, train_split=48, test_images=12, test_split=24, subset=True, precision='bf16')
    head = format_results({'steps': 6, 'checkpoint': 'x/latest.pt', **res}).splitlines()[0]   # as `ijepa_train` prints it
    assert 'on 12 of 24 (evenly spaced) test images' in head and '24 of 48 (evenly spaced) train images, encoded in bf16' in head
    assert '(step 6,' in head
    md = format_results(res['evaluation'], markdown=True).splitlines()[-1]
    assert md.startswith('Top-1 %; probes fit on 24 of 48 (evenly spaced) train images') and 'bf16' in md
    with pytest.raises(ValueError, match="Unknown baseline 'pixel'"):
        evaluate_run(get_config('cifar10_tiny', eval_probes='knn', eval_baselines='pixel'), build_model(cfg), toy, 'cpu')


def test_old_metrics_files_read_through_the_one_schema():
    m = json.loads((Path(__file__).parent / 'data' / 'flat_metrics_2026-12-06.json').read_text())   # the main job's, older and flat
    r = results_of(m)
    assert r['rows']['pretrained']['linear4_top1'] == m['linear4_top1'] and r['rows']['random_init']['knn_top1'] == m['knn_top1_random_init']
    assert r['rows']['pixels'] == {'knn_top1': m['knn_top1_pixels'], 'linear_top1': m['linear_top1_pixels']}
    assert (r['protocol']['train_images'], r['step'], r['seconds']) == (50000, m['steps'], m['eval_seconds'])
    assert flat_results(m) == m                                                        # and back: bench's flat keys
    old_eval = {'preset': 'x', 'steps': 5, 'train_images': 10, 'test_images': 5, 'knn_top1': 1.0, 'knn_top1_random_init': 2.0,
                'evaluation': {'checkpoint': 'a.pt', 'step': 5, 'encoder': 'target', 'train_images': 10, 'test_images': 5,
                               'knn_top1': 3.0, 'pixels': {'knn_top1': 4.0}}}         # an older ijepa_eval entry beside it
    r = results_of(old_eval)
    assert r['rows'] == {'pretrained': {'knn_top1': 3.0}, 'pixels': {'knn_top1': 4.0}, 'random_init': {'knn_top1': 2.0}}
    f = flat_results(old_eval)
    assert (f['knn_top1'], f['knn_top1_random_init'], f['knn_top1_pixels'], f['train_images']) == (3.0, 2.0, 4.0, 10)
    other_images = {**old_eval, 'train_images': 20}                                    # the run's own rows used other images
    assert 'random_init' not in results_of(other_images)['rows']
    for old in (m, old_eval): assert format_results(old) and format_results(old, markdown=True)


def test_write_metrics_merges_nested_rows_of_the_same_evaluation(tmp_path):
    p = tmp_path / 'metrics.json'
    base = dict(checkpoint='a.pt', step=3, encoder='target', protocol=dict(train_images=10, test_images=5, precision='fp32'))
    write_metrics(p, 'evaluation', {**base, 'rows': {'pretrained': {'knn_top1': 1.0}, 'pixels': {'knn_top1': 2.0}}})
    m = write_metrics(p, 'evaluation', {**base, 'rows': {'pretrained': {'linear_top1': 3.0}}})
    assert m['evaluation']['rows'] == {'pretrained': {'knn_top1': 1.0, 'linear_top1': 3.0}, 'pixels': {'knn_top1': 2.0}}
    bf16 = {**base, 'protocol': {**base['protocol'], 'precision': 'bf16'}, 'rows': {'pretrained': {'knn_top1': 1.5}}}
    m = write_metrics(p, 'evaluation', bf16)                                           # another encoding: replaced, kept
    assert m['evaluation']['rows'] == {'pretrained': {'knn_top1': 1.5}} and len(m['evaluation_previous']) == 1


def test_eval_cost_toy_measures_both_encodings_and_resumes_the_store(one_thread, capsys):
    "bench/eval_cost.py --toy: what bench/gpu_check.sh --toy runs on a GPU, here on the CPU with a few images."
    import importlib.util
    spec = importlib.util.spec_from_file_location('eval_cost', Path(__file__).parents[1] / 'bench' / 'eval_cost.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    row = mod.main(['--toy', '--images', '64', '--reps', '1', '--batch_size', '16'])
    assert set(row['img_per_s']) == {'fp32', 'bf16'} and row['max_rel_feature_diff'] < 0.05
    for s in row['store'].values(): assert s['identical'] and 0 < s['kept_after_kill'] < s['chunks'] == 8
    assert 'resumed: identical to the in-memory features' in capsys.readouterr().out


def test_the_pixel_decoders_training_shows_progress(capsys, monkeypatch, one_thread):
    "Every long step of an evaluation shows a bar on stderr: extraction, the probes' fitting, and lesson 13's decoder."
    import sys
    from ijepa_edu.decoder import PixelDecoder, fit_decoder
    from ijepa_edu.masks import MaskCollator
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True, raising=False)
    feats, pixels = torch.randn(6, 16, 8, generator=gen(0)), torch.rand(6, 16, 12, generator=gen(1))
    dec = PixelDecoder(embed_dim=8, grid=(4, 4), patch_size=2, width=16, depth=1, num_heads=2)
    collator = MaskCollator(input_size=8, patch_size=2, min_keep=1)
    fit_decoder(dec, feats, pixels, collator, steps=3, batch_size=2)
    assert capsys.readouterr().err == ''
    fit_decoder(dec, feats, pixels, collator, steps=3, batch_size=2, progress=True)
    assert 'pixel decoder' in capsys.readouterr().err
