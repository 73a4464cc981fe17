"""The in-memory dataset and its one canonical on-disk layout.

Layout of a dataset directory (written by ``save_dataset``, read by ``load_dataset``)::

    dataset.json        counts, modalities and dims, split protocol and seed, checksums
    interactions.tsv    header ``user  item  split  [timestamp]``; indices, split in {train,valid,test}
    user_ids.txt        original user id of index 0, 1, ... (one per line)
    item_ids.txt        original item id of index 0, 1, ...
    features/NAME.npy   float32 (n_items, dim), one row per item in index order
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mmssl.errors import DataError

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1


@dataclass
class Dataset:
    """Interactions with their split, item modalities and id maps.

    Attributes:
        users, items: int64 (n_interactions,) user and item indices.
        split: int8 (n_interactions,) 0 train, 1 valid, 2 test.
        user_ids, item_ids: original ids (as strings) in index order; their lengths are
            n_users and n_items.
        features: modality name -> float32 (n_items, dim).
        timestamps: optional float64 (n_interactions,).
        info: provenance: ``source``, ``split`` protocol, ``seed``, notes from the importer.
    """

    users: np.ndarray
    items: np.ndarray
    split: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    timestamps: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.split = np.asarray(self.split, dtype=np.int8)
        self.user_ids = np.asarray(self.user_ids, dtype=str)
        self.item_ids = np.asarray(self.item_ids, dtype=str)
        self._matrices: dict[str, sp.csr_matrix] = {}
        self._user_index: dict[str, int] | None = None
        self._item_index: dict[str, int] | None = None
        self.validate()

    # ----------------------------------------------------------------- basic facts
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def modalities(self) -> dict[str, int]:
        """Modality name -> feature width."""
        return {name: int(f.shape[1]) for name, f in self.features.items()}

    def split_size(self, split: str) -> int:
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
        if self._item_index is None:
            self._item_index = {u: i for i, u in enumerate(self.item_ids)}
        try:
            return self._item_index[str(original_id)]
        except KeyError:
            raise DataError(f"unknown item id {original_id!r}") from None

    # -------------------------------------------------------------- validation
    def validate(self, where: str = "dataset") -> None:
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
            check_features(f, self.n_items, f"{where}: features[{name!r}]")

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


# ---------------------------------------------------------------------- on disk
def save_dataset(ds: Dataset, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``dest`` atomically: a temporary sibling directory, then a rename."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: destination exists (use --overwrite to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        # mkdtemp makes a private (0700) directory: give it the mode a plain mkdir would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        cols = {"user": ds.users, "item": ds.items, "split": np.array(SPLITS)[ds.split]}
        if ds.timestamps is not None:
            cols["timestamp"] = ds.timestamps
        pd.DataFrame(cols).to_csv(tmp / "interactions.tsv", sep="\t", index=False)
        _write_lines(tmp / "user_ids.txt", ds.user_ids)
        _write_lines(tmp / "item_ids.txt", ds.item_ids)
        (tmp / "features").mkdir()
        for name, f in ds.features.items():
            np.save(tmp / "features" / f"{name}.npy", np.ascontiguousarray(f, dtype=np.float32))
        meta = {
            "format_version": FORMAT_VERSION,
            "users": ds.n_users,
            "items": ds.n_items,
            "interactions": {s: ds.split_size(s) for s in SPLITS},
            "modalities": ds.modalities,
            "has_timestamps": ds.timestamps is not None,
            "info": ds.info,
            "checksums": ds.checksums(),
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def load_dataset(path: str | os.PathLike, mmap: bool = True) -> Dataset:
    """Read a dataset directory written by ``save_dataset``; features are memory-mapped."""
    path = Path(path)
    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: missing (is {path} a dataset made by 'mmssl data import'?)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path}: line {e.lineno}: malformed JSON: {e.msg}") from None
    inter_path = path / "interactions.tsv"
    try:
        df = pd.read_csv(inter_path, sep="\t", dtype={"split": str})
    except FileNotFoundError:
        raise DataError(f"{inter_path}: missing") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{inter_path}: malformed: {str(e).splitlines()[0]}") from None
    for col in ("user", "item", "split"):
        if col not in df.columns:
            raise DataError(f"{inter_path}: missing column {col!r}")
    codes = pd.Categorical(df["split"], categories=list(SPLITS)).codes
    if (codes < 0).any():
        line = int(np.argmax(codes < 0)) + 2
        raise DataError(f"{inter_path}: line {line}: split must be train, valid or test")
    features = {}
    for name in meta.get("modalities", {}):
        fpath = path / "features" / f"{name}.npy"
        try:
            features[name] = np.load(fpath, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{fpath}: missing") from None
        except (ValueError, OSError) as e:
            raise DataError(f"{fpath}: unreadable .npy: {e}") from None
        if features[name].dtype != np.float32:
            raise DataError(f"{fpath}: dtype {features[name].dtype}, expected float32")
    ds = Dataset(
        users=df["user"].to_numpy(),
        items=df["item"].to_numpy(),
        split=codes.astype(np.int8),
        user_ids=_read_lines(path / "user_ids.txt"),
        item_ids=_read_lines(path / "item_ids.txt"),
        features=features,
        timestamps=df["timestamp"].to_numpy(np.float64) if "timestamp" in df.columns else None,
        info=meta.get("info", {}),
    )
    expected = meta.get("checksums", {})
    actual = ds.split_checksums() if expected else {}
    for key in (f"split:{s}" for s in SPLITS):
        if key in expected and expected[key] != actual[key]:
            raise DataError(f"{inter_path}: checksum of {key} differs from dataset.json")
    return ds


def _write_lines(path: Path, values: np.ndarray) -> None:
    path.write_text("".join(f"{v}\n" for v in values), encoding="utf-8")


def _read_lines(path: Path) -> np.ndarray:
    try:
        # split on "\n" only: str.splitlines() also breaks at \x85, \u2028, ... inside an id
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines[-1] == "":
            lines.pop()
        return np.array(lines, dtype=str)
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
