"""Does the predictor predict content or position? (issue 12, item 2; lesson 12's scores on a run's checkpoint)

For each checkpoint: the position share of the layer-normed target features (the fraction of their variance that the
per-position mean explains, lesson 09) on 512 test images, and how often the predictor's output for a target patch is
closer (cosine) to *its own image's* target at that position than to any other image's target at that position
(lesson 12's "picks its own image"; chance 1/B with B test images per batch), over 8 batches of 64 test images with
the run's own mask settings. The targets are the run's own (`visualise.all_targets`: the model's `targets`, so a run
trained on the average of its last K blocks, `target_layers=K`, is scored against those; before issue 23 this script
used the last block for every run). Each row records `targets='model'` and `target_layers`: rows without them were
scored against the last block, and `curve_asset.py` leaves their scores out for runs with `target_layers` > 1.

    python bench/experiments/content_score.py --data PATH runs/curve/rope_e2_s0/latest.pt [more checkpoints ...]
"""
import argparse, json
from pathlib import Path
import torch
from ijepa_edu.build import make_mask_collator
from ijepa_edu.evaluate import load_run_model
from ijepa_edu.data import resolve_data, make_dataset, make_transforms
from ijepa_edu.diagnostics import position_share
from ijepa_edu.visualise import all_targets, predict_blocks, prediction_scores


@torch.no_grad()
def scores(path, root, batches=8, batch=64):
    "{'pos_share', 'own_image_top1', 'chance', 'step'} for one checkpoint."
    model, cfg, ck = load_run_model(path)
    ds = make_dataset(root, 'test', cfg.dataset, transform=make_transforms(cfg.img_size, train=False))
    idx = torch.linspace(0, len(ds) - 1, batches * batch).long().tolist()          # evenly spaced over the classes
    x = torch.stack([ds[i][0] for i in idx])                                        # (batches * batch, 3, H, W)
    h = all_targets(model, x)                                                       # (n, N, D) the training targets
    collator, top1 = make_mask_collator(cfg, truncate='random'), []
    for b in range(batches):
        xb = x[b * batch:(b + 1) * batch]
        me, mp = collator.sample(len(xb), gen=torch.Generator().manual_seed(b))
        s = prediction_scores(predict_blocks(model, xb, me, mp))
        top1.append((s['image_rank'] == 0).float().mean().item())
    return dict(step=ck['step'], pos_share=round(position_share(h), 4), own_image_top1=round(100 * sum(top1) / len(top1), 2),
                chance=round(100 / batch, 2), targets='model', target_layers=cfg.target_layers,
                eval_train_images=cfg.eval_train_images, data_in_memory=cfg.data_in_memory)



if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('ckpts', nargs='+')
    ap.add_argument('--results', help='append one JSON line per checkpoint (its folder named RECIPE_eEPOCHS_sSEED, as learning_curve.py names runs)')
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = resolve_data(a.data)
    for c in a.ckpts:
        row = dict(ckpt=c, **scores(c, root))
        if a.results:
            recipe, e, s = Path(c).parent.name.rsplit('_', 2)
            row.update(recipe=recipe, epochs=float(e[1:]), seed=int(s[1:]))
            with open(a.results, 'a') as f: f.write(json.dumps(row) + '\n')
        print(json.dumps(row), flush=True)
