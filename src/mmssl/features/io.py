"""Reading item tables and id lists, and writing feature matrices with their JSON sidecar.

A feature file is a float32 ``.npy`` of shape ``(n_items, dim)``, one row per item in the order
of an item-id list (a dataset's ``item_ids.txt``), and beside it ``NAME.json``::

    {"format_version": 1, "encoder": "...", "versions": {...}, "items": 1682, "dim": 384,
     "missing": 3, "missing_items": ["267", ...], ...extractor details}

Rows of items whose content is missing or unreadable are all zero and listed as missing.
Both files are written atomically (:func:`mmssl.io.atomic_path`). Tables are read by the one
table reader, :class:`mmssl.data.table.Table`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import check_modality_name
from mmssl.data.table import Table
from mmssl.errors import ConfigError, DataError
from mmssl.io import atomic_path, json_default

SIDECAR_VERSION = 1
MAX_LISTED_MISSING = 1000  # the sidecar lists at most this many missing item ids


@dataclass
class FeatureMatrix:
    """Features of one modality, ready to write or to attach to a dataset.

    Attributes:
        values: float32 (n_items, dim), one row per entry of ``item_ids``.
        item_ids: original item ids (str) in row order.
        missing: ids of items whose row is zero because their content is missing or unreadable.
        encoder: what made the features, e.g. ``"sentence-transformers:/path/to/model"``.
        info: extractor details for the sidecar (template, sizes, counts by reason, versions).
    """

    values: np.ndarray
    item_ids: np.ndarray
    missing: list[str]
    encoder: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.ascontiguousarray(self.values, dtype=np.float32)
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        if self.values.ndim != 2 or self.values.shape[0] != len(self.item_ids):
            raise ValueError(
                f"values {self.values.shape} do not match {len(self.item_ids)} item ids"
            )

    @property
    def dim(self) -> int:
        """Feature width (the number of columns of ``values``)."""
        return int(self.values.shape[1])

    def metadata(self) -> dict:
        """The JSON sidecar's content."""
        return {
            "format_version": SIDECAR_VERSION,
            "encoder": self.encoder,
            "items": int(len(self.item_ids)),
            "dim": self.dim,
            "dtype": "float32",
            "missing": len(self.missing),
            "missing_items": list(self.missing[:MAX_LISTED_MISSING]),
            **self.info,
        }


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of ``mmssl`` and the given distributions (absent ones omitted)."""
    out = {}
    for name in ("mmssl", *names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def missing_extra(what: str, extra: str, package: str) -> ConfigError:
    """The error raised when an optional dependency is not installed."""
    return ConfigError(
        f"{what} needs the optional package {package!r}: pip install 'mmssl[{extra}]'"
    )


# ---------------------------------------------------------------------------- writing
def sidecar_path(path: str | os.PathLike) -> Path:
    """``text.npy`` -> ``text.json``."""
    return Path(path).with_suffix(".json")


def write_features(
    features: FeatureMatrix, path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write ``features`` to ``path`` (.npy) and its sidecar, atomically. Returns ``path``.

    Both are written to temporaries first and renamed only when both are complete; a failed
    write (disk full, a folder in the way) is a one-line WriteError with nothing left behind.
    """
    path = Path(path)
    if path.suffix != ".npy":
        raise DataError(f"{path}: the output must be a .npy file")
    meta_path = sidecar_path(path)
    if not overwrite:
        for p in (path, meta_path):
            if p.exists():
                raise DataError(f"{p}: exists (use --overwrite to replace it)")
    text = json.dumps(features.metadata(), indent=2, default=json_default) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, features.values, allow_pickle=False)
        # the sidecar is renamed first; a failure here leaves the .npy unrenamed too
        with atomic_path(meta_path) as meta_tmp:
            meta_tmp.write_text(text, encoding="utf-8")
    return path


def add_to_dataset(
    dataset_dir: str | os.PathLike, name: str, features: FeatureMatrix, overwrite: bool = False
) -> Path:
    """Attach ``features`` as modality ``name`` of a dataset directory, rewriting it atomically.

    The rows must follow the dataset's ``item_ids.txt``; the sidecar goes to
    ``info["feature_sources"][name]`` of ``dataset.json``.
    """
    from mmssl.data.dataset import load_dataset, save_dataset

    check_modality_name(name, "--name")
    ds = load_dataset(dataset_dir, mmap=False)
    if not np.array_equal(ds.item_ids, features.item_ids):
        raise DataError(
            f"{dataset_dir}: the features' item order differs from its item_ids.txt "
            "(extract them with --dataset pointing at the same directory)"
        )
    if name in ds.features and not overwrite:
        raise DataError(f"{dataset_dir}: already has modality {name!r} (use --overwrite)")
    ds.features[name] = features.values
    ds.info.setdefault("feature_sources", {})[name] = features.metadata()
    ds.validate(str(dataset_dir))
    return save_dataset(ds, dataset_dir, overwrite=True)


# ---------------------------------------------------------------------------- reading
def read_item_ids(path: str | os.PathLike) -> np.ndarray:
    """Item ids in row order: a dataset directory's ``item_ids.txt``, or a file of ids.

    Returns a str array; DataError for a missing file, blank or repeated ids.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "item_ids.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing (give a dataset directory or a file of item ids)"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    while lines and not lines[-1].strip():
        lines.pop()
    ids = [line.strip() for line in lines]
    seen: dict[str, int] = {}
    for n, item in enumerate(ids, start=1):
        if not item:
            raise DataError(f"{path}: line {n}: blank item id")
        if item in seen:
            raise DataError(f"{path}: line {n}: item id {item!r} repeats line {seen[item]}")
        seen[item] = n
    if not ids:
        raise DataError(f"{path}: no item ids")
    return np.array(ids, dtype=str)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """An items table as strings (empty cells are ``""``), indexed by ``line - 2``.

    ``.csv`` is comma-separated, ``.tsv``/``.tab``/``.txt``/``.item`` and unknown suffixes
    tab-separated (read literally), ``.parquet`` needs pyarrow. RecBole typed headers
    (``movie_title:token_seq``) lose their type suffix. See :class:`mmssl.data.table.Table`.
    """
    return Table.read(path, default_sep="\t").strings()


def column(df: pd.DataFrame, name: str, where: str, flag: str) -> pd.Series:
    """``df[name]`` or a DataError naming the file, the flag and the columns there are."""
    if name not in df.columns:
        raise DataError(
            f"{where}: no column {name!r} ({flag}; columns: {', '.join(map(str, df.columns))})"
        )
    return df[name]


def row_positions(df: pd.DataFrame, id_col: str, item_ids: np.ndarray, where: str) -> np.ndarray:
    """Row of ``df`` for each item id (-1 when the table has no row for it), int64 (n_items,).

    DataError when an id appears on two rows.
    """
    ids = column(df, id_col, where, "--id-col").astype(str).str.strip()
    dup = ids.duplicated()
    if dup.any():
        first = int(np.argmax(dup.to_numpy()))
        label = ids.index[first]
        line = label + 2 if isinstance(label, (int, np.integer)) else first + 2
        raise DataError(f"{where}: line {line}: item id {ids.iloc[first]!r} appears twice")
    index = pd.Index(ids)
    return index.get_indexer(pd.Index(item_ids)).astype(np.int64)


def find_content_files(
    item_ids: np.ndarray, folder: str | os.PathLike, suffixes: tuple[str, ...]
) -> list[Path | None]:
    """For each item id, the file ``folder/ID.ext`` with one of ``suffixes`` (any case), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory")
    by_stem: dict[str, Path] = {}
    rank = {s: i for i, s in enumerate(suffixes)}
    for p in sorted(folder.iterdir()):
        s = p.suffix.lower()
        if s in rank and p.is_file():
            best = by_stem.get(p.stem)
            if best is None or rank[s] < rank[best.suffix.lower()]:
                by_stem[p.stem] = p
    return [by_stem.get(str(i)) for i in item_ids]


def content_paths(
    item_ids: np.ndarray,
    *,
    folder: str | os.PathLike | None,
    items: str | os.PathLike | None,
    path_col: str | None,
    id_col: str,
    suffixes: tuple[str, ...],
    root: str | os.PathLike | None = None,
) -> list[Path | None]:
    """Content file of each item: from ``folder`` (named by item id) or a path column of a table.

    Relative paths in the table are resolved against ``root`` (default: the table's folder).
    """
    if (folder is None) == (items is None):
        raise DataError("give either a folder of files named by item id or --items with --path-col")
    if folder is not None:
        return find_content_files(item_ids, folder, suffixes)
    if not path_col:
        raise DataError(f"{items}: --path-col is needed to find files through the items table")
    df = read_table(items)
    rows = row_positions(df, id_col, item_ids, str(items))
    paths = column(df, path_col, str(items), "--path-col").astype(str).str.strip().to_numpy()
    base = Path(root) if root is not None else Path(items).parent
    out: list[Path | None] = []
    for r in rows:
        text = paths[r] if r >= 0 else ""
        out.append((base / text) if text else None)
    return out


