"""Issue 24 item 2: what the raw-pixel row costs on all of CIFAR-10 (50,000 x 3,072 train features, 10,000 test),
and whether a cheaper linear probe gives the same figure.

Times k-NN and the linear probe with its weight-decay sweep (the protocol every row uses), then cheaper variants of the
linear probe (fewer candidates, fewer epochs); one JSON line each to bench/results/pixel_probe_cost.jsonl.

    IJEPA_DATA=PATH/cifar10_jpg.tar.gz nice python bench/pixel_probe_cost.py [--train 0 --test 0]
"""
import argparse, json, os, time, datetime, platform
from pathlib import Path
import torch
from ijepa_edu.config import get_config
from ijepa_edu.data import resolve_data
from ijepa_edu.evaluate import probe_datasets
from ijepa_edu.probes import pixel_features, standardize, knn_accuracy, linear_probe, WD_GRID

HERE = Path(__file__).parent


def main(n_train, n_test, variants, out):
    t0 = time.time()
    train_ds, test_ds = probe_datasets(get_config('cifar10_cpu'), resolve_data(None), n_train, n_test)
    (xtr, ytr), (xte, yte) = pixel_features(train_ds), pixel_features(test_ds)
    t_load = time.time() - t0
    base = {'date': datetime.date.today().isoformat(), 'host': platform.node(), 'threads': torch.get_num_threads(),
            'load_average_1min': round(os.getloadavg()[0], 1),
            'train_images': len(xtr), 'test_images': len(xte), 'dim': xtr.size(1)}
    rows = []
    def log(**r):
        rows.append({**base, **r}); print(json.dumps(rows[-1]), flush=True)
        with open(out, 'a') as f: f.write(json.dumps(rows[-1]) + '\n')
    log(case='decode into memory + flatten', seconds=round(t_load, 1))
    t = time.time(); str_, ste = standardize(xtr, xte); log(case='standardise (train statistics)', seconds=round(time.time() - t, 1))
    t = time.time(); acc = knn_accuracy(str_, ytr, ste, yte); log(case='k-NN (k=20, T=0.07)', top1=round(acc, 2), seconds=round(time.time() - t, 1))
    for name, kw in variants:
        t = time.time(); r = linear_probe(str_, ytr, ste, yte, **kw)
        log(case=f'linear: {name}', top1=round(r['top1'], 2), weight_decay=r['weight_decay'], steps=r['steps'],
            val_top1=r['val_top1'], seconds=round(time.time() - t, 1))
    print(f'{len(rows)} rows -> {out} in {time.time() - t0:.0f} s')


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--train', type=int, default=0)   # 0: all 50,000
    p.add_argument('--test', type=int, default=0)    # 0: all 10,000
    p.add_argument('--out', default=str(HERE / 'results' / 'pixel_probe_cost.jsonl'))
    a = p.parse_args()
    variants = [('the default sweep (8 weight decays, 50 epochs)', {}),
                ('3 weight decays (1e-3, 1e-2, 1e-1), 50 epochs', {'weight_decay': (1e-3, 1e-2, 1e-1)}),
                ('the default sweep, 20 epochs', {'epochs': 20}),
                ('the default sweep, 10 epochs', {'epochs': 10})]
    main(a.train, a.test, variants, a.out)
