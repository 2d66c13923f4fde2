"""Helpers shared by the benchmarks: interleaved timing, the machine's description, a CPU peak-memory counter.

Every benchmark module exposes `measure(quick=False) -> list[dict]`, one dict per table row with the keys
benchmark, case, teaching, fast (seconds per `unit` of work; None where a figure was not measured), unit, note.
"""
import os, platform, datetime, statistics, time, weakref
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def row(benchmark, case, teaching, fast, unit, note=''):
    "One table row; `teaching` and `fast` are seconds per `unit` (None: not measured)."
    return dict(benchmark=benchmark, case=case, teaching=teaching, fast=fast, unit=unit, note=note)


def cpu_model():
    "The CPU's model name as the kernel reports it."
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def machine():
    "What the figures were measured on: CPU model, cores, torch version and threads, GPU (if any), date."
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(cpu=cpu_model(), cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads(),
                gpu=gpu, python=platform.python_version(), date=datetime.datetime.now().strftime('%Y-%m-%d %H:%M'))


def runnable():
    "Processes the kernel counts as running or ready to run right now (this one included), from /proc/loadavg."
    with open('/proc/loadavg') as f: return int(f.read().split()[3].split('/')[0])


def wait_until_quiet(timeout,   # give up after this many seconds
                     calm=3.0): # how long nothing else may have been runnable
    "Wait until no other process has been runnable for `calm` seconds (sampled every 0.3 s); True if that happened."
    deadline, since = time.time() + timeout, None
    while time.time() < deadline:
        if runnable() <= 1: since = since or time.time()
        else: since = None
        if since and time.time() - since >= calm: return True
        time.sleep(0.3)
    return False


TIMERS = {'wall': time.perf_counter, 'cpu': time.process_time}  # cpu: this process's CPU seconds, all its threads


def interleaved(fns,         # {name: callable}: the variants to time, each doing one unit of work per call
                reps,        # timed calls of each
                warmup=1,    # untimed calls of each first
                timer='wall' # 'wall' (elapsed seconds) or 'cpu' (CPU seconds of this process: what other jobs cannot inflate)
               ):            # ({name: median seconds}, {name: [all timed seconds]})
    "Time several variants alternately (the order flips every round) so a shared machine's noise hits all alike."
    clock, names = TIMERS[timer], list(fns)
    for _ in range(warmup):
        for n in names: fns[n]()
    ts = {n: [] for n in names}
    for r in range(reps):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = clock(); fns[n](); ts[n].append(clock() - t0)
    return {n: statistics.median(v) for n, v in ts.items()}, ts


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storages created inside the `with` block and alive at once: `.peak` is the largest total.

    PyTorch has no allocator statistics for the CPU; every operation passes through the dispatcher, so this
    mode adds each new output storage's size and subtracts it when the storage is freed. Views count once.
    Tensors made before the block (weights, inputs) and the allocator's own overhead are not counted.
    (The same counter is taught in nbs/20_build.ipynb.)"""
    def __init__(self): super().__init__(); self.live = self.peak = 0; self.alive = set()
    def _freed(self, key, nbytes): self.live -= nbytes; self.alive.discard(key)
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st.data_ptr() and st.data_ptr() not in self.alive:
                    self.alive.add(st.data_ptr()); self.live += st.nbytes(); self.peak = max(self.peak, self.live)
                    weakref.finalize(st, self._freed, st.data_ptr(), st.nbytes())
        return out
