"""Does it learn? The CIFAR-10 results table: pretrain a preset for a fixed budget, then score the trained target
encoder with k-NN and linear probes on the test split, beside two baselines measured by the same harness: the same ViT
at its random init (the weights the run started from) and raw pixels.

    python bench/quality.py --data ../shared/data/cifar10/cifar10_jpg.tar.gz                      # cifar10_tiny, CPU
    python bench/quality.py --data PATH --preset cifar10_small --device cuda                      # one GPU
    python bench/quality.py --data PATH --ckpt runs/cifar10_tiny/latest.pt                        # score a finished run

The budget is the preset's (epochs and batch; any `key=value` override changes it) and is printed with the measured
wall time, the machine and the date. Every probe learns from the whole training split (`--train_images` for a subset)
and is scored on the whole test split. One JSON line per run is appended to bench/results/quality.jsonl.
"""
import argparse, dataclasses, json, sys, time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from bench_util import machine
from ijepa_edu.config import get_config, parse_overrides
from ijepa_edu.data import resolve_data, make_dataset, make_transforms
from ijepa_edu.evaluate import evaluate_encoder, evaluate_pixels, random_init_encoder, evenly_spaced, _in_memory, load_run_encoder
from ijepa_edu.train import train, pick_device

PROBES = ('knn', 'linear', 'linear4')
ROWS = (('trained', 'I-JEPA target encoder (pretrained)'), ('random_init', 'same ViT, random init'), ('pixels', 'raw pixels'))
COLS = (('knn_top1', 'k-NN'), ('linear_top1', 'linear'), ('linear4_top1', 'linear, last 4 layers'))


def table(res):
    "The results as a Markdown table (top-1 %, CIFAR-10 test)."
    out = ['| features | ' + ' | '.join(c for _, c in COLS) + ' |', '|---|' + '---:|' * len(COLS)]
    for key, name in ROWS:
        r = res.get(key, {})
        out.append(f'| {name} | ' + ' | '.join(f"{r[k]:.2f}" if k in r else '-' for k, _ in COLS) + ' |')
    return '\n'.join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('overrides', nargs='*', help='config overrides as key=value')
    ap.add_argument('--preset', default='cifar10_tiny')
    ap.add_argument('--data', required=True, help='CIFAR-10 folder, ImageFolder tree or .tar.gz')
    ap.add_argument('--out', default=None, help='run folder (default runs/quality_<preset>)')
    ap.add_argument('--ckpt', default=None, help='score this finished run instead of pretraining')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--train_images', type=int, default=0, help='images the probes learn from (0: the whole train split)')
    ap.add_argument('--test_images', type=int, default=0, help='test images scored (0: all; a subset only for smoke runs)')
    ap.add_argument('--no_pixels', action='store_true', help='skip the raw-pixel baseline')
    ap.add_argument('--results', default=str(Path(__file__).parent / 'results' / 'quality.jsonl'))
    a = ap.parse_args(argv)

    ov = parse_overrides(a.overrides)
    ov.update(data=a.data, device=a.device, out=a.out or f'runs/quality_{a.preset}', eval_probes='')
    cfg = get_config(a.preset, **ov)
    device = pick_device(a.device)
    res = {'preset': a.preset, 'overrides': a.overrides, 'machine': machine(), 'command': ' '.join(sys.argv)}
    if a.ckpt:
        enc, run_cfg, ck = load_run_encoder(a.ckpt)                 # the run's own config rebuilds its model
        cfg = dataclasses.replace(run_cfg, data=a.data, device=a.device)
        res['budget'] = {'steps': ck['step'], 'note': f'scored from {a.ckpt}', 'batch_size': ck['config']['batch_size']}
        run = Path(a.ckpt).parent / 'metrics.json'                 # the training summary ijepa_train wrote beside it
        if run.exists():
            s = json.loads(run.read_text())
            res['budget'].update({k: s[k] for k in ('epochs_done', 'images', 'train_seconds', 'img_per_s', 'device') if k in s})
    else:
        s = train(cfg)
        enc, _, _ = load_run_encoder(s['checkpoint'])
        res['budget'] = {k: s[k] for k in ('steps', 'epochs_done', 'images', 'train_seconds', 'img_per_s', 'device')}
        res['budget']['batch_size'] = cfg.batch_size
    root = resolve_data(cfg.data)
    tfm = make_transforms(cfg.img_size, train=False)
    train_ds = _in_memory(evenly_spaced(make_dataset(root, 'train', cfg.dataset, tfm), a.train_images))
    test_ds = _in_memory(evenly_spaced(make_dataset(root, 'test', cfg.dataset, tfm), a.test_images))
    t0 = time.time()
    res['trained'] = evaluate_encoder(enc.to(device), train_ds, test_ds, probes=PROBES, device=device, seed=cfg.seed)
    print('trained:', res['trained'], flush=True)
    res['random_init'] = evaluate_encoder(random_init_encoder(cfg).to(device), train_ds, test_ds, probes=PROBES, device=device, seed=cfg.seed)
    print('random init:', res['random_init'], flush=True)
    if not a.no_pixels: res['pixels'] = evaluate_pixels(train_ds, test_ds, device=device, seed=cfg.seed)
    res['eval_seconds'] = round(time.time() - t0, 1)
    b = res['budget']
    print(f"\nCIFAR-10 test top-1 (%), {a.preset} {' '.join(a.overrides)}: {b.get('steps')} steps"
          + (f" ({b['epochs_done']:g} epochs of {b['images']:,} images, batch {b['batch_size']}) in {b['train_seconds']:.0f} s "
             f"on {b['device']}" if 'train_seconds' in b else '')
          + f"; probes learn from {res['trained']['train_images']:,} train images, scored on {res['trained']['test_images']:,}"
          + f" test images ({res['eval_seconds']:.0f} s); {res['machine']['cpu']}, {res['machine']['date']}\n")
    print(table(res))
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, 'a') as f: f.write(json.dumps(res) + '\n')
    return res



if __name__ == '__main__':
    main()
