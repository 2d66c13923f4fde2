"""Why does the k-NN probe of the same recipe swing by seed (issue 24, item 3)? Features of runs, side by side.

For each run's target encoder: pooled test-split features on the probes' images, then
  - the share of the mean: |mean feature| / mean |feature| (a shared direction every image carries),
  - the share of the largest principal component in the total variance, and the effective rank (RankMe),
  - the spread of feature norms (std / mean of |feature|),
  - k-NN top-1 with the features raw (cosine), centred (train mean removed), standardised (train mean and std), and
    centred then whitened by PCA, and the linear probe (which standardises).
If a seed's k-NN is low because one direction dominates the cosine, centring closes most of the gap; if its features
carry less class information, the linear probe moves with the k-NN.

    python bench/experiments/knn_swing.py --data PATH RUN_A/latest.pt RUN_B/latest.pt [--train-images 0]
"""
import argparse, json, sys, time
from pathlib import Path
import torch
from ijepa_edu.data import resolve_data
from ijepa_edu.evaluate import load_run_model, probe_datasets
from ijepa_edu.probes import extract_features, knn_accuracy, linear_probe


def stats(f):
    "Shape of a feature cloud (N, D): the mean's share, the top component's share of variance, RankMe, norm spread."
    n = f.norm(dim=1)
    c = f - f.mean(0)
    s = torch.linalg.svdvals(c)
    p = s / s.sum()
    return dict(mean_share=round((f.mean(0).norm() / n.mean()).item(), 3),
                top_pc_share=round((s[0] ** 2 / (s ** 2).sum()).item(), 3),
                rankme=round(torch.exp(-(p * torch.log(p + 1e-12)).sum()).item(), 1),
                norm_cv=round((n.std() / n.mean()).item(), 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('runs', nargs='+'); ap.add_argument('--data', required=True)
    ap.add_argument('--train-images', type=int, default=0); ap.add_argument('--linear', action='store_true')
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'knn_swing.jsonl'))
    a = ap.parse_args()
    for path in a.runs:
        t0 = time.time()
        model, cfg, _ = load_run_model(path)
        tr, te = probe_datasets(cfg, resolve_data(a.data), a.train_images, 0, download=False)
        (ftr, ytr), (fte, yte) = extract_features(model.target_encoder, tr), extract_features(model.target_encoder, te)
        mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
        c_tr, c_te = ftr - mu, fte - mu
        u, s, v = torch.linalg.svd(c_tr, full_matrices=False)
        w = v.T / (s / (len(c_tr) - 1) ** 0.5 + 1e-6)                        # (D, D) whitening
        knn = dict(raw=knn_accuracy(ftr, ytr, fte, yte), centred=knn_accuracy(c_tr, ytr, c_te, yte),
                   standardised=knn_accuracy(c_tr / sd, ytr, c_te / sd, yte),
                   whitened=knn_accuracy(c_tr @ w, ytr, c_te @ w, yte))
        row = dict(run=path, seed=cfg.seed, epochs=cfg.epochs, train_images=len(tr), stats=stats(fte),
                   knn={k: round(v, 2) for k, v in knn.items()})
        if a.linear: row['linear'] = round(linear_probe(ftr, ytr, fte, yte)['top1'], 2)
        row['seconds'] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)
        with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')


if __name__ == '__main__': torch.set_num_threads(1); main()
