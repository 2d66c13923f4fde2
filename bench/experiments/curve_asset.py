"""Collect the learning-curve points that lesson 11 plots into nbs/assets/smallscale/curve.json (issue 12).

Every point is a separate pretraining run of `cifar10_tiny` with its own schedule length (not a checkpoint of a longer
run), scored by k-NN and a linear probe of the average-pooled target encoder fit on 10,000 evenly spaced training images
and scored on all 10,000 test images, beside the same network at its random init. Sources, all in bench/results/:
- 2026-11-26_tiny_recipe.jsonl (sin-cos positions + VICReg penalty, 0.5 / 1 / 2 epochs: `tiny_recipe.py`),
- learning_curve.jsonl (rotary positions + VICReg penalty and the other recipes of issue 12: `learning_curve.py`),
- content.jsonl (position share and own-image score of each checkpoint: `content_score.py`). A run trained on the
  average of its last four blocks (`tl4` recipes) takes a score only from a row scored against its own targets
  (`targets='model'`, issue 23) of a run with this protocol; the older rows of those runs were scored against the last
  block, their checkpoints are gone, so their scores are left out (`content_note` says so).
The paper-settings line (no penalty) comes from lesson 11's first round (nbs/assets/smallscale/results.json: k-NN only).
It also writes nbs/assets/cifar10_cpu/curve.json: the main job's recipe at several lengths and the four recipes before
it (the main job's and three of those at 1x, 2x and 4x their length), scored as the main job scores itself, with the levers measured
on them (issue 24, item 4; `main_job_rows`).

    python bench/experiments/curve_asset.py
"""
import json, re
from pathlib import Path
from ijepa_edu.evaluate import flat_results

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
          'rope_tl4_ema_b64': 'I-JEPA + RoPE + VICReg penalty + last-4-block targets + fixed EMA momentum, batch 64',
          'rope_tl4_ema_lr2': "the main job's recipe, peak learning rate 2e-3", 'rope_tl4_ema_lr3': "the main job's recipe, peak learning rate 3e-3",
          'rope_tl4_ema_crop6': "the main job's recipe, crops of 0.6-1 of the image",
          'rope_tl4_ema_np2': "the main job's recipe, two target blocks, not four",
          'rope_tl4_ema_pd2': "the main job's recipe, a 2-block predictor"}
LEVERS = ('rope_tl4_ema_lr2', 'rope_tl4_ema_lr3', 'rope_tl4_ema_crop6', 'rope_pure_tl4_ema', 'rope_tl4_ema_np2',
          'rope_tl4_ema_pd2')   # issue 24
SPLIT = ('rope_tl4_ema', 'rope_tl4_ema_data0', 'rope_tl4_ema_data1')   # the recipe, its data stream seeded apart (data_seed)


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
        if c and 'tl4' in r['recipe'] and (c.get('targets') != 'model' or c.get('eval_train_images') != 10000):
            c = None   # scored against the last block before issue 23, or another run of that name: withdrawn (checkpoint gone)
            r['content_note'] = 'own-image score withdrawn: measured against last-block targets; checkpoint not kept'
        if c: r.update(pos_share=c['pos_share'], own_image_top1=c['own_image_top1'], chance=c['chance'])
        r['label'] = LABELS.get(r['recipe'], r['recipe'])
    return out


SUP_EPOCHS = 5          # labels for six 2-block-predictor epochs' CPU time (`supervised`); `labels`: every length (4.2: the main job's)
MAIN_KEYS = ('knn_top1', 'linear_top1', 'linear4_top1', 'knn_top1_random_init', 'linear_top1_random_init',
             'linear4_top1_random_init', 'train_seconds', 'img_per_s')
# The main job's recipe (`cifar10_cpu` since the eighth round, 2026-12-07: two target blocks, the last block as the
# target, EMA momentum 0.99, a 2-block predictor, 4.5 epochs) and the four before it (`tl1`: four target blocks, six
# epochs; `m99`: and targets from the last four blocks; `pd2`: and momentum 0.996; `previous`: and the 4-block
# predictor, five epochs), each with its timed main-job run (seed 0) as its own length's point
MAIN = ('rope_tl1_ema_pd2_m99_np2', ROOT / 'nbs' / 'assets' / 'cifar10_cpu' / 'metrics.json')
TL1 = ('rope_tl1_ema_pd2_m99', RES / 'main_job_2026-12-07_6ep_tl1_metrics.json')
M99 = ('rope_tl4_ema_pd2_m99', RES / 'main_job_2026-12-06_6ep_m99_metrics.json')
PD2 = ('rope_tl4_ema_pd2', RES / 'main_job_2026-12-06_6ep_pd2_metrics.json')
PREVIOUS = ('rope_tl4_ema', RES / 'main_job_2026-12-06_5ep_metrics.json')
# the last-four recipe with targets from its last 1, 2 or 3 blocks instead (sixth round; the first became the main job's
# in the seventh, so its runs are in `tl1` too)
DEPTHS = ('rope_tl1_ema_pd2_m99', 'rope_tl2_ema_pd2_m99', 'rope_tl3_ema_pd2_m99')
# The main job, timed alone with an empty cache on three hosts of the same kind: (host, recipe, metrics.json, the log
# with /usr/bin/time's report). `m99` and `tl1` differ only in which blocks are averaged into the targets (the same
# work); the main job's two target blocks make a longer context (1.1x the time per step), timed on the third host
HOSTS = (('the first host', M99[0], M99[1], RES / 'main_job_timed_2026-12-06_6ep_m99.log'),
         ('a second host', M99[0], RES / 'main_job_2026-12-06_6ep_m99_host2_metrics.json', RES / 'main_job_timed_2026-12-06_6ep_m99_host2.log'),
         ('a third host', TL1[0], TL1[1], RES / 'main_job_timed_2026-12-07_6ep_tl1_host3.log'),
         ('the third host', MAIN[0], MAIN[1], RES / 'main_job_timed_2026-12-07_4.5ep_np2_host3.log'))


def _timed(path):
    "(the flat results, the raw metrics) of a timed main-job run's metrics.json."
    raw = json.loads(Path(path).read_text())
    return flat_results(raw), raw


def _wall(log):
    "(wall seconds, peak resident GB) from the /usr/bin/time -v report in a timed run's log."
    text = Path(log).read_text()
    h, m, sec = ([0] + [float(x) for x in re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)', text).group(1).split(':')])[-3:]
    return round(h * 3600 + m * 60 + sec, 1), round(int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', text).group(1)) / 1e6, 2)


def host_rows():
    "The main job as it stands, timed alone on each host: its time (training, evaluation by row, all) and its figures."
    out = []
    for host, recipe, path, log in HOSTS:
        flat, raw = _timed(path)
        wall, gb = _wall(log)
        ev = raw['evaluation']
        out.append(dict(host=host, recipe=recipe, steps=raw['steps'], train_seconds=raw['train_seconds'], img_per_s=raw['img_per_s'],
                        eval_seconds=raw['eval_seconds'], row_seconds={k: v['seconds'] for k, v in ev['rows'].items()},
                        wall_seconds=wall, peak_gb=gb, **{k: flat[k] for k in ('knn_top1', 'linear_top1', 'linear4_top1')}))
    return out


def main_job_rows():
    """The main job's recipe at several lengths (`runs`, the timed main job its seed-0 point), the four recipes before
    it (`tl1`: four target blocks, six epochs, at 1x, 2x and 4x; `m99`: last-four-block targets at 1x, 2x and 4x;
    `pd2`: momentum 0.996, with `averages`, weight_average.py's rows; `previous`: the 4-block predictor at 1x, 2x and
    4x its five epochs), scored as the main job scores itself (probes on
    all 50,000 train images, every row standardised), with each run's own-image score against its own targets
    (content.jsonl rows with `targets='model'`); the levers measured on top of the previous recipe; its two seeds
    crossed (`seed_split`: weights x data stream); the random init and raw pixels as the main job scored them; labels."""
    content = {}
    if (RES / 'content.jsonl').exists():
        for line in (RES / 'content.jsonl').read_text().splitlines():
            c = json.loads(line)
            if c.get('targets') == 'model' and c.get('eval_train_images') == 0: content[(c['recipe'], c['epochs'], c['seed'])] = c
    swing = {}   # the four-epoch runs were scored before the protocol change: their standardised k-NN is knn_swing.py's
    if (RES / 'knn_swing.jsonl').exists():
        for line in (RES / 'knn_swing.jsonl').read_text().splitlines():
            w = json.loads(line); swing[(w['epochs'], w['seed'])] = w['knn']['standardised']
    depth = {}  # the main job's recipe with targets from fewer of its blocks, one thread each
    side = {}   # the fifth round's pair (momentum 0.99 and 0.996), six epochs, one thread each side by side: the lever's evidence
    curves, levers, split = {MAIN[0]: {}, TL1[0]: {}, M99[0]: {}, PD2[0]: {}, PREVIOUS[0]: {}}, [], {}
    for line in (RES / 'learning_curve.jsonl').read_text().splitlines():
        r = json.loads(line); m, cfg = flat_results(r['metrics']), r.get('config') or {}
        if not cfg.get('data_in_memory') or cfg.get('eval_train_images') != 0 or 'linear4_top1' not in m: continue
        row = dict(recipe=r['recipe'], epochs=r['epochs'], seed=r['seed'], **{k: m[k] for k in MAIN_KEYS if k in m},
                   precision=m.get('eval_precision', 'fp32'))     # how the features were encoded (jobs.flat_metrics)
        if r['recipe'] in LEVERS: levers.append(dict(row, label=LABELS[r['recipe']]))
        if r['recipe'] in SPLIT and r['epochs'] == 5:          # init seed x data seed (data_seed -1: the run's seed)
            split[(r['seed'], cfg.get('data_seed', -1) if cfg.get('data_seed', -1) >= 0 else r['seed'])] = row
        if r['recipe'] in (M99[0], PD2[0]) and r['epochs'] == 6: side[(r['recipe'], r['seed'])] = row
        if r['recipe'] in DEPTHS: depth[(r['recipe'], r['epochs'], r['seed'])] = dict(row, target_layers=cfg['target_layers'])
        if r['recipe'] not in curves: continue
        if r['recipe'] == PREVIOUS[0] and r['epochs'] == 4 and (r['epochs'], r['seed']) in swing:
            row.update(knn_top1=swing[(r['epochs'], r['seed'])], knn_source='knn_swing.jsonl (standardised)')
            for k in ('knn_top1_random_init', 'linear_top1_random_init', 'linear4_top1_random_init'): row.pop(k, None)
        curves[r['recipe']][(r['epochs'], r['seed'])] = row      # a later run of the same length and seed replaces one
    averages = []   # weight_average.py: the `pd2` recipe (the preset until the fifth round) for 7 epochs, target and averages
    for line in ((RES / 'weight_average.jsonl').read_text().splitlines() if (RES / 'weight_average.jsonl').exists() else []):
        r = json.loads(line)
        ema = tuple((r.get('config') or {}).get('ema', (0.996, 0.996)))   # rows without a config: run before the change
        if ema != (0.996, 0.996): continue
        row = dict(recipe=PD2[0], epochs=r['epochs'], seed=r['seed'], encoder=r['encoder'], averaged_steps=r.get('averaged_steps'),
                   precision=r.get('precision', 'bf16'),   # rows before it was recorded: bf16, as each run's metrics.json says
                   **{k: r[k] for k in MAIN_KEYS if k in r}, source='weight_average.jsonl')
        averages.append(row)
        if r['encoder'] == 'target' and r['preset'] == 'cifar10_cpu' and set(r['overrides']) == {f"epochs={r['epochs']:g}"}:
            curves[PD2[0]].setdefault((r['epochs'], r['seed']), row)   # the preset's own run at that length
    for recipe, path in (MAIN, TL1, M99, PD2, PREVIOUS):                   # the timed main job is its length's seed-0 point
        shipped, raw = _timed(path)
        curves[recipe][(raw['epochs_done'], 0)] = dict(recipe=recipe, epochs=raw['epochs_done'], seed=0, source='the timed main job',
                                                       precision=raw['evaluation']['protocol']['precision'],
                                                       **{k: shipped[k] for k in MAIN_KEYS if k in shipped})
    split[(0, 0)] = curves[PREVIOUS[0]][(5.0, 0)]
    keyed = [((recipe, *key), row) for recipe, rows in curves.items() for key, row in rows.items()] + list(depth.items())
    for key, row in keyed:                                          # key: (recipe, epochs, seed)
        c = content.get(key)
        if c: row.update(pos_share=c['pos_share'], own_image_top1=c['own_image_top1'], chance=c['chance'])
    sup = [json.loads(l) for l in (RES / 'supervised_ceiling.jsonl').read_text().splitlines()]
    sup = [r for r in sup if r['overrides'] == ['rope=true'] and 'cpu_ms_per_image' in r]
    labels = {r['epochs']: dict(epochs=r['epochs'], test_top1=r['curve'][-1]['test_top1'], cpu_ms_per_image=r['cpu_ms_per_image'],
                                train_seconds=round(60 * r['curve'][-1]['train_minutes'], 1), img_per_s=r['img_per_s'],
                                finished=r['finished']) for r in sup}     # one run per length: the last of each
    supervised = labels.get(SUP_EPOCHS)
    shipped, _ = _timed(MAIN[1])   # the random init (seed 0) and raw pixels, as the main job scored them
    base = {name: {k[:-len(name) - 1]: v for k, v in shipped.items() if k.endswith('_top1_' + name) and '_train_' not in k}
            for name in ('random_init', 'pixels')}
    seed_split = [dict(init_seed=i, data_seed=d, **{k: row[k] for k in ('knn_top1', 'linear_top1', 'linear4_top1')})
                  for (i, d), row in sorted(split.items())]
    return dict(runs=[curves[MAIN[0]][k] for k in sorted(curves[MAIN[0]])],
                tl1=[curves[TL1[0]][k] for k in sorted(curves[TL1[0]])],
                m99=[curves[M99[0]][k] for k in sorted(curves[M99[0]])],
                pd2=[curves[PD2[0]][k] for k in sorted(curves[PD2[0]])],
                previous=[curves[PREVIOUS[0]][k] for k in sorted(curves[PREVIOUS[0]])],
                **base, supervised=supervised, labels=[labels[k] for k in sorted(labels)], levers=levers, averages=averages, side_by_side=[side[k] for k in sorted(side)], seed_split=seed_split,
                target_depth=[depth[k] for k in sorted(depth)], hosts=host_rows())


if __name__ == '__main__':
    dest = ROOT / 'nbs' / 'assets' / 'smallscale' / 'curve.json'
    data = rows()
    dest.write_text(json.dumps(data, indent=1) + '\n')
    for r in data: print(r['label'], r['epochs'], r['seed'], r.get('knn_top1'), r.get('linear_top1'), r.get('own_image_top1'))
    main = main_job_rows()
    (ROOT / 'nbs' / 'assets' / 'cifar10_cpu' / 'curve.json').write_text(json.dumps(main, indent=1) + '\n')
    for key in ('runs', 'tl1', 'm99', 'pd2', 'previous'):
        for r in main[key]: print(key, r['recipe'], r['epochs'], r['seed'], r.get('knn_top1'), r.get('linear_top1'), r.get('linear4_top1'), r.get('own_image_top1'))
    print('random init', main.get('random_init'), 'pixels', main.get('pixels'), 'supervised', main['supervised'], 'labels', main['labels'])
