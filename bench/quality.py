"""Does it learn? The CIFAR-10 results table: pretrain a preset for a fixed budget, then score the trained target
encoder with k-NN and linear probes on the test split, beside two baselines measured by the same harness: the same ViT
at its random init (the weights the run started from) and raw pixels.

    python bench/quality.py --data ../shared/data/cifar10/cifar10_jpg.tar.gz                      # cifar10_tiny, CPU
    python bench/quality.py --data PATH --preset cifar10_small --device cuda                      # one GPU
    python bench/quality.py --data PATH --ckpt runs/cifar10_tiny/latest.pt                        # score a finished run

The budget is the preset's (epochs and batch; any `key=value` override changes it) and is printed with the measured
wall time, the machine and the date. Every probe learns from the whole training split (`--train_images` for a subset)
and is scored on the whole test split. The scoring is `ijepa_eval`'s (`evaluate_checkpoint`: the same data path, probes,
baselines and table). One JSON line per run is appended to bench/results/quality.jsonl.
"""
import argparse, json, sys, time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from bench_util import machine
from ijepa_edu.config import get_config, parse_overrides
from ijepa_edu.checkpoint import load_checkpoint
from ijepa_edu.evaluate import evaluate_checkpoint, format_results
from ijepa_edu.train import train

PROBES = ('knn', 'linear', 'linear4')


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

    res = {'preset': a.preset, 'overrides': a.overrides, 'machine': machine(), 'command': ' '.join(sys.argv)}
    if a.ckpt:
        ckpt, ck = a.ckpt, load_checkpoint(a.ckpt)
        res['budget'] = {'steps': ck['step'], 'note': f'scored from {a.ckpt}', 'batch_size': ck['config']['batch_size']}
        run = Path(a.ckpt).parent / 'metrics.json'                 # the training summary ijepa_train wrote beside it
        if run.exists():
            s = json.loads(run.read_text())
            res['budget'].update({k: s[k] for k in ('epochs_done', 'images', 'train_seconds', 'img_per_s', 'device') if k in s})
    else:
        ov = parse_overrides(a.overrides)
        ov.update(data=a.data, device=a.device, out=a.out or f'runs/quality_{a.preset}', eval_probes='')
        cfg = get_config(a.preset, **ov)
        s = train(cfg)
        ckpt = s['checkpoint']
        res['budget'] = {k: s[k] for k in ('steps', 'epochs_done', 'images', 'train_seconds', 'img_per_s', 'device')}
        res['budget']['batch_size'] = cfg.batch_size
    t0 = time.time()                                               # the evaluation's one path: `ijepa_eval`'s
    entry = evaluate_checkpoint(ckpt, data=a.data, probes=PROBES, train_images=a.train_images, test_images=a.test_images,
                                baselines=('random_init',) if a.no_pixels else True, device=a.device, write=False, quiet=True,
                                features=False)                    # in memory: no feature chunks beside the run
    rows, p = entry['rows'], entry['protocol']                     # the one results schema (lesson 27)
    res['trained'] = {**rows['pretrained'], 'train_images': p['train_images'], 'test_images': p['test_images']}
    res['random_init'] = rows['random_init']
    if 'pixels' in rows: res['pixels'] = rows['pixels']
    res['eval_seconds'] = round(time.time() - t0, 1)
    b = res['budget']
    print(f"\nCIFAR-10 test top-1 (%), {a.preset} {' '.join(a.overrides)}: {b.get('steps')} steps"
          + (f" ({b['epochs_done']:g} epochs of {b['images']:,} images, batch {b['batch_size']}) in {b['train_seconds']:.0f} s "
             f"on {b['device']}" if 'train_seconds' in b else '')
          + f"; probes learn from {res['trained']['train_images']:,} train images, scored on {res['trained']['test_images']:,}"
          + f" test images ({res['eval_seconds']:.0f} s); {res['machine']['cpu']}, {res['machine']['date']}\n")
    print(format_results(entry, markdown=True))
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, 'a') as f: f.write(json.dumps(res) + '\n')
    return res


if __name__ == '__main__':
    main()
