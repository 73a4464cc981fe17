"""The in-memory dataset: interactions with their split, item modalities and id maps.

Its one on-disk layout is written by :func:`save_dataset` and read by :func:`load_dataset`
(both in :mod:`mmssl.data.layout`, re-exported here).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mmssl.errors import DataError

SPLITS = ("train", "valid", "test")
MODALITY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_MODALITY_NAME = 64


@dataclass(repr=False)
class Dataset:
    """Interactions with their split, item modalities and id maps.

    Attributes:
        users: int64 (n_interactions,) user indices.
        items: int64 (n_interactions,) item indices.
        split: int8 (n_interactions,) 0 train, 1 valid, 2 test.
        user_ids: original user ids (as strings) in index order; its length is n_users.
        item_ids: original item ids (as strings) in index order; its length is n_items.
        features: modality name -> float32 (n_items, dim).
        timestamps: optional float64 (n_interactions,).
        info: provenance: ``source``, ``split`` protocol, ``seed``, notes from the importer.
        item_table: optional DataFrame of strings about the items (titles, ...): an ``item_id``
            column equal to ``item_ids`` (one row per item, in index order) and any others;
            saved as ``items.tsv``.
        path: the directory the dataset was loaded from or saved to; None in memory. Not
            compared, not shown.
    """

    users: np.ndarray
    items: np.ndarray
    split: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    timestamps: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    item_table: pd.DataFrame | None = field(default=None, compare=False)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.split = np.asarray(self.split, dtype=np.int8)
        self.user_ids = np.asarray(self.user_ids, dtype=str)
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        self._matrices: dict[str, sp.csr_matrix] = {}
        self._user_index: dict[str, int] | None = None
        self._item_index: dict[str, int] | None = None
        self.validate(str(self.path) if self.path is not None else "dataset")

    @classmethod
    def from_frame(
        cls,
        interactions: pd.DataFrame,
        features: dict | None = None,
        items: pd.DataFrame | None = None,
        split: str | None = None,
        seed: int = 2022,
        user_col: str = "user_id",
        item_col: str = "item_id",
        time_col: str | None = None,
        split_col: str | None = None,
        rating_col: str | None = None,
        threshold: float | None = None,
        kcore: int | None = None,
        dedup: str = "first",
    ) -> Dataset:
        """A dataset from a DataFrame of interactions, through the importers' pipeline.

        It is ``mmssl data import --format csv`` fed from memory: original ids (any hashable)
        become stripped strings, re-indexed in ascending original-id order (numeric when every
        id is an integer), then the rating threshold, de-duplication, k-core, split and checks.

        Args:
            interactions: one row per interaction with ``user_col`` and ``item_col`` (and
                ``time_col``, ``split_col``, ``rating_col`` when named).
            features: modality name -> one of
                - a DataFrame with an ``item_col`` column and numeric columns (the vector);
                  items without a row get zeros, rows of unknown items are ignored (both noted);
                - ``(ids, array)``: item ids and a float (len(ids), dim) array, the same keyed by id;
                - an array (n_distinct_items, dim) whose rows follow the sorted distinct item ids
                  of ``interactions`` (the order above), before any filtering.
            items: optional DataFrame with an ``item_col`` column and e.g. a title; kept as
                :attr:`item_table` (one row per item of the dataset).
            split: split spec (``"random:8:1:1"``, ``"user-time:8:1:1"``,
                ``"global-time:T1:T2"``), or None when ``split_col`` gives the split.
            seed: seed of the random split.
            user_col: the user id column.
            item_col: the item id column (also of ``items`` and of feature DataFrames).
            time_col: optional timestamp column (numbers or dates), for time splits and
                de-duplication.
            split_col: optional column with the split (``train``/``valid``/``test`` or 0/1/2).
            rating_col: optional rating column, for ``threshold``.
            threshold: keep interactions with ``rating_col >= threshold``.
            kcore: keep the k-core (users and items with at least ``kcore`` interactions).
            dedup: ``"first"`` or ``"last"`` of repeated (user, item) pairs.

        Raises:
            DataError: in one line, naming the column, the row and the problem.
        """
        from mmssl.data.readers.csv import dataset_from_frame

        return dataset_from_frame(
            interactions, features=features, items=items, split=split, seed=seed,
            user_col=user_col, item_col=item_col, time_col=time_col, split_col=split_col,
            rating_col=rating_col, threshold=threshold, kcore=kcore, dedup=dedup,
        )

    # ----------------------------------------------------------------- basic facts
    @property
    def n_users(self) -> int:
        """Number of users (length of ``user_ids``)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (length of ``item_ids``)."""
        return len(self.item_ids)

    @property
    def modalities(self) -> dict[str, int]:
        """Modality name -> feature width."""
        return {name: int(f.shape[1]) for name, f in self.features.items()}

    def split_size(self, split: str) -> int:
        """Number of interactions in ``split`` (train, valid or test)."""
        return int((self.split == _split_code(split)).sum())

    def matrix(self, split: str) -> sp.csr_matrix:
        """The (n_users, n_items) 0/1 float32 CSR matrix of one split; cached."""
        if split not in self._matrices:
            mask = self.split == _split_code(split)
            data = np.ones(int(mask.sum()), dtype=np.float32)
            m = sp.csr_matrix(
                (data, (self.users[mask], self.items[mask])), shape=(self.n_users, self.n_items)
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._matrices[split] = m
        return self._matrices[split]

    def __repr__(self) -> str:
        sizes = " / ".join(f"{s} {self.split_size(s)}" for s in SPLITS)
        mods = ", ".join(f"{n} ({d})" for n, d in self.modalities.items()) or "none"
        split = self.info.get("split") or "-"
        if self.info.get("seed") is not None:
            split += f" seed {self.info['seed']}"
        return (
            f"Dataset({self.n_users} users, {self.n_items} items, {len(self.users)} "
            f"interactions: {sizes}; modalities {mods}; split {split})"
        )

    # ------------------------------------------------------------------- id maps
    def user_index(self, original_id: str | int) -> int:
        """Index of an original user id; DataError if unknown."""
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        try:
            return self._user_index[str(original_id)]
        except KeyError:
            raise DataError(f"unknown user id {original_id!r}") from None

    def item_index(self, original_id: str | int) -> int:
        """Index of an original item id; DataError if unknown."""
        if self._item_index is None:
            self._item_index = {u: i for i, u in enumerate(self.item_ids)}
        try:
            return self._item_index[str(original_id)]
        except KeyError:
            raise DataError(f"unknown item id {original_id!r}") from None

    # -------------------------------------------------------------- validation
    def validate(self, where: str = "dataset") -> None:
        """Raise DataError unless lengths, index ranges, split codes, modality names and
        features (finite float (n_items, dim)) are consistent."""
        n = len(self.users)
        if not (len(self.items) == len(self.split) == n):
            raise DataError(f"{where}: users, items and split have different lengths")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise DataError(f"{where}: timestamps length {len(self.timestamps)} != {n}")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise DataError(f"{where}: user index out of range [0, {self.n_users})")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise DataError(f"{where}: item index out of range [0, {self.n_items})")
        if n and not np.isin(self.split, (0, 1, 2)).all():
            raise DataError(f"{where}: split codes must be 0 (train), 1 (valid) or 2 (test)")
        for name, f in self.features.items():
            check_modality_name(name, f"{where}: features")
            check_features(f, self.n_items, f"{where}: features[{name!r}]")
        if self.item_table is not None:
            check_item_table(self.item_table, self.item_ids, f"{where}: item_table")

    # ---------------------------------------------------------------- checksums
    def checksums(self) -> dict[str, str]:
        """sha256 of each split's sorted (user, item) index pairs and of each modality."""
        out = self.split_checksums()
        for name, f in sorted(self.features.items()):
            out[f"features:{name}"] = _array_sha256(f)
        return out

    def split_checksums(self) -> dict[str, str]:
        """sha256 of each split's sorted (user, item) index pairs."""
        out = {}
        for code, name in enumerate(SPLITS):
            mask = self.split == code
            u, i = self.users[mask], self.items[mask]
            order = np.lexsort((i, u))
            pairs = np.stack([u[order], i[order]], axis=1).astype("<i8")
            out[f"split:{name}"] = hashlib.sha256(pairs.tobytes()).hexdigest()
        return out

    def stats(self) -> dict:
        """Counts a user wants to see before training (``mmssl data stats``)."""
        train = self.split == 0
        heldout = ~train
        train_items = np.zeros(self.n_items, dtype=bool)
        train_items[self.items[train]] = True
        train_users = np.zeros(self.n_users, dtype=bool)
        train_users[self.users[train]] = True
        cold_items = np.unique(self.items[heldout][~train_items[self.items[heldout]]])
        cold_users = np.unique(self.users[heldout][~train_users[self.users[heldout]]])
        n = len(self.users)
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "train": self.split_size("train"),
            "valid": self.split_size("valid"),
            "test": self.split_size("test"),
            "density": n / max(1, self.n_users * self.n_items),
            "modalities": self.modalities,
            "cold_items": int(len(cold_items)),
            "cold_users": int(len(cold_users)),
            "users_with_valid": int(len(np.unique(self.users[self.split == 1]))),
            "users_with_test": int(len(np.unique(self.users[self.split == 2]))),
            "zero_feature_rows": {
                name: int((~np.any(f != 0, axis=1)).sum()) for name, f in self.features.items()
            },
            "split_protocol": self.info.get("split"),
            "seed": self.info.get("seed"),
        }


def _split_code(split: str) -> int:
    try:
        return SPLITS.index(split)
    except ValueError:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}") from None


def _array_sha256(a: np.ndarray, chunk_rows: int = 65536) -> str:
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    for start in range(0, len(a), chunk_rows):
        h.update(np.ascontiguousarray(a[start : start + chunk_rows]).tobytes())
    return h.hexdigest()


def check_modality_name(name: str, where: str) -> str:
    """Return ``name`` if it is a safe modality name, else raise a one-line DataError.

    The one rule for every place a name enters (``--feature NAME=``, ``features --name``,
    ``dataset.json``, ``Dataset.features``): a letter or digit, then letters, digits, ``_``,
    ``.`` or ``-``, at most 64 characters. It becomes the file ``features/NAME.npy``, so
    separators, ``..`` and absolute paths are refused.
    """
    text = name if isinstance(name, str) else repr(name)
    if (
        not isinstance(name, str)
        or name in (".", "..")
        or len(name) > MAX_MODALITY_NAME
        or not MODALITY_NAME_RE.fullmatch(name)
    ):
        raise DataError(
            f"{where}: modality name {text!r} must be a letter or digit followed by letters, "
            f"digits, _ . - (at most {MAX_MODALITY_NAME} characters)"
        )
    return name


def check_features(f: np.ndarray, n_items: int, where: str) -> None:
    """Raise DataError unless ``f`` is a finite 2-d array with ``n_items`` rows."""
    if f.ndim != 2:
        raise DataError(f"{where}: expected a 2-d array (items x dim), got shape {f.shape}")
    if f.shape[0] != n_items:
        raise DataError(f"{where}: {f.shape[0]} rows but the dataset has {n_items} items")
    if f.shape[1] == 0:
        raise DataError(f"{where}: zero feature columns")
    for start in range(0, len(f), 65536):
        block = np.asarray(f[start : start + 65536])
        if not np.isfinite(block).all():
            bad = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise DataError(f"{where}: NaN or infinite value in row {bad}")


def check_item_table(table: pd.DataFrame, item_ids: np.ndarray, where: str) -> None:
    """Raise DataError unless ``table`` has an ``item_id`` column equal to ``item_ids`` and
    string cells without tabs or line breaks (it is saved as ``items.tsv``)."""
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"{where}: expected a DataFrame, got {type(table).__name__}")
    if "item_id" not in table.columns:
        raise DataError(f"{where}: no 'item_id' column")
    if len(table) != len(item_ids) or not np.array_equal(
        table["item_id"].to_numpy(dtype=str), np.asarray(item_ids, dtype=str)
    ):
        raise DataError(f"{where}: the item_id column must equal the dataset's item ids, in order")
    for col in table.columns:
        if not isinstance(col, str) or not col or re.search(r"[\t\r\n]", col):
            raise DataError(f"{where}: column name {col!r} is empty or has a tab or line break")
        bad = table[col].astype(str).str.contains(r"[\t\r\n]", regex=True).to_numpy(dtype=bool)
        if bad.any():
            item = table["item_id"].iloc[int(np.argmax(bad))]
            raise DataError(f"{where}: column {col!r} of item {item!r} has a tab or line break")


from mmssl.data.layout import load_dataset, save_dataset  # noqa: E402  (the layout needs Dataset)

__all__ = [
    "SPLITS",
    "Dataset",
    "check_features",
    "check_item_table",
    "check_modality_name",
    "load_dataset",
    "save_dataset",
]
