"""Generated datasets with planted structure, for tests, examples and speed benchmarks."""

from __future__ import annotations

import numpy as np

from mmssl.data.dataset import Dataset


def planted_dataset(
    n_users: int = 200,
    n_items: int = 120,
    n_interactions: int = 3000,
    n_clusters: int = 4,
    modalities: dict[str, int] | None = None,
    in_cluster: float = 0.9,
    noise: float = 0.5,
    zero_rows: int = 0,
    popularity: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Users and items fall into ``n_clusters`` clusters; a user's interactions are items of its
    own cluster with probability ``in_cluster``; each modality's item features are the cluster's
    random centroid plus Gaussian noise (``noise`` times unit variance), so both the
    interactions and the content carry the planted signal. The first ``zero_rows`` items get
    all-zero rows in the first modality (items without content). ``popularity`` > 0 skews the
in-cluster draws: the j-th item of a cluster is drawn with weight ``(j + 1) ** -popularity``
(Zipf-like, as real catalogues are); 0 draws them uniformly.

    Split per user at random: one interaction to test, one to valid (users with >= 3), the
    rest to train. Duplicate (user, item) pairs are dropped, so the count is approximate.
    """
    rng = np.random.default_rng(seed)
    modalities = {"image": 32, "text": 16} if modalities is None else modalities
    user_cluster = rng.integers(n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    users = rng.integers(n_users, size=n_interactions)
    users[:n_users] = np.arange(n_users)  # every user appears
    same = rng.random(n_interactions) < in_cluster
    # Items of cluster c are c, c + n_clusters, ...; draw one of them, or any item.
    per_cluster = np.bincount(item_cluster, minlength=n_clusters)
    size = per_cluster[user_cluster[users]]
    if popularity > 0:  # inverse CDF of the weights (j + 1) ** -popularity over the cluster's items
        cum = np.cumsum(np.arange(1, per_cluster.max() + 1, dtype=np.float64) ** -popularity)
        pick = np.searchsorted(cum, rng.random(n_interactions) * cum[size - 1], side="right")
        pick = np.minimum(pick, size - 1)
    else:
        pick = (rng.random(n_interactions) * size).astype(np.int64)
    items = np.where(same, user_cluster[users] + pick * n_clusters, rng.integers(n_items, size=n_interactions))
    keys = np.unique(users.astype(np.int64) * n_items + items)
    users, items = keys // n_items, keys % n_items
    order = np.lexsort((rng.random(len(users)), users))
    users, items = users[order], items[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    enough = np.repeat(counts >= 3, counts)
    split = np.where(enough & (rank == 0), 2, np.where(enough & (rank == 1), 1, 0)).astype(np.int8)
    features = {}
    for name, dim in modalities.items():
        centroids = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        f = centroids[item_cluster] + noise * rng.standard_normal((n_items, dim)).astype(np.float32)
        features[name] = f.astype(np.float32)
    if zero_rows and features:
        features[next(iter(features))][:zero_rows] = 0.0
    return Dataset(
        users=users, items=items, split=split,
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        features=features,
        info={"source_format": "generated", "split": "planted", "seed": seed},
    )
