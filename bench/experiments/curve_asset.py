"""Collect the learning-curve points that lesson 11 plots into nbs/assets/smallscale/curve.json (issue 12).

Every point is a separate pretraining run of `cifar10_tiny` with its own schedule length (not a checkpoint of a longer
run), scored by k-NN and a linear probe of the average-pooled target encoder fit on 10,000 evenly spaced training images
and scored on all 10,000 test images, beside the same network at its random init. Sources, all in bench/results/:
- 2026-11-26_tiny_recipe.jsonl (sin-cos positions + VICReg penalty, 0.5 / 1 / 2 epochs: `tiny_recipe.py`),
- learning_curve.jsonl (rotary positions + VICReg penalty and the other recipes of issue 12: `learning_curve.py`),
- content.jsonl (position share and own-image score of each checkpoint: `content_score.py`).
The paper-settings line (no penalty) comes from lesson 11's first round (nbs/assets/smallscale/results.json: k-NN only).

    python bench/experiments/curve_asset.py
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RES = ROOT / 'bench' / 'results'
LABELS = {'base': 'I-JEPA + VICReg penalty (sin-cos positions)', 'rope': 'I-JEPA + RoPE + VICReg penalty',
          'paper': 'I-JEPA, paper settings', 'rope_pure': 'I-JEPA + RoPE (no penalty)',
          'rope_sig': 'I-JEPA + RoPE + SIGReg', 'rope_pad': 'I-JEPA + RoPE + VICReg penalty, padded masks',
          'rope_pure_tl4': 'I-JEPA + RoPE + targets from the last 4 blocks (no penalty)',
          'rope_tl4': 'I-JEPA + RoPE + VICReg penalty + targets from the last 4 blocks',
          'rope_stop': 'I-JEPA + RoPE + VICReg penalty + StoP 0.25',
          'rope_pure_tl4_ema': 'I-JEPA + RoPE + last-4-block targets + fixed EMA momentum (no penalty)',
          'rope_pure_tl4_pd2': 'I-JEPA + RoPE + last-4-block targets + 2-block predictor (no penalty)',
          'rope_tl4_ema': 'I-JEPA + RoPE + VICReg penalty + last-4-block targets + fixed EMA momentum',
          'rope_tl4_ema_b64': 'I-JEPA + RoPE + VICReg penalty + last-4-block targets + fixed EMA momentum, batch 64'}


def rows():
    out = []
    for line in (RES / '2026-11-26_tiny_recipe.jsonl').read_text().splitlines():
        r = json.loads(line)
        if r['name'] in ('e0.5_base', 'e1_base', 'e1_base_s1', 'e1_base_s2', 'e2_base'):
            m = r['metrics']; ep = float(r['overrides'][0].split('=')[1]) if r['overrides'] else 1.0
            out.append(dict(recipe='base', epochs=ep, seed=int(next((o.split('=')[1] for o in r['overrides'] if o.startswith('seed=')), 0)),
                            **{k: m[k] for k in ('knn_top1', 'linear_top1', 'knn_top1_random_init', 'linear_top1_random_init',
                                                 'train_seconds')}, source='tiny_recipe.jsonl ' + r['name']))
    for r in json.loads((ROOT / 'nbs' / 'assets' / 'smallscale' / 'results.json').read_text()):
        if r['variant'].startswith('paper settings') and r['budget'].startswith('2 epochs, CPU'):
            out.append(dict(recipe='paper', epochs=2.0, seed=0, knn_top1=r['knn'], knn_top1_random_init=r['knn_random'],
                            source='assets/smallscale/results.json'))
    if (RES / 'learning_curve.jsonl').exists():
        for line in (RES / 'learning_curve.jsonl').read_text().splitlines():
            r = json.loads(line); m = r['metrics']
            if m.get('eval_train_images', m.get('train_images', 10000)) != 10000 or 'knn_top1' not in m: continue   # 10,000 probe images only
            out.append(dict(recipe=r['recipe'], epochs=r['epochs'], seed=r['seed'],
                            **{k: m[k] for k in ('knn_top1', 'linear_top1', 'knn_top1_random_init', 'linear_top1_random_init',
                                                 'train_seconds') if k in m}, source='learning_curve.jsonl'))
    content = {}
    if (RES / 'content.jsonl').exists():
        for line in (RES / 'content.jsonl').read_text().splitlines():
            c = json.loads(line); content[(c['recipe'], c['epochs'], c.get('seed', 0))] = c
    for r in out:
        c = content.get((r['recipe'], r['epochs'], r['seed']))
        if c: r.update(pos_share=c['pos_share'], own_image_top1=c['own_image_top1'], chance=c['chance'])
        r['label'] = LABELS.get(r['recipe'], r['recipe'])
    return out


if __name__ == '__main__':
    dest = ROOT / 'nbs' / 'assets' / 'smallscale' / 'curve.json'
    data = rows()
    dest.write_text(json.dumps(data, indent=1) + '\n')
    for r in data: print(r['label'], r['epochs'], r['seed'], r.get('knn_top1'), r.get('linear_top1'), r.get('own_image_top1'))
