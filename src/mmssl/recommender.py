"""Top-k recommendations from a trained run, with NumPy alone.

Every model in mmssl scores a user against all items by a dot product of a user vector and an
item vector (``Model.factors``; pop is rank one). At the end of training the trainer writes those
vectors, the original ids and each user's training items to ``RUN/recommender.npz``. A
:class:`Recommender` answers queries from that one file without torch, the dataset or the model
code, so ``mmssl recommend`` starts in a fraction of a second and the file can be served alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmssl.errors import DataError

FILE_NAME = "recommender.npz"
_ROWS = 1024  # users scored at once: a batch of (rows, n_items) scores, never the whole matrix


@dataclass
class Recommendation:
    user: str
    items: list[str]  # original item ids, best first
    scores: list[float]


class Recommender:
    """Dot-product top-k over all items, excluding each user's training items by default."""

    def __init__(self, user_ids, item_ids, user_factors: np.ndarray, item_factors: np.ndarray,
                 seen: sp.csr_matrix, source: str = "recommender"):
        self.user_ids = np.asarray(user_ids).astype(str)
        self.item_ids = np.asarray(item_ids).astype(str)
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.seen = sp.csr_matrix(seen)
        self.source = source
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        if self.user_factors.shape[0] != n_users or self.item_factors.shape[0] != n_items:
            raise DataError(f"{source}: factors {self.user_factors.shape} x {self.item_factors.shape} "
                            f"do not match {n_users} users x {n_items} items")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise DataError(f"{source}: user and item factors differ in width")
        if self.seen.shape != (n_users, n_items):
            raise DataError(f"{source}: seen-items matrix is {self.seen.shape}, "
                            f"expected {(n_users, n_items)}")
        self._index = {u: i for i, u in enumerate(self.user_ids.tolist())}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the recommender to ``path`` (a run directory or a .npz file), atomically."""
        path = _file(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, user_ids=self.user_ids, item_ids=self.item_ids,
                 user_factors=self.user_factors, item_factors=self.item_factors,
                 seen_indptr=self.seen.indptr, seen_indices=self.seen.indices)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Read a file written by :meth:`save` (a run directory or the .npz itself)."""
        path = _file(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise DataError(f"{path}: missing") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable recommender file ({e})") from None
        need = ["user_ids", "item_ids", "user_factors", "item_factors", "seen_indptr", "seen_indices"]
        missing = [k for k in need if k not in arrays]
        if missing:
            raise DataError(f"{path}: missing arrays {', '.join(missing)}")
        n_users, n_items = len(arrays["user_ids"]), len(arrays["item_ids"])
        indptr, indices = arrays["seen_indptr"], arrays["seen_indices"]
        if len(indptr) != n_users + 1 or (len(indices) and indices.max() >= n_items):
            raise DataError(f"{path}: seen-items arrays do not match {n_users} users x {n_items} items")
        seen = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                             shape=(n_users, n_items))
        return cls(arrays["user_ids"], arrays["item_ids"], arrays["user_factors"],
                   arrays["item_factors"], seen, source=str(path))

    # ---------------------------------------------------------------- queries
    def user_indices(self, users) -> np.ndarray:
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
        if k < 1:
            raise DataError(f"k must be at least 1, got {k}")
        users = list(users)
        index = self.user_indices(users)
        k = min(k, len(self.item_ids))
        out = []
        for start in range(0, len(index), _ROWS):
            rows = index[start:start + _ROWS]
            scores = self.user_factors[rows] @ self.item_factors.T
            if exclude_seen:
                seen = self.seen[rows].tocoo()
                scores[seen.row, seen.col] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            for r, user in enumerate(users[start:start + _ROWS]):
                keep = np.isfinite(top_scores[r])
                out.append(Recommendation(str(user), self.item_ids[top[r][keep]].tolist(),
                                          top_scores[r][keep].tolist()))
        return out


def _file(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / FILE_NAME if path.is_dir() or not path.suffix else path


__all__ = ["FILE_NAME", "Recommendation", "Recommender"]
