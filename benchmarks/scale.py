"""MMSSL at catalogue scale: seconds per training step and per epoch, peak memory and validation
time against the number of items, for the exact and the sketched discriminator, fp32 and bf16.

    python benchmarks/scale.py [--items 1682,6710,18357,100000,1000000] [--modes exact,sketch]
                               [--precisions fp32,bf16] [--device cpu] [--steps 5] [--threads 2]
                               [--allocator tuned|system|tcmalloc|jemalloc] [--order none|locality]
                               [--cluster-items N] [--cross-share S] [--huge-pages]

Each size is a planted dataset (benchmarks only: users in clusters, items of their cluster,
cluster-centred features) with about 2 I users, 15 interactions per user (10 to 20 in most
users), and modalities of 384 and 128 dimensions; MMSSL ``official`` with the authors'
settings. Every (size, mode, precision) runs in its own process, so the peak resident memory it
reports is its own (dataset and model included; each dataset is generated beforehand by a
process of its own and cached, so no peak includes generating it). The first three steps of an
epoch are left out of the step time: in the first two the official structure-learning rule
gathers and rebuilds its graphs (once per epoch; method page, departure 4), and the third, the
first ordinary step, touches its memory for the first time (at 1M items 28 s against 17 to 18 s
for each step after it). Seconds per epoch are the step
time times the epoch's steps (n_train / B + 1). Validation ranks every item for up to 10,000
users with validation items.

``exact`` is not run beyond the first size where it passes 60 s per step or 20 GB, or where
its critic alone (4 copies of an I x I/4 matrix: weights, gradient, two Adam moments) would
pass 20 GB. The workers run with glibc's malloc as ``mmssl train`` runs it (``--allocator
tuned``, the run setting ``malloc: tuned``: :func:`mmssl.runtime.tune_malloc`); ``--allocator
system`` leaves glibc's malloc as a process starts; ``--allocator tcmalloc`` (or ``jemalloc``)
preloads that malloc (``LD_PRELOAD``; Linux, the library installed, e.g. Debian's
``libtcmalloc-minimal4``). glibc's malloc serves every block above 32 MB by a fresh ``mmap``
(tuned or not), so at 1M items each large temporary of a step is new pages; tcmalloc keeps
freed memory for the next allocation (docs/scale.md, "1M items", has what it changes).
``--order locality`` measures the data renumbered by ``mmssl data reorder``
(:mod:`mmssl.data.order`; computed from the training interactions, not from the planted
clusters) and reports the seconds that took. The planted data have 16 clusters
at every size (a cluster's items are 1/16 of the catalogue, drawn uniformly); ``--cluster-items
N`` makes the clusters N items each instead (I / N clusters), so that one cluster's rows take
the same memory at every size. One interaction in ten is drawn uniformly over the whole
catalogue instead of the user's cluster; ``--cross-share S`` makes it a share S (0 to 1).
``--huge-pages`` runs the workers with ``THP_MEM_ALLOC_ENABLE=1``: torch asks for transparent
huge pages for its large blocks (Linux with THP ``madvise`` or ``always``), so the random row
gathers of the graph products miss the TLB less (docs/scale.md, "Edges across clusters").
The last line printed is a JSON list of records
{items, mode, precision, step_seconds, epoch_seconds, peak_rss_mb, valid_seconds}; the log-log
plot goes to --plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mmssl.runtime import ALLOCATORS, cpu_name, tune_malloc

EXACT_LIMIT_SECONDS = 60.0
EXACT_LIMIT_MB = 20 * 1024
VALID_USERS = 10_000
CLUSTERS = 16  # planted clusters at every size unless --cluster-items
CROSS_SHARE = 0.1  # interactions drawn over the whole catalogue, not the user's cluster
# steps 0 and 1: the official rule's once-per-epoch graph work; step 2: the first ordinary step,
# which touches its memory first (at 1M items 28 s against 17-18 s for the next ones)
UNTIMED_STEPS = 3
# --allocator: glibc's malloc as mmssl train tunes it, glibc's untouched, or a preloaded one
MALLOCS = ("tuned", "system", *ALLOCATORS)


def allocator_library(name: str) -> str | None:
    """The shared library to preload for ``--allocator name`` (None for the system's malloc)."""
    import ctypes.util

    if name in ("tuned", "system"):
        return None
    for lib in ALLOCATORS[name]:
        found = ctypes.util.find_library(lib)
        if found:
            return found
    package = {"tcmalloc": "libtcmalloc-minimal4", "jemalloc": "libjemalloc2"}[name]
    raise SystemExit(f"{Path(sys.argv[0]).name}: --allocator {name}: no lib{ALLOCATORS[name][0]} found on this "
                     f"machine (on Debian: apt install {package})")


def scale_dataset(n_items: int, cache: Path | None, seed: int = 0, order: str = "none",
                  clusters: int = CLUSTERS, cross: float = CROSS_SHARE):
    """A planted dataset of ``n_items`` items and 2 * n_items users in ``clusters`` clusters,
    a share ``cross`` of the interactions across them (cached as .npy files);
    ``order="locality"``: renumbered by :func:`mmssl.data.order.locality_order` (cached apart,
    with the seconds the order took in ``order.json``)."""
    n_users = 2 * n_items
    tag = (f"planted-{n_items}-{seed}" + ("" if clusters == CLUSTERS else f"-c{clusters}")
           + ("" if cross == CROSS_SHARE else f"-x{cross:g}"))
    names = ("users", "items", "split", "text", "image")
    if order == "locality":
        from mmssl.data.order import reorder_for_locality

        folder = cache / f"{tag}-locality" if cache else None
        stored = (*names, "user_ids", "item_ids")
        if folder is not None and all((folder / f).exists() for f in ("order.json", *(f"{n}.npy" for n in stored))):
            arrays = {n: np.load(folder / f"{n}.npy") for n in stored}
            return _planted(arrays, n_users, n_items, seed,
                            json.loads((folder / "order.json").read_text()))
        base = scale_dataset(n_items, cache, seed, clusters=clusters, cross=cross)
        start = time.perf_counter()
        ds, _ = reorder_for_locality(base)
        facts = {**ds.info["order"], "seconds": round(time.perf_counter() - start, 2)}
        ds.info["order"] = facts
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            arrays = {"users": ds.users, "items": ds.items, "split": ds.split, **ds.features,
                      # as fixed-width strings, which np.load reads without pickle
                      "user_ids": ds.user_ids.astype(str), "item_ids": ds.item_ids.astype(str)}
            for n, a in arrays.items():
                np.save(folder / f"{n}.npy", a)
            (folder / "order.json").write_text(json.dumps(facts))
        return ds
    folder = cache / tag if cache else None
    if folder is not None and all((folder / f"{n}.npy").exists() for n in names):
        arrays = {n: np.load(folder / f"{n}.npy") for n in names}  # in memory: the model shares them
    else:
        arrays = _generate(n_users, n_items, seed, clusters, cross)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for n, a in arrays.items():
                np.save(folder / f"{n}.npy", a)
    return _planted(arrays, n_users, n_items, seed)


def _planted(arrays, n_users, n_items, seed, order=None):
    """The Dataset of cached arrays; ids "u<k>" and "i<k>" of the generator's numbering unless
    the arrays hold reordered ones."""
    from mmssl.data.dataset import Dataset

    info = {"source_format": "generated", "split": "planted", "seed": seed}
    if order is not None:
        info["order"] = order
    return Dataset(users=np.asarray(arrays["users"]), items=np.asarray(arrays["items"]),
                   split=np.asarray(arrays["split"]),
                   user_ids=arrays["user_ids"] if "user_ids" in arrays else np.char.mod("u%d", np.arange(n_users)),
                   item_ids=arrays["item_ids"] if "item_ids" in arrays else np.char.mod("i%d", np.arange(n_items)),
                   features={"text": np.asarray(arrays["text"]), "image": np.asarray(arrays["image"])},
                   info=info)


def _generate(n_users: int, n_items: int, seed: int, clusters: int,
              cross: float = CROSS_SHARE) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_user = rng.integers(10, 21, size=n_users)  # 10 to 20 interactions per user
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    user_cluster = rng.integers(clusters, size=n_users)
    in_cluster = rng.random(len(users)) < 1 - cross
    per_cluster = n_items // clusters
    own = user_cluster[users] + clusters * rng.integers(per_cluster, size=len(users))
    items = np.where(in_cluster, own, rng.integers(n_items, size=len(users))).astype(np.int64)
    keys = np.unique(users * n_items + items)  # drop repeated (user, item) pairs
    users, items = keys // n_items, keys % n_items
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    split = np.zeros(len(users), dtype=np.int8)
    split[rank == 0] = 2  # one test and one valid interaction per user
    split[rank == 1] = 1
    item_cluster = np.arange(n_items) % clusters
    features = {}
    for name, dim in (("text", 384), ("image", 128)):
        centroids = rng.standard_normal((clusters, dim), dtype=np.float32)
        f = rng.standard_normal((n_items, dim), dtype=np.float32)
        f *= 0.5
        f += centroids[item_cluster]
        features[name] = f
    return {"users": users, "items": items, "split": split, **features}


def training_setup(ds, mode: str, precision: str, device="cpu"):
    """MMSSL (its defaults, seed 0) on ``ds`` with the given critic and precision, its
    optimisers and a seeded user sampler: what this script and step_memory.py measure."""
    import torch

    from mmssl.config import build_config
    from mmssl.models import create_model
    from mmssl.models.mmssl import MMSSLConfig
    from mmssl.training.sampler import BprSampler

    torch.manual_seed(0)
    config = build_config(MMSSLConfig, {"discriminator": mode, "precision": precision})
    model = create_model("mmssl", ds, config).to(device)
    sampler = BprSampler(ds.matrix("train"), config.batch_size, "user",
                         torch.Generator().manual_seed(0), model.users_with_replacement)
    return model, model.configure_optimizers(), sampler


def measure(items: int, mode: str, precision: str, steps: int, threads: int, device: str,
            cache: Path | None, order: str = "none", clusters: int = CLUSTERS,
            cross: float = CROSS_SHARE) -> dict:
    """One (size, mode, precision) in this process: step, epoch, validation, peak memory."""
    import torch

    from mmssl.evaluation import rank_metrics
    from mmssl.runtime import peak_memory_mb, resolve_device

    if threads:
        torch.set_num_threads(threads)
    ds = scale_dataset(items, cache, order=order, clusters=clusters, cross=cross)
    dev = resolve_device(device)
    model, optimizers, sampler = training_setup(ds, mode, precision, dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    model.on_epoch_start(0)
    batches = iter(sampler.epoch())
    times = []
    for step in range(steps + UNTIMED_STEPS):
        batch = next(batches).to(dev)
        sync()
        t = time.perf_counter()
        model.training_step(batch, optimizers)
        sync()
        if step >= UNTIMED_STEPS:
            times.append(time.perf_counter() - t)
    step_seconds = statistics.median(times)

    model.eval()
    valid = ds.matrix("valid")
    users = np.flatnonzero(np.diff(valid.indptr))[:VALID_USERS]
    keep = np.zeros(ds.n_users, dtype=np.float32)
    keep[users] = 1
    import scipy.sparse as sp

    truth = sp.diags(keep) @ valid  # only the chosen users have held-out items
    sync()
    t = time.perf_counter()
    with torch.no_grad():
        scorer = model.scorer()
        result = rank_metrics(scorer, ds.matrix("train"), sp.csr_matrix(truth), ks=(20,),
                              device=dev)
    sync()
    valid_seconds = time.perf_counter() - t
    record = {"items": items, "mode": mode, "precision": precision,
              "step_seconds": round(step_seconds, 4),
              "epoch_seconds": round(step_seconds * sampler.steps_per_epoch(), 1),
              "peak_rss_mb": peak_memory_mb(), "valid_seconds": round(valid_seconds, 3),
              "users": ds.n_users, "interactions": int(len(ds.users)),
              "valid_users": int(result["users"]), "steps_timed": len(times), "order": order,
              "clusters": clusters, "cross_share": cross,
              "huge_pages": os.environ.get("THP_MEM_ALLOC_ENABLE") == "1",
              "order_seconds": ds.info.get("order", {}).get("seconds")}
    if dev.type == "cuda":
        record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return record


def exact_fits(items: int) -> bool:
    """The exact critic alone: weights, gradient and two Adam moments of I x I/4 floats."""
    return 4 * items * (items // 4) * 4 / 2**20 <= EXACT_LIMIT_MB


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in its own process; print a table, then the JSON records."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", default="1682,6710,18357,100000,1000000",
                   help="catalogue sizes (default: 1682,6710,18357,100000,1000000)")
    p.add_argument("--modes", default="exact,sketch", help="default: exact,sketch")
    p.add_argument("--precisions", default="fp32,bf16", help="default: fp32,bf16")
    p.add_argument("--device", default="cpu", help="default: cpu")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default: 5)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--cache", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "mmssl-scale"),
                   help="where generated datasets are kept between processes")
    p.add_argument("--plot", default="docs/scale.png", help="log-log plot (default: docs/scale.png)")
    p.add_argument("--allocator", choices=MALLOCS, default="tuned",
                   help="malloc the workers run with (default: tuned, glibc's as mmssl train "
                        "tunes it; system: glibc's untouched; tcmalloc keeps freed memory)")
    p.add_argument("--order", choices=("none", "locality"), default="none",
                   help="locality: users and items renumbered by mmssl.data.order first "
                        "(default: none, the generator's numbering)")
    p.add_argument("--cluster-items", type=int, default=0, metavar="N",
                   help="planted clusters of N items each (default: 0, 16 clusters at every size)")
    p.add_argument("--cross-share", type=float, default=CROSS_SHARE, metavar="S",
                   help="share of interactions drawn over the whole catalogue, not the user's "
                        f"cluster (default: {CROSS_SHARE})")
    p.add_argument("--huge-pages", action="store_true",
                   help="run the workers with THP_MEM_ALLOC_ENABLE=1 (torch: transparent huge "
                        "pages for large blocks)")
    p.add_argument("--worker", nargs=3, metavar=("ITEMS", "MODE", "PRECISION"), help=argparse.SUPPRESS)
    p.add_argument("--prepare", type=int, metavar="ITEMS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cache = Path(args.cache) if args.cache else None
    if args.cluster_items < 0:
        p.error(f"--cluster-items: must be positive (got {args.cluster_items})")
    if not 0 <= args.cross_share <= 1:
        p.error(f"--cross-share: must be between 0 and 1 (got {args.cross_share})")

    def clusters(items: int) -> int:
        return max(1, items // args.cluster_items) if args.cluster_items else CLUSTERS

    if args.prepare:  # generate and cache a dataset, so that no worker's peak includes it
        scale_dataset(args.prepare, cache, order=args.order, clusters=clusters(args.prepare),
                      cross=args.cross_share)
        return 0
    if args.worker:
        tune_malloc(args.allocator)  # tunes glibc for "tuned" only
        items, mode, precision = int(args.worker[0]), args.worker[1], args.worker[2]
        print(json.dumps(measure(items, mode, precision, args.steps, args.threads, args.device, cache,
                                 args.order, clusters(items), args.cross_share)))
        return 0

    library = allocator_library(args.allocator)
    env = dict(os.environ)
    if library:
        env["LD_PRELOAD"] = " ".join(filter(None, (library, env.get("LD_PRELOAD"))))
    if args.huge_pages:
        env["THP_MEM_ALLOC_ENABLE"] = "1"  # read once, when torch starts in the worker
    print(f"{platform.processor() or platform.machine()}; {cpu_name()}; torch threads "
          f"{args.threads or 'default'}; device {args.device}; malloc {library or args.allocator}; "
          f"planted clusters {f'of {args.cluster_items} items' if args.cluster_items else CLUSTERS}, "
          f"{args.cross_share:g} of the interactions across them"
          f"{'; huge pages' if env.get('THP_MEM_ALLOC_ENABLE') == '1' else ''}",
          flush=True)
    records, stopped = [], set()
    data_args = ["--cache", args.cache, "--order", args.order, "--cluster-items",
                 str(args.cluster_items), "--cross-share", str(args.cross_share)]  # which data
    for items in [int(x) for x in args.items.split(",")]:
        if cache is not None:
            subprocess.run([sys.executable, __file__, "--prepare", str(items), *data_args], check=True)
        for mode in args.modes.split(","):
            for precision in args.precisions.split(","):
                if mode == "exact" and (precision in stopped or not exact_fits(items)):
                    print(f"{items:>9} {mode:<7}{precision:<5} skipped (exact stopped: 60 s per "
                          f"step or 20 GB at a smaller size, or its critic alone passes 20 GB)",
                          flush=True)
                    continue
                cmd = [sys.executable, __file__, "--worker", str(items), mode, precision,
                       "--steps", str(args.steps), "--threads", str(args.threads),
                       "--device", args.device, *data_args, "--allocator", args.allocator]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{items:>9} {mode:<7}{precision:<5} failed: {tail}", flush=True)
                    if mode == "exact":
                        stopped.add(precision)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                records.append(r)
                print(f"{items:>9} {mode:<7}{precision:<5} step {r['step_seconds']:>8.3f} s   "
                      f"epoch {r['epoch_seconds']:>10.1f} s   peak {r['peak_rss_mb']:>6} MB   "
                      f"valid {r['valid_seconds']:>7.2f} s ({r['valid_users']} users)", flush=True)
                if mode == "exact" and (r["step_seconds"] > EXACT_LIMIT_SECONDS
                                        or r["peak_rss_mb"] > EXACT_LIMIT_MB):
                    stopped.add(precision)
    if args.plot and records:
        plot(records, Path(args.plot))
        print(f"plot: {args.plot}")
    keys = ("items", "mode", "precision", "step_seconds", "epoch_seconds", "peak_rss_mb", "valid_seconds")
    print(json.dumps([{k: r[k] for k in keys} for r in records]))
    return 0


def plot(records: list[dict], path: Path) -> None:
    """Step time and peak memory against the number of items, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode, precision in sorted({(r["mode"], r["precision"]) for r in records}):
        rs = sorted((r for r in records if (r["mode"], r["precision"]) == (mode, precision)),
                    key=lambda r: r["items"])
        x = [r["items"] for r in rs]
        style = "-o" if mode == "sketch" else "--s"
        ax1.plot(x, [r["step_seconds"] for r in rs], style, label=f"{mode} {precision}")
        ax2.plot(x, [r["peak_rss_mb"] / 1024 for r in rs], style, label=f"{mode} {precision}")
    ax1.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds per training step",
            title="MMSSL training step")
    ax2.set(xscale="log", yscale="log", xlabel="items", ylabel="peak resident memory (GB)",
            title="peak memory")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"MMSSL official, planted data, about 2 I users; {cpu_name()}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)



if __name__ == "__main__":
    sys.exit(main())
