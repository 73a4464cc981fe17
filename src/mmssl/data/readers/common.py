"""What the readers share: id spaces, the sparse-index guard, ``NAME.inter`` lookup, optional
time and rating columns, and the token-table reader of recbole, csv and DataFrames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import SPLITS
from mmssl.data.feature_files import token_features
from mmssl.data.pipeline import ImportOptions, RawInteractions
from mmssl.data.table import Table
from mmssl.errors import DataError

MIN_INDEX_SPACE = 100_000  # index spaces up to this size are always allowed
MAX_SPARSITY = 10  # beyond that, at most this many indices per distinct id


def index_ids(n: int) -> np.ndarray:
    """``["0", "1", ..., str(n - 1)]``: the ids of a dense layout, str (n,)."""
    return np.arange(n).astype(str)


def index_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Original ids str (n,) -> (sorted unique ids str (k,), int64 codes (n,)).

    Ascending numeric order when every id is an integer, else string order.
    """
    uniq, inverse = np.unique(tokens, return_inverse=True)
    if len(uniq) and pd.Series(uniq).str.fullmatch(r"[+-]?[0-9]+").all():
        try:
            numeric = uniq.astype(np.int64)
        except OverflowError:
            numeric = np.array([int(t) for t in uniq], dtype=object)
            order = np.asarray(sorted(range(len(uniq)), key=lambda k: (numeric[k], uniq[k])))
        else:
            order = np.lexsort((uniq, numeric))
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        return uniq[order], rank[inverse.ravel()]
    return uniq, inverse.ravel().astype(np.int64)


def check_index_space(indices: np.ndarray, what: str, where: str, advice: str) -> int:
    """The size ``max + 1`` of an index space used as it is, refused when far beyond the data.

    Dense layouts (mmssl, mmrec) use ids as indices, so one stray id such as 99999999999999
    would allocate an id list and matrices of that size. Allowed: up to
    ``max(10 * distinct ids, 100000)``. ``where`` names the file and the row of the largest
    index; ``advice`` says how to import the data instead.
    """
    if not len(indices):
        return 0
    size = int(indices.max()) + 1
    distinct = len(np.unique(indices))
    if size > max(MAX_SPARSITY * distinct, MIN_INDEX_SPACE):
        raise DataError(
            f"{where}: {what} index {size - 1} would make an index space of {size} {what}s "
            f"for {distinct} distinct {what}s (this layout uses ids as indices); {advice}"
        )
    return size


def reject(opts: ImportOptions, fmt: str, names: Sequence[str]) -> None:
    """DataError when one of the options ``names`` is set: it does not apply to ``fmt``."""
    for name in names:
        if getattr(opts, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise DataError(f"{flag} does not apply to --format {fmt}")


def find_inter(src: Path, name: str | None, default_name: str | None) -> Path:
    """The ``NAME.inter`` file: SRC itself, ``--name``, the directory's name, or the only one."""
    if src.is_file():
        return src
    if name:
        path = src / (name if name.endswith(".inter") else f"{name}.inter")
        if not path.is_file():
            raise DataError(f"{path}: missing")
        return path
    if default_name and (src / f"{default_name}.inter").is_file():
        return src / f"{default_name}.inter"
    found = sorted(src.glob("*.inter"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{src}: no .inter file found")
    names = ", ".join(p.name for p in found)
    raise DataError(f"{src}: several .inter files ({names}); choose one with --name")


def optional_time_rating(
    table: Table, opts: ImportOptions, auto: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Timestamps and ratings, float64 (n,) or None: the flagged columns, or (``auto``, for the
    known schemas of mmrec and recbole) the ``timestamp`` and ``rating`` columns when present."""
    time_col = opts.time_col or ("timestamp" if auto and "timestamp" in table.columns else None)
    rating_col = opts.rating_col or ("rating" if auto and "rating" in table.columns else None)
    timestamps = table.times(time_col, "--time-col") if time_col else None
    ratings = table.numbers(rating_col, "--rating-col") if rating_col else None
    if opts.threshold is not None and ratings is None:
        raise DataError(f"{table.where}: --threshold needs a rating column (--rating-col)")
    return timestamps, ratings


def read_token_table(
    table: Table,
    opts: ImportOptions,
    src_dir: Path | None,
    schema_known: bool,
    features: dict[str, object] | None = None,
) -> RawInteractions:
    """Interactions of a table with original ids (recbole, csv, DataFrame).

    Ids are stripped of surrounding whitespace (noted when that merges ids) and re-indexed by
    :func:`index_tokens`. ``features`` (name -> path, array, DataFrame or (ids, array)) default
    to ``opts.features``; paths are looked up in ``src_dir`` first.
    """
    user_col = opts.user_col or "user_id"
    item_col = opts.item_col or "item_id"
    notes: list[str] = []
    user_ids, users = index_tokens(table.tokens(user_col, "--user-col", notes))
    item_ids, items = index_tokens(table.tokens(item_col, "--item-col", notes))
    split = None
    split_names = None
    if opts.split_col:
        if opts.split:
            raise DataError(
                f"--split {opts.split}: the split comes from --split-col {opts.split_col}"
            )
        split = table.split_labels(opts.split_col, "--split-col")
        split_names = tuple(f"{table.where}: {opts.split_col} {s}" for s in SPLITS)
    timestamps, ratings = optional_time_rating(table, opts, auto=schema_known)
    specs = opts.feature_paths if features is None else features
    arrays, paths = token_features(specs, src_dir, item_ids, opts.feature_id_col, notes)
    return RawInteractions(
        where=table.where,
        users=users,
        items=items,
        user_ids=user_ids,
        item_ids=item_ids,
        features=arrays,
        feature_paths=paths,
        dense=False,
        split=split,
        split_names=split_names,
        split_source=f"given (column {opts.split_col})",
        timestamps=timestamps,
        ratings=ratings,
        notes=notes,
    )
