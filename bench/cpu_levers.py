"""Levers of CPU training speed for the main job (issue 24, item 1), measured side by side in one run.

Each lever is a short `ijepa_train --preset cifar10_cpu` run (`max_steps` steps, no evaluation, no monitor) in its own
process, on the real CIFAR-10 archive. The variants run one after another and the order flips every round, so a shared
machine's noise hits all alike. Per run it records the steady-state seconds per step (from the run's log, between the
first logged step after `--skip` and the last: compile and the in-memory decode are left out), the start-up seconds
(process start to the first logged step: imports, data, compile), the process's CPU seconds, and images/s. The
table gives medians over rounds and each lever's speed relative to the preset as it was (`base`).

    python bench/cpu_levers.py --data PATH [--steps 60] [--rounds 2] [--levers base memory memory_bf16 ...]

Levers (all on top of the cifar10_cpu preset, which now keeps its data in memory):
  base          JPEGs decoded and cropped in the training process between steps (num_workers=0), fp32
  workers1      the same with one DataLoader worker process (decoding beside the step)
  memory        data_in_memory=true: decoded once into a tensor, crops and masks drawn in batched tensor ops (lesson 26)
  memory_bf16   + precision=bf16 (bf16 autocast on the CPU)
  (compile=true on the preset's truncated masks is refused: their length changes every step; see memory_pad_compile)
  base_2threads, memory_2threads  the disk and in-memory paths on two threads, the main job's setting: compared by
                 wall time, which only a quiet machine measures (`--levers base_2threads memory_2threads --rounds 2`)
  memory_pad     padded masks of fixed length (truncate=pad pad_to=max): every drawn patch trains, shapes fixed
  memory_pad_compile + compile=true on those fixed shapes (compile's own gain; padding's cost is memory_pad's)
  memory_np2, memory_np2_2threads  two target blocks instead of four (num_pred_masks=2): the context keeps more patches
                 and the predictor has fewer to predict; its time per image against `memory` / `memory_2threads`
All other levers run on one thread and are compared by CPU seconds per step, which other jobs on a
shared machine do not inflate.
Results are appended to bench/results/cpu_levers.jsonl with the machine's description.
"""
import argparse, csv, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import machine

LEVERS = {   # name: (overrides, torch threads)
    'base':           (['data_in_memory=false'], 1),                  # the preset as it was before issue 24
    'workers1':       (['data_in_memory=false', 'num_workers=1'], 1),
    'memory':         (['data_in_memory=true'], 1),
    'memory_bf16':    (['data_in_memory=true', 'precision=bf16'], 1),
    'base_2threads':  (['data_in_memory=false'], 2),
    'memory_2threads': (['data_in_memory=true'], 2),
    'memory_pad':     (['data_in_memory=true', 'truncate=pad', 'pad_to=max'], 1),   # fixed shapes, eager: compile's baseline
    'memory_pad_compile': (['data_in_memory=true', 'truncate=pad', 'pad_to=max', 'compile=true'], 1),
    'memory_np2':     (['data_in_memory=true', 'num_pred_masks=2'], 1),   # two target blocks: a larger context, fewer targets
    'memory_np2_2threads': (['data_in_memory=true', 'num_pred_masks=2'], 2),
}


def run(name, data, steps, skip, extra):
    "One short training run of a lever; its seconds per step (steady state), start-up seconds and CPU seconds."
    overrides, threads = LEVERS[name]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, '-m', 'ijepa_edu.train', '--preset', 'cifar10_cpu', '--data', data, '--out', out,
               f'max_steps={steps}', 'eval_probes=', 'knn_every=0', 'diag_every=0', 'log_every=5', *overrides, *extra]
        env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads)}
        t0 = time.time()
        with open(Path(out) / 'stdout.txt', 'w') as log:              # a file, not a pipe: a full pipe would block the run
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(p.pid, 0)
        wall, text = time.time() - t0, (Path(out) / 'stdout.txt').read_text()
        if os.waitstatus_to_exitcode(status): raise RuntimeError(f'{name} failed:\n{text[-3000:]}')
        rows = [r for r in csv.DictReader(open(Path(out) / 'log.csv'))]
    steps_s = [(int(r['step']), float(r['elapsed_s'])) for r in rows]
    (s0, e0), (s1, e1) = next(x for x in steps_s if x[0] >= skip), steps_s[-1]
    per_step = (e1 - e0) / (s1 - s0)
    return dict(lever=name, sec_per_step=per_step, startup_s=wall - e1 + e0 - per_step * s0, wall_s=wall,
                cpu_s=usage.ru_utime + usage.ru_stime, steps=steps)


def cpu_per_step(name, data, steps, skip, extra):
    """CPU seconds per step of a lever (all its threads and workers): two runs, `skip` and `steps` steps, differenced,
    so start-up (imports, data, compile) cancels. On a busy shared machine this, not wall time, is the lever's cost."""
    short, long = run(name, data, skip, 1, extra), run(name, data, steps, skip, extra)
    return dict(long, cpu_per_step=(long['cpu_s'] - short['cpu_s']) / (steps - skip), cpu_short_s=short['cpu_s'])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', required=True); ap.add_argument('--steps', type=int, default=60)
    ap.add_argument('--skip', type=int, default=20, help='steps left out of the steady state (compile, warm-up)')
    ap.add_argument('--rounds', type=int, default=2); ap.add_argument('--levers', nargs='+', default=[n for n in LEVERS if '2threads' not in n])
    ap.add_argument('--set', nargs='*', default=[], help='extra overrides for every run')
    ap.add_argument('--results', default=str(Path(__file__).parent / 'results' / 'cpu_levers.jsonl'))
    a = ap.parse_args()
    batch = 128
    got = {n: [] for n in a.levers}
    for r in range(a.rounds):
        for name in (a.levers if r % 2 == 0 else a.levers[::-1]):
            res = cpu_per_step(name, a.data, a.steps, a.skip, a.set); got[name].append(res)
            print(f"round {r} {name:15s} wall {res['sec_per_step'] * 1000:7.1f} ms/step  cpu {res['cpu_per_step'] * 1000:7.1f} "
                  f"ms/step  start-up {res['startup_s']:5.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    med = lambda name, key: statistics.median(x[key] for x in got[name])
    base = med('base', 'cpu_per_step') if 'base' in got else None
    print("\n| lever | threads | CPU ms per step | images per CPU-second | vs base (CPU) | wall ms per step | start-up s |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    summary = []
    for name in got:
        cpu, wall, su = med(name, 'cpu_per_step'), med(name, 'sec_per_step'), med(name, 'startup_s')
        rel = base / cpu if base else None
        print(f"| {name} | {LEVERS[name][1]} | {cpu * 1000:.1f} | {batch / cpu:.0f} | {f'{rel:.2f}x' if rel else '-'} | "
              f"{wall * 1000:.1f} | {su:.1f} |")
        summary.append(dict(lever=name, overrides=LEVERS[name][0], threads=LEVERS[name][1], cpu_ms_per_step=round(cpu * 1000, 1),
                            img_per_cpu_s=round(batch / cpu, 1), vs_base_cpu=round(rel, 3) if rel else None,
                            wall_ms_per_step=round(wall * 1000, 1), startup_s=round(su, 1), runs=got[name]))
    with open(a.results, 'a') as f:
        f.write(json.dumps(dict(machine=machine(), steps=a.steps, skip=a.skip, rounds=a.rounds, extra=a.set,
                                load=os.getloadavg(), levers=summary)) + '\n')


if __name__ == '__main__': main()
