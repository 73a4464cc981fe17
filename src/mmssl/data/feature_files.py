"""Item features handed to an importer: ``.npy`` files, tables keyed by item id, or arrays.

- an ``.npy`` file (or, in memory, an array): one row per item of the source's item id space,
  before any filtering (mmssl/mmrec: item index order; recbole/csv/DataFrame: the source's item
  ids in ascending order); rows of dropped items are dropped later with them;
- a table (``.csv``, ``.tsv``, ``.parquet``; in memory, a DataFrame or ``(ids, array)``): an
  item-id column and numeric columns forming the vector; items without a row get zeros, rows of
  unknown items are ignored; both are counted in the notes.

Features become float32 and must be finite. ``np.load`` never unpickles.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import check_features
from mmssl.data.table import Table, first_line
from mmssl.errors import DataError


def resolve(path_text: str, base: Path | None) -> Path:
    """A feature path: absolute as given; relative, in ``base`` first, then the working folder."""
    path = Path(path_text).expanduser()
    if path.is_absolute() or base is None:
        return path
    if (base / path).exists() or not path.exists():
        return base / path
    return path


def load_npy(path: Path) -> np.ndarray:
    """A 2-d numeric ``.npy`` as finite float32 (rows, dim); DataError naming the problem."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise DataError(f"{path}: unreadable .npy: not a NumPy array file (bad header)")
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an .npy file") from None
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable .npy: {first_line(e)}") from None
    return as_feature_array(f, str(path))


def as_feature_array(f, where: str) -> np.ndarray:
    """A numeric 2-d array as finite float32 (rows, dim); DataError naming ``where``."""
    if not isinstance(f, np.ndarray):
        raise DataError(f"{where}: expected one array, found {type(f).__name__}")
    if f.dtype.kind not in "fiub":
        raise DataError(f"{where}: dtype {f.dtype} is not numeric")
    if f.ndim != 2:
        raise DataError(f"{where}: expected a 2-d array (items x dim), got shape {f.shape}")
    with np.errstate(over="ignore"):
        f32 = np.ascontiguousarray(f, dtype=np.float32)
    if f32.shape[1] > 0 and not np.isfinite(f32).all():
        bad = int(np.argwhere(~np.isfinite(f32))[0][0])
        raise DataError(f"{where}: NaN or infinite value in row {bad} (as float32)")
    return f32


def table_features(
    name: str,
    table: Table,
    item_ids: np.ndarray,
    id_col: str,
    notes: list[str],
    label: str | None = None,
) -> np.ndarray:
    """Rows of ``table`` keyed by item id -> float32 (len(item_ids), dim); zeros for items
    without a row. DataError for a missing id column, non-numeric or non-finite values and
    repeated items, naming the line. ``label`` names the table in notes (default its
    ``where``)."""
    df, where = table.df, table.where
    if id_col not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise DataError(
            f"{where}: missing column {id_col!r} (columns: {cols}; see --feature-id-col)"
        )
    ids = table.column(id_col, "--feature-id-col").astype(str).str.strip().to_numpy(dtype=str)
    value_cols = [c for c in df.columns if c != id_col]
    if not value_cols:
        raise DataError(f"{where}: no feature columns besides {id_col!r}")
    columns = []
    for c in value_cols:
        try:  # float() per cell: "1.5", "1e3", "nan", "inf" (the last two are refused below)
            columns.append(df[c].astype(np.float64).to_numpy())
        except (TypeError, ValueError):
            numeric = pd.to_numeric(df[c], errors="coerce")
            bad = (numeric.isna() & df[c].notna()).to_numpy()
            pos = int(np.argmax(bad)) if bad.any() else 0
            raise DataError(
                f"{where}: {table.loc(pos)}: column {c!r} is not numeric ({df[c].iloc[pos]!r})"
            ) from None
    with np.errstate(over="ignore"):
        values = np.stack(columns, axis=1).astype(np.float32)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        pos = int(np.argmin(finite))
        raise DataError(f"{where}: {table.loc(pos)}: missing, NaN or infinite feature value")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[int(np.argmax(counts > 1))]
        pos = int(np.argmax(ids == dup))
        raise DataError(f"{where}: {table.loc(pos)}: item {str(dup)!r} has more than one row")
    row_of = pd.Index(ids).get_indexer(item_ids)
    out = np.zeros((len(item_ids), len(value_cols)), dtype=np.float32)
    have = row_of >= 0
    out[have] = values[row_of[have]]
    missing = int((~have).sum())
    unknown = int(len(ids) - have.sum())
    label = label or where
    if missing:
        notes.append(f"{name}: {missing} items without a row in {label} got zeros")
    if unknown:
        notes.append(f"{name}: {unknown} rows of {label} name unknown items (ignored)")
    return out


def dense_features(
    src_dir: Path, specs: dict[str, str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The ``.npy`` features of a dense layout, which fix n_items (every ``*_feat.npy`` of the
    folder unless ``specs`` names some). Returns (arrays, name -> resolved path of every
    feature); tables are loaded later by :func:`align_dense_features`."""
    specs = dict(specs)
    if not specs:
        for p in sorted(src_dir.glob("*_feat.npy")):
            specs[p.name[: -len("_feat.npy")]] = p.name
    arrays, paths = {}, {}
    for name, text in specs.items():
        path = resolve(text, src_dir)
        paths[name] = str(path.resolve())
        if path.suffix.lower() == ".npy":
            arrays[name] = load_npy(path)
    return arrays, paths


def align_dense_features(
    arrays: dict[str, np.ndarray],
    paths: dict[str, str],
    id_col: str,
    item_ids: np.ndarray,
    notes: list[str],
) -> dict[str, np.ndarray]:
    """All features of a dense layout, float32 (n_items, dim): the .npy ones checked against
    ``len(item_ids)``, the tables read and aligned."""
    out = {}
    for name, path in paths.items():
        if name in arrays:
            check_features(arrays[name], len(item_ids), path)
            out[name] = arrays[name]
        else:
            table = Table.read(path)
            out[name] = table_features(name, table, item_ids, id_col, notes, Path(path).name)
    return out


def token_features(
    specs: dict[str, object],
    src_dir: Path | None,
    item_ids: np.ndarray,
    id_col: str,
    notes: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Features of a token source (recbole, csv, DataFrame), float32 (len(item_ids), dim).

    ``specs``: name -> a path (``.npy`` rows follow ``item_ids``, the sorted source ids; else a
    table), an array (rows follow ``item_ids``), a DataFrame keyed by ``id_col``, or
    ``(ids, array)``. Returns (features, name -> where each came from).
    """
    out, where = {}, {}
    for name, spec in specs.items():
        if isinstance(spec, (str, os.PathLike)):
            path = resolve(str(spec), src_dir)
            where[name] = str(path.resolve())
            if path.suffix.lower() == ".npy":
                f = load_npy(path)
                _check_rows(f, item_ids, str(path))
                out[name] = f
            else:
                table = Table.read(path)
                out[name] = table_features(name, table, item_ids, id_col, notes, path.name)
        elif isinstance(spec, pd.DataFrame):
            where[name] = f"DataFrame {spec.shape}"
            table = Table.from_frame(spec, f"features[{name!r}]")
            out[name] = table_features(name, table, item_ids, id_col, notes)
        elif isinstance(spec, tuple):
            table = _pairs_table(name, spec, id_col)
            where[name] = f"(ids, array) ({len(table.df)}, {table.df.shape[1] - 1})"
            out[name] = table_features(name, table, item_ids, id_col, notes)
        elif isinstance(spec, np.ndarray):
            f = as_feature_array(spec, f"features[{name!r}]")
            _check_rows(f, item_ids, f"features[{name!r}]")
            where[name] = f"array {f.shape}"
            out[name] = f
        else:
            raise DataError(
                f"features[{name!r}]: expected a path, an array, a DataFrame or (ids, array), "
                f"got {type(spec).__name__}"
            )
    return out, where


def _check_rows(f: np.ndarray, item_ids: np.ndarray, where: str) -> None:
    if f.shape[0] != len(item_ids):
        raise DataError(
            f"{where}: {f.shape[0]} rows but the source has {len(item_ids)} items "
            "(one row per item id, ascending)"
        )
    check_features(f, len(item_ids), where)


def _pairs_table(name: str, spec: tuple, id_col: str) -> Table:
    where = f"features[{name!r}]"
    if len(spec) != 2:
        raise DataError(f"{where}: expected (ids, array), got a tuple of {len(spec)}")
    ids = np.asarray(spec[0])
    values = as_feature_array(np.asarray(spec[1]), where)
    if ids.ndim != 1 or len(ids) != len(values):
        raise DataError(
            f"{where}: {ids.size} ids for {len(values)} rows: (ids, array) needs one id per row"
        )
    df = pd.DataFrame(values, columns=[f"v{k}" for k in range(values.shape[1])])
    df.insert(0, id_col, ids.astype(str))
    return Table.from_frame(df, where)


__all__ = [
    "align_dense_features",
    "as_feature_array",
    "dense_features",
    "load_npy",
    "resolve",
    "table_features",
    "token_features",
]
