"""What the probes' encoding costs, fp32 against bf16 autocast, side by side (issue 23 item 5), and whether the
chunked feature store of `ijepa_eval` resumes a killed extraction bit for bit.

Both encodings run on the same images, decoded into memory first (the encoder alone is timed), interleaved over
`--reps` rounds so that a machine whose load changes shares it between them; the median round is reported. Then the
k-NN and the linear probe are fit on each encoding's features of the same evenly spaced subset, so the figures can be
compared. Last, an extraction into a fresh store is killed part-way, resumed, and compared with the in-memory
features of the same encoding.

    python bench/eval_cost.py --ckpt runs/cifar10_cpu_timed/latest.pt --data PATH --images 2000 --threads 1
    python bench/eval_cost.py --toy                        # a toy encoder on generated images: seconds on a CPU
    python bench/eval_cost.py --toy --device cuda          # the same on a GPU (bench/gpu_check.sh --toy)

A measured run appends one JSON line to bench/results/eval_cost.jsonl (a --toy run writes none unless --results is
given). The exit status is 1 when the resumed store differs from the in-memory features.
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path
import torch
from torch.utils.data import Dataset, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from bench_util import machine
from ijepa_edu.encoder import VisionTransformer
from ijepa_edu.probes import extract_features, probe_pooled
from ijepa_edu.data import open_store, extract_chunks, read_chunks, weights_hash

PRECISIONS = ('fp32', 'bf16')


class Killed(Exception): pass


class DiesAt(Dataset):
    "A dataset that raises at item `at`: an extraction killed part-way through."
    def __init__(self, ds, at): self.ds, self.at = ds, at
    def __len__(self): return len(self.ds)
    def __getitem__(self, i):
        if i >= self.at: raise Killed(i)
        return self.ds[i]


def toy_data(n, size=32, seed=0):
    "n generated images of 4 classes (a brightness and a stripe direction), as a dataset of (image, label)."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing='ij')
    stripes = torch.where((y % 2 == 0)[:, None, None], torch.sin(yy / 2), torch.sin(xx / 2))           # (n, H, W)
    x = stripes[:, None] + 0.8 * (y // 2)[:, None, None, None] + 0.5 * torch.randn(n, 3, size, size, generator=g)
    return TensorDataset(x, y)


def setup(a):
    "(encoder on the device, train dataset, test dataset, a description)."
    if a.toy:
        torch.manual_seed(0)
        width = 384 if a.device.startswith('cuda') else 96
        enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=width, depth=4, num_heads=6 if width == 384 else 3)
        return enc.eval().to(a.device), toy_data(a.images), toy_data(a.images // 2, seed=1), f'toy ViT width {width}, depth 4'
    from ijepa_edu.evaluate import load_run_encoder, probe_datasets, run_data
    enc, cfg, ck = load_run_encoder(a.ckpt)
    tr, te = probe_datasets(cfg, run_data(a.data, cfg), a.images, a.images // 2, download=False)   # decoded into memory
    return enc.to(a.device), tr, te, f"{a.ckpt} ({cfg.preset}, step {ck.get('step')}, width {cfg.embed_dim}, depth {cfg.depth})"


def timed(enc, ds, precision, a):
    if a.device.startswith('cuda'): torch.cuda.synchronize()
    t0 = time.perf_counter()
    f, y = extract_features(enc, ds, batch_size=a.batch_size, device=a.device, precision=precision)
    if a.device.startswith('cuda'): torch.cuda.synchronize()
    return f, y, time.perf_counter() - t0


def store_resumes(enc, ds, precision, a):
    "Kill an extraction into a fresh store after about 60% of the images, resume it, compare with the in-memory features."
    bs = min(a.batch_size, max(1, len(ds) // 16)); chunk = 2 * bs                     # about 8 chunks of 2 batches
    with tempfile.TemporaryDirectory() as d:
        folder = open_store(Path(d) / 'store', {'weights': weights_hash(enc), 'precision': precision})
        try: extract_chunks(enc, DiesAt(ds, int(0.6 * len(ds))), folder, 'train', chunk, bs, a.device, precision=precision)
        except Killed: pass
        kept = len(list(folder.glob('train_*.pt')))
        n = extract_chunks(enc, ds, folder, 'train', chunk, bs, a.device, precision=precision)
        f, _ = read_chunks(folder, 'train', n)
    mem, _ = extract_features(enc, ds, batch_size=bs, device=a.device, precision=precision)   # the same batches
    mem = mem.to(torch.float16).float() if precision == 'bf16' else mem    # the store keeps bf16 runs in float16
    return {'chunks': n, 'kept_after_kill': kept, 'identical': bool(torch.equal(f, mem)),
            'max_abs_diff': float((f - mem).abs().max())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--ckpt', help="a run's checkpoint (e.g. runs/cifar10_cpu_timed/latest.pt)")
    ap.add_argument('--data', help="data folder or archive (default: the run's own, else $IJEPA_DATA)")
    ap.add_argument('--toy', action='store_true', help='a toy encoder on generated images (no checkpoint, no data)')
    ap.add_argument('--images', type=int, default=None, help='train images encoded, the probes scored on half as many (default 2000; --toy 512)')
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--device', default='cpu')
    ap.add_argument('--batch_size', type=int, default=256); ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--results', default=None, help='JSON lines file (default: bench/results/eval_cost.jsonl unless --toy)')
    a = ap.parse_args(argv)
    if not a.toy and not a.ckpt: ap.error('pass --ckpt PATH (a run to measure) or --toy')
    a.images = a.images or (512 if a.toy else 2000)
    torch.set_num_threads(a.threads)
    enc, tr, te, what = setup(a)
    times = {p: [] for p in PRECISIONS}
    for _ in range(a.reps):                                            # interleaved: both see the same load
        for p in PRECISIONS: times[p].append(timed(enc, tr, p, a)[2])
    feats = {p: (extract_features(enc, tr, a.batch_size, a.device, precision=p), extract_features(enc, te, a.batch_size, a.device, precision=p))
             for p in PRECISIONS}
    lin = dict(weight_decay=1e-3, min_steps=100) if a.toy else None
    probes = {p: probe_pooled(*ftr, *fte, ('knn', 'linear'), linear_kw=lin, device=a.device) for p, (ftr, fte) in feats.items()}
    f32, f16 = feats['fp32'][0][0], feats['bf16'][0][0]
    rel = float((f16 - f32).norm(dim=1).div(f32.norm(dim=1)).max())
    row = {'what': what, 'device': a.device, 'threads': a.threads, 'batch_size': a.batch_size, 'images': len(tr),
           'test_images': len(te), 'reps': a.reps,
           'img_per_s': {p: round(len(tr) / statistics.median(t), 1) for p, t in times.items()},
           'seconds': {p: [round(s, 3) for s in t] for p, t in times.items()},
           'max_rel_feature_diff': round(rel, 5),
           'probes': {p: {k: v for k, v in r.items() if k in ('knn_top1', 'linear_top1')} for p, r in probes.items()},
           'store': {p: store_resumes(enc, tr, p, a) for p in PRECISIONS}, 'machine': machine()}
    ips = row['img_per_s']
    print(f"{what}, {len(tr):,} images, batch {a.batch_size}, {a.threads} thread(s) on {a.device}: "
          f"fp32 {ips['fp32']:,.0f} images/s, bf16 {ips['bf16']:,.0f} images/s (x{ips['bf16'] / ips['fp32']:.2f}); "
          f"features differ by at most {rel:.2%} (relative L2 per image)")
    for p, r in row['probes'].items(): print(f"  {p}: k-NN {r['knn_top1']:.2f}, linear {r['linear_top1']:.2f} on {len(te):,} test images")
    for p, s in row['store'].items():
        print(f"  store {p}: {s['kept_after_kill']} of {s['chunks']} chunks kept when killed, resumed: "
              f"{'identical to' if s['identical'] else 'DIFFERS from'} the in-memory features (max |diff| {s['max_abs_diff']:.3g})")
    results = a.results or (None if a.toy else str(Path(__file__).parent / 'results' / 'eval_cost.jsonl'))
    if results:
        with open(results, 'a') as f: f.write(json.dumps(row) + '\n')
    if not all(s['identical'] for s in row['store'].values()): sys.exit(1)
    return row


if __name__ == '__main__':
    main()
