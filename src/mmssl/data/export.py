"""Exporters from a :class:`~mmssl.data.dataset.Dataset` to other layouts.

- ``mmssl``: ``train.json``, ``val.json``, ``test.json`` (users with interactions in that split,
  ascending, each with its sorted unique item indices), ``NAME_feat.npy`` (float32), and
  ``train_mat``, a pickled scipy CSR (n_users, n_items) of train for the authors' code. Original
  ids are not kept: the layout has only indices.
- ``mmrec``: ``DEST_NAME.inter`` (``userID itemID rating timestamp x_label``; rating 1,
  timestamp 0 when the dataset has none) and ``NAME_feat.npy``.

Both are written whole or not at all (:func:`mmssl.io.atomic_directory`).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.data.dataset import SPLITS, Dataset
from mmssl.data.layout import check_destination, exists_error
from mmssl.errors import DataError
from mmssl.io import atomic_directory

EXPORT_FORMATS = ("mmssl", "mmrec")
MMSSL_FILES = ("train.json", "val.json", "test.json")  # in split-code order


def export_dataset(ds: Dataset, fmt: str, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ds`` in layout ``fmt`` (``mmssl`` or ``mmrec``) to the directory ``dest``.

    DataError if ``fmt`` is unknown, or ``dest`` exists and not ``overwrite`` (or is a file);
    WriteError in one line when it cannot be written, with nothing left behind.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"unknown export format {fmt!r} (known: {', '.join(EXPORT_FORMATS)})")
    dest = check_destination(dest, overwrite, what="export")
    with atomic_directory(dest, overwrite, exists_error=exists_error) as tmp:
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
        (tmp / fname).write_text(json.dumps(lists), encoding="utf-8")
    with open(tmp / "train_mat", "wb") as fh:  # for the authors' code, which unpickles it
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


__all__ = ["EXPORT_FORMATS", "export_dataset"]
