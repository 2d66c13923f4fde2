"""Which small-budget I-JEPA settings learn on CIFAR-10? Pretrain each variant for the same number of images,
then score k-NN top-1 (k=20, cosine, T=0.07) of the average-pooled target encoder on the test split, beside the
same architecture at its random init and raw pixels. Runs variants in parallel processes (meant for a GPU).

    python bench/small_sweep.py --data PATH --epochs 3 --jobs 4 [--only NAME ...]
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

# The cifar10_tiny model (width 128, depth 4) with the paper's objective (no penalty); each variant adds overrides.
BASE = ['model=custom', 'embed_dim=128', 'depth=4', 'num_heads=4', 'pred_emb_dim=64', 'pred_depth=4', 'vc_weight=0']
VARIANTS = {
    'official':            [],
    'pos0.1':              ['pos_embed_scale=0.1'],
    'pos0.3':              ['pos_embed_scale=0.3'],
    'pos0':                ['pos_embed_scale=0.0'],
    'ema0.99':             ['ema=0.99,1.0'],
    'ema0.98':             ['ema=0.98,1.0'],
    'patchstd0.08':        ['patch_init_std=0.08'],
    'pos0.1_ema0.99':      ['pos_embed_scale=0.1', 'ema=0.99,1.0'],
    'pos0.1_ema0.98':      ['pos_embed_scale=0.1', 'ema=0.98,1.0'],
    'pos0.1_ema0.99_np2':  ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'num_pred_masks=2'],
    'pos0.1_ema0.99_lr2e-3': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'lr=2e-3'],
    'pos0.1_ema0.99_lr5e-4': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'lr=5e-4'],
    'pos0.1_ema0.99_l2':   ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'loss=l2'],
    'pos0.1_ema0.99_wd.05': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'weight_decay=0.05', 'final_weight_decay=0.05'],
    'pos0_ema0.99':        ['pos_embed_scale=0.0', 'ema=0.99,1.0'],
    'pos0.1_ema0.99_shared': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'official_masks=shared_size'],
    'vc1.0':               ['vc_weight=1.0'],
    'vc0.1':               ['vc_weight=0.1'],
    'vc0.03':              ['vc_weight=0.03'],
    'vc0.1_shared':        ['vc_weight=0.1', 'official_masks=shared_size'],
    'pos0_ema0.98':        ['pos_embed_scale=0.0', 'ema=0.98,1.0'],
    'pos0.1_ema0.99_ctx.6': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'enc_mask_scale=0.6,1.0'],
    'pos0.1_ema0.99_crop.5': ['pos_embed_scale=0.1', 'ema=0.99,1.0', 'crop_scale=0.5,1.0'],
}

def raw_pixel_knn(data, train_images=0):
    "k-NN on raw pixels (standardised, flattened), with the runs' classifier and data path: the floor a feature should beat."
    from ijepa_edu.config import get_config
    from ijepa_edu.data import resolve_data
    from ijepa_edu.evaluate import probe_datasets
    from ijepa_edu.probes import evaluate_pixels
    tr, te = probe_datasets(get_config('cifar10_tiny'), resolve_data(data), train_images)
    return evaluate_pixels(tr, te, probes='knn')['knn_top1']

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True); ap.add_argument('--out', default='runs/sweep')
    ap.add_argument('--epochs', type=float, default=3); ap.add_argument('--jobs', type=int, default=4)
    ap.add_argument('--workers', type=int, default=3); ap.add_argument('--device', default='auto')
    ap.add_argument('--train_images', '--knn_train_images', dest='train_images', type=int, default=0,
                    help='train images the k-NN learns from (evenly spaced; 0: all)')
    ap.add_argument('--only', nargs='*'); ap.add_argument('--extra', nargs='*', default=[])
    a = ap.parse_args()
    names = a.only or list(VARIANTS)
    procs, results, t0 = {}, {}, time.time()
    queue = list(names)
    while queue or procs:
        while queue and len(procs) < a.jobs:
            n = queue.pop(0)
            out = Path(a.out) / n
            cmd = [sys.executable, '-m', 'ijepa_edu.train', '--preset', 'cifar10_tiny', '--data', a.data, '--out', str(out),
                   '--device', a.device, f'epochs={a.epochs}', f'num_workers={a.workers}', 'save_every_epochs=0', f'eval_train_images={a.train_images}', 'eval_probes=knn',
                   *BASE, *VARIANTS[n], *a.extra]
            out.mkdir(parents=True, exist_ok=True)
            procs[n] = (subprocess.Popen(cmd, stdout=open(out / 'stdout.txt', 'w'), stderr=subprocess.STDOUT), time.time())
        time.sleep(1)
        for n, (p, ts) in list(procs.items()):
            if p.poll() is None: continue
            del procs[n]
            mf = Path(a.out) / n / 'metrics.json'
            r = json.loads(mf.read_text()) if mf.exists() else {'error': (Path(a.out) / n / 'stdout.txt').read_text()[-800:]}
            r['wall_s'] = round(time.time() - ts, 1)
            results[n] = r
            print(json.dumps({n: r}), flush=True)
    px = raw_pixel_knn(a.data, a.train_images)
    print(f"\nk-NN top-1 on CIFAR-10 test, {a.epochs} epochs each (raw pixels: {px:.2f})")
    print('| variant | overrides | k-NN trained | k-NN random init | final loss | pos_share | feat_std |')
    print('|---|---|---|---|---|---|---|')
    for n in names:
        r = results[n]
        if 'error' in r: print(f'| {n} | failed | | | | | |'); continue
        d = {}
        logf = Path(r['log'])
        if logf.exists():
            import csv
            rows = [row for row in csv.DictReader(open(logf)) if row['pos_share']]
            if rows: d = rows[-1]
        print(f"| {n} | {' '.join(VARIANTS[n]) or '-'} | {r.get('knn_top1')} | {r.get('knn_top1_random_init')} | "
              f"{r['final_loss']:.4f} | {d.get('pos_share', '')} | {d.get('feat_std', '')} |")
    print(f'total {time.time() - t0:.0f} s')

if __name__ == '__main__': main()
