"""The one canonical on-disk layout of a :class:`~mmssl.data.dataset.Dataset`.

Layout of a dataset directory (written by :func:`save_dataset`, read by :func:`load_dataset`)::

    dataset.json        counts, modalities and dims, split protocol and seed, checksums
    interactions.tsv    header ``user  item  split  [timestamp]``; indices, split in {train,valid,test}
    user_ids.txt        original user id of index 0, 1, ... (one per line)
    item_ids.txt        original item id of index 0, 1, ...
    features/NAME.npy   float32 (n_items, dim), one row per item in index order
    items.tsv           optional: ``item_id`` and other item columns (titles, ...), one row per
                        item in index order, tab-separated, read literally

The directory is written whole or not at all (:func:`mmssl.io.atomic_directory`). Datasets saved
before ``items.tsv`` existed load as they are.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import SPLITS, Dataset, check_modality_name
from mmssl.errors import DataError
from mmssl.io import atomic_directory, json_default

FORMAT_VERSION = 1
MAX_INDEX_DIGITS = 18  # int64 holds every 18-digit number


def check_destination(dest: str | os.PathLike, overwrite: bool, what: str = "dataset") -> Path:
    """Fail early, before any work, when ``dest`` cannot become a folder.

    DataError in one line when ``dest`` is a file, sits under a file, or exists and not
    ``overwrite``. Nothing is created.
    """
    dest = Path(dest)
    for parent in reversed(dest.parents):
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{dest}: cannot write the {what} folder: {parent} is a file")
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: is a file, not a folder (the {what} is a folder)")
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: destination exists (use --overwrite to replace it)")
    return dest




def exists_error(dest: Path) -> DataError:
    """The error for an existing destination without ``--overwrite``."""
    return DataError(f"{dest}: destination exists (use --overwrite to replace it)")


# ---------------------------------------------------------------------- writing
def save_dataset(ds: Dataset, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ds`` to the directory ``dest`` atomically; sets ``ds.path``. Returns ``dest``.

    DataError when ``dest`` exists and not ``overwrite`` (or is a file); WriteError in one line
    when the disk is full or the folder cannot be written, with nothing left behind.
    """
    dest = check_destination(dest, overwrite)
    for name in ds.features:
        check_modality_name(name, f"{dest}: features")
    with atomic_directory(dest, overwrite, exists_error=exists_error) as tmp:
        cols = {"user": ds.users, "item": ds.items, "split": np.array(SPLITS)[ds.split]}
        if ds.timestamps is not None:
            cols["timestamp"] = ds.timestamps
        pd.DataFrame(cols).to_csv(tmp / "interactions.tsv", sep="\t", index=False)
        _write_lines(tmp / "user_ids.txt", ds.user_ids)
        _write_lines(tmp / "item_ids.txt", ds.item_ids)
        (tmp / "features").mkdir()
        for name, f in ds.features.items():
            np.save(tmp / "features" / f"{name}.npy", np.ascontiguousarray(f, dtype=np.float32))
        if ds.item_table is not None:
            ds.item_table.astype(str).to_csv(
                tmp / "items.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE
            )
        meta = {
            "format_version": FORMAT_VERSION,
            "users": ds.n_users,
            "items": ds.n_items,
            "interactions": {s: ds.split_size(s) for s in SPLITS},
            "modalities": ds.modalities,
            "has_timestamps": ds.timestamps is not None,
            "has_item_table": ds.item_table is not None,
            "info": ds.info,
            "checksums": ds.checksums(),
        }
        text = json.dumps(meta, indent=2, default=json_default) + "\n"
        (tmp / "dataset.json").write_text(text, encoding="utf-8")
    ds.path = dest.resolve()
    return dest


# ---------------------------------------------------------------------- reading
def load_dataset(path: str | os.PathLike, mmap: bool = True) -> Dataset:
    """Read a dataset directory written by :func:`save_dataset`; features are memory-mapped.

    Every problem is a one-line DataError naming the file (and the line of
    ``interactions.tsv``). The dataset's ``path`` is the resolved directory.
    """
    path = Path(path)
    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing (is {path} a dataset made by 'mmssl data import'?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}: line {e.lineno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError:
        raise DataError(f"{meta_path}: not UTF-8 text") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: expected a JSON object")
    modalities = meta.get("modalities", {})
    if not isinstance(modalities, dict):
        raise DataError(f"{meta_path}: 'modalities' must be an object of name -> width")
    for name in modalities:
        check_modality_name(name, f"{meta_path}: modalities")
    user_ids = _read_lines(path / "user_ids.txt")
    item_ids = _read_lines(path / "item_ids.txt")
    inter_path = path / "interactions.tsv"
    users, items, split, timestamps = _read_interactions(inter_path, len(user_ids), len(item_ids))
    features = {}
    for name in modalities:
        fpath = path / "features" / f"{name}.npy"
        try:
            features[name] = np.load(fpath, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{fpath}: missing") from None
        except (ValueError, OSError) as e:
            raise DataError(f"{fpath}: unreadable .npy: {e}") from None
        if features[name].dtype != np.float32:
            raise DataError(f"{fpath}: dtype {features[name].dtype}, expected float32")
        if features[name].ndim != 2 or features[name].shape[0] != len(item_ids):
            raise DataError(
                f"{fpath}: shape {features[name].shape}, expected ({len(item_ids)}, dim): one "
                "row per line of item_ids.txt"
            )
    items_path = path / "items.tsv"
    item_table = _read_item_table(items_path) if items_path.is_file() else None
    info = meta.get("info", {})
    ds = Dataset(
        users=users,
        items=items,
        split=split,
        user_ids=user_ids,
        item_ids=item_ids,
        features=features,
        timestamps=timestamps,
        info=info if isinstance(info, dict) else {},
        item_table=item_table,
        path=path.resolve(),
    )
    expected = meta.get("checksums", {})
    actual = ds.split_checksums() if expected else {}
    for key in (f"split:{s}" for s in SPLITS):
        if key in expected and expected[key] != actual[key]:
            raise DataError(f"{inter_path}: checksum of {key} differs from dataset.json")
    return ds


def _read_interactions(
    path: Path, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """users, items (int64), split (int8) and timestamps (float64 or None), each (n,)."""
    try:
        df = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, skip_blank_lines=False,
            quoting=csv.QUOTE_NONE,
        ).fillna("")
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed: {str(e).splitlines()[0]}") from None
    for col in ("user", "item", "split"):
        if col not in df.columns:
            raise DataError(f"{path}: missing column {col!r}")
    users = _index_column(df["user"], path, "user", n_users, "user_ids.txt")
    items = _index_column(df["item"], path, "item", n_items, "item_ids.txt")
    codes = pd.Index(SPLITS).get_indexer(df["split"])  # -1: not a split name
    if (codes < 0).any():
        line = int(np.argmax(codes < 0)) + 2
        value = df["split"].iloc[line - 2]
        raise DataError(f"{path}: line {line}: split {value!r} must be train, valid or test")
    timestamps = None
    if "timestamp" in df.columns:
        s = df["timestamp"]
        try:  # float() per value: exactly what to_csv wrote
            timestamps = s.astype(np.float64).to_numpy()
        except ValueError:
            timestamps = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(timestamps)
        if bad.any():
            line = int(np.argmax(bad)) + 2
            raise DataError(f"{path}: line {line}: timestamp {s.iloc[line - 2]!r} is not a number")
    return users, items, codes.astype(np.int8), timestamps


def _index_column(s: pd.Series, path: Path, col: str, n: int, ids_file: str) -> np.ndarray:
    """An index column, int64 (n_rows,), each in [0, n); DataError naming the line and value."""
    ok = s.str.fullmatch(f"[0-9]{{1,{MAX_INDEX_DIGITS}}}").to_numpy(dtype=bool)
    if not ok.all():
        pos = int(np.argmin(ok))
        value = s.iloc[pos]
        if re.fullmatch(r"-[0-9]+", value):
            what = "negative"
        elif re.fullmatch(r"[0-9]+", value):
            what = "too large"
        else:
            what = "not an integer"
        raise DataError(
            f"{path}: line {pos + 2}: {col} index {value!r} is {what} "
            f"(expected 0 to {n - 1}, one per line of {ids_file})"
        )
    values = s.to_numpy(dtype=np.int64)
    out = values >= n
    if out.any():
        pos = int(np.argmax(out))
        raise DataError(
            f"{path}: line {pos + 2}: {col} index {values[pos]} out of range [0, {n}) "
            f"({ids_file} has {n} ids)"
        )
    return values


def _read_item_table(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed: {str(e).splitlines()[0]}") from None
    if "item_id" not in df.columns:
        raise DataError(f"{path}: missing column 'item_id'")
    return df


def _write_lines(path: Path, values: np.ndarray) -> None:
    path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")


def _read_lines(path: Path) -> np.ndarray:
    try:
        # split on "\n" only: str.splitlines() also breaks at \x85, \u2028, ... inside an id
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    if lines[-1] == "":
        lines.pop()
    return np.array(lines, dtype=str)




__all__ = [
    "FORMAT_VERSION",
    "check_destination",
    "exists_error",
    "load_dataset",
    "save_dataset",
]
