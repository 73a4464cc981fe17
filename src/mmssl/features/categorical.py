"""Categorical and knowledge-graph features: multi-hot -> TF-IDF -> truncated SVD.

Each item is a set of attributes (column values such as ``genre=Comedy``, or its neighbours in a
knowledge graph). Attributes held by fewer than ``min_items`` items are dropped. The multi-hot
matrix ``X`` (n_items, n_attributes) is weighted by ``idf = ln(n_items / (1 + df))``, where
``df`` is the number of items holding the attribute (no row normalisation), then reduced to
``dim`` columns by a seeded randomized truncated SVD (Halko, Martinsson and Tropp 2011; the same
algorithm, defaults and sign convention as scikit-learn's ``TruncatedSVD``), returning ``X V``.
Items without attributes get zero rows.

The ml100k recipe (:func:`kg_features`): from RecBole's ``ml-100k.kg`` (``head_id``,
``relation_id``, ``tail_id``) and ``ml-100k.link`` (``item_id``, ``entity_id``), a film's
attributes are its graph neighbours in both directions keyed by (relation, entity); kept when
shared by >= 2 films; dim 64, seed 2022. This reproduces the shared ml100k-mm ``kg_feat.npy``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from mmssl.errors import DataError
from mmssl.features.io import FeatureMatrix, column, package_versions, read_table

DEFAULT_DIM = 64
DEFAULT_MIN_ITEMS = 2
DEFAULT_SEED = 2022
SVD_ITERATIONS = 5  # power iterations, scikit-learn TruncatedSVD's default
SVD_OVERSAMPLES = 10  # extra random directions, scikit-learn's default


# ------------------------------------------------------------------------------ math
def multi_hot(
    item_ids: np.ndarray, pair_items: np.ndarray, pair_attributes: np.ndarray, min_items: int = 1
) -> tuple[sp.csr_matrix, np.ndarray]:
    """0/1 float64 CSR (n_items, n_attributes) from (item, attribute) pairs.

    Pairs of items not in ``item_ids`` are ignored; attributes are sorted and kept when held
    by at least ``min_items`` items. Returns the matrix and the attribute names.
    """
    item_ids = np.asarray(item_ids, dtype=str)
    rows = pd.Index(item_ids).get_indexer(pd.Index(np.asarray(pair_items, dtype=str)))
    pairs = pd.DataFrame({"row": rows, "attr": np.asarray(pair_attributes, dtype=str)})
    pairs = pairs[pairs["row"] >= 0].drop_duplicates()
    counts = pairs["attr"].value_counts()
    kept = np.sort(counts.index[counts >= min_items].to_numpy(dtype=str))
    pairs = pairs[pairs["attr"].isin(kept)]
    cols = pd.Index(kept).get_indexer(pairs["attr"])
    X = sp.csr_matrix(
        (np.ones(len(pairs)), (pairs["row"].to_numpy(), cols)), shape=(len(item_ids), len(kept))
    )
    return X, kept


def tfidf(X: sp.spmatrix) -> sp.csr_matrix:
    """``X * ln(n_rows / (1 + df))`` column-wise, df = rows with a nonzero in the column."""
    X = sp.csr_matrix(X, dtype=np.float64)
    df = np.bincount(X.indices, minlength=X.shape[1])
    idf = np.log(X.shape[0] / (1.0 + df))
    return sp.csr_matrix(X @ sp.diags(idf))


def _svd_flip_rows(u: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make the largest-magnitude entry of each row of ``vt`` positive (scikit-learn's rule)."""
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    return u * signs, vt * signs[:, None]


def randomized_svd(
    X: sp.spmatrix | np.ndarray,
    dim: int,
    seed: int = DEFAULT_SEED,
    n_iter: int = SVD_ITERATIONS,
    n_oversamples: int = SVD_OVERSAMPLES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top-``dim`` SVD ``X ~ U diag(s) Vt`` (randomized range finder, LU-normalised
    power iterations, a ``RandomState(seed)`` Gaussian test matrix).

    Returns ``U`` (n, dim), ``s`` (dim,), ``Vt`` (dim, m), signs fixed on the rows of ``Vt``.
    """
    rng = np.random.RandomState(seed)
    transpose = X.shape[0] < X.shape[1]
    A = X.T if transpose else X
    Q = rng.normal(size=(A.shape[1], dim + n_oversamples))
    for _ in range(n_iter):
        Q, _ = scipy.linalg.lu(A @ Q, permute_l=True, check_finite=False)
        Q, _ = scipy.linalg.lu(A.T @ Q, permute_l=True, check_finite=False)
    Q, _ = scipy.linalg.qr(A @ Q, mode="economic", check_finite=False)
    B = np.asarray((A.T @ Q).T)
    u_hat, s, vt = scipy.linalg.svd(B, full_matrices=False, lapack_driver="gesdd")
    U = Q @ u_hat
    if transpose:
        U, vt = vt.T, U.T
    U, vt = U[:, :dim], vt[:dim]
    U, vt = _svd_flip_rows(U, vt)
    return U, s[:dim], vt


def reduce_dimension(X: sp.spmatrix, dim: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Truncated SVD projection ``X V``, float32 (n_rows, dim); DataError if ``dim`` is too big."""
    if dim < 1:
        raise DataError(f"--dim {dim}: must be positive")
    if dim > min(X.shape):
        raise DataError(
            f"--dim {dim}: only {X.shape[1]} attributes kept for {X.shape[0]} items; "
            f"choose --dim <= {min(X.shape)} (or lower --min-items)"
        )
    _, _, vt = randomized_svd(X, dim, seed=seed)
    return np.asarray(X @ vt.T, dtype=np.float32)


def _reduce(
    item_ids: np.ndarray, pair_items, pair_attrs, dim: int, min_items: int, seed: int
) -> tuple[np.ndarray, int]:
    X, attrs = multi_hot(item_ids, pair_items, pair_attrs, min_items=min_items)
    return reduce_dimension(tfidf(X), dim, seed=seed), len(attrs)


# ----------------------------------------------------------------------- categorical
def categorical_features(
    items: str | os.PathLike | pd.DataFrame,
    item_ids: np.ndarray,
    columns: list[str],
    *,
    id_col: str = "item_id",
    sep: str | None = None,
    dim: int = DEFAULT_DIM,
    min_items: int = DEFAULT_MIN_ITEMS,
    seed: int = DEFAULT_SEED,
) -> FeatureMatrix:
    """Multi-hot of the values of ``columns`` (each cell split on ``sep``, default whitespace),
    TF-IDF, truncated SVD to ``dim``: float32 (n_items, dim) in ``item_ids`` order.
    """
    where = str(items) if not isinstance(items, pd.DataFrame) else "items table"
    table = items if isinstance(items, pd.DataFrame) else read_table(items)
    if not columns:
        raise DataError(f"{where}: --columns names no column")
    ids = column(table, id_col, where, "--id-col").astype(str).str.strip()
    pair_items, pair_attrs = [], []
    for name in columns:
        cells = column(table, name, where, "--columns").astype(str)
        values = cells.str.split(sep) if sep is not None else cells.str.split()
        exploded = pd.DataFrame({"item": ids, "value": values}).explode("value")
        exploded["value"] = exploded["value"].fillna("").str.strip()
        exploded = exploded[exploded["value"] != ""]
        pair_items.append(exploded["item"].to_numpy(dtype=str))
        pair_attrs.append((name + "=" + exploded["value"]).to_numpy(dtype=str))
    item_ids = np.asarray(item_ids, dtype=str)
    values, n_attrs = _reduce(
        item_ids, np.concatenate(pair_items), np.concatenate(pair_attrs), dim, min_items, seed
    )
    zero = ~values.any(axis=1)
    return FeatureMatrix(
        values=values,
        item_ids=item_ids,
        missing=[str(i) for i in item_ids[zero]],
        encoder=f"multi-hot-tfidf-svd:{dim}",
        info={
            "modality": "categorical",
            "columns": list(columns),
            "attributes_kept": n_attrs,
            "min_items": min_items,
            "seed": seed,
            "versions": package_versions("numpy", "scipy"),
        },
    )


# --------------------------------------------------------------------- knowledge graph
def _read_atomic(path: str | os.PathLike, needed: tuple[str, ...]) -> pd.DataFrame:
    table = read_table(path)
    for name in needed:
        column(table, name, str(path), "RecBole header")
    return table[list(needed)].apply(lambda s: s.str.strip())


def kg_features(
    kg: str | os.PathLike,
    link: str | os.PathLike,
    item_ids: np.ndarray,
    *,
    dim: int = DEFAULT_DIM,
    min_items: int = DEFAULT_MIN_ITEMS,
    directed: bool = False,
    seed: int = DEFAULT_SEED,
) -> FeatureMatrix:
    """Knowledge-graph features of items linked to entities: float32 (n_items, dim).

    Args:
        kg: triples file with columns ``head_id``, ``relation_id``, ``tail_id`` (RecBole
            ``.kg``; typed headers allowed).
        link: ``item_id``, ``entity_id`` (RecBole ``.link``).
        item_ids: original item ids in output row order.
        directed: key neighbours by (relation, entity, direction) instead of (relation, entity).
    Zero rows: items without a link, and linked items none of whose neighbours is kept; both
    are listed as missing and counted apart in the sidecar.
    """
    triples = _read_atomic(kg, ("head_id", "relation_id", "tail_id"))
    links = _read_atomic(link, ("item_id", "entity_id"))
    item_ids = np.asarray(item_ids, dtype=str)
    out = triples.merge(links, left_on="head_id", right_on="entity_id")
    inn = triples.merge(links, left_on="tail_id", right_on="entity_id")
    out_keys = out["relation_id"] + "\t" + out["tail_id"] + ("\t>" if directed else "")
    in_keys = inn["relation_id"] + "\t" + inn["head_id"] + ("\t<" if directed else "")
    values, n_attrs = _reduce(
        item_ids,
        np.concatenate([out["item_id"].to_numpy(dtype=str), inn["item_id"].to_numpy(dtype=str)]),
        np.concatenate([out_keys.to_numpy(dtype=str), in_keys.to_numpy(dtype=str)]),
        dim,
        min_items,
        seed,
    )
    linked = np.isin(item_ids, links["item_id"].to_numpy(dtype=str))
    zero = ~values.any(axis=1)
    return FeatureMatrix(
        values=values,
        item_ids=item_ids,
        missing=[str(i) for i in item_ids[zero]],
        encoder=f"kg-multi-hot-tfidf-svd:{dim}",
        info={
            "modality": "kg",
            "kg": str(kg),
            "link": str(link),
            "attributes_kept": n_attrs,
            "min_items": min_items,
            "directed": directed,
            "seed": seed,
            "items_without_link": int((~linked).sum()),
            "linked_items_without_kept_neighbours": int((zero & linked).sum()),
            "versions": package_versions("numpy", "scipy"),
        },
    )
