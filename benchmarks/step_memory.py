"""Where MMSSL's training step holds its memory: peak resident memory in each phase of each step.

    python benchmarks/step_memory.py [--items 100000] [--steps 4] [--mode sketch|exact]
                                     [--threads 1] [--cache DIR]

Builds (or reads from the cache) the planted dataset of ``benchmarks/scale.py`` with ``--items``
items and 2 I users, then runs ``--steps`` training steps of MMSSL ``official`` and samples the
process's resident memory (/proc/self/statm, Linux) every 3 ms from a thread. Each step is cut
into phases: the forward pass, the critic's loss, each backward pass, each optimiser step, the
structure-learning step, and what follows each of them ("after ..."). Prints the seconds of each
step, then one line per phase with the highest resident memory seen in it, and last the highest
of all. Steps 0 and 1 of an epoch are the official rule's graph steps (G_m not yet empty).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scale import scale_dataset, training_setup  # noqa: E402

from mmssl.runtime import cpu_name  # noqa: E402


class PhaseMemory:
    """The highest resident memory seen while each phase was current (a sampling thread)."""

    def __init__(self, every: float = 0.003):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.phase, self.peaks, self.every = "load", {}, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss, phase = self.rss_mb(), self.phase
            self.peaks[phase] = max(self.peaks.get(phase, 0.0), rss)
            time.sleep(self.every)

    def wrap(self, owner, name: str, label: str, step: list[int]) -> None:
        """Make ``owner.name`` set the phase to "s<step> <label>" while it runs."""
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def wrapped(*args, **kwargs):
            self.phase = f"step {step[0]} {label}"
            try:
                return inner(*args, **kwargs)
            finally:
                self.phase = f"step {step[0]} after {label}"

        setattr(owner, name, wrapped)

    def stop(self) -> dict[str, float]:
        time.sleep(2 * self.every)
        self._stop.set()
        self._thread.join()
        return self.peaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--mode", choices=["sketch", "exact"], default="sketch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmssl-scale"))
    args = p.parse_args(argv)
    if not Path("/proc/self/statm").exists():
        raise SystemExit("step_memory.py reads /proc/self/statm: Linux only")

    from mmssl.models import shards

    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}; torch threads {args.threads}; {args.items} items, {args.mode}", flush=True)
    memory = PhaseMemory()
    ds = scale_dataset(args.items, Path(args.cache))
    memory.phase = "model"
    model, optimizers, sampler = training_setup(ds, args.mode, "fp32")
    step = [0]
    memory.wrap(model, "forward", "forward", step)
    memory.wrap(model, f"_critic_loss_{'sketched' if args.mode == 'sketch' else 'exact'}",
                "critic loss", step)
    memory.wrap(shards, "backward", "backward", step)  # the model calls shards.backward
    memory.wrap(model, "_official_graph_step", "graph step", step)
    for optimizer in optimizers.values():
        memory.wrap(optimizer, "step", "optimiser step", step)
    model.train()
    model.on_epoch_start(0)
    batches = iter(sampler.epoch())
    for s in range(args.steps):
        step[0] = s
        memory.phase = f"step {s} start"
        batch = next(batches)
        t = time.perf_counter()
        model.training_step(batch, optimizers)
        print(f"step {s}: {time.perf_counter() - t:.2f} s", flush=True)
    peaks = memory.stop()
    for phase, mb in peaks.items():
        print(f"{phase:34s} {mb:9.0f} MB")
    print(f"highest: {max(peaks.values()):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
