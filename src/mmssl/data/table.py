"""One reader for every table mmssl takes in: interactions, item features, items, graphs.

- The separator comes from the suffix (:data:`TABLE_SEPARATORS`); ``.parquet`` / ``.pq`` are read
  with pyarrow, imported only then.
- Text tables are read as strings. Empty cells are missing (``NaN``); blank lines are dropped
  but every row keeps its line number for messages (the index is ``line - 2``). Tab-separated
  files are read literally (no quote processing, as RecBole and MMRec write them); comma-separated
  ones follow the CSV quoting rules.
- RecBole typed headers lose their type: ``user_id:token`` is the column ``user_id``.
- A header naming a column twice is an error.

:class:`Table` wraps the frame with the typed accessors the importers need (ids, numbers,
times, split labels), each raising a one-line :class:`DataError` naming the file and the line.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.errors import DataError

TABLE_SEPARATORS = {
    ".csv": ",",
    ".tsv": "\t",
    ".tab": "\t",
    ".txt": "\t",
    ".inter": "\t",
    ".item": "\t",
    ".user": "\t",
    ".kg": "\t",
    ".link": "\t",
}
PARQUET_SUFFIXES = (".parquet", ".pq")
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
SPLIT_LABELS = {"0": 0, "1": 1, "2": 2, "train": 0, "valid": 1, "val": 1, "test": 2}


class Table:
    """A table with line numbers for messages.

    Attributes:
        df: the frame; text tables hold strings (``NaN`` for empty cells) and are indexed by
            ``line - 2``; parquet files and in-memory frames keep their own index (row labels).
        where: what to call the table in messages (its path, or e.g. ``"DataFrame"``).
        rows: ``"line"`` (text files: messages say ``line N``) or ``"row"`` (``row LABEL``).
    """

    def __init__(self, df: pd.DataFrame, where: str, rows: str = "line"):
        self.df = df
        self.where = where
        self.rows = rows

    @classmethod
    def read(cls, path: str | os.PathLike, default_sep: str | None = None) -> Table:
        """Read ``path``; an unknown suffix is an error unless ``default_sep`` is given."""
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path}: is a folder, expected a table file")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in PARQUET_SUFFIXES:
            df, rows = _read_parquet(path), "row"
        else:
            sep = TABLE_SEPARATORS.get(suffix, default_sep)
            if sep is None:
                known = ", ".join(list(TABLE_SEPARATORS) + list(PARQUET_SUFFIXES))
                raise DataError(
                    f"{path}: unknown table type {suffix or '(none)'!r} (known: {known})"
                )
            df, rows = _read_text(path, sep), "line"
        df.columns = [strip_type(str(c)) for c in df.columns]
        dup = df.columns[df.columns.duplicated()]
        if len(dup):
            raise DataError(f"{path}: duplicate column {dup[0]!r} in the header")
        return cls(df, str(path), rows)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, where: str = "DataFrame") -> Table:
        """Wrap an in-memory frame; messages name rows by their index label."""
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
        return cls(df, where, "row")

    @property
    def columns(self) -> list:
        """The column names, in order."""
        return list(self.df.columns)

    def loc(self, position: int) -> str:
        """``line N`` or ``row LABEL`` of the row at ``position`` (0-based)."""
        label = self.df.index[position]
        return f"line {label + 2}" if self.rows == "line" else f"row {label}"

    def column(self, col: str, flag: str) -> pd.Series:
        """The column ``col``; DataError if absent (naming ``flag``) or if a cell is empty."""
        if col not in self.df.columns:
            cols = ", ".join(map(str, self.columns))
            raise DataError(f"{self.where}: missing column {col!r} (columns: {cols}; see {flag})")
        s = self.df[col]
        missing = s.isna().to_numpy()
        if missing.any():
            raise DataError(f"{self.where}: {self.loc(int(np.argmax(missing)))}: missing {col}")
        return s

    def tokens(self, col: str, flag: str, notes: list[str] | None = None) -> np.ndarray:
        """Original ids as stripped strings, str (n_rows,).

        Surrounding whitespace (spaces, tabs, non-breaking spaces) is stripped, so ``"5"``,
        ``" 5"`` and ``"5\\u00a0"`` are one id; when that happens a note saying how many values
        were stripped and how many distinct raw ids were merged goes to ``notes``.
        """
        raw = self.column(col, flag).astype(str)
        s = raw.str.strip()
        empty = (s == "").to_numpy()
        if empty.any():
            raise DataError(f"{self.where}: {self.loc(int(np.argmax(empty)))}: empty {col}")
        # ids are stored one per line (user_ids.txt): no line breaks inside one
        broken = s.str.contains(r"[\r\n]").to_numpy(dtype=bool)
        if broken.any():
            pos = int(np.argmax(broken))
            raise DataError(
                f"{self.where}: {self.loc(pos)}: {col} {s.iloc[pos]!r} has a line break"
            )
        changed = (raw != s).to_numpy(dtype=bool)
        if notes is not None and changed.any():
            notes.append(_whitespace_note(col, raw.to_numpy(dtype=str), s.to_numpy(dtype=str),
                                          int(changed.sum())))
        return s.to_numpy(dtype=str)

    def dense_ids(self, col: str, flag: str) -> np.ndarray:
        """Non-negative integer ids used as indices, int64 (n_rows,)."""
        s = self.column(col, flag).astype(str).str.strip()
        ok = s.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool)
        if not ok.all():
            bad = int(np.argmin(ok))
            value = s.iloc[bad]
            what = "negative" if re.fullmatch(r"-\d+", value) else "not an integer index"
            raise DataError(f"{self.where}: {self.loc(bad)}: {col} {value!r} is {what}")
        long = (s.str.len() > 18).to_numpy(dtype=bool)
        if long.any():
            bad = int(np.argmax(long))
            raise DataError(
                f"{self.where}: {self.loc(bad)}: {col} {s.iloc[bad]} is too large for an index"
            )
        return s.to_numpy(dtype=np.int64)

    def numbers(self, col: str, flag: str) -> np.ndarray:
        """A numeric column, float64 (n_rows,); DataError naming the first non-number."""
        s = self.column(col, flag)
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(
                f"{self.where}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a number"
            )
        return values

    def times(self, col: str, flag: str) -> np.ndarray:
        """Timestamps, float64 (n_rows,): numbers as they are; else dates and times, as
        seconds since the epoch (UTC)."""
        s = self.column(col, flag)
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64)
        numeric = np.isfinite(values)
        if numeric.all():
            return values
        if numeric.any():  # numbers with a stray value: report that value
            pos = int(np.argmin(numeric))
            raise DataError(
                f"{self.where}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a number"
            )
        dates = pd.to_datetime(s, errors="coerce", utc=True, format="mixed")
        bad = dates.isna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(
                f"{self.where}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is neither a number "
                "nor a date"
            )
        return (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)

    def split_labels(self, col: str, flag: str) -> np.ndarray:
        """Split codes, int8 (n_rows,), from ``0/1/2`` or ``train/valid/val/test``."""
        s = self.column(col, flag).astype(str).str.strip().str.lower()
        codes = s.map(SPLIT_LABELS)
        bad = codes.isna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataError(
                f"{self.where}: {self.loc(pos)}: {col} {s.iloc[pos]!r} is not a split "
                "(expected 0/1/2 or train/valid/test)"
            )
        return codes.to_numpy(dtype=np.int8)

    def strings(self) -> pd.DataFrame:
        """The frame as strings with ``""`` for empty cells (same index)."""
        return self.df.astype(object).where(self.df.notna(), "").astype(str)


def read_table(path: str | os.PathLike, default_sep: str | None = None) -> Table:
    """Shorthand for :meth:`Table.read`."""
    return Table.read(path, default_sep=default_sep)


def strip_type(column: str) -> str:
    """``movie_title:token_seq`` -> ``movie_title``; other names are kept."""
    name, sep, kind = column.rpartition(":")
    return name if sep and name and kind in RECBOLE_TYPES else column


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _whitespace_note(col: str, raw: np.ndarray, stripped: np.ndarray, n_changed: int) -> str:
    pairs = pd.DataFrame({"raw": raw, "id": stripped}).drop_duplicates()
    spellings = pairs.groupby("id", sort=True)["raw"].agg(list)
    merged = spellings[spellings.map(len) > 1]
    text = f"{col}: stripped surrounding whitespace from {n_changed} values"
    if not len(merged):
        return text + " (no ids merged)"
    example_id, example = merged.index[0], merged.iloc[0][:3]
    shown = ", ".join(repr(v) for v in example)
    return (
        f"{text}; {int(merged.map(len).sum())} distinct raw ids merged into {len(merged)} "
        f"(e.g. {shown} -> {example_id!r})"
    )


def _read_text(path: Path, sep: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL,
            engine="c",
        )
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: malformed table: {first_line(e)}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: unreadable: {first_line(e)}") from None
    # pandas renames a repeated column "a" to "a.1": that is a duplicate in the header
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
        raise DataError(
            f"{path}: reading parquet needs pyarrow (pip install 'mmssl[parquet]')"
        ) from None
    try:
        return pd.read_parquet(path).reset_index(drop=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:  # pyarrow raises its own types for corrupt files
        raise DataError(f"{path}: unreadable parquet: {first_line(e)}") from None
