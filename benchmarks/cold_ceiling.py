"""How high can a cold-start ranking go on a cold-item split? Non-personal references for
``mmssl evaluate --run RUN --cold-items``, ranked among the held-out items:

    python benchmarks/cold_ceiling.py --data DATASET [--k 20]

- ``random``: the exact expected value of a uniformly random ranking;
- ``oracle popularity``: each held-out item scored by its number of held-out interactions from
  *other* users (the user's own left out). This uses the truth: no cold-start method has it.
  It shows what knowing the new items' popularity alone would give;
- ``content-predicted popularity``: a ridge regression from the item features (standardised,
  all modalities side by side) to log(1 + training interactions), fitted on the warm items,
  its penalty chosen by 5-fold cross-validation on the warm items (nothing of the held-out
  items is used), then applied to the held-out items' features.

Prints one line per ranking (Recall@K, NDCG@K, ratio of Recall@K to random) and, last, one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.sparse as sp

from mmssl.data.coldsplit import load_cold_items
from mmssl.data.dataset import load_dataset
from mmssl.evaluation.coldstart import cold_item_metrics, random_cold_item_metrics

PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def ridge_cv(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, float]:
    """Ridge weights on centred y with the penalty of least 5-fold squared error."""
    fold = np.random.default_rng(seed).integers(0, folds, len(y))

    def fit(xs, ys, lam):
        return np.linalg.solve(xs.T @ xs + lam * np.eye(xs.shape[1]), xs.T @ (ys - ys.mean()))

    errors = {lam: sum(float(np.square(x[fold == f] @ fit(x[fold != f], y[fold != f], lam)
                                       + y[fold != f].mean() - y[fold == f]).sum())
                       for f in range(folds)) for lam in PENALTIES}
    lam = min(errors, key=errors.get)
    return fit(x, y, lam), lam


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a dataset imported with --cold-items")
    p.add_argument("--k", type=int, default=20)
    args = p.parse_args()
    warm, held = load_dataset(args.data), load_cold_items(args.data)
    truth = held.matrix("test").tocsr()
    truth.data[:] = 1.0
    known = (warm.matrix("train") + warm.matrix("valid") + warm.matrix("test")).tocsr()
    n_users, n_cold = truth.shape
    ks = (args.k,)

    def rank(scores: np.ndarray) -> dict:
        rows = np.broadcast_to(scores, (n_users, n_cold)) if scores.ndim == 1 else scores
        return cold_item_metrics(rows, np.zeros((n_users, 1), np.float32),
                                 truth, sp.csr_matrix((n_users, 1), dtype=np.float32), ks)["held_out"]

    counts = np.asarray(truth.sum(axis=0)).ravel()
    oracle = counts[None, :] - truth.toarray()  # the user's own interactions left out
    modalities = sorted(set(warm.features) & set(held.features))
    fw = np.concatenate([np.asarray(warm.features[m], np.float64) for m in modalities], axis=1)
    fc = np.concatenate([np.asarray(held.features[m], np.float64) for m in modalities], axis=1)
    mean, std = fw.mean(0), fw.std(0) + 1e-6
    popularity = np.log1p(np.asarray(warm.matrix("train").sum(axis=0)).ravel())
    weights, lam = ridge_cv((fw - mean) / std, popularity)
    predicted = ((fc - mean) / std) @ weights
    rnd = random_cold_item_metrics(truth, known, ks)["held_out"]
    rows = {"random (expected)": rnd, "oracle popularity (uses the truth)": rank(oracle),
            f"content-predicted popularity (ridge, penalty {lam:g} by 5-fold CV on warm items)":
                rank(predicted)}
    k = args.k
    print(f"{args.data}: {n_cold} held-out items, {rnd['users']} users with interactions on "
          f"them; modalities {', '.join(modalities)}")
    for name, m in rows.items():
        print(f"  {name:<78} R@{k} {m[f'recall@{k}']:.4f}  N@{k} {m[f'ndcg@{k}']:.4f}  "
              f"{m[f'recall@{k}'] / rnd[f'recall@{k}']:.2f}x random")
    print(json.dumps({name: {key: m[key] for key in (f"recall@{k}", f"ndcg@{k}")}
                      for name, m in rows.items()}))


if __name__ == "__main__":
    main()
