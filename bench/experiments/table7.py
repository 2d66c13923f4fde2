"""The paper's Table 7 on a CPU: the same network and budget trained on feature targets and on pixel targets, probed alike.

Makes nothing: it scores two runs (or the small checkpoints made from them) with the library's probes, beside the
network's random init and raw pixels, on the CIFAR-10 test split, and appends one JSON line to
bench/results/table7.jsonl. The two runs are made by (commands in bench/README.md, "Table 7 on a CPU"):

    python bench/experiments/learning_curve.py --data PATH --out runs/table7_features --recipe rope_tl4_ema --epochs 2 \
        --seeds 0 --results bench/results/table7.jsonl --set data_in_memory=true targets=features eval_probes=
    (the same with targets=pixels and --out runs/table7_pixels)

    python bench/experiments/table7.py --data PATH --features F.pt --pixels P.pt [--train-images 0] [--test-images 0]
"""
import argparse, json, sys, time
from pathlib import Path
import torch
from ijepa_edu.data import resolve_data
from ijepa_edu.evaluate import load_run_model, probe_datasets, random_init_encoder
from ijepa_edu.probes import evaluate_encoder, evaluate_pixels


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('--features', required=True); ap.add_argument('--pixels', required=True)
    ap.add_argument('--train-images', type=int, default=0); ap.add_argument('--test-images', type=int, default=0)
    ap.add_argument('--probes', default='knn linear linear4')
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'table7.jsonl'))
    a = ap.parse_args()
    t0 = time.time()
    feat, cfg, _ = load_run_model(a.features)
    pix, cfg_p, _ = load_run_model(a.pixels)
    assert (cfg.targets, cfg_p.targets) == ('features', 'pixels'), (cfg.targets, cfg_p.targets)
    train_ds, test_ds = probe_datasets(cfg, resolve_data(a.data), a.train_images, a.test_images, download=False)
    rows = {'features': feat.target_encoder, 'pixels': pix.target_encoder, 'random_init': random_init_encoder(cfg)}
    res = {name: evaluate_encoder(enc, train_ds, test_ds, probes=a.probes, seed=cfg.seed) for name, enc in rows.items()}
    res['raw_pixels'] = evaluate_pixels(train_ds, test_ds, probes=[p for p in a.probes.split() if p != 'linear4'])
    cols = [f'{p}_top1' for p in a.probes.split()]
    print(f"CIFAR-10 test top-1 (%), probes fit on {len(train_ds):,} train images, scored on {len(test_ds):,} test images")
    print('| targets the encoder was trained on | ' + ' | '.join(cols) + ' |\n|---|' + '---:|' * len(cols))
    for name, r in res.items(): print(f'| {name} | ' + ' | '.join(f"{r[c]:.2f}" if c in r else '-' for c in cols) + ' |')
    with open(a.results, 'a') as f:
        f.write(json.dumps(dict(kind='probe', features=a.features, pixels=a.pixels, train_images=len(train_ds),
                                test_images=len(test_ds), config=cfg.to_dict(), results=res,
                                seconds=round(time.time() - t0, 1))) + '\n')


if __name__ == '__main__': torch.set_num_threads(1); main()
