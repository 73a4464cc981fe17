"""MMRec's layout: ``NAME.inter`` and ``NAME_feat.npy`` files.

``NAME.inter`` is tab-separated with the header ``userID itemID rating timestamp x_label``
(x_label 0 train, 1 valid, 2 test). Ids are indices, kept as they are; n_items is the row count
of the feature files (or the largest item index + 1 without them). An index space far beyond
the data is refused (:func:`~mmssl.data.readers.common.check_index_space`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmssl.data.dataset import SPLITS
from mmssl.data.feature_files import align_dense_features, dense_features
from mmssl.data.pipeline import ImportOptions, RawInteractions
from mmssl.data.readers.common import (
    check_index_space,
    find_inter,
    index_ids,
    optional_time_rating,
)
from mmssl.data.table import Table
from mmssl.errors import DataError


def read_mmrec(src: Path, opts: ImportOptions) -> RawInteractions:
    """Read MMRec's layout: the folder ``src`` (or its ``.inter`` file)."""
    path = find_inter(src, opts.name, default_name=None)
    if opts.split:
        raise DataError(f"--split {opts.split}: {path} is already split (x_label column)")
    table = Table.read(path)
    user_col = opts.user_col or "userID"
    item_col = opts.item_col or "itemID"
    split_col = opts.split_col or "x_label"
    users = table.dense_ids(user_col, "--user-col")
    items = table.dense_ids(item_col, "--item-col")
    split = table.split_labels(split_col, "--split-col")
    timestamps, ratings = optional_time_rating(table, opts, auto=True)
    arrays, paths = dense_features(path.parent, opts.feature_paths)
    advice = (
        f"import the file with --format csv --user-col {user_col} --item-col {item_col} "
        f"--split-col {split_col}, which re-indexes ids"
    )
    n_items = _item_count(table, arrays, paths, items, item_col, advice)
    top = int(np.argmax(users)) if len(users) else 0
    n_users = check_index_space(
        users, "user", f"{path}: {table.loc(top)}: {user_col} {users[top]}" if len(users) else "",
        advice,
    )
    notes: list[str] = []
    return RawInteractions(
        where=str(path),
        users=users,
        items=items,
        user_ids=index_ids(n_users),
        item_ids=index_ids(n_items),
        features=align_dense_features(arrays, paths, opts.feature_id_col, index_ids(n_items), notes),
        notes=notes,
        feature_paths=paths,
        dense=True,
        split=split,
        split_names=tuple(f"{path}: {split_col} {c} ({s})" for c, s in enumerate(SPLITS)),
        split_source=f"given (mmrec {split_col})",
        timestamps=timestamps,
        ratings=ratings,
    )


def _item_count(table, arrays, paths, items, item_col, advice) -> int:
    """n_items: the rows of the feature files (which must agree), else the largest index + 1."""
    n, first = None, None
    for name, f in arrays.items():
        if n is None:
            n, first = f.shape[0], paths[name]
        elif f.shape[0] != n:
            raise DataError(
                f"{paths[name]}: {f.shape[0]} rows but {first} has {n}: feature files must agree"
            )
    if not len(items):
        return int(n or 0)
    top = int(np.argmax(items))
    if n is None:
        where = f"{table.where}: {table.loc(top)}: {item_col} {items[top]}"
        return check_index_space(items, "item", where, advice)
    if items[top] >= n:
        bad = int(np.argmax(items >= n))
        raise DataError(
            f"{table.where}: {table.loc(bad)}: {item_col} {items[bad]} out of range "
            f"(the feature files have {n} rows)"
        )
    return int(n)
