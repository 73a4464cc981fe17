"""One interaction table: a ``.csv``, ``.tsv`` / ``.tab`` / ``.txt`` or ``.parquet`` file, or a
pandas DataFrame (:meth:`mmssl.data.dataset.Dataset.from_frame`).

Columns are named by the options (default ``user_id`` and ``item_id``; time, rating and split
only when named). Ids are re-indexed in ascending original-id order (numeric when every id is an
integer). The split comes from a split column or from a split spec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import Dataset, check_item_table, check_modality_name
from mmssl.data.pipeline import ImportOptions, RawInteractions, finish
from mmssl.data.readers.common import read_token_table, reject
from mmssl.data.table import Table
from mmssl.errors import DataError


def read_csv(src: Path, opts: ImportOptions) -> RawInteractions:
    """Read the table file ``src``."""
    if src.is_dir():
        raise DataError(
            f"{src}: --format csv reads one file (.csv, .tsv, .parquet), not a directory"
        )
    reject(opts, "csv", ("name",))
    return read_token_table(Table.read(src), opts, src_dir=src.parent, schema_known=False)


def dataset_from_frame(
    interactions: pd.DataFrame,
    *,
    features: dict | None = None,
    items: pd.DataFrame | None = None,
    split: str | None = None,
    seed: int = 2022,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = None,
    split_col: str | None = None,
    rating_col: str | None = None,
    threshold: float | None = None,
    kcore: int | None = None,
    dedup: str = "first",
) -> Dataset:
    """The csv import fed from memory; see :meth:`Dataset.from_frame` for the arguments."""
    opts = ImportOptions(
        split=split, seed=seed, kcore=kcore, dedup=dedup, feature_id_col=item_col,
        user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col,
        split_col=split_col, threshold=threshold,
    )
    if features is not None and not isinstance(features, dict):
        raise DataError(f"features: expected a dict of name -> array, got {type(features).__name__}")
    for name in features or {}:
        check_modality_name(name, "features")
    table = Table.from_frame(interactions, "interactions")
    raw = read_token_table(table, opts, src_dir=None, schema_known=False, features=features or {})
    ds = finish("frame", "DataFrame", raw, opts)
    if items is not None:
        ds.item_table = align_items(items, item_col, ds.item_ids)
        check_item_table(ds.item_table, ds.item_ids, "items")
    return ds


def align_items(items: pd.DataFrame, item_col: str, item_ids: np.ndarray) -> pd.DataFrame:
    """``items`` as strings, one row per entry of ``item_ids`` in that order, its id column
    renamed ``item_id``; items without a row get empty cells, rows of unknown items are
    dropped. DataError for a missing id column or an item with two rows."""
    table = Table.from_frame(items, "items")
    ids = table.column(item_col, "item_col").astype(str).str.strip()
    dup = ids.duplicated().to_numpy()
    if dup.any():
        pos = int(np.argmax(dup))
        raise DataError(f"items: {table.loc(pos)}: item {ids.iloc[pos]!r} has more than one row")
    others = [c for c in items.columns if c != item_col]
    if "item_id" in others:
        raise DataError(f"items: has both {item_col!r} and 'item_id' columns")
    rows = pd.Index(ids.to_numpy(dtype=str)).get_indexer(np.asarray(item_ids, dtype=str))
    strings = table.strings()
    out = pd.DataFrame({"item_id": np.asarray(item_ids, dtype=str)})
    for c in others:
        values = np.append(strings[c].to_numpy(dtype=str), "")  # the last: items without a row
        out[str(c)] = values[np.where(rows >= 0, rows, len(values) - 1)]
    return out
