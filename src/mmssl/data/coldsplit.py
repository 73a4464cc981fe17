"""Cold-item splits: a seeded share of the items is held out entirely, for cold-start evaluation.

:func:`hold_out_items` cuts a dataset in two. The **warm** dataset keeps the other items and
their interactions, with their split codes unchanged (so the usual evaluation still runs on
it); models train on it and never see a held-out item, not even as a sampled negative. The
**cold** dataset has the same users and only the held-out items, with their features, their
rows of the items table and every interaction with them, all marked ``test``.

On disk the cold part is the sub-folder ``cold/`` of the warm dataset's folder, itself a
dataset folder (:func:`save_with_cold_items`, :func:`load_cold_items`); ``mmssl data import
--cold-items FRACTION`` writes both. ``mmssl evaluate --run RUN --cold-items`` reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmssl.data.dataset import Dataset
from mmssl.data.layout import check_destination, exists_error, load_dataset, save_dataset
from mmssl.errors import DataError
from mmssl.io import atomic_directory

COLD_DIR = "cold"


def hold_out_items(ds: Dataset, fraction: float, seed: int = 2022) -> tuple[Dataset, Dataset]:
    """``(warm, cold)``: ``round(fraction * n_items)`` items drawn by ``default_rng(seed)``
    (at least one) held out with all their interactions (module docstring)."""
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise DataError(f"--cold-items {fraction!r}: expected a fraction in (0, 1)") from None
    if not 0 < fraction < 1:
        raise DataError(f"--cold-items {fraction}: expected a fraction in (0, 1)")
    n_cold = max(1, int(round(fraction * ds.n_items)))
    if n_cold >= ds.n_items:
        raise DataError(f"--cold-items {fraction}: would hold out every item")
    rng = np.random.default_rng(seed)
    is_cold = np.zeros(ds.n_items, dtype=bool)
    is_cold[rng.choice(ds.n_items, size=n_cold, replace=False)] = True
    warm_items, cold_items = np.flatnonzero(~is_cold), np.flatnonzero(is_cold)
    on_cold = is_cold[ds.items]
    warm = _subset(ds, warm_items, ~on_cold, split=None)
    if warm.split_size("train") == 0:
        raise DataError("--cold-items: no training interaction is left on the warm items")
    cold = _subset(ds, cold_items, on_cold, split=2)
    facts = {"fraction": fraction, "seed": int(seed), "items": int(n_cold),
             "interactions": int(on_cold.sum()), "folder": COLD_DIR}
    warm.info = {**ds.info, "cold_items": facts, "notes": list(ds.info.get("notes", [])) + [
        f"cold items: {n_cold} items ({fraction:g}, seed {seed}) held out with their "
        f"{facts['interactions']} interactions, in {COLD_DIR}/"]}
    cold.info = {**ds.info, "cold_items": facts, "split": "cold-items (all test)",
                 "notes": [f"the {n_cold} held-out items of the warm dataset in .."]}
    return warm, cold


def _subset(ds: Dataset, keep_items: np.ndarray, rows: np.ndarray, split: int | None) -> Dataset:
    new_index = np.full(ds.n_items, -1, dtype=np.int64)
    new_index[keep_items] = np.arange(len(keep_items))
    table = None
    if ds.item_table is not None:
        table = ds.item_table.iloc[keep_items].reset_index(drop=True)
    codes = ds.split[rows] if split is None else np.full(int(rows.sum()), split, dtype=np.int8)
    return Dataset(
        users=ds.users[rows], items=new_index[ds.items[rows]], split=codes,
        user_ids=ds.user_ids, item_ids=ds.item_ids[keep_items],
        features={m: np.ascontiguousarray(np.asarray(f)[keep_items]) for m, f in ds.features.items()},
        timestamps=None if ds.timestamps is None else ds.timestamps[rows],
        info=dict(ds.info), item_table=table,
    )


def save_with_cold_items(warm: Dataset, cold: Dataset, dest: str | os.PathLike,
                         overwrite: bool = False) -> Path:
    """Write ``warm`` to ``dest`` and ``cold`` to ``dest/cold/``, both or neither."""
    dest = check_destination(dest, overwrite)
    with atomic_directory(dest, overwrite, exists_error=exists_error) as tmp:
        save_dataset(warm, tmp, overwrite=True)
        save_dataset(cold, tmp / COLD_DIR)
    warm.path = dest.resolve()
    cold.path = (dest / COLD_DIR).resolve()
    return dest


def load_cold_items(path: str | os.PathLike) -> Dataset:
    """The held-out items of the dataset folder ``path`` (its ``cold/``); DataError if none."""
    path = Path(path)
    if not (path / COLD_DIR / "dataset.json").is_file():
        raise DataError(f"{path}: no held-out items ({COLD_DIR}/ is missing): import the data "
                        "with --cold-items FRACTION")
    return load_dataset(path / COLD_DIR)


__all__ = ["COLD_DIR", "hold_out_items", "load_cold_items", "save_with_cold_items"]
