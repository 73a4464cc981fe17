"""Top-k recommendations from a trained run, with NumPy alone.

Every model in mmssl scores a user against all items by a dot product of a user vector and an
item vector (``Model.factors``; pop is rank one). :meth:`Recommender.from_model` takes those
vectors, the original ids and each user's training items; :meth:`Recommender.save` writes them
to ``RUN/recommender.npz``. A :class:`Recommender` answers queries from that one file without
torch, the dataset or the model code, so ``mmssl recommend`` starts in a fraction of a second and
the file can be served alone. :meth:`Recommender.load` checks every array of the file before use,
so a damaged or crafted file gets a one-line error, never a crash.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmssl import io
from mmssl.errors import DataError

FILE_NAME = "recommender.npz"
_ROWS = 1024  # users scored at once: a batch of (rows, n_items) scores, never the whole matrix
_BLOCK = 1 << 25  # at most this many scores at once (128 MB of float32), on huge catalogues


def rows_at_once(n_items: int) -> int:
    """How many query rows to score at once against ``n_items`` items (bounded memory)."""
    return max(1, min(_ROWS, _BLOCK // max(1, n_items)))


def top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best columns and their scores, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
_ARRAYS = ("user_ids", "item_ids", "user_factors", "item_factors", "seen_indptr", "seen_indices")


@dataclass
class Recommendation:
    """One user's top-k: original item ids, best first, and their scores."""

    user: str
    items: list[str]
    scores: list[float]


class Recommender:
    """Dot-product top-k over all items, excluding each user's training items by default.

    Args:
        user_ids (Sequence[str]): original user ids in index order, (n_users,).
        item_ids (Sequence[str]): original item ids in index order, (n_items,).
        user_factors: (n_users, d); the score of user u for item i is
            ``user_factors[u] @ item_factors[i]``.
        item_factors: (n_items, d).
        seen: (n_users, n_items) sparse matrix of each user's training items.
        source: what to name in error messages (a file or run).
    """

    def __init__(self, user_ids, item_ids, user_factors: np.ndarray, item_factors: np.ndarray,
                 seen: sp.spmatrix, source: str = "recommender"):
        self.user_ids = np.asarray(user_ids).astype(str)
        self.item_ids = np.asarray(item_ids).astype(str)
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.seen = sp.csr_matrix(seen)
        self.source = source
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        if self.user_factors.ndim != 2 or self.item_factors.ndim != 2:
            raise DataError(f"{source}: factors must be 2-d, got user {self.user_factors.shape} "
                            f"and item {self.item_factors.shape}")
        if self.user_factors.shape[0] != n_users or self.item_factors.shape[0] != n_items:
            raise DataError(f"{source}: factors {self.user_factors.shape} x {self.item_factors.shape} "
                            f"do not match {n_users} users x {n_items} items")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise DataError(f"{source}: user and item factors differ in width")
        if self.seen.shape != (n_users, n_items):
            raise DataError(f"{source}: seen-items matrix is {self.seen.shape}, "
                            f"expected {(n_users, n_items)}")
        self._index = {u: i for i, u in enumerate(self.user_ids.tolist())}

    @classmethod
    def from_model(cls, model, dataset, source: str = "model") -> Recommender:
        """The factors of a trained ``model`` (any object with ``factors()``), the dataset's ids
        and its training items."""
        import torch

        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()
        with torch.no_grad():
            user, item = model.factors()
        if was_training:
            model.train()
        return cls(dataset.user_ids, dataset.item_ids, user.float().cpu().numpy(),
                   item.float().cpu().numpy(), dataset.matrix("train"), source=source)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the recommender to ``path`` (a run directory or a .npz file), atomically."""
        path = _file(path)
        arrays = dict(user_ids=self.user_ids, item_ids=self.item_ids,
                      user_factors=self.user_factors, item_factors=self.item_factors,
                      seen_indptr=self.seen.indptr.astype(np.int64),
                      seen_indices=self.seen.indices.astype(np.int64))
        return io.atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Read a file written by :meth:`save` (a run directory or the .npz itself).

        Every array is checked first (names, shapes, dtypes, a monotonic ``seen_indptr`` within
        bounds, item indices in range, finite factors): DataError in one line otherwise.
        """
        path = _file(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files if k in _ARRAYS}
        except FileNotFoundError:
            raise DataError(f"{path}: missing") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{path}: not a readable recommender file ({detail})") from None
        _check_arrays(arrays, str(path))
        n_users, n_items = len(arrays["user_ids"]), len(arrays["item_ids"])
        indices = arrays["seen_indices"]
        seen = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices,
                              arrays["seen_indptr"]), shape=(n_users, n_items))
        return cls(arrays["user_ids"], arrays["item_ids"], arrays["user_factors"],
                   arrays["item_factors"], seen, source=str(path))

    # ---------------------------------------------------------------- queries
    def user_indices(self, users) -> np.ndarray:
        """Indices of original user ids; DataError naming the first unknown one."""
        try:
            return np.array([self._index[str(u)] for u in users], dtype=np.int64)
        except KeyError as e:
            raise DataError(f"{self.source}: unknown user id {e.args[0]!r} "
                            f"({len(self.user_ids)} users known)") from None

    def scores(self, users) -> np.ndarray:
        """(len(users), n_items) float32 scores of original user ids, nothing excluded."""
        return self.user_factors[self.user_indices(users)] @ self.item_factors.T

    def recommend(self, users, k: int = 20, exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``k`` items for each original user id, best first, with their scores."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"k must be a whole number of at least 1, got {k!r}")
        users = list(users)
        index = self.user_indices(users)
        k = min(int(k), len(self.item_ids))
        step = rows_at_once(len(self.item_ids))
        out = []
        for start in range(0, len(index), step):
            rows = index[start:start + step]
            scores = self.user_factors[rows] @ self.item_factors.T
            if exclude_seen:
                seen = self.seen[rows].tocoo()
                scores[seen.row, seen.col] = -np.inf
            top, top_scores = top_rows(scores, k)
            for r, user in enumerate(users[start:start + step]):
                keep = np.isfinite(top_scores[r])
                out.append(Recommendation(str(user), self.item_ids[top[r][keep]].tolist(),
                                          top_scores[r][keep].tolist()))
        return out


def _check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """One-line DataError unless the arrays of a recommender file are consistent."""
    missing = [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing arrays {', '.join(missing)}")
    for name in ("user_ids", "item_ids"):
        a = arrays[name]
        if a.ndim != 1 or a.dtype.kind not in "US":
            raise DataError(f"{where}: {name} must be a 1-d array of strings, got {a.dtype} {a.shape}")
    n_users, n_items = len(arrays["user_ids"]), len(arrays["item_ids"])
    for name, rows in (("user_factors", n_users), ("item_factors", n_items)):
        a = arrays[name]
        if a.dtype.kind != "f":
            raise DataError(f"{where}: {name} must be floating point, got {a.dtype}")
        if a.ndim != 2 or a.shape[0] != rows:
            raise DataError(f"{where}: {name} has shape {a.shape}, expected ({rows}, d)")
        if not np.isfinite(a).all():
            raise DataError(f"{where}: {name} holds NaN or infinite values")
    if arrays["user_factors"].shape[1] != arrays["item_factors"].shape[1]:
        raise DataError(f"{where}: user_factors and item_factors differ in width")
    indptr, indices = arrays["seen_indptr"], arrays["seen_indices"]
    for name, a in (("seen_indptr", indptr), ("seen_indices", indices)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise DataError(f"{where}: {name} must be a 1-d integer array, got {a.dtype} {a.shape}")
    if len(indptr) != n_users + 1:
        raise DataError(f"{where}: seen_indptr has {len(indptr)} entries, expected {n_users + 1}")
    if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
        raise DataError(f"{where}: seen_indptr must rise from 0 to {len(indices)} "
                        "(the number of seen_indices) without decreasing")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        bad = int(indices.min() if indices.min() < 0 else indices.max())
        raise DataError(f"{where}: seen_indices holds item index {bad}, outside [0, {n_items})")


def _file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / FILE_NAME if path.is_dir() or not path.suffix else path


__all__ = ["FILE_NAME", "Recommendation", "Recommender"]
