"""``mmssl evaluate --run RUN --cold-items``: the cold-start protocol on a cold-item split.

The run was trained on the warm part of a dataset imported with ``--cold-items FRACTION``
(:mod:`mmssl.data.coldsplit`). The held-out items get vectors from the run's own
``coldstart.npz``, exactly as ``mmssl serve`` would make them, and users' vectors come from
``recommender.npz``. Rows of the report:

- the model's content path (where it has one) and the k-NN fallback (every model);
- ``itemknn-cbf``: the mean cosine similarity of an item to the user's training items, in the
  features alone (a content-only baseline that needs no training);
- ``random``: the expected value of a uniformly random ranking.

Columns: Recall@K and NDCG@K among the held-out items, and among all items
(:mod:`mmssl.evaluation.coldstart`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mmssl.config import read_yaml
from mmssl.errors import DataError

KS = (20,)


def evaluate_cold_items(run: str | os.PathLike, data: str | os.PathLike | None = None,
                        ks=KS, knn: int | None = None) -> dict:
    """Cold-start metrics of a run (module docstring); ``data`` overrides the run's dataset."""
    from mmssl.data.coldsplit import load_cold_items
    from mmssl.data.dataset import load_dataset
    from mmssl.evaluation.coldstart import cold_item_metrics, random_cold_item_metrics
    from mmssl.serving.coldstart import DEFAULT_KNN, ColdStart, content_space
    from mmssl.serving.recommender import Recommender

    run = Path(run)
    rec = Recommender.load(run)
    cold = ColdStart.load(run)
    values = read_yaml(run / "config.yaml")
    path = Path(data or values.get("data") or "")
    if not data and not path.is_absolute():
        path = run / path
    warm = load_dataset(path)
    held = load_cold_items(path)
    if not np.array_equal(warm.item_ids, rec.item_ids) or not np.array_equal(
            held.user_ids, rec.user_ids):
        raise DataError(f"{path}: its items or users differ from the run's {run / 'recommender.npz'}")
    truth = held.matrix("test")
    known = (warm.matrix("train") + warm.matrix("valid") + warm.matrix("test")).tocsr()
    known.data[:] = 1.0
    features = {m: np.asarray(held.features[m], dtype=np.float32) for m in cold.modalities}
    users, items = rec.user_factors, rec.item_factors
    scores_warm = users @ items.T
    model = str(values.get("model", cold.model))
    rows: dict[str, dict] = {}
    if cold.content is not None:
        vectors = cold.item_vectors(features, items, "content")
        rows[f"{model} (content path)"] = cold_item_metrics(users @ vectors.T, scores_warm, truth,
                                                            known, ks)
    k = knn or DEFAULT_KNN
    vectors = cold.knn_vectors(features, items, k, empty="zero")
    rows[f"{model} (k-NN fallback, k={k})"] = cold_item_metrics(users @ vectors.T, scores_warm,
                                                                truth, known, ks)
    # itemknn-cbf: a user's profile is the mean unit vector of their training items
    train = rec.seen.astype(np.float32)
    degree = np.maximum(np.asarray(train.sum(axis=1)).ravel(), 1.0)
    profiles = sp.diags(1.0 / degree) @ train @ cold.knn_features
    rows["itemknn-cbf"] = cold_item_metrics(
        profiles @ content_space(features, list(cold.modalities)).T,
        profiles @ cold.knn_features.T, truth, known, ks)
    rows["random (expected)"] = random_cold_item_metrics(truth, known, ks)
    return {"run": str(run), "model": model, "data": str(path), "ks": list(ks),
            "cold_items": int(held.n_items), "warm_items": int(warm.n_items),
            "users": int(rows["random (expected)"]["held_out"]["users"]),
            "split": held.info.get("cold_items", {}), "rows": rows}


def format_cold_table(result: dict) -> str:
    """The report as a table, one row per ranking, with its ratio to random."""
    k = result["ks"][0]
    split = result.get("split", {})
    head = (f"{result['run']}: {result['cold_items']} held-out items "
            f"({split.get('fraction', '?')} of the items, seed {split.get('seed', '?')}), "
            f"{result['users']} users with interactions on them; {result['warm_items']} warm items")
    cols = [("held_out", "recall"), ("held_out", "ndcg"), ("all_items", "recall"), ("all_items", "ndcg")]
    names = [f"{'held-out' if s == 'held_out' else 'all'} {m.replace('recall', 'R').replace('ndcg', 'N')}@{k}"
             for s, m in cols]
    width = max(len(r) for r in result["rows"]) + 2
    lines = [head, f"{'':<{width}}" + "".join(f"{n:>15}" for n in names) + f"{'x random':>10}"]
    base = result["rows"]["random (expected)"]["held_out"][f"recall@{k}"]
    for label, r in result["rows"].items():
        cells = "".join(f"{r[s][f'{m}@{k}']:>15.4f}" for s, m in cols)
        ratio = r["held_out"][f"recall@{k}"] / base if base else float("nan")
        lines.append(f"{label:<{width}}{cells}{ratio:>10.1f}")
    lines.append(f"x random: held-out Recall@{k} over the random ranking's")
    return "\n".join(lines)
