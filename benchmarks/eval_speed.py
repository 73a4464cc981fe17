"""Speed of full-ranking evaluation with random 64-d embeddings.

(a) all users of ml100k-mm, test split, standard protocol; (b) a generated problem of
50,000 users x 20,000 items with 20 held-out and 20 excluded items per user. Prints the median
of 3 repeats of each. Usage: ``python benchmarks/eval_speed.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from mmssl.data.dataset import Dataset, load_dataset
from mmssl.evaluation import evaluate, rank_metrics

REPO = Path(__file__).resolve().parents[1]
SHARED_JSON = REPO / ".." / "shared" / "datasets" / "ml100k-mm" / "mmssl"
DIM = 64
REPEATS = 3


def ml100k(data_dir: Path) -> Dataset:
    """The dataset directory if it exists, else the authors' {train,val,test}.json in memory."""
    if data_dir.exists():
        return load_dataset(data_dir)
    users, items, split = [], [], []
    for code, name in enumerate(("train", "val", "test")):
        per_user = json.loads((SHARED_JSON / f"{name}.json").read_text())
        for user, user_items in per_user.items():
            users += [int(user)] * len(user_items)
            items += user_items
            split += [code] * len(user_items)
    n_users = max(943, max(users) + 1)
    n_items = max(1682, max(items) + 1)
    return Dataset(
        users=users,
        items=items,
        split=split,
        user_ids=[str(u) for u in range(n_users)],
        item_ids=[str(i) for i in range(n_items)],
        info={"source": str(SHARED_JSON)},
    )


def embedding_scorer(n_users: int, n_items: int, seed: int = 0) -> Callable:
    """score_fn(users (b,)) -> (b, n_items) dot products of random 64-d embeddings."""
    gen = torch.Generator().manual_seed(seed)
    user_emb = torch.randn(n_users, DIM, generator=gen)
    item_emb_t = torch.randn(n_items, DIM, generator=gen).T.contiguous()
    return lambda users: user_emb[users] @ item_emb_t


def generated_problem(
    n_users: int = 50_000, n_items: int = 20_000, per_user: int = 20, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(exclude, truth) CSR: per user 2 * per_user distinct items, half excluded, half held out."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, n_items, (n_users, 2 * per_user))
    while True:  # redraw the rows that picked an item twice
        ordered = np.sort(items, axis=1)
        bad = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not bad.any():
            break
        items[bad] = rng.integers(0, n_items, (int(bad.sum()), 2 * per_user))
    rows = np.repeat(np.arange(n_users), per_user)

    def to_csr(cols: np.ndarray) -> sp.csr_matrix:
        data = np.ones(cols.size, dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols.ravel())), shape=(n_users, n_items))

    return to_csr(items[:, :per_user]), to_csr(items[:, per_user:])


def median_seconds(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/ml100k-mm"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}")

    ds = ml100k(args.data)
    score_fn = embedding_scorer(ds.n_users, ds.n_items)
    users = evaluate(score_fn, ds, "test", "standard")["users"]
    seconds = median_seconds(lambda: evaluate(score_fn, ds, "test", "standard"))
    print(
        f"(a) ml100k-mm {ds.n_users} users x {ds.n_items} items, test, standard "
        f"({users} users evaluated): median of {REPEATS} {seconds:.3f} s"
    )

    n_users, n_items = 50_000, 20_000
    exclude, truth = generated_problem(n_users, n_items)
    score_fn = embedding_scorer(n_users, n_items)
    seconds = median_seconds(lambda: rank_metrics(score_fn, exclude, truth))
    print(
        f"(b) generated {n_users} users x {n_items} items, {DIM}-d, 20 test + 20 excluded "
        f"per user: median of {REPEATS} {seconds:.3f} s"
    )


if __name__ == "__main__":
    main()
