"""Training data: the disk pipeline (JPEG decode, PIL RandomResizedCrop, collate, masks; what `ijepa_train` uses by
default) against images held in memory with batched crops (`data_in_memory=true`, nbs/26_memdata.ipynb), side by side
in one run, in seconds per batch of 256 at 32 px (the CIFAR-10 presets). On a machine with CUDA a third row measures the
in-memory loader with the images on the GPU (crops made there; the figure includes a synchronisation per batch).

The 'teaching' column is the disk pipeline, 'fast' the in-memory one. Both are timed in one process on the
threads torch has (the presets' `num_workers=0` case on the CPU); the two are interleaved batch by batch.

    python bench/memdata.py --data PATH_TO_CIFAR10     # ImageFolder tree or .tar.gz of one; or set IJEPA_DATA
    python bench/memdata.py --quick                    # toy images, a few batches (figures mean little)
"""
import argparse, json, os, sys, tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import row, machine, interleaved
from ijepa_edu.data import resolve_data, make_dataset, make_transforms, ResumableSampler, SeededSamples, MaskedBatchCollate
from ijepa_edu.masks import MaskCollator
from ijepa_edu.memdata import load_images, MemoryLoader


def _toy_root(n=600):
    "A temporary ImageFolder of n random 32x32 JPEGs (two classes, and a test split)."
    from PIL import Image
    root = Path(tempfile.mkdtemp(prefix='bench_memdata_'))
    for split, k in (('train', n), ('test', 20)):
        for c in ('a', 'b'):
            (root / split / c).mkdir(parents=True)
            for i in range(k // 2):
                Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()).save(root / split / c / f'{i}.jpg')
    return root


def _cycle(make):
    "A callable that returns the next batch of an endless sequence of epochs."
    state = {'it': iter(make(0)), 'epoch': 0}
    def nxt():
        try: return next(state['it'])
        except StopIteration:
            state['epoch'] += 1; state['it'] = iter(make(state['epoch'])); return next(state['it'])
    return nxt


def measure(quick=False, data=None, batch=256, reps=None):
    data = data or os.environ.get('IJEPA_DATA')
    root = resolve_data(data) if (data and not quick) else _toy_root()
    reps = reps or (3 if quick else 20)
    col = MaskCollator(input_size=32, patch_size=4, min_keep=4)
    ds = make_dataset(root, 'train', transform=make_transforms(32))
    images, labels = load_images(root)
    batch = min(batch, len(images) // 2)
    s_disk, s_mem = ResumableSampler(len(ds), batch_size=batch), ResumableSampler(len(images), batch_size=batch)
    disk = DataLoader(SeededSamples(ds), batch_size=batch, sampler=s_disk, collate_fn=MaskedBatchCollate(col))
    def epoch(sampler, loader):
        def make(e): sampler.set_epoch(e); return loader
        return make
    fns = {'disk': _cycle(epoch(s_disk, disk)),
           'memory': _cycle(epoch(s_mem, MemoryLoader(images, labels, sampler=s_mem, mask_collator=col, img_size=32)))}
    med, _ = interleaved(fns, reps=reps)
    note = f'{len(images)} images, batch {batch}; {batch / med["disk"]:,.0f} vs {batch / med["memory"]:,.0f} images/s'
    rows = [row('memdata', f'CPU: disk vs memory (B={batch})', med['disk'], med['memory'], 'batch', note)]
    if torch.cuda.is_available():
        s_gpu = ResumableSampler(len(images), batch_size=batch)
        nxt = _cycle(epoch(s_gpu, MemoryLoader(images, labels, sampler=s_gpu, mask_collator=col, img_size=32, device='cuda')))
        def gpu_batch(): out = nxt(); torch.cuda.synchronize(); return out
        g, _ = interleaved({'gpu': gpu_batch}, reps=reps)
        rows.append(row('memdata', f'{torch.cuda.get_device_name()}: memory on the GPU (B={batch})', med['disk'], g['gpu'],
                        'batch', f'{batch / g["gpu"]:,.0f} images/s with the images on the GPU'))
    return rows


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data'); ap.add_argument('--quick', action='store_true'); ap.add_argument('--json')
    a = ap.parse_args()
    rows = measure(a.quick, a.data)
    for r in rows: print(f"{r['case']}: disk {r['teaching'] * 1e3:.1f} ms, memory {r['fast'] * 1e3:.1f} ms per batch "
                         f"({r['teaching'] / r['fast']:.1f}x); {r['note']}")
    if a.json: Path(a.json).write_text(json.dumps(dict(machine=machine(), rows=rows), indent=1))
