"""Do the models' defaults learn on dense and on very sparse data? Each model with its default
settings against the popularity ranking, on planted datasets of several densities.

    python benchmarks/defaults.py [--densities 0.02,0.001] [--models bpr,lightgcn,...]
                                  [--seed 2022] [--threads 2] [--set KEY=VALUE ...]

The planted datasets (``mmssl.data.synthetic.planted_dataset``): 100 clusters of users and
items, 30% of a user's interactions inside its cluster (a weak signal, as in real data),
Zipf-like popularity inside a cluster (exponent 1), image (64-d) and text (32-d) features that
are the cluster's centroid plus noise. Density 2%: 1,000 users x 800 items; 0.1%: 9,308 users x
6,710 items and 62,000 draws (the size and density of the sparse micro-video data of issue 14,
on which BPR's old default reg_weight 1.0 did not learn; it does not learn here either). Every model trains with its defaults (epochs,
patience and every hyper-parameter: nothing here is tuned) under the standard protocol, on CPU.

Prints one line per (density, model) and, last, a JSON list of records {density, users, items,
interactions, model, valid_recall@20, test_recall@20, pop_valid_recall@20, best_epoch, epochs,
seconds}. A model "learns" when its validation Recall@20 beats the popularity ranking's.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mmssl import api
from mmssl.data.synthetic import planted_dataset
from mmssl.runtime import cpu_name

SIZES = {0.02: (1000, 800), 0.001: (9308, 6710)}  # density -> (users, items)
LEARNED = ("bpr", "lightgcn", "vbpr", "lattice", "freedom", "bm3", "mmssl")


def dataset_at(density: float, seed: int = 0):
    users, items = SIZES.get(density) or (int((5 / density) ** 0.5 * 1.1), int((5 / density) ** 0.5))
    return planted_dataset(users, items, int(density * users * items), n_clusters=100,
                           in_cluster=0.3, modalities={"image": 64, "text": 32}, popularity=1.0,
                           seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--densities", default="0.02,0.001")
    parser.add_argument("--models", default=",".join(LEARNED))
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every model (e.g. epochs=50 for a quick look)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, {args.threads} threads, torch {torch.__version__}", flush=True)
    records = []
    for density in (float(d) for d in args.densities.split(",")):
        ds = dataset_at(density)
        n_inter = len(ds.users)
        common = [f"seed={args.seed}", "device=cpu"]
        pop = api.fit("pop", ds, overrides=common, progress=False).metrics["valid"]["recall@20"]
        common += args.set  # the models' settings, not the popularity ranking's
        print(f"density {density:g}: {ds.n_users} users x {ds.n_items} items, {n_inter} "
              f"interactions; pop valid R@20 {pop:.4f}", flush=True)
        for model in args.models.split(","):
            t = time.perf_counter()
            m = api.fit(model, ds, overrides=common, progress=False).metrics
            rec = {"density": density, "users": ds.n_users, "items": ds.n_items,
                   "interactions": n_inter, "model": model,
                   "valid_recall@20": m["valid"]["recall@20"], "test_recall@20": m["test"]["recall@20"],
                   "pop_valid_recall@20": pop, "best_epoch": m["best_epoch"], "epochs": m["epochs"],
                   "seconds": round(time.perf_counter() - t, 1)}
            records.append(rec)
            verdict = "learns" if rec["valid_recall@20"] > pop else "DOES NOT BEAT POP"
            print(f"  {model:9s} valid R@20 {rec['valid_recall@20']:.4f} (pop {pop:.4f}) "
                  f"test {rec['test_recall@20']:.4f}  best epoch {rec['best_epoch']} of "
                  f"{rec['epochs']}  {rec['seconds']:.0f} s  {verdict}", flush=True)
    print(json.dumps(records))


if __name__ == "__main__":
    main()
