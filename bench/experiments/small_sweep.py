"""Which small-budget I-JEPA settings learn on CIFAR-10? Pretrain each variant for the same number of images,
then score k-NN top-1 (k=20, cosine, T=0.07) of the average-pooled target encoder on the test split, beside the
same architecture at its random init and raw pixels. Runs variants side by side through bench/jobs.py (meant for a
GPU): each finished run appends one JSON line (name, overrides, the full config, metrics.json, its last diagnostics)
to `--results`; start the same command again after a stop (finished runs are skipped).

    python bench/experiments/small_sweep.py --data PATH --epochs 3 --jobs 4 [--only NAME ...]
    python bench/experiments/small_sweep.py --table bench/results/2026-11-26_h100_small_sweep_4ep.jsonl
    python bench/experiments/small_sweep.py --collect [FOLDER ...]     # log finished runs the results file lacks
"""
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jobs

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

def make_job(name, a, out=None):
    "One variant: cifar10_tiny with BASE and the variant's overrides, for `a.epochs`, in out/NAME."
    return jobs.Job(name, [*BASE, *VARIANTS[name], *a.extra], Path(out or a.out) / name, fields=dict(changes=VARIANTS[name]),
                    base=[f'device={a.device}', f'epochs={a.epochs}', f'num_workers={a.workers}', 'save_every_epochs=0',
                          f'eval_train_images={a.train_images}', 'eval_probes=knn'])

def rows_of(lines):
    "Rows in one shape: this runner's, or the old script's printed lines {name: metrics.json + wall_s} (2026-11-26)."
    rows = []
    for r in lines:
        if 'metrics' not in r and len(r) == 1:
            (n, m), = r.items(); r = dict(name=n, changes=VARIANTS.get(n, []), metrics=m)
        rows.append(r)
    return rows

def diag(r):
    "The run's last diagnostics: from the row, else from its log if it is still there."
    log = r['metrics'].get('log')
    return r.get('diag') or (jobs.last_log_row(Path(log).parent, 'pos_share') if log else {})

def table(rows):
    "Markdown table: one line per variant (k-NN trained and at random init, final loss, last diagnostics)."
    m = lambda k: lambda r: r['metrics'].get(k)
    return jobs.table(rows_of(rows), [
        ('variant', lambda r: r['name'], 'l'), ('overrides', lambda r: ' '.join(r.get('changes', [])) or '-', 'l'),
        ('k-NN trained', m('knn_top1'), 'l'), ('k-NN random init', m('knn_top1_random_init'), 'l'),
        ('final loss', lambda r: f"{r['metrics']['final_loss']:.4f}", 'l'), ('pos_share', lambda r: diag(r).get('pos_share', ''), 'l'),
        ('feat_std', lambda r: diag(r).get('feat_std', ''), 'l')])

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_args(ap, Path(__file__).parents[1] / 'results' / 'small_sweep.jsonl', 'runs/sweep', jobs=4)
    ap.add_argument('--epochs', type=float, default=3)
    ap.add_argument('--workers', type=int, default=3); ap.add_argument('--device', default='auto')
    ap.add_argument('--train_images', '--knn_train_images', dest='train_images', type=int, default=0,
                    help='train images the k-NN learns from (evenly spaced; 0: all)')
    ap.add_argument('--only', nargs='*'); ap.add_argument('--extra', nargs='*', default=[])
    a = ap.parse_args(argv)
    if a.table: print(table(jobs.read_rows(a.table))); return
    names, outs = jobs.chosen(ap, a, VARIANTS)
    queue, t0 = [make_job(n, a, outs.get(n)) for n in names], time.time()
    echo = lambda row: json.dumps({row['name']: {**row['metrics'], 'wall_s': row['wall_s']}})   # the old script's lines
    if a.collect is not None: jobs.collect(queue, a.results, echo=echo); return
    if not a.data: ap.error('--data is required to run variants (or pass --table FILE, or --collect)')
    rows, failed = jobs.run_queue(queue, a.data, a.results, a.jobs, echo=echo)
    px = raw_pixel_knn(a.data, a.train_images)
    print(f"\nk-NN top-1 on CIFAR-10 test, {a.epochs} epochs each (raw pixels: {px:.2f})")
    logged = {jobs.row_folder(r): r for r in jobs.read_rows(a.results)}                # this queue's rows, in its order
    print(table([logged[j.out.resolve()] for j in queue if j.out.resolve() in logged]))
    for n in failed: print(f'| {n} | failed | | | | | |')
    print(f'total {time.time() - t0:.0f} s')
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
