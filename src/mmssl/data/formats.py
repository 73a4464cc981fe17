"""Importers from other layouts into a :class:`~mmssl.data.dataset.Dataset`, and exporters back.

Import formats (``import_dataset(fmt, src, ...)``), one reader each (:mod:`mmssl.data.readers`):

- ``mmssl``: the MMSSL authors' ``train.json`` / ``val.json`` / ``test.json`` and
  ``NAME_feat.npy``; indices kept; ``train_mat`` is never unpickled;
- ``mmrec``: MMRec's ``NAME.inter`` (``userID itemID rating timestamp x_label``) and
  ``NAME_feat.npy``; indices kept;
- ``recbole``: RecBole atomic files, ``NAME.inter`` with typed headers; not split: needs ``split``;
- ``csv``: one interaction table, ``.csv``, ``.tsv`` / ``.tab`` / ``.txt`` or ``.parquet``
  (pyarrow, imported only then), with named columns; split by a split column or by ``split``.

For ``recbole`` and ``csv`` the original ids are stripped of surrounding whitespace and
re-indexed in ascending original-id order (numeric order when every id is an integer, else
string order), over the ids left after filtering. Dense layouts (mmssl, mmrec) refuse an index
space far beyond their data (``max index + 1 > max(10 * distinct ids, 100000)``).

The steps after reading (:mod:`mmssl.data.pipeline`), in order: rating threshold, de-duplication
of (user, item) pairs, k-core filtering (which also drops the filtered users and items from the id
space, for every format), split, checks.

Item features (``features={"text": "text.npy"}``, ``--feature text=text.npy`` on the CLI) are
``.npy`` files or tables keyed by item id (:mod:`mmssl.data.feature_files`). A relative feature
path is looked up in the source directory (SRC itself, or the folder of a SRC file) first, then in
the working directory.

Export formats (``export_dataset(ds, fmt, dest)``, :mod:`mmssl.data.export`): ``mmssl`` (with a
pickled scipy CSR ``train_mat`` for the authors' code) and ``mmrec``; written atomically.

Items tables (titles, years, ...): RecBole's ``NAME.item`` beside ``NAME.inter``, or any table
given as ``items=`` (``--items FILE``), becomes :attr:`Dataset.item_table` (``items.tsv``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mmssl.data.dataset import Dataset, check_item_table
from mmssl.data.export import EXPORT_FORMATS, export_dataset
from mmssl.data.pipeline import ImportOptions, finish
from mmssl.data.readers.csv import align_items, read_csv
from mmssl.data.readers.mmrec import read_mmrec
from mmssl.data.readers.mmssl import read_mmssl
from mmssl.data.readers.recbole import read_recbole
from mmssl.data.table import Table
from mmssl.errors import DataError

READERS = {"mmssl": read_mmssl, "mmrec": read_mmrec, "recbole": read_recbole, "csv": read_csv}
IMPORT_FORMATS = tuple(READERS)


def import_dataset(
    fmt: str, src: str | os.PathLike, options: ImportOptions | None = None, **kwargs
) -> Dataset:
    """Read ``src`` in format ``fmt`` into a :class:`Dataset`.

    Args:
        fmt: one of ``IMPORT_FORMATS``.
        src: a directory (mmssl, mmrec, recbole) or a file (csv; mmrec/recbole ``.inter`` too).
        options: an :class:`ImportOptions`; or give its fields as keyword arguments instead
            (``split="random:8:1:1"``, ``seed=7``, ``features=["text=text.npy"]``, ...).
            Column defaults per format: mmrec ``userID itemID rating timestamp x_label``,
            recbole ``user_id item_id rating timestamp``, csv ``user_id item_id``. mmrec and
            recbole use their rating and timestamp columns when present; csv only the ones
            named. For mmssl and mmrec, when no feature is given every ``*_feat.npy`` of the
            source directory is used.

    Returns:
        The dataset; ``info`` holds source format and path, split protocol and seed, counts and
        notes (duplicates removed, whitespace stripped from ids, cold users and items, zero
        feature rows, ...).

    Raises:
        DataError: a one-line message naming the file, the line or field, and the problem.
    """
    if fmt not in READERS:
        raise DataError(f"unknown format {fmt!r} (known: {', '.join(IMPORT_FORMATS)})")
    if options is not None and kwargs:
        raise TypeError("give either options or keyword arguments, not both")
    opts = options if options is not None else ImportOptions(**kwargs)
    src = Path(src)
    if not src.exists():
        raise DataError(f"{src}: no such file or directory")
    raw = READERS[fmt](src, opts)
    ds = finish(fmt, str(src.resolve()), raw, opts)
    items = opts.items or raw.items_path
    if items:
        ds.item_table = read_items_table(items, src, opts.item_col, ds.item_ids)
    return ds


def read_items_table(path: str | os.PathLike, src: Path, item_col: str | None,
                     item_ids) -> pd.DataFrame:
    """An items table (titles, ...) aligned to ``item_ids`` (:func:`align_items`).

    ``path`` is a table file (.csv, .tsv, .parquet, RecBole .item) with an ``item_id`` column
    (or ``item_col``); a relative path is looked up in the source directory first.
    """
    path = Path(path)
    base = src if src.is_dir() else src.parent
    if not path.is_absolute() and (base / path).is_file():
        path = base / path
    table = Table.read(path, default_sep="\t")
    col = item_col if item_col and item_col in table.columns else "item_id"
    if col not in table.columns:
        raise DataError(f"{path}: no item id column ({col!r}) in the items table")
    ds_items = align_items(table.strings(), col, item_ids)
    check_item_table(ds_items, item_ids, str(path))
    return ds_items


__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "ImportOptions", "export_dataset", "import_dataset"]
