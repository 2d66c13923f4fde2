"""What can a few CPU minutes buy this network at all? Supervised training of the main job's encoder (issue 12, item 3).

Trains the encoder of a preset (by default `cifar10_tiny`, with the overrides given) with labels: the average-pooled
target of the encoder goes through one Linear layer, cross-entropy on CIFAR-10's train split, the same crops as
pretraining (RandomResizedCrop with the preset's `crop_scale`, flips as the preset), AdamW at the preset's peak
learning rate, linear warmup and cosine decay. After every epoch it scores the whole test split and prints the
minutes so far, so that a self-supervised run can be set beside the accuracy that the same network reaches with labels
in the same time. A linear probe on pretrained features cannot be expected to beat this curve at equal minutes.

    nice -n 10 python bench/experiments/supervised_ceiling.py --data PATH --epochs 6 --threads 1 [key=value ...]

`--epochs` may be fractional (a budget in steps: the schedule ends there). Each point of the curve has the wall
minutes and the process's CPU seconds of training so far: on a shared machine compare CPU seconds (one thread) with
`bench/cpu_levers.py`'s CPU seconds per step of the self-supervised step, measured the same day.

Appends one JSON line per run (the config, images/s, and test top-1 after each epoch) to `--results`.
"""
import argparse, json, math, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F
from ijepa_edu.config import get_config, parse_overrides
from ijepa_edu.build import build_model
from ijepa_edu.data import resolve_data
from ijepa_edu.memdata import load_images, random_resized_boxes, crop_resize

def lr_at(step, total, warmup, peak):
    """Linear warmup from zero to `peak`, then cosine to zero: the usual supervised schedule (the official I-JEPA one,
    `ijepa_edu.schedules.lr_at`, starts at 2e-4 and ends at 1e-6)."""
    if step < warmup: return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

@torch.no_grad()
def test_top1(encoder, head, images, labels, size, batch=1000):
    "Top-1 (%) on whole images (resized to the training size, normalised as in training)."
    encoder.eval(); hits = 0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        full = torch.tensor([[0., 0., x.shape[2], x.shape[3]]]).expand(len(x), 4)   # (B, 4) the whole image as the box
        hits += (head(encoder(crop_resize(x, full, size)).mean(1)).argmax(1) == labels[i:i + batch]).sum().item()
    encoder.train()
    return 100 * hits / len(images)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('--preset', default='cifar10_tiny')
    ap.add_argument('--epochs', type=float, default=6); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--weight_decay', type=float, default=0.05); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--train_images', type=int, default=0, help='evenly spaced train images to use (0: all; a quick check)')
    ap.add_argument('--results', default=str(Path(__file__).parents[1] / 'results' / 'supervised_ceiling.jsonl'))
    ap.add_argument('overrides', nargs='*', help='config fields of the preset, key=value (the network and the crops)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    cfg = get_config(a.preset, **parse_overrides(a.overrides))
    root = resolve_data(a.data)
    train_x, train_y = load_images(root, 'train', cfg.dataset)          # uint8 (50000, 3, 32, 32), (50000,)
    test_x, test_y = load_images(root, 'test', cfg.dataset)
    if a.train_images: keep = torch.linspace(0, len(train_x) - 1, a.train_images).long(); train_x, train_y = train_x[keep], train_y[keep]
    encoder = build_model(cfg).encoder                                  # the same network and init as pretraining
    head = nn.Linear(encoder.embed_dim, int(train_y.max()) + 1)
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=a.weight_decay)
    ipe = len(train_x) // cfg.batch_size
    total, warmup = round(a.epochs * ipe), max(1, round(cfg.warmup * ipe))   # a fractional last epoch: a budget in steps
    gen = torch.Generator().manual_seed(a.seed)
    curve, t0, c0, step = [], time.time(), time.process_time(), 0
    for epoch in range(math.ceil(a.epochs)):
        order = torch.randperm(len(train_x), generator=gen)
        for i in range(min(ipe, total - step)):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            boxes = random_resized_boxes(len(idx), *train_x.shape[2:], scale=cfg.crop_scale, gen=gen)   # (B, 4)
            flip = torch.rand(len(idx), generator=gen) < 0.5 if cfg.horizontal_flip else None
            x = crop_resize(train_x[idx], boxes, cfg.img_size, flip)                                  # (B, 3, S, S)
            for g in opt.param_groups: g['lr'] = lr_at(step, total, warmup, cfg.lr)
            loss = F.cross_entropy(head(encoder(x).mean(1)), train_y[idx])                          # pooled (B, D) -> (B, C)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); step += 1
        train_s, train_cpu = time.time() - t0, time.process_time() - c0
        top1 = test_top1(encoder, head, test_x, test_y, cfg.img_size)
        curve.append(dict(epoch=round(step / ipe, 3), train_minutes=round(train_s / 60, 2), train_cpu_s=round(train_cpu, 1), test_top1=round(top1, 2), loss=round(loss.item(), 4)))
        print(curve[-1], flush=True)
        t0, c0 = time.time() - train_s, time.process_time() - train_cpu   # the test pass is not training time
    row = dict(preset=a.preset, train_images=len(train_x), overrides=a.overrides, epochs=a.epochs, threads=a.threads, seed=a.seed,
               weight_decay=a.weight_decay, lr=cfg.lr, batch_size=cfg.batch_size, img_per_s=round(step * cfg.batch_size / train_s, 1),
               cpu_ms_per_image=round(1000 * train_cpu / (step * cfg.batch_size), 3), steps=step,
               curve=curve, finished=time.strftime('%Y-%m-%d %H:%M'))
    with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')
    print(json.dumps(row))

if __name__ == '__main__': main()
