"""What ``mmssl serve`` answers, without HTTP: a run's recommender, its index, cold start and
item metadata, plus the items and users added while it runs.

A :class:`Service` is built from a run directory (:meth:`Service.from_run`): it reads
``recommender.npz``, ``coldstart.npz`` (when the run has one) and ``items.tsv`` (when the
dataset had an items table), so it needs neither the dataset nor torch (torch only to encode
raw text). Items and users added to it (:meth:`add_items`, :meth:`add_user`) live in memory
until the process ends.

- A **new item** gets its vector from :class:`~mmssl.serving.coldstart.ColdStart` (the model's
  content path, else the k-NN fallback) and joins the index at once.
- A **new user** is folded in: their vector is the mean of the vectors of the items they give
  (warm or new); those items count as seen.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import numpy as np

from mmssl.errors import DataError
from mmssl.serving.coldstart import FILE_NAME as COLD_FILE
from mmssl.serving.coldstart import ITEMS_FILE, ColdStart, unit_rows
from mmssl.serving.index import FAISS_ABOVE, build_index
from mmssl.serving.recommender import Recommender, top_rows

MAX_K = 1000  # the most items one request may ask for
MAX_BATCH = 1000  # users in one batch request, items or seen items in one request


class UnknownId(DataError):
    """An id the service does not know (HTTP 404)."""


class Conflict(DataError):
    """An id that exists already (HTTP 409)."""


def check_k(k, name: str = "k") -> int:
    """``k`` as an int in [1, MAX_K]; DataError naming ``name`` otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise DataError(f"{name} must be a whole number from 1 to {MAX_K}, got {k!r}")
    return int(k)


def read_items_table(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """``items.tsv`` as item id -> {column: value} (without the id); {} when absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if not header or "item_id" not in header:
            raise DataError(f"{path}: no item_id column")
        at = header.index("item_id")
        return {r[at]: {c: v for c, v in zip(header, r) if c != "item_id"}
                for r in rows if len(r) == len(header)}


class Service:
    """Recommendations, similar items, new items and new users of one run.

    Args:
        recommender: the run's :class:`Recommender`.
        cold: its :class:`ColdStart`, or None (then no new items).
        items: item id -> metadata (title, ...).
        index: ``auto``, ``exact``, ``faiss``, ``faiss-ivf`` or ``faiss-hnsw``.
        faiss_above: the catalogue size from which ``auto`` uses FAISS.
    """

    def __init__(self, recommender: Recommender, cold: ColdStart | None = None,
                 items: dict[str, dict[str, str]] | None = None, index: str = "auto",
                 faiss_above: int = FAISS_ABOVE, source: str = "run", **faiss_options):
        self.rec = recommender
        self.cold = cold
        self.metadata = dict(items or {})
        self.source = source
        if cold is not None and not np.array_equal(cold.item_ids, recommender.item_ids):
            raise DataError(f"{cold.source}: its items differ from {recommender.source}'s")
        self.index, self.index_note = build_index(recommender.item_factors, index, faiss_above,
                                                  **faiss_options)
        self.item_ids: list[str] = recommender.item_ids.tolist()
        self._item_index = {i: n for n, i in enumerate(self.item_ids)}
        self.n_warm_items = len(self.item_ids)
        self.new_users: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # id -> (vector, seen)
        self.new_items: dict[str, str] = {}  # id -> how its vector was made
        self._write = threading.Lock()
        self._unit: np.ndarray | None = None  # unit warm item vectors, for similar items
        self._new = np.zeros((0, recommender.item_factors.shape[1]), dtype=np.float32)

    @classmethod
    def from_run(cls, run: str | os.PathLike, index: str = "auto", **options) -> Service:
        """The service of a run directory (module docstring)."""
        run = Path(run)
        if not run.is_dir():
            raise DataError(f"{run}: not a run directory")
        recommender = Recommender.load(run)
        cold = ColdStart.load(run / COLD_FILE) if (run / COLD_FILE).is_file() else None
        return cls(recommender, cold, read_items_table(run / ITEMS_FILE), index=index,
                   source=str(run), **options)

    # ------------------------------------------------------------------ facts
    def facts(self) -> dict:
        """Counts and choices, for ``/health`` and the start-up message."""
        return {"users": len(self.rec.user_ids) + len(self.new_users),
                "items": len(self.item_ids), "new_items": len(self.new_items),
                "new_users": len(self.new_users), "index": self.index.kind,
                "index_note": self.index_note,
                "cold_start": self.cold.method if self.cold else None,
                "modalities": dict(self.cold.modalities) if self.cold else {},
                "text_modalities": sorted(self.cold.text) if self.cold else [],
                "model": self.cold.model if self.cold else None,
                "metadata_columns": sorted({c for m in self.metadata.values() for c in m})}

    def item_index(self, item: str) -> int:
        """Index of an item id (warm or new); UnknownId otherwise."""
        try:
            return self._item_index[str(item)]
        except KeyError:
            raise UnknownId(f"unknown item id {str(item)!r} ({len(self.item_ids)} items known)") from None

    def describe_item(self, n: int, score: float | None = None) -> dict:
        """An item as JSON: id, score, new or not, and its metadata."""
        item = self.item_ids[n]
        out: dict = {"id": item}
        if score is not None:
            out["score"] = float(score)
        if n >= self.n_warm_items:
            out["new"] = True
        out.update(self.metadata.get(item, {}))
        return out

    def _user(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """(vector (d,), seen item indices) of a known or folded-in user; UnknownId else."""
        user = str(user)
        if user in self.new_users:
            return self.new_users[user]
        try:
            u = int(self.rec.user_indices([user])[0])
        except DataError:
            raise UnknownId(f"unknown user id {user!r} ({len(self.rec.user_ids)} users trained, "
                            f"{len(self.new_users)} added)") from None
        seen = self.rec.seen.indices[self.rec.seen.indptr[u]:self.rec.seen.indptr[u + 1]]
        return self.rec.user_factors[u], seen.astype(np.int64)

    def history(self, user: str) -> list[dict]:
        """The user's training items (or the items a new user was folded in from)."""
        _, seen = self._user(user)
        return [self.describe_item(int(n)) for n in seen[:MAX_K]]

    def user_ids(self, limit: int = MAX_K) -> list[str]:
        """Up to ``limit`` user ids: the trained ones first, then those added."""
        ids = self.rec.user_ids[:limit].tolist()
        return ids + list(self.new_users)[:max(0, limit - len(ids))]

    # ---------------------------------------------------------------- queries
    def recommend(self, users, k: int = 20, exclude_seen: bool = True) -> list[dict]:
        """Top-``k`` items of each user id: ``[{"user", "items": [...]}, ...]``."""
        k = check_k(k)
        users = [str(u) for u in users]
        if not users or len(users) > MAX_BATCH:
            raise DataError(f"users: give 1 to {MAX_BATCH} user ids, got {len(users)}")
        known = [self._user(u) for u in users]
        queries = np.stack([v for v, _ in known])
        exclude = [s for _, s in known] if exclude_seen else None
        found = self.index.search(queries, k, exclude)
        return [{"user": u, "items": [self.describe_item(int(i), s) for i, s in zip(ids, scores)]}
                for u, (ids, scores) in zip(users, found)]

    def similar(self, item: str, k: int = 20) -> list[dict]:
        """The ``k`` items most similar to ``item``: cosine of the model's item vectors, exact."""
        k = check_k(k)
        n = self.item_index(item)
        if self._unit is None:
            self._unit = unit_rows(self.rec.item_factors)
        query = unit_rows(self.vectors_of([n]))[0]
        scores = np.concatenate([self._unit @ query, unit_rows(self._new) @ query])
        scores[n] = -np.inf
        k = min(k, len(scores) - 1)
        if k < 1:
            return []
        top, _ = top_rows(scores[None, :], k)
        return [self.describe_item(int(i), scores[i]) for i in top[0]]

    def vectors_of(self, indices) -> np.ndarray:
        """(len(indices), d) vectors of items by index, warm or new."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), self.rec.item_factors.shape[1]), dtype=np.float32)
        warm = indices < self.n_warm_items
        out[warm] = self.rec.item_factors[indices[warm]]
        out[~warm] = self._new[indices[~warm] - self.n_warm_items]
        return out

    # ---------------------------------------------------------------- changes
    def add_items(self, items: list[dict]) -> list[dict]:
        """Add new items: each ``{"id", "features": {modality: vector}, "text": {modality:
        str}, "metadata": {column: str}}``; returns their ids and how their vectors were made."""
        if self.cold is None:
            raise DataError(f"{self.source}: no {COLD_FILE}: this run cannot add items (runs "
                            "trained before mmssl 0.3 have none)")
        if not items or len(items) > MAX_BATCH:
            raise DataError(f"items: give 1 to {MAX_BATCH} items, got {len(items)}")
        ids, rows, zeros = [], [], []
        for j, spec in enumerate(items):
            item = str(spec.get("id") or "").strip()
            if not item:
                raise DataError(f"items[{j}].id: required, a non-empty string")
            if item in self._item_index or item in ids:
                raise Conflict(f"items[{j}].id: item {item!r} exists already")
            raw = dict(spec.get("features") or {})
            for modality, text in (spec.get("text") or {}).items():
                if modality in raw:
                    raise DataError(f"items[{j}].text.{modality}: give a vector or a text, not both")
                if modality not in self.cold.modalities:
                    raise DataError(f"items[{j}].text.{modality}: unknown modality")
                raw[modality] = self.cold.encode_text(modality, [text])[0]
            try:
                checked, zero = self.cold.check_features(raw)
            except DataError as e:
                raise DataError(f"items[{j}].{e}") from None
            if len(next(iter(checked.values()))) != 1:
                raise DataError(f"items[{j}].features: one vector per modality for one item")
            ids.append(item)
            rows.append(checked)
            zeros.append(zero)
        features = {m: np.concatenate([r[m] for r in rows]) for m in self.cold.modalities}
        vectors = self.cold.item_vectors(features, self.rec.item_factors)
        with self._write:  # ids and vectors first: a search may return the items at once
            self._new = np.concatenate([self._new, vectors])
            for item, spec in zip(ids, items):
                meta = {str(c): str(v) for c, v in (spec.get("metadata") or {}).items()}
                if meta:
                    self.metadata[item] = meta
                self.item_ids.append(item)
                self._item_index[item] = len(self.item_ids) - 1
                self.new_items[item] = self.cold.method
            self.index.add(vectors)
        return [{"id": i, "method": self.cold.method, "zero_modalities": z}
                for i, z in zip(ids, zeros)]

    def add_user(self, user: str, items: list[str]) -> dict:
        """Fold in a new user from the ids of items they liked (mean of their vectors)."""
        user = str(user or "").strip()
        if not user:
            raise DataError("id: required, a non-empty string")
        if user in self.new_users or user in self.rec._index:
            raise Conflict(f"id: user {user!r} exists already")
        if not items or len(items) > MAX_BATCH:
            raise DataError(f"items: give 1 to {MAX_BATCH} item ids, got {len(items or [])}")
        seen = np.unique([self.item_index(i) for i in items]).astype(np.int64)
        vector = self.vectors_of(seen).mean(axis=0).astype(np.float32)
        with self._write:
            self.new_users[user] = (vector, seen)
        return {"id": user, "items": len(seen)}


__all__ = ["MAX_BATCH", "MAX_K", "Conflict", "Service", "UnknownId", "check_k", "read_items_table"]
