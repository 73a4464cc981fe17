"""Fixtures shared by all tests: the real ml100k-mm data (or a skip) and small generated datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmssl.data.dataset import Dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "datasets" / "ml100k-mm"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ml100k-mm directory (layouts ``mmssl/``, ``mmrec/``, ``raw/``), or skip the test."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            "../shared/datasets/ml100k-mm not present: real-data tests need it next to the repo "
            f"(looked in {SHARED_DATA.resolve()})"
        )
    return SHARED_DATA.resolve()


def generate_dataset(
    n_users: int = 12,
    n_items: int = 20,
    per_user: tuple[int, int] = (3, 10),
    modalities: dict[str, int] | None = None,
    timestamps: bool = True,
    seed: int = 0,
) -> Dataset:
    """A small random dataset: every user has ``per_user`` (min, max) distinct items, split
    per user (last interaction test, the one before valid, rest train); features float32."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        k = int(rng.integers(per_user[0], per_user[1] + 1))
        chosen = rng.choice(n_items, size=min(k, n_items), replace=False)
        users += [u] * len(chosen)
        items += chosen.tolist()
    users_a = np.array(users, dtype=np.int64)
    split = np.zeros(len(users_a), dtype=np.int8)
    ends = np.flatnonzero(np.r_[users_a[1:] != users_a[:-1], True])
    split[ends] = 2
    split[ends - 1] = 1
    modalities = {"text": 8, "image": 4} if modalities is None else modalities
    features = {
        name: rng.standard_normal((n_items, dim)).astype(np.float32)
        for name, dim in modalities.items()
    }
    return Dataset(
        users=users_a,
        items=np.array(items, dtype=np.int64),
        split=split,
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        features=features,
        timestamps=np.arange(len(users_a), dtype=np.float64) * 60.0 if timestamps else None,
        info={"source_format": "generated", "split": "generated", "seed": seed},
    )


@pytest.fixture
def make_dataset() -> Callable[..., Dataset]:
    """Factory of small generated datasets; see ``generate_dataset`` for the arguments."""
    return generate_dataset


# ----------------------------------------------------------- small sources on disk
# One tiny dataset written in every import layout, for format and error tests.
TINY_TRAIN = {"0": [0, 1, 2], "1": [1, 2, 3], "2": [2, 3, 4], "3": [0, 5]}
TINY_VALID = {"0": [3], "1": [4], "2": [5]}
TINY_TEST = {"0": [4], "1": [5], "2": [0], "3": [1]}
TINY_ITEMS = 6


def tiny_features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "text": rng.standard_normal((TINY_ITEMS, 3)).astype(np.float32),
        "kg": rng.standard_normal((TINY_ITEMS, 2)).astype(np.float32),
    }


def tiny_rows() -> list[tuple[int, int, int]]:
    """(user, item, split code) of the tiny dataset, train then valid then test."""
    rows = []
    for code, split in enumerate((TINY_TRAIN, TINY_VALID, TINY_TEST)):
        rows += [(int(u), i, code) for u, items in split.items() for i in items]
    return rows


def write_sources(root: Path) -> dict[str, Path]:
    """Write the tiny dataset as mmssl and mmrec layouts, RecBole atomic files and a CSV.

    RecBole and CSV use original ids ``user 100 + u`` and ``item 1000 - i`` (so that ascending
    original-id order reverses the item indices) with timestamps ``10 * line``.
    """
    import json

    feats = tiny_features()
    mmssl = root / "mmssl"
    mmssl.mkdir(parents=True)
    for name, split in (("train", TINY_TRAIN), ("val", TINY_VALID), ("test", TINY_TEST)):
        (mmssl / f"{name}.json").write_text(json.dumps(split))
    (mmssl / "train_mat").write_bytes(b"not a pickle: must never be loaded")
    mmrec = root / "mmrec"
    mmrec.mkdir()
    for name, f in feats.items():
        np.save(mmssl / f"{name}_feat.npy", f)
        np.save(mmrec / f"{name}_feat.npy", f)
    rows = tiny_rows()
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    lines += [f"{u}\t{i}\t4\t{10 * n}\t{c}" for n, (u, i, c) in enumerate(rows)]
    (mmrec / "tiny.inter").write_text("\n".join(lines) + "\n")
    recbole = root / "tiny"
    recbole.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{100 + u}\t{1000 - i}\t{1 + n % 5}\t{10 * n}" for n, (u, i, _) in enumerate(rows)]
    (recbole / "tiny.inter").write_text("\n".join(lines) + "\n")
    csv = root / "tiny.csv"
    lines = ["user,item,rating,time,part"]
    lines += [
        f"{100 + u},{1000 - i},{1 + n % 5},{10 * n},{('train', 'valid', 'test')[c]}"
        for n, (u, i, c) in enumerate(rows)
    ]
    csv.write_text("\n".join(lines) + "\n")
    return {"mmssl": mmssl, "mmrec": mmrec, "recbole": recbole, "csv": csv}


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """The tiny dataset on disk in every import layout (see ``write_sources``)."""
    return write_sources(tmp_path / "src")


@pytest.fixture
def tiny() -> SimpleNamespace:
    """Facts of the tiny dataset that ``sources`` writes: ``n_items``, ``features()``,
    ``rows()`` ((user, item, split code) in train, valid, test order)."""
    return SimpleNamespace(n_items=TINY_ITEMS, features=tiny_features, rows=tiny_rows)
