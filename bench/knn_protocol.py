"""Issue 24 item 2: does the cosine k-NN see raw features or features standardised with the train statistics?

Every row (the shipped models, their random inits, raw pixels) is scored both ways on the same evenly spaced
CIFAR-10 images; one JSON line per (row, preprocessing) goes to bench/results/knn_protocol.jsonl.

    IJEPA_DATA=PATH/cifar10_jpg.tar.gz nice python bench/knn_protocol.py [--train 10000 --test 5000]
"""
import argparse, json, time, datetime
from pathlib import Path
import torch
from ijepa_edu.data import resolve_data, make_dataset
from ijepa_edu.evaluate import load_run_model, random_init_model, probe_datasets, evenly_spaced
from ijepa_edu.probes import extract_features, knn_accuracy, standardize
from torch.utils.data import TensorDataset

HERE = Path(__file__).parent
MODELS = ('base_e2', 'rope_e4', 'rope_e16')


def both(ftr, ytr, fte, yte):
    "k-NN top-1 on raw features and on features standardised with the train statistics."
    str_, ste = standardize(ftr, fte)
    return {'raw': knn_accuracy(ftr, ytr, fte, yte), 'standardised': knn_accuracy(str_, ytr, ste, yte)}


def main(n_train, n_test, out):
    root = resolve_data(None)
    t0 = time.time()
    xtr, xte = probe_datasets(32, root, n_train, n_test, images=True)
    # the labels of the same evenly spaced images
    tr_ds, te_ds = (evenly_spaced(make_dataset(root, s), n) for s, n in (('train', n_train), ('test', n_test)))
    ytr = torch.tensor([tr_ds.dataset.targets[i] for i in tr_ds.indices])
    yte = torch.tensor([te_ds.dataset.targets[i] for i in te_ds.indices])
    print(f'decoded {len(xtr)} + {len(xte)} images in {time.time() - t0:.0f} s')
    rows = []
    def log(name, accs, extra=None):
        r = {'date': datetime.date.today().isoformat(), 'row': name, 'train_images': len(xtr), 'test_images': len(xte),
             'k': 20, 'T': 0.07, **{f'knn_{k}': round(v, 2) for k, v in accs.items()}, **(extra or {})}
        rows.append(r); print(json.dumps(r), flush=True)
        with open(out, 'a') as f: f.write(json.dumps(r) + '\n')       # row by row: a stopped run keeps its rows
    ptr, pte = xtr.flatten(1), xte.flatten(1)
    log('raw pixels', both(ptr, ytr, pte, yte))
    for m in MODELS:
        model, cfg, _ = load_run_model(HERE.parent / 'nbs/assets/models' / f'{m}.pt')
        for name, enc in ((m, model.target_encoder), (f'{m} random init', random_init_model(cfg).target_encoder)):
            ftr, _ = extract_features(enc, TensorDataset(xtr, ytr))
            fte, _ = extract_features(enc, TensorDataset(xte, yte))
            log(name, both(ftr, ytr, fte, yte), {'seed': cfg.seed, 'rope': bool(cfg.rope)})
    print(f'{len(rows)} rows -> {out} in {time.time() - t0:.0f} s')


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--train', type=int, default=10000)
    p.add_argument('--test', type=int, default=5000)
    p.add_argument('--out', default=str(HERE / 'results' / 'knn_protocol.jsonl'))
    a = p.parse_args()
    torch.manual_seed(0)
    main(a.train, a.test, a.out)
