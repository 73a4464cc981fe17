"""Importers from other layouts into a :class:`Dataset`, and exporters back out.

Import formats (``import_dataset(fmt, src, ...)``):

- ``mmssl``: the MMSSL authors' layout. ``train.json``, ``val.json``, ``test.json`` (user index as a
  string -> list of item indices) and ``NAME_feat.npy``. ``train_mat`` is never unpickled; train
  comes from ``train.json``. Indices are kept (original id = ``str(index)``); n_items is the row
  count of the feature files (or the largest item index + 1 without features), n_users the
  largest user index + 1.
- ``mmrec``: MMRec's layout. ``NAME.inter`` (tab-separated, header
  ``userID itemID rating timestamp x_label``; x_label 0 train, 1 valid, 2 test; ids are indices,
  kept as they are) and ``NAME_feat.npy`` files.
- ``recbole``: RecBole atomic files, ``NAME.inter`` with typed headers such as
  ``user_id:token``. Not split: needs ``split``.
- ``csv``: one interaction table, ``.csv``, ``.tsv`` / ``.tab`` / ``.txt`` or ``.parquet``
  (pyarrow, imported only then), with named columns; split by a split column or by ``split``.

For ``recbole`` and ``csv`` the original ids are re-indexed in ascending original-id order
(numeric order when every id is an integer, else string order), over the ids left after
filtering.

The steps after reading, in order: rating threshold (keep ``rating >= threshold``),
de-duplication of (user, item) pairs (keep first or last), k-core filtering (which also drops
the filtered users and items from the id space, for every format), split, checks.

Item features (``features={"text": "text.npy"}``, ``--feature text=text.npy`` on the CLI):

- an ``.npy`` file: one row per item of the source's item id space, before any filtering
  (mmssl/mmrec: item index order; recbole/csv: all item ids of the interaction file in the
  ascending order above); rows of dropped items are dropped too;
- a table (``.csv``, ``.tsv``, ``.parquet``): an item-id column (``feature_id_col``, default
  ``item_id``) and numeric columns forming the vector; items without a row get zeros (counted in
  the notes), rows of unknown items are ignored (counted too).

A relative feature path is looked up in the source directory (SRC itself, or the folder of a
SRC file) first, then in the working directory. Features become float32 and must be finite.

Export formats (``export_dataset(ds, fmt, dest)``): ``mmssl`` (with a pickled scipy CSR
``train_mat`` for the authors' code) and ``mmrec``. Both write atomically: a temporary sibling
directory, renamed when complete.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import SPLITS, Dataset, check_features
from mmssl.data.splits import DEFAULT_SEED, deduplicate, kcore, parse_split, split_report
from mmssl.errors import DataError

IMPORT_FORMATS = ("mmssl", "mmrec", "recbole", "csv")
EXPORT_FORMATS = ("mmssl", "mmrec")
MMSSL_FILES = ("train.json", "val.json", "test.json")  # in split-code order
TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t", ".inter": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
_SPLIT_LABELS = {"0": 0, "1": 1, "2": 2, "train": 0, "valid": 1, "val": 1, "test": 2}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NOTHING = object()


# ============================================================================ import
def import_dataset(
    fmt: str,
    src: str | os.PathLike,
    *,
    split: str | None = None,
    seed: int = DEFAULT_SEED,
    kcore: int | None = None,
    dedup: str = "first",
    features: Mapping[str, str | os.PathLike] | Sequence[str] | None = None,
    feature_id_col: str = "item_id",
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    split_col: str | None = None,
    threshold: float | None = None,
    name: str | None = None,
) -> Dataset:
    """Read ``src`` in format ``fmt`` into a :class:`Dataset`.

    Args:
        fmt: one of ``IMPORT_FORMATS``.
        src: a directory (mmssl, mmrec, recbole) or a file (csv; mmrec/recbole ``.inter`` too).
        split: split spec for unsplit sources, e.g. ``"random:8:1:1"`` (see ``splits.parse_split``).
        seed: seed of the random split.
        kcore: keep only the k-core (users and items with >= k interactions), if given.
        dedup: ``"first"`` or ``"last"``: which occurrence of a repeated (user, item) pair stays.
        features: modality name -> path, or ``["NAME=PATH", ...]``. For mmssl and mmrec, when
            none is given every ``*_feat.npy`` of the source directory is used.
        feature_id_col: item-id column of feature tables.
        user_col, item_col, rating_col, time_col, split_col: column names (defaults per format:
            mmrec ``userID itemID rating timestamp x_label``, recbole
            ``user_id item_id rating timestamp``, csv ``user_id item_id``). mmrec and recbole
            use their rating and timestamp columns when present; csv only the ones named.
        threshold: keep interactions with ``rating >= threshold``.
        name: the ``NAME.inter`` to read (mmrec, recbole) when the directory holds several.
    Returns:
        The dataset; ``info`` holds source format and path, split protocol and seed, counts and
        notes (duplicates removed, cold users and items, zero feature rows, ...).
    Raises:
        DataError with a one-line message naming the file, the line or field, and the problem.
    """
    if fmt not in IMPORT_FORMATS:
        raise DataError(f"unknown format {fmt!r} (known: {', '.join(IMPORT_FORMATS)})")
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    opts = _Options(
        split=split,
        seed=int(seed),
        kcore=kcore,
        dedup=dedup,
        features=_parse_feature_specs(features),
        feature_id_col=feature_id_col,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        split_col=split_col,
        threshold=threshold,
        name=name,
    )
    if dedup not in ("first", "last"):
        raise DataError(f"--dedup {dedup!r}: expected first or last")
    if kcore is not None and kcore < 1:
        raise DataError(f"--kcore {kcore}: expected a positive integer")
    reader = {
        "mmssl": _read_mmssl,
        "mmrec": _read_mmrec,
        "recbole": _read_recbole,
        "csv": _read_csv,
    }[fmt]
    raw = reader(src, opts)
    return _finish(fmt, src, raw, opts)


@dataclass
class _Options:
    split: str | None
    seed: int
    kcore: int | None
    dedup: str
    features: dict[str, str]
    feature_id_col: str
    user_col: str | None
    item_col: str | None
    rating_col: str | None
    time_col: str | None
    split_col: str | None
    threshold: float | None
    name: str | None


@dataclass
class _Raw:
    """What a reader hands to ``_finish``: interactions as codes into the source id space."""

    where: str  # the interaction file(s), for messages
    users: np.ndarray  # int64 codes into user_ids
    items: np.ndarray  # int64 codes into item_ids
    user_ids: np.ndarray  # str, source id space in index order
    item_ids: np.ndarray
    features: dict[str, np.ndarray]  # float32, one row per source item
    feature_paths: dict[str, str]
    dense: bool  # ids are indices used as they are (mmssl, mmrec)
    split: np.ndarray | None = None  # int8 codes when the source is split
    split_names: tuple[str, str, str] | None = None  # how to name an empty split
    split_source: str = "given"  # the protocol recorded for a given split
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _parse_feature_specs(
    features: Mapping[str, str | os.PathLike] | Sequence[str] | None,
) -> dict[str, str]:
    out: dict[str, str] = {}
    if features is None:
        return out
    items = features.items() if isinstance(features, Mapping) else None
    if items is None:
        pairs = []
        for spec in features:
            name, sep, path = str(spec).partition("=")
            if not sep or not name.strip() or not path.strip():
                raise DataError(f"--feature {spec!r}: expected NAME=PATH, e.g. text=text_feat.npy")
            pairs.append((name.strip(), path.strip()))
        items = pairs
    for name, path in items:
        if not _NAME_RE.fullmatch(name):
            raise DataError(
                f"--feature {name}={path}: modality name must be letters, digits, _ . -"
            )
        if name in out:
            raise DataError(f"--feature {name}=...: modality {name!r} given twice")
        out[name] = str(path)
    return out


# ----------------------------------------------------------------------- mmssl
def _read_mmssl(src: Path, opts: _Options) -> _Raw:
    if not src.is_dir():
        raise DataError(
            f"{src}: the mmssl layout is a directory with train.json, val.json, test.json"
        )
    _reject(
        opts,
        "mmssl",
        ("user_col", "item_col", "rating_col", "time_col", "split_col", "threshold", "name"),
    )
    if opts.split:
        raise DataError(f"--split {opts.split}: {src} is already split (train/val/test.json)")
    users, items, split = [], [], []
    for code, fname in enumerate(MMSSL_FILES):
        path = src / fname
        u, i = _read_mmssl_json(path)
        if len(u) == 0:
            raise DataError(f"{path}: empty split (no interactions)")
        users.append(u)
        items.append(i)
        split.append(np.full(len(u), code, dtype=np.int8))
    users_a, items_a = np.concatenate(users), np.concatenate(items)
    split_a = np.concatenate(split)
    features, paths = _dense_features(src, opts)
    n_items = _dense_item_count(features, paths, items_a)
    if len(items_a) and items_a.max() >= n_items:
        bad = int(np.argmax(items_a >= n_items))
        path = src / MMSSL_FILES[int(split_a[bad])]
        raise DataError(
            f'{path}: user "{users_a[bad]}": item index {items_a[bad]} out of range '
            f"(the feature files have {n_items} rows)"
        )
    n_users = int(users_a.max()) + 1
    notes: list[str] = []
    return _Raw(
        where=str(src),
        users=users_a,
        items=items_a,
        user_ids=_index_ids(n_users),
        item_ids=_index_ids(n_items),
        features=_align_dense_features(features, paths, opts, _index_ids(n_items), notes),
        notes=notes,
        feature_paths=paths,
        dense=True,
        split=split_a,
        split_names=tuple(str(src / f) for f in MMSSL_FILES),
        split_source="given (mmssl train.json/val.json/test.json)",
    )


def _read_mmssl_json(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable: {e.strerror}") from None
    try:
        # Pairs, not a dict: a user listed twice is merged (then de-duplicated), not dropped.
        pairs = json.loads(text, object_pairs_hook=lambda kv: kv)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: malformed JSON: {e.msg}") from None
    if not text.lstrip().startswith("{"):
        raise DataError(f"{path}: expected a JSON object of user index -> list of item indices")
    users, items = [], []
    for key, value in pairs:
        if not re.fullmatch(r"\d+", key):
            what = "negative" if re.fullmatch(r"\s*-\d+\s*", key) else "not an integer"
            raise DataError(f'{path}: user "{key}": user index is {what}')
        if len(key) > 18:
            raise DataError(f'{path}: user "{key}": user index too large')
        if not isinstance(value, list):
            raise DataError(f'{path}: user "{key}": expected a list of item indices')
        bad = next((v for v in value if type(v) is not int), _NOTHING)
        if bad is not _NOTHING:
            shown = json.dumps(bad)
            raise DataError(f'{path}: user "{key}": item {shown} is not an integer index')
        try:
            arr = np.array(value, dtype=np.int64)
        except OverflowError:
            raise DataError(f'{path}: user "{key}": item index too large') from None
        if len(arr) and arr.min() < 0:
            raise DataError(f'{path}: user "{key}": item index {int(arr.min())} is negative')
        users.append(np.full(len(arr), int(key), dtype=np.int64))
        items.append(arr.astype(np.int64))
    if not users:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(users), np.concatenate(items)


# ----------------------------------------------------------------------- mmrec
def _read_mmrec(src: Path, opts: _Options) -> _Raw:
    path = _find_inter(src, opts.name, default_name=None)
    if opts.split:
        raise DataError(f"--split {opts.split}: {path} is already split (x_label column)")
    table = _Table.read(path)
    user_col = opts.user_col or "userID"
    item_col = opts.item_col or "itemID"
    split_col = opts.split_col or "x_label"
    users = table.dense_ids(user_col, "--user-col")
    items = table.dense_ids(item_col, "--item-col")
    split = table.split_labels(split_col, "--split-col")
    timestamps, ratings = _optional_time_rating(table, opts, auto=True)
    features, paths = _dense_features(path.parent, opts)
    n_items = _dense_item_count(features, paths, items)
    if len(items) and items.max() >= n_items:
        bad = int(np.argmax(items >= n_items))
        raise DataError(
            f"{path}: {table.loc(bad)}: {item_col} {items[bad]} out of range "
            f"(the feature files have {n_items} rows)"
        )
    n_users = int(users.max()) + 1 if len(users) else 0
    notes: list[str] = []
    return _Raw(
        where=str(path),
        users=users,
        items=items,
        user_ids=_index_ids(n_users),
        item_ids=_index_ids(n_items),
        features=_align_dense_features(features, paths, opts, _index_ids(n_items), notes),
        notes=notes,
        feature_paths=paths,
        dense=True,
        split=split,
        split_names=tuple(f"{path}: {split_col} {c} ({s})" for c, s in enumerate(SPLITS)),
        split_source=f"given (mmrec {split_col})",
        timestamps=timestamps,
        ratings=ratings,
    )


# --------------------------------------------------------------- recbole and csv
def _read_recbole(src: Path, opts: _Options) -> _Raw:
    path = _find_inter(src, opts.name, default_name=src.name if src.is_dir() else None)
    table = _Table.read(path, typed_header=True)
    return _read_token_table(
        table, opts, "user_id", "item_id", src_dir=path.parent, schema_known=True
    )


def _read_csv(src: Path, opts: _Options) -> _Raw:
    if src.is_dir():
        raise DataError(
            f"{src}: --format csv reads one file (.csv, .tsv, .parquet), not a directory"
        )
    _reject(opts, "csv", ("name",))
    table = _Table.read(src)
    return _read_token_table(
        table, opts, "user_id", "item_id", src_dir=src.parent, schema_known=False
    )


def _read_token_table(
    table: _Table,
    opts: _Options,
    user_default: str,
    item_default: str,
    src_dir: Path,
    schema_known: bool,
) -> _Raw:
    user_col = opts.user_col or user_default
    item_col = opts.item_col or item_default
    user_tokens = table.tokens(user_col, "--user-col")
    item_tokens = table.tokens(item_col, "--item-col")
    user_ids, users = _index_tokens(user_tokens)
    item_ids, items = _index_tokens(item_tokens)
    split = None
    split_names = None
    if opts.split_col:
        if opts.split:
            raise DataError(
                f"--split {opts.split}: the split comes from --split-col {opts.split_col}"
            )
        split = table.split_labels(opts.split_col, "--split-col")
        split_names = tuple(f"{table.path}: {opts.split_col} {s}" for s in SPLITS)
    timestamps, ratings = _optional_time_rating(table, opts, auto=schema_known)
    notes: list[str] = []
    features, paths = _load_features(opts, src_dir, item_ids, notes)
    return _Raw(
        where=str(table.path),
        users=users,
        items=items,
        user_ids=user_ids,
        item_ids=item_ids,
        features=features,
        feature_paths=paths,
        dense=False,
        split=split,
        split_names=split_names,
        split_source=f"given (column {opts.split_col})",
        timestamps=timestamps,
        ratings=ratings,
        notes=notes,
    )


def _optional_time_rating(
    table: _Table, opts: _Options, auto: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Timestamps and ratings: the flagged columns, or (``auto``, for the known schemas of
    mmrec and recbole) the ``timestamp`` and ``rating`` columns when present."""
    time_col = opts.time_col or ("timestamp" if auto and "timestamp" in table.columns else None)
    rating_col = opts.rating_col or ("rating" if auto and "rating" in table.columns else None)
    timestamps = table.times(time_col, "--time-col") if time_col else None
    ratings = table.numbers(rating_col, "--rating-col") if rating_col else None
    if opts.threshold is not None and ratings is None:
        raise DataError(f"{table.path}: --threshold needs a rating column (--rating-col)")
    return timestamps, ratings


def _find_inter(src: Path, name: str | None, default_name: str | None) -> Path:
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


def _reject(opts: _Options, fmt: str, names: Sequence[str]) -> None:
    for name in names:
        if getattr(opts, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise DataError(f"{flag} does not apply to --format {fmt}")


# ------------------------------------------------------------------------ tables
class _Table:
    """An interaction table read as strings, with line numbers for messages."""

    def __init__(self, path: Path, df: pd.DataFrame, parquet: bool):
        self.path = path
        self.df = df
        self.parquet = parquet
        self.columns = list(df.columns)

    @classmethod
    def read(cls, path: Path, typed_header: bool = False) -> _Table:
        suffix = path.suffix.lower()
        if suffix in PARQUET_SUFFIXES:
            df = _read_parquet(path)
            df = df.astype({c: str for c in df.columns if df[c].dtype.kind in "iub"})
            return cls(path, df, parquet=True)
        if suffix not in TABLE_SEPARATORS:
            known = ", ".join(list(TABLE_SEPARATORS) + list(PARQUET_SUFFIXES))
            raise DataError(f"{path}: unknown table type {suffix or '(none)'!r} (known: {known})")
        df = _read_text_table(path, TABLE_SEPARATORS[suffix], dtype=str)
        if typed_header:  # RecBole: "user_id:token" -> "user_id"
            df.columns = [str(c).split(":", 1)[0] for c in df.columns]
        return cls(path, df, parquet=False)

    def loc(self, position: int) -> str:
        label = self.df.index[position]
        return f"row {label}" if self.parquet else f"line {label + 2}"

    def column(self, col: str, flag: str) -> pd.Series:
        if col not in self.df.columns:
            cols = ", ".join(map(str, self.columns))
            raise DataError(f"{self.path}: missing column {col!r} (columns: {cols}; see {flag})")
        s = self.df[col]
        missing = s.isna().to_numpy()
        if missing.any():
            raise DataError(f"{self.path}: {self.loc(int(np.argmax(missing)))}: missing {col}")
        return s

    def tokens(self, col: str, flag: str) -> np.ndarray:
        s = self.column(col, flag).astype(str).str.strip()
        empty = (s == "").to_numpy()
        if empty.any():
            raise DataError(f"{self.path}: {self.loc(int(np.argmax(empty)))}: empty {col}")
        # ids are stored one per line (user_ids.txt): no line breaks inside one
        broken = s.str.contains(r"[\r\n]").to_numpy(dtype=bool)
        if broken.any():
            pos = int(np.argmax(broken))
            raise DataError(f"{self.path}: {self.loc(pos)}: {col} {s.iloc[pos]!r} has a line break")
        return s.to_numpy(dtype=str)

    def dense_ids(self, col: str, flag: str) -> np.ndarray:
        s = self.column(col, flag).astype(str).str.strip()
        ok = s.str.fullmatch(r"\d+").to_numpy(dtype=bool)
        if not ok.all():
            bad = int(np.argmin(ok))
            value = s.iloc[bad]
            what = "negative" if re.fullmatch(r"-\d+", value) else "not an integer index"
            raise DataError(f"{self.path}: {self.loc(bad)}: {col} {value!r} is {what}")
        try:
            return s.to_numpy(dtype=np.int64)
        except (OverflowError, ValueError):
            raise DataError(f"{self.path}: {col}: index too large") from None

    def numbers(self, col: str, flag: str) -> np.ndarray:
        s = self.column(col, flag)
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(f"{self.path}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a number")
        return values

    def times(self, col: str, flag: str) -> np.ndarray:
        """Numbers as they are; else dates and times, as seconds since the epoch (UTC)."""
        s = self.column(col, flag)
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        numeric = np.isfinite(values)
        if numeric.all():
            return values
        if numeric.any():  # numbers with a stray value: report that value
            pos = int(np.argmin(numeric))
            raise DataError(f"{self.path}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a number")
        dates = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
        bad = dates.isna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(
                f"{self.path}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is neither a number nor a date"
            )
        return (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)

    def split_labels(self, col: str, flag: str) -> np.ndarray:
        s = self.column(col, flag).astype(str).str.strip().str.lower()
        codes = s.map(_SPLIT_LABELS)
        bad = codes.isna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(
                f"{self.path}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a split "
                "(expected 0/1/2 or train/valid/test)"
            )
        return codes.to_numpy(dtype=np.int8)


def _read_text_table(path: Path, sep: str, dtype) -> pd.DataFrame:
    """A delimited table; blank lines are dropped but the index keeps line numbers (line - 2)."""
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            dtype=dtype,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            engine="c",
        )
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: malformed table: {_first_line(e)}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: unreadable: {_first_line(e)}") from None
    dup = [
        c
        for c in df.columns
        if re.fullmatch(r".+\.\d+", str(c)) and str(c).rsplit(".", 1)[0] in df.columns
    ]
    if dup:
        raise DataError(f"{path}: duplicate column {str(dup[0]).rsplit('.', 1)[0]!r} in the header")
    return df[~df.isna().all(axis=1)] if len(df.columns) else df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # noqa: F401  (pandas needs it; import here to say so clearly)
    except ModuleNotFoundError:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        return pd.read_parquet(path).reset_index(drop=True)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except Exception as e:  # pyarrow raises its own types for corrupt files
        raise DataError(f"{path}: unreadable parquet: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -------------------------------------------------------------------- id spaces
def _index_ids(n: int) -> np.ndarray:
    return np.arange(n).astype(str)


def _index_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Original ids -> (sorted unique ids, int64 codes); numeric order if all are integers."""
    uniq, inverse = np.unique(tokens, return_inverse=True)
    if len(uniq) and pd.Series(uniq).str.fullmatch(r"[+-]?\d+").all():
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


# ---------------------------------------------------------------------- features
def _resolve(path_text: str, base: Path) -> Path:
    path = Path(path_text).expanduser()
    if path.is_absolute():
        return path
    if (base / path).exists() or not path.exists():
        return base / path
    return path


def _dense_features(src_dir: Path, opts: _Options) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The .npy features of a dense layout (they fix n_items; every ``*_feat.npy`` of the
    directory unless features are given); tables are loaded later."""
    specs = dict(opts.features)
    if not specs:
        for p in sorted(src_dir.glob("*_feat.npy")):
            specs[p.name[: -len("_feat.npy")]] = p.name
    arrays, paths = {}, {}
    for name, text in specs.items():
        path = _resolve(text, src_dir)
        paths[name] = str(path.resolve())
        if path.suffix.lower() == ".npy":
            arrays[name] = _load_npy(path)
    return arrays, paths


def _dense_item_count(
    features: dict[str, np.ndarray], paths: dict[str, str], items: np.ndarray
) -> int:
    n = None
    first = None
    for name, f in features.items():
        if n is None:
            n, first = f.shape[0], paths[name]
        elif f.shape[0] != n:
            raise DataError(
                f"{paths[name]}: {f.shape[0]} rows but {first} has {n}: feature files must agree"
            )
    if n is not None:
        return int(n)
    return int(items.max()) + 1 if len(items) else 0


def _align_dense_features(
    arrays: dict[str, np.ndarray],
    paths: dict[str, str],
    opts: _Options,
    item_ids: np.ndarray,
    notes: list[str],
) -> dict[str, np.ndarray]:
    """All features of a dense layout: the .npy ones checked, the tables loaded."""
    out = {}
    for name, path in paths.items():
        if name in arrays:
            f = arrays[name]
            check_features(f, len(item_ids), path)
            out[name] = f
        else:
            out[name] = _load_feature_table(name, Path(path), item_ids, opts.feature_id_col, notes)
    return out


def _load_features(
    opts: _Options, src_dir: Path, item_ids: np.ndarray, notes: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Features of a token source: .npy rows follow the source's sorted item ids."""
    out, paths = {}, {}
    for name, text in opts.features.items():
        path = _resolve(text, src_dir)
        paths[name] = str(path.resolve())
        if path.suffix.lower() == ".npy":
            f = _load_npy(path)
            if f.shape[0] != len(item_ids):
                raise DataError(
                    f"{path}: {f.shape[0]} rows but the source has {len(item_ids)} items "
                    "(one row per item id, ascending)"
                )
            check_features(f, len(item_ids), str(path))
            out[name] = f
        else:
            out[name] = _load_feature_table(name, path, item_ids, opts.feature_id_col, notes)
    return out, paths


def _load_npy(path: Path) -> np.ndarray:
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
        raise DataError(f"{path}: unreadable .npy: {_first_line(e)}") from None
    if not isinstance(f, np.ndarray):
        raise DataError(f"{path}: expected one array, found an archive")
    if f.dtype.kind not in "fiub":
        raise DataError(f"{path}: dtype {f.dtype} is not numeric")
    if f.ndim != 2:
        raise DataError(f"{path}: expected a 2-d array (items x dim), got shape {f.shape}")
    with np.errstate(over="ignore"):
        f32 = np.ascontiguousarray(f, dtype=np.float32)
    if f32.shape[1] > 0 and not np.isfinite(f32).all():
        bad = int(np.argwhere(~np.isfinite(f32))[0][0])
        raise DataError(f"{path}: NaN or infinite value in row {bad} (as float32)")
    return f32


def _load_feature_table(
    name: str, path: Path, item_ids: np.ndarray, id_col: str, notes: list[str]
) -> np.ndarray:
    """Rows keyed by item id -> float32 (n_items, dim); items without a row get zeros."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        df = _read_parquet(path)
        loc = lambda pos: f"row {df.index[pos]}"  # noqa: E731
    elif suffix in TABLE_SEPARATORS:
        df = _read_text_table(path, TABLE_SEPARATORS[suffix], dtype={id_col: str})
        loc = lambda pos: f"line {df.index[pos] + 2}"  # noqa: E731
    else:
        raise DataError(f"{path}: feature file must be .npy, .csv, .tsv or .parquet")
    if id_col not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise DataError(
            f"{path}: missing column {id_col!r} (columns: {cols}; see --feature-id-col)"
        )
    ids = df[id_col]
    if ids.isna().any():
        raise DataError(f"{path}: {loc(int(np.argmax(ids.isna().to_numpy())))}: missing {id_col}")
    ids = ids.astype(str).str.strip().to_numpy(dtype=str)
    value_cols = [c for c in df.columns if c != id_col]
    if not value_cols:
        raise DataError(f"{path}: no feature columns besides {id_col!r}")
    for c in value_cols:
        if df[c].dtype.kind not in "fiub":
            numeric = pd.to_numeric(df[c], errors="coerce")
            bad = numeric.isna() & df[c].notna()
            pos = int(np.argmax(bad.to_numpy())) if bad.any() else 0
            raise DataError(
                f"{path}: {loc(pos)}: column {c!r} is not numeric ({df[c].iloc[pos]!r})"
            )
    with np.errstate(over="ignore"):
        values = df[value_cols].to_numpy(dtype=np.float32)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        pos = int(np.argmin(finite))
        raise DataError(f"{path}: {loc(pos)}: missing, NaN or infinite feature value")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[int(np.argmax(counts > 1))]
        pos = int(np.argmax(ids == dup))
        raise DataError(f"{path}: {loc(pos)}: item {str(dup)!r} has more than one row")
    row_of = pd.Index(ids).get_indexer(item_ids)
    out = np.zeros((len(item_ids), len(value_cols)), dtype=np.float32)
    have = row_of >= 0
    out[have] = values[row_of[have]]
    missing = int((~have).sum())
    unknown = int(len(ids) - have.sum())
    if missing:
        notes.append(f"{name}: {missing} items without a row in {path.name} got zeros")
    if unknown:
        notes.append(f"{name}: {unknown} rows of {path.name} name unknown items (ignored)")
    return out


# --------------------------------------------------------------------- finishing
def _finish(fmt: str, src: Path, raw: _Raw, opts: _Options) -> Dataset:
    notes = list(raw.notes)
    counts = dict(raw.counts)
    n_read = len(raw.users)
    counts["read"] = n_read
    keep = np.ones(n_read, dtype=bool)

    if opts.threshold is not None:
        above = raw.ratings >= opts.threshold
        counts["below_threshold"] = int((~above).sum())
        notes.append(f"kept ratings >= {opts.threshold:g}: removed {counts['below_threshold']}")
        keep &= above

    idx = np.flatnonzero(keep)
    ts = raw.timestamps[idx] if raw.timestamps is not None else None
    unique = deduplicate(raw.users[idx], raw.items[idx], keep=opts.dedup, timestamps=ts)
    counts["duplicates_removed"] = int((~unique).sum())
    if counts["duplicates_removed"]:
        notes.append(
            f"removed {counts['duplicates_removed']} duplicate (user, item) interactions "
            f"(kept the {opts.dedup})"
        )
    idx = idx[unique]

    if opts.kcore:
        core = kcore(raw.users[idx], raw.items[idx], opts.kcore)
        counts["kcore_removed"] = int((~core).sum())
        notes.append(f"{opts.kcore}-core: removed {counts['kcore_removed']} interactions")
        idx = idx[core]

    users, items = raw.users[idx], raw.items[idx]
    user_ids, item_ids, features = raw.user_ids, raw.item_ids, raw.features
    if not raw.dense or opts.kcore:
        kept_users, users = np.unique(users, return_inverse=True)
        kept_items, items = np.unique(items, return_inverse=True)
        dropped_u, dropped_i = len(user_ids) - len(kept_users), len(item_ids) - len(kept_items)
        if dropped_u or dropped_i:
            notes.append(
                f"dropped {dropped_u} users and {dropped_i} items left without interactions"
            )
        counts["users_dropped"], counts["items_dropped"] = dropped_u, dropped_i
        user_ids, item_ids = user_ids[kept_users], item_ids[kept_items]
        features = {n: np.ascontiguousarray(f[kept_items]) for n, f in features.items()}
    timestamps = raw.timestamps[idx] if raw.timestamps is not None else None
    if n_read == 0:
        raise DataError(f"{raw.where}: no interactions")
    if len(users) == 0:
        raise DataError(f"{raw.where}: no interactions left after filtering")

    seed = None
    if raw.split is not None:
        split = raw.split[idx]
        protocol = raw.split_source
        valid_may_be_empty = False
    else:
        if not opts.split:
            raise DataError(
                f"{raw.where}: the interactions are not split: give --split "
                "(random:8:1:1, user-time:8:1:1 or global-time:T1:T2)"
            )
        splitter = parse_split(opts.split, seed=opts.seed)
        if splitter.needs_timestamps and timestamps is None:
            raise DataError(
                f"{raw.where}: --split {opts.split} needs timestamps: no timestamp column "
                "(set --time-col)"
            )
        split = splitter.assign(users, timestamps)
        protocol = splitter.describe()
        seed = getattr(splitter, "seed", None)
        valid_may_be_empty = not splitter.holds_out_valid()
    sizes = np.bincount(split, minlength=3)
    for code, name in enumerate(SPLITS):
        if sizes[code] == 0 and not (code == 1 and valid_may_be_empty):
            if raw.split is not None:
                label = raw.split_names[code] if raw.split_names else raw.where
                raise DataError(f"{label}: empty split (no {name} interactions)")
            raise DataError(f"{raw.where}: --split {opts.split} leaves the {name} split empty")

    report = split_report(users, items, split, len(user_ids))
    counts.update(report)
    if report["users_without_test"]:
        notes.append(f"{report['users_without_test']} users have no test interactions")
    if report["cold_users"]:
        notes.append(f"{report['cold_users']} users are only in valid/test (cold start)")
    if report["cold_items"]:
        notes.append(f"{report['cold_items']} items are only in valid/test (cold start)")
    info = {
        "source_format": fmt,
        "source": str(src.resolve()),
        "split": protocol,
        "seed": seed,
        "dedup": opts.dedup,
        "kcore": opts.kcore,
        "threshold": opts.threshold,
        "features": dict(raw.feature_paths),
        "counts": counts,
        "notes": notes,
    }
    return Dataset(
        users=users,
        items=items,
        split=split,
        user_ids=user_ids,
        item_ids=item_ids,
        features=features,
        timestamps=timestamps,
        info=info,
    )


# ============================================================================ export
def export_dataset(ds: Dataset, fmt: str, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ds`` in layout ``fmt`` (``mmssl`` or ``mmrec``) to the directory ``dest``.

    mmssl: ``train.json``, ``val.json``, ``test.json`` (users with interactions in that split,
    ascending, each with its sorted unique item indices), ``NAME_feat.npy`` (float32), and
    ``train_mat``, a pickled scipy CSR (n_users, n_items) of train for the authors' code.
    Original ids are not kept: the layout has only indices.

    mmrec: ``DEST_NAME.inter`` (``userID itemID rating timestamp x_label``; rating 1, timestamp 0
    when the dataset has none) and ``NAME_feat.npy``.

    Atomic: written to a temporary sibling directory, then renamed; DataError if ``dest``
    exists and not ``overwrite``.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"unknown export format {fmt!r} (known: {', '.join(EXPORT_FORMATS)})")
    dest = Path(dest)
    with atomic_directory(dest, overwrite) as tmp:
        if fmt == "mmssl":
            _write_mmssl(ds, tmp)
        else:
            _write_mmrec(ds, tmp, dest.name)
        for name, f in ds.features.items():
            np.save(tmp / f"{name}_feat.npy", np.ascontiguousarray(f, dtype=np.float32))
    return dest


def _write_mmssl(ds: Dataset, tmp: Path) -> None:
    for code, fname in enumerate(MMSSL_FILES):
        m = ds.matrix(SPLITS[code])  # deduplicated, CSR rows sorted below
        m.sort_indices()
        lists = {
            str(u): m.indices[m.indptr[u] : m.indptr[u + 1]].tolist()
            for u in np.flatnonzero(np.diff(m.indptr))
        }
        (tmp / fname).write_text(json.dumps(lists))
    with open(tmp / "train_mat", "wb") as fh:
        pickle.dump(ds.matrix("train").tocsr(), fh, protocol=4)


def _write_mmrec(ds: Dataset, tmp: Path, name: str) -> None:
    if ds.timestamps is None:
        ts = np.zeros(len(ds.users), dtype=np.int64)
    elif np.all(np.mod(ds.timestamps, 1) == 0):
        ts = ds.timestamps.astype(np.int64)
    else:
        ts = ds.timestamps
    df = pd.DataFrame(
        {
            "userID": ds.users,
            "itemID": ds.items,
            "rating": np.ones(len(ds.users), dtype=np.int64),
            "timestamp": ts,
            "x_label": ds.split.astype(np.int64),
        }
    )
    df.to_csv(tmp / f"{name}.inter", sep="\t", index=False)


@contextmanager
def atomic_directory(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to fill; on success it becomes ``dest``.

    DataError if ``dest`` exists and not ``overwrite``. On any error the temporary directory is
    removed and an existing ``dest`` is left as it was.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: destination exists (use --overwrite to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _chmod_like_mkdir(tmp)
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            try:
                tmp.rename(dest)
            except BaseException:
                old.rename(dest)
                raise
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _chmod_like_mkdir(path: Path) -> None:
    """mkdtemp makes a private (0700) directory; give it the mode a plain mkdir would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
