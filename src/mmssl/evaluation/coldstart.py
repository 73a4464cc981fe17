"""Cold-start metrics: how well users' interactions with held-out items are ranked.

The items of a cold-item split (:mod:`mmssl.data.coldsplit`) were never trained on. Their
scores come from a cold-start path; each user's interactions with them are the truth, and two
rankings are measured, both with :func:`~mmssl.evaluation.metrics.rank_metrics`:

- ``held_out``: the held-out items ranked among themselves (the usual cold-start protocol);
- ``all_items``: the held-out items ranked among every item, warm ones included, the user's
  known warm items (``warm_exclude``) left out.

:func:`random_cold_item_metrics` gives the expected metrics of a uniformly random ranking in
both settings, exactly (no sampling).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from mmssl.evaluation.metrics import rank_metrics

SETTINGS = ("held_out", "all_items")


def cold_item_metrics(scores_cold: np.ndarray, scores_warm: np.ndarray, truth: sp.csr_matrix,
                      warm_exclude: sp.csr_matrix, ks: Sequence[int] = (20,)) -> dict[str, dict]:
    """Metrics of one cold-start path in both settings (module docstring).

    Args:
        scores_cold: (n_users, n_cold) scores of the held-out items.
        scores_warm: (n_users, n_warm) scores of the warm items (for ``all_items``).
        truth: (n_users, n_cold) CSR, each user's interactions with held-out items.
        warm_exclude: (n_users, n_warm) CSR of the warm items to leave out of ``all_items``.
        ks: cut-offs.

    Returns:
        ``{"held_out": metrics, "all_items": metrics}``, each as :func:`rank_metrics` returns.
    """
    n_users, n_cold = truth.shape
    empty = sp.csr_matrix((n_users, n_cold), dtype=np.float32)
    held_out = rank_metrics(torch.from_numpy(np.ascontiguousarray(scores_cold, np.float32)),
                            empty, truth, ks=ks)
    both = np.concatenate([scores_warm, scores_cold], axis=1).astype(np.float32)
    exclude = sp.hstack([warm_exclude, empty]).tocsr()
    truth_all = sp.hstack([sp.csr_matrix(warm_exclude.shape, dtype=np.float32), truth]).tocsr()
    all_items = rank_metrics(torch.from_numpy(both), exclude, truth_all, ks=ks)
    return {"held_out": held_out, "all_items": all_items}


def random_cold_item_metrics(truth: sp.csr_matrix, warm_exclude: sp.csr_matrix,
                             ks: Sequence[int] = (20,)) -> dict[str, dict]:
    """Expected Recall@K and NDCG@K of a uniformly random ranking, in both settings.

    Among N candidates, a user with t relevant items has expected recall ``min(K, N) / N`` and
    expected DCG ``t / N * sum_{r <= min(K, N)} 1 / log2(r + 1)``; NDCG divides by the ideal
    DCG of ``min(t, K)`` hits. Averaged over users with at least one held-out interaction.
    """
    t = np.diff(truth.indptr)
    users = t > 0
    t = t[users]
    n_cold, n_warm = truth.shape[1], warm_exclude.shape[1]
    candidates = {"held_out": np.full(len(t), n_cold),
                  "all_items": n_warm + n_cold - np.diff(warm_exclude.indptr)[users]}
    out = {}
    for setting, n in candidates.items():
        metrics: dict[str, float | int] = {"users": int(len(t))}
        for k in ks:
            discounts = 1.0 / np.log2(np.arange(2, k + 2))
            cum = np.concatenate([[0.0], np.cumsum(discounts)])
            recall = np.minimum(k, n) / n
            dcg = t / n * cum[np.minimum(k, n)]
            ideal = cum[np.minimum(t, k)]
            metrics[f"recall@{k}"] = float(recall.mean())
            metrics[f"ndcg@{k}"] = float((dcg / ideal).mean())
        out[setting] = metrics
    return out


__all__ = ["SETTINGS", "cold_item_metrics", "random_cold_item_metrics"]
