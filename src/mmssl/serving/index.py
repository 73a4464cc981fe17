"""Top-k item search by inner product: exact (NumPy/BLAS) or approximate (FAISS).

Both indexes answer ``search(queries, k, exclude)``: the ``k`` items of largest inner product
with each query vector, best first, leaving out each query's excluded items (its seen items),
and both take new items at any time (``add``), which later searches return like any other.

- :class:`ExactIndex` scores every item (one matrix product per batch of queries).
- :class:`FaissIndex` (``pip install 'mmssl[serve]'``) is an IVF index (``IndexIVFFlat``,
  inner product, ``nlist ~ sqrt(n)`` lists, ``nprobe`` of them searched) or an HNSW graph
  (``IndexHNSWFlat``, inner product). It asks for ``k`` plus the query's excluded items and
  filters, asking again with more when the exclusions leave fewer than ``k``.

:func:`build_index` chooses: ``auto`` is exact below :data:`FAISS_ABOVE` items and FAISS above
(exact when FAISS is not installed), and says what it chose.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from mmssl.errors import ConfigError
from mmssl.serving.recommender import rows_at_once, top_rows

FAISS_ABOVE = 200_000  # auto: exact below this many items, FAISS from here on
INDEX_KINDS = ("auto", "exact", "faiss", "faiss-ivf", "faiss-hnsw")


class ReadWriteLock:
    """Many searches at once, or one ``add`` alone."""

    def __init__(self) -> None:
        self._readers = 0
        self._cond = threading.Condition()

    @contextmanager
    def reading(self):
        """Hold the lock for a search (shared)."""
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self):
        """Hold the lock for a change (exclusive)."""
        with self._cond:
            self._cond.wait_for(lambda: self._readers == 0)
            yield


class ExactIndex:
    """Every item scored: exact top-k (``kind = "exact"``).

    Args:
        vectors: (n_items, d) item vectors.
    """

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._data = vectors
        self._n = len(vectors)
        self.lock = ReadWriteLock()

    def __len__(self) -> int:
        return self._n

    @property
    def vectors(self) -> np.ndarray:
        """(n_items, d) current item vectors (a view)."""
        return self._data[:self._n]

    def describe(self) -> str:
        """One line for the start-up message."""
        return f"exact (NumPy/BLAS, {self._n} items)"

    def add(self, vectors: np.ndarray) -> None:
        """Append (m, d) item vectors; their indices follow the current ones."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.lock.writing():
            need = self._n + len(vectors)
            if need > len(self._data):  # grow by half, so adding one at a time stays cheap
                grown = np.empty((max(need, len(self._data) * 3 // 2 + 1), self._data.shape[1]),
                                 dtype=np.float32)
                grown[:self._n] = self._data[:self._n]
                self._data = grown
            self._data[self._n:need] = vectors
            self._n = need

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each (d,) row of ``queries``: (item indices, scores), best first, at most ``k``,
        none of ``exclude[row]``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self.lock.reading():
            items = self._data[:self._n]
            step = rows_at_once(len(items))
            out = []
            for start in range(0, len(queries), step):
                scores = queries[start:start + step] @ items.T
                if exclude is not None:  # one scatter for the block's excluded items
                    ex = [np.asarray(e, dtype=np.int64) for e in exclude[start:start + step]]
                    rows = np.repeat(np.arange(len(ex)), [len(e) for e in ex])
                    scores[rows, np.concatenate(ex) if ex else rows] = -np.inf
                top, top_scores = top_rows(scores, k)
                for r in range(len(top)):
                    keep = np.isfinite(top_scores[r])
                    out.append((top[r][keep], top_scores[r][keep]))
            return out


class FaissIndex:
    """FAISS inner-product index, IVF or HNSW (module docstring).

    Args:
        vectors: (n_items, d) item vectors.
        kind: ``"ivf"`` or ``"hnsw"``.
        nprobe: IVF lists searched per query.
        ef_search: HNSW candidate list size (at least the k asked for).
        threads: FAISS's OpenMP threads (1: the server's own threads run searches side by side).
        seed: seed of the IVF k-means.
    """

    def __init__(self, vectors: np.ndarray, kind: str = "ivf", nprobe: int = 32,
                 ef_search: int = 128, threads: int = 1, seed: int = 2022):
        try:
            import faiss
        except ImportError:
            raise ConfigError("--index faiss needs faiss-cpu: pip install 'mmssl[serve]'") from None
        self._faiss = faiss
        faiss.omp_set_num_threads(os.cpu_count() or 1)  # building uses every core
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        self.kind = f"faiss-{kind}"
        self.lock = ReadWriteLock()
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = ef_search
            self.detail = f"HNSW, M 32, efSearch {ef_search}"
        elif kind == "ivf":
            nlist = int(max(1, min(n // 39, np.sqrt(n))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
            index.cp.seed = seed
            index.train(sample)
            index.nprobe = min(nprobe, nlist)
            self.detail = f"IVF, {nlist} lists, nprobe {index.nprobe}"
        else:
            raise ConfigError(f"FAISS index kind must be ivf or hnsw, got {kind!r}")
        index.add(vectors)
        self._index, self._ef = index, ef_search
        faiss.omp_set_num_threads(max(1, int(threads)))  # searching: the server's threads

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def describe(self) -> str:
        """One line for the start-up message."""
        return f"{self.kind} ({self.detail}, {len(self)} items)"

    def add(self, vectors: np.ndarray) -> None:
        """Append (m, d) item vectors; their indices follow the current ones."""
        with self.lock.writing():
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "faiss-hnsw":
            params = self._faiss.SearchParametersHNSW(efSearch=max(self._ef, k))
            scores, ids = self._index.search(queries, k, params=params)
        else:
            scores, ids = self._index.search(queries, k)
        return ids, scores

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """As :meth:`ExactIndex.search`, approximately."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self.lock.reading():
            n = len(self)
            extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
            want = min(n, k + extra)
            out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
            todo = np.arange(len(queries))
            while len(todo):
                ids, scores = self._raw_search(queries[todo], want)
                again = []
                for row, q in enumerate(todo):
                    keep = ids[row] >= 0
                    if exclude is not None and len(exclude[q]):
                        keep &= ~np.isin(ids[row], exclude[q])
                    got_ids, got_scores = ids[row][keep][:k], scores[row][keep][:k]
                    if len(got_ids) < k and want < n:
                        again.append(q)
                    out[q] = (got_ids.astype(np.int64), got_scores)
                todo, want = np.array(again, dtype=np.int64), min(n, want * 4)
            return out  # type: ignore[return-value]


def build_index(vectors: np.ndarray, kind: str = "auto", faiss_above: int = FAISS_ABOVE,
                **faiss_options) -> tuple[ExactIndex | FaissIndex, str]:
    """``(index, note)``: the index ``kind`` asks for (``auto``, ``exact``, ``faiss`` (IVF),
    ``faiss-ivf``, ``faiss-hnsw``) and a line saying what was chosen and why."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"--index {kind!r}: expected one of {', '.join(INDEX_KINDS)}")
    n = len(vectors)
    if kind == "auto":
        if n < faiss_above:
            index = ExactIndex(vectors)
            return index, f"index: auto chose {index.describe()}: below {faiss_above} items"
        try:
            import faiss  # noqa: F401
        except ImportError:
            index = ExactIndex(vectors)
            return index, (f"index: auto chose {index.describe()}: faiss-cpu is not installed "
                           f"(pip install 'mmssl[serve]'), though {n} >= {faiss_above} items")
        index = FaissIndex(vectors, "ivf", **faiss_options)
        return index, f"index: auto chose {index.describe()}: {n} >= {faiss_above} items"
    if kind == "exact":
        index = ExactIndex(vectors)
    else:
        index = FaissIndex(vectors, "hnsw" if kind == "faiss-hnsw" else "ivf", **faiss_options)
    return index, f"index: {index.describe()}"


__all__ = ["FAISS_ABOVE", "INDEX_KINDS", "ExactIndex", "FaissIndex", "ReadWriteLock", "build_index"]
