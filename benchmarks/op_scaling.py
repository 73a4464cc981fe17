"""How the operations of an MMSSL step scale with the catalogue, one at a time.

    python benchmarks/op_scaling.py [--items 100000,1000000] [--threads 1] [--cache DIR]

On the planted datasets of ``benchmarks/scale.py`` (2 I users, about 13 training interactions
each), times the step's kinds of work alone, mean of 3 after one warm-up: the two sparse
propagations (A_ui @ E_i, (U, d) out; A_iu @ E_u, (I, d) out), a row softmax and a row
l2-normalisation of a (U, d) matrix (each makes a new (U, d) tensor, as the step does), and the
384-d modality encoder over all items. Prints one line of seconds per size, then each
operation's growth from the first size to the last. Growth above the size ratio with an
operation that only streams memory (softmax, normalise) points at the memory system (page
faults of new allocations, caches), not at the algorithm.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from scale import scale_dataset  # noqa: E402

from mmssl.models.mmssl.structure import row_normalised  # noqa: E402
from mmssl.runtime import cpu_name  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def measure(n: int, cache: Path) -> dict[str, float]:
    """Seconds of each operation on the planted dataset of ``n`` items."""
    ds = scale_dataset(n, cache)
    train = ds.matrix("train").tocoo()
    a_ui = row_normalised(train.row, train.col, (ds.n_users, ds.n_items))
    a_iu = row_normalised(train.col, train.row, (ds.n_items, ds.n_users))
    gen = torch.Generator().manual_seed(0)
    items = torch.randn(ds.n_items, 64, generator=gen)
    users = torch.randn(ds.n_users, 64, generator=gen)
    text = torch.from_numpy(np.asarray(ds.features["text"]))
    weight = torch.randn(64, 384, generator=gen)
    return {"A_ui @ E_i": timed(lambda: a_ui @ items), "A_iu @ E_u": timed(lambda: a_iu @ users),
            "softmax (U, d)": timed(lambda: torch.softmax(users, dim=1)),
            "normalise (U, d)": timed(lambda: F.normalize(users, dim=1)),
            "encoder (I, 384)": timed(lambda: text @ weight.T)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", default="100000,1000000")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmssl-scale"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}; torch threads {args.threads}", flush=True)
    rows = []
    for n in [int(x) for x in args.items.split(",")]:
        seconds = measure(n, Path(args.cache))
        rows.append((n, seconds))
        print(f"{n:>9} items: " + ", ".join(f"{k} {v:.4f} s" for k, v in seconds.items()), flush=True)
    if len(rows) > 1:
        (n0, first), (n1, last) = rows[0], rows[-1]
        print(f"growth for {n1 / n0:g}x the items: "
              + ", ".join(f"{k} {last[k] / first[k]:.1f}x" for k in first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
