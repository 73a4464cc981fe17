"""Full-ranking top-K metrics: recall, precision, NDCG, hit rate and MAP over all items.

Every evaluated user's items are ranked by score, highest first; among equal scores the lower
item index ranks first. Excluded items (typically the user's training items) get -inf before
ranking, so they can never be recommended and never count as a hit. Users with no held-out item
are skipped and counted.

Protocols (which items are excluded, which NDCG is reported):

========  ==========================  ==========================  =============
protocol  valid excludes              test excludes               NDCG
========  ==========================  ==========================  =============
standard  train                       train + valid               standard
mmssl     train                       train (departure 7)         mmssl (dep. 6)
mmrec     train                       train                       standard
========  ==========================  ==========================  =============
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from mmssl.data.dataset import Dataset
from mmssl.errors import ConfigError

PROTOCOLS = ("standard", "mmssl", "mmrec")
NDCG_MODES = ("standard", "mmssl")
METRICS = ("recall", "precision", "ndcg", "hit", "map")

ScoreFn = Callable[[torch.Tensor], torch.Tensor]

# Scores of at most this many (user, item) pairs are held at once (256 MB of float32).
BLOCK_ELEMENTS = 1 << 26

# Extra candidates taken by topk beyond max(ks): a tie group at the K-th place that fits in the
# candidate list is resolved by a re-sort; a larger one falls back to a full sort of that row.
_TIE_MARGIN = 16


def rank_metrics(
    scores: torch.Tensor | ScoreFn,
    exclude: sp.csr_matrix,
    truth: sp.csr_matrix,
    ks: Sequence[int] = (10, 20, 50),
    ndcg: str = "standard",
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float | int]:
    """Top-K metrics of a full ranking over all items, averaged over users with held-out items.

    Args:
        scores: a (n_users, n_items) tensor, or ``score_fn(users)`` taking a LongTensor (b,) of
            user indices (on ``device`` if given, else on the CPU) and returning a (b, n_items)
            tensor on any device. A returned tensor may be modified in place: return a fresh one.
        exclude: (n_users, n_items) CSR; its stored entries are never recommended.
        truth: (n_users, n_items) CSR; its stored entries are the held-out items.
        ks: cut-offs K; each must be >= 1. A K above n_items ranks every item.
        ndcg: ``"standard"`` (ideal DCG of min(|truth_u|, K) hits) or ``"mmssl"`` (the authors'
            code: ideal DCG of min(h, K) hits, h the hits in the top max(ks); 0 when h = 0).
        batch_size: users scored and ranked at a time; fewer on huge catalogues, so that one
            block of scores never passes ``BLOCK_ELEMENTS`` (64 users at 1M items).
        device: where ranking runs; default the device the scores come on.

    Returns:
        ``"{metric}@{K}"`` for metric in recall, precision, ndcg, hit, map and each K (floats,
        NaN when no user is evaluated), ``"users"`` (evaluated) and ``"skipped_users"`` (no
        held-out item). MAP@K is the sum of precision@r over hit ranks r <= K, divided by
        min(|truth_u|, K) as in RecBole. |truth_u| counts every held-out item, excluded or not.

    Raises:
        ValueError: NaN in the scores, bad ks, ndcg mode, batch size or shapes.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if ndcg not in NDCG_MODES:
        raise ValueError(f"ndcg must be one of {NDCG_MODES}, got {ndcg!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if exclude.shape != truth.shape:
        raise ValueError(f"exclude {exclude.shape} and truth {truth.shape} differ in shape")
    n_users, n_items = truth.shape
    if isinstance(scores, torch.Tensor) and tuple(scores.shape) != (n_users, n_items):
        raise ValueError(f"scores {tuple(scores.shape)} but truth is {(n_users, n_items)}")
    exclude, truth = sp.csr_matrix(exclude), sp.csr_matrix(truth)
    # An excluded held-out item can never be recommended, so it can never be a hit.
    hit_matrix = truth - truth.multiply(exclude.astype(bool))
    hit_matrix.eliminate_zeros()

    truth_counts = np.diff(truth.indptr)
    users = np.flatnonzero(truth_counts > 0)
    k_max = ks[-1]
    hits = np.zeros((len(users), k_max), dtype=bool)  # hits[u, r]: rank r + 1 is a hit
    batch_size = max(1, min(batch_size, BLOCK_ELEMENTS // max(1, n_items)))
    for start in range(0, len(users), batch_size):
        batch_users = users[start : start + batch_size]
        batch = _score_batch(scores, batch_users, n_items, device)
        _check_no_nan(batch, batch_users)
        rows, cols = _rows_cols(exclude, batch_users)
        index = (torch.from_numpy(rows).to(batch.device), torch.from_numpy(cols).to(batch.device))
        batch.index_put_(index, torch.tensor(-math.inf, dtype=batch.dtype, device=batch.device))
        top = top_items(batch, min(k_max, n_items)).cpu().numpy()
        # fewer items than K: the ranks past n_items hold no item and stay False
        hits[start : start + len(batch_users), : top.shape[1]] = _hits(hit_matrix, batch_users, top)
    out: dict[str, float | int] = _metrics(hits, truth_counts[users], ks, ndcg)
    out["users"] = len(users)
    out["skipped_users"] = int(n_users - len(users))
    return out


def top_items(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (b, k) of each row's k highest scores, ties broken by lower item index.

    ``scores`` is (b, n_items) with k <= n_items; the result is on the same device. Runs topk on
    k + a small margin of candidates; only rows with equal scores in their top k + 1 are fixed
    up: by a stable re-sort of the candidates, or by a full sort where the tie group at the
    k-th place may reach beyond the candidates (the k-th and the last candidate are equal).
    """
    n_items = scores.shape[1]
    n_cand = min(n_items, k + _TIE_MARGIN)
    if n_cand == n_items:
        return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    values, items = torch.topk(scores, n_cand, dim=1, sorted=True)
    # The fix-up works on small (b, n_cand) arrays: numpy avoids thread overhead there.
    values, items = values.cpu().numpy(), items.cpu().numpy()
    tied = np.flatnonzero((values[:, :k] == values[:, 1 : k + 1]).any(axis=1))
    if len(tied):
        order = np.lexsort((items[tied], -values[tied]), axis=1)
        items[tied] = np.take_along_axis(items[tied], order, axis=1)
        ambiguous = tied[values[tied, k - 1] == values[tied, -1]]
        if len(ambiguous):
            rows = torch.from_numpy(ambiguous).to(scores.device)
            full = torch.sort(scores[rows], dim=1, descending=True, stable=True).indices
            items[ambiguous, :k] = full[:, :k].cpu().numpy()
    return torch.from_numpy(np.ascontiguousarray(items[:, :k])).to(scores.device)


def exclusion_matrix(dataset: Dataset, split: str, protocol: str) -> sp.csr_matrix:
    """The (n_users, n_items) CSR of items never ranked when evaluating ``split``.

    standard: valid excludes train, test excludes train + valid. mmssl and mmrec: both exclude
    train only (the authors' code, departure 7).
    """
    _check_protocol(protocol)
    if split not in ("valid", "test"):
        raise ConfigError(f"evaluation split must be 'valid' or 'test', got {split!r}")
    train = dataset.matrix("train")
    if protocol == "standard" and split == "test":
        both = (train + dataset.matrix("valid")).tocsr()
        both.data[:] = 1.0
        return both
    return train


def evaluate(
    scores: torch.Tensor | ScoreFn,
    dataset: Dataset,
    split: str = "test",
    protocol: str = "standard",
    ks: Sequence[int] = (10, 20, 50),
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float | int | str]:
    """Rank every item for the users of ``split`` under ``protocol`` (see the module table).

    ``scores`` is as in :func:`rank_metrics`: a (n_users, n_items) tensor or a batch scorer.
    Returns the metrics of :func:`rank_metrics` plus ``"protocol"`` and ``"split"``. The mmssl
    NDCG depends on max(ks) (departure 6); the authors' runs use ks = (10, 20, 50).
    """
    exclude = exclusion_matrix(dataset, split, protocol)
    metrics: dict[str, float | int | str] = dict(
        rank_metrics(
            scores,
            exclude,
            dataset.matrix(split),
            ks=ks,
            ndcg="mmssl" if protocol == "mmssl" else "standard",
            batch_size=batch_size,
            device=device,
        )
    )
    metrics["protocol"] = protocol
    metrics["split"] = split
    return metrics


# --------------------------------------------------------------------------- helpers
def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"unknown evaluation protocol {protocol!r}; known: {', '.join(PROTOCOLS)}"
        )


def _score_batch(
    scores: torch.Tensor | ScoreFn, users: np.ndarray, n_items: int, device
) -> torch.Tensor:
    """Scores (b, n_items) of ``users``, as a tensor the caller may modify."""
    if isinstance(scores, torch.Tensor):
        index = torch.from_numpy(users).to(scores.device)
        batch = scores.index_select(0, index)  # a copy: masking never touches the caller's
    else:
        batch = scores(torch.from_numpy(users).to(device or "cpu"))
        if not isinstance(batch, torch.Tensor) or tuple(batch.shape) != (len(users), n_items):
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"score_fn returned {shape}, expected {(len(users), n_items)}")
    if device is not None:
        batch = batch.to(device)
    if batch.dtype not in (torch.float32, torch.float64):  # exact for ints and half types
        batch = batch.float()
    return batch


def _check_no_nan(batch: torch.Tensor, users: np.ndarray) -> None:
    if not torch.isnan(batch.sum()):  # one cheap reduction; NaN (or inf - inf) propagates
        return
    nan_rows = torch.isnan(batch).any(dim=1)
    if nan_rows.any():
        user = int(users[int(nan_rows.nonzero()[0, 0])])
        raise ValueError(
            f"scores contain NaN (first for user index {user}); a model must not produce NaN"
        )


def _rows_cols(matrix: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-row and column indices (int64) of the stored entries of ``matrix[users]``."""
    sub = matrix[users]
    sub.sort_indices()
    rows = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr))
    return rows, sub.indices.astype(np.int64)


def _hits(matrix: sp.csr_matrix, users: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Bool (b, k): whether item ``top[u, r]`` is a stored entry of ``matrix[users[u]]``."""
    rows, cols = _rows_cols(matrix, users)
    keys = rows * matrix.shape[1] + cols  # sorted: rows ascending, columns sorted per row
    if not len(keys):
        return np.zeros(top.shape, dtype=bool)
    query = np.arange(len(users), dtype=np.int64)[:, None] * matrix.shape[1] + top
    found = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[found] == query


def _metrics(
    hits: np.ndarray, n_truth: np.ndarray, ks: list[int], ndcg: str
) -> dict[str, float | int]:
    """Means over users; ``hits`` bool (n_users, max(ks)), ``n_truth`` (n_users,) >= 1."""
    n_users, k_max = hits.shape
    if n_users == 0:
        return {f"{m}@{k}": math.nan for m in METRICS for k in ks}
    hits = hits.astype(np.float64)
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.cumsum(discount)  # ideal[j - 1] = DCG of j hits at the front
    n_hits = np.cumsum(hits, axis=1)  # hits within the top r
    dcg = np.cumsum(hits * discount, axis=1)
    precision_sum = np.cumsum(hits * n_hits / ranks, axis=1)  # precision@r summed at hit ranks
    out: dict[str, float | int] = {}
    for metric in METRICS:
        for k in ks:
            hit_k = n_hits[:, k - 1]
            relevant = np.minimum(n_truth, k)  # min(|truth_u|, K)
            if metric == "recall":
                value = hit_k / n_truth
            elif metric == "precision":
                value = hit_k / k
            elif metric == "hit":
                value = hit_k > 0
            elif metric == "map":
                value = precision_sum[:, k - 1] / relevant
            else:  # ndcg; mmssl: ideal DCG of the hits found in the top max(ks) (departure 6)
                n_ideal = np.minimum(n_hits[:, -1], k) if ndcg == "mmssl" else relevant
                n_ideal = n_ideal.astype(np.int64)
                idcg = ideal[np.maximum(n_ideal - 1, 0)]
                value = np.where(n_ideal > 0, dcg[:, k - 1] / idcg, 0.0)
            out[f"{metric}@{k}"] = float(np.mean(value))
    return out
