"""Where MMSSL's training step spends its time: one step under torch.profiler.

    python benchmarks/step_profile.py [--items 100000] [--order none|locality] [--mode sketch|exact]
                                      [--precision fp32|bf16] [--warm 3] [--threads 1] [--top 12]

Builds (or reads from the cache) the planted dataset of ``benchmarks/scale.py``, runs ``--warm``
training steps of MMSSL ``official`` (the first two of an epoch are its graph steps), then
profiles one more. Prints the step's seconds, the seconds of its sparse products
(``graph.csr_product``: every product of a fixed or learned sparse graph, forward and backward)
and of the rest, then the ``--top`` operators by their own time, grouped by input shapes.
Run it at two sizes to see which work grows faster than the catalogue.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from scale import CLUSTERS, scale_dataset, training_setup  # noqa: E402

from mmssl.runtime import cpu_name  # noqa: E402

PRODUCT = "mmssl::csr_product"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--order", choices=["none", "locality"], default="none")
    p.add_argument("--mode", choices=["sketch", "exact"], default="sketch")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--cluster-items", type=int, default=0, metavar="N",
                   help="planted clusters of N items each, as scale.py (default: 0, 16 clusters)")
    p.add_argument("--cache", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmssl-scale"))
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    clusters = max(1, args.items // args.cluster_items) if args.cluster_items > 0 else CLUSTERS
    print(f"{cpu_name()}; torch threads {args.threads}; {args.items} items, {args.mode}, "
          f"{args.precision}, order {args.order}, {clusters} planted clusters", flush=True)
    ds = scale_dataset(args.items, Path(args.cache), order=args.order, clusters=clusters)
    model, optimizers, sampler = training_setup(ds, args.mode, args.precision)
    model.train()
    model.on_epoch_start(0)
    batches = iter(sampler.epoch())
    for _ in range(args.warm):
        model.training_step(next(batches), optimizers)
    batch = next(batches)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        model.training_step(batch, optimizers)
        seconds = time.perf_counter() - start
    events = prof.key_averages()
    products = [e for e in events if e.key == PRODUCT]
    product_s = sum(e.cpu_time_total for e in products) / 1e6
    calls = sum(e.count for e in products)
    print(f"step {seconds:.3f} s: sparse products {product_s:.3f} s ({calls} calls), "
          f"the rest {seconds - product_s:.3f} s")
    by_shape = [e for e in prof.key_averages(group_by_input_shape=True) if e.key != PRODUCT]
    for e in sorted(by_shape, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        shapes = ", ".join(str(s) for s in e.input_shapes if s)
        print(f"  {e.key:<28} {e.self_cpu_time_total / 1e6:7.3f} s {e.count:4d} calls  {shapes[:80]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
