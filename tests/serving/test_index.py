"""The top-k indexes: exact equals brute force, FAISS finds nearly the same items, both leave
out seen items and return items added after they were built."""

from __future__ import annotations

import numpy as np
import pytest

from mmssl.errors import ConfigError
from mmssl.serving.index import ExactIndex, build_index


def clustered(n_items=4000, n_queries=200, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    items = centres[rng.integers(40, size=n_items)] + 0.5 * rng.standard_normal((n_items, dim))
    queries = centres[rng.integers(40, size=n_queries)] + 0.5 * rng.standard_normal((n_queries, dim))
    exclude = [rng.choice(n_items, size=rng.integers(0, 30), replace=False) for _ in range(n_queries)]
    return items.astype(np.float32), queries.astype(np.float32), exclude


def brute(items, queries, k, exclude):
    out = []
    for q, ex in zip(queries, exclude):
        s = items @ q
        s[ex] = -np.inf
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        out.append(order)
    return out


def test_exact_index_equals_brute_force_and_leaves_out_excluded_items():
    items, queries, exclude = clustered()
    index = ExactIndex(items)
    found = index.search(queries, 20, exclude)
    for q, (ids, scores), ref in zip(queries, found, brute(items, queries, 20, exclude)):
        assert ids.tolist() == ref.tolist()
        np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5)


def test_exact_index_returns_added_items_and_fewer_when_everything_is_excluded():
    items, queries, _ = clustered(n_items=50, n_queries=3)
    index = ExactIndex(items)
    best = queries[0] * 100
    index.add(best[None, :])
    index.add(np.zeros((5, items.shape[1]), np.float32))
    assert len(index) == 56
    ids, _ = index.search(queries[:1], 3)[0]
    assert ids[0] == 50
    ids, _ = index.search(queries[:1], 10, [np.arange(52)])[0]
    assert len(ids) == 4 and set(ids) <= set(range(52, 56))


@pytest.mark.parametrize("kind", ["faiss", "faiss-hnsw"])
def test_faiss_finds_nearly_the_exact_items_and_never_a_seen_one(kind):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed: pip install 'mmssl[serve]'")
    items, queries, exclude = clustered()
    index, note = build_index(items, kind, nprobe=16)
    assert index.kind.startswith("faiss") and "4000 items" in note
    found = index.search(queries, 20, exclude)
    truth = ExactIndex(items).search(queries, 20, exclude)
    recall = np.mean([len(set(a[0]) & set(b[0])) / 20 for a, b in zip(found, truth)])
    assert recall >= 0.95
    assert all(not set(a[0]) & set(ex) for a, ex in zip(found, exclude))
    index.add(queries[:1] * 100)
    assert index.search(queries[:1], 5)[0][0][0] == len(items)


def test_auto_chooses_exact_below_the_threshold_and_faiss_above():
    items, _, _ = clustered(n_items=500)
    index, note = build_index(items, "auto", faiss_above=1000)
    assert index.kind == "exact" and "below 1000 items" in note
    pytest.importorskip("faiss", reason="faiss-cpu is not installed: pip install 'mmssl[serve]'")
    index, note = build_index(items, "auto", faiss_above=100)
    assert index.kind == "faiss-ivf" and "500 >= 100 items" in note
    with pytest.raises(ConfigError, match="expected one of"):
        build_index(items, "annoy")
