"""The MMSSL authors' layout: ``train.json``, ``val.json``, ``test.json`` and ``NAME_feat.npy``.

Each JSON file maps a user index (a string) to a list of item indices. ``train_mat`` is never
unpickled; train comes from ``train.json``. Indices are kept (original id = ``str(index)``);
n_items is the row count of the feature files (or the largest item index + 1 without features),
n_users the largest user index + 1. An index space far beyond the data (one stray huge index)
is refused (:func:`~mmssl.data.readers.common.check_index_space`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mmssl.data.feature_files import align_dense_features, dense_features
from mmssl.data.pipeline import ImportOptions, RawInteractions
from mmssl.data.readers.common import check_index_space, index_ids, reject
from mmssl.errors import DataError

MMSSL_FILES = ("train.json", "val.json", "test.json")  # in split-code order
_NOTHING = object()
_ADVICE = "write the interactions as a table and import it with --format csv, which re-indexes ids"


def read_mmssl(src: Path, opts: ImportOptions) -> RawInteractions:
    """Read the mmssl layout in the folder ``src``."""
    if not src.is_dir():
        raise DataError(
            f"{src}: the mmssl layout is a directory with train.json, val.json, test.json"
        )
    reject(
        opts,
        "mmssl",
        ("user_col", "item_col", "rating_col", "time_col", "split_col", "threshold", "name"),
    )
    if opts.split:
        raise DataError(f"--split {opts.split}: {src} is already split (train/val/test.json)")
    users, items, split = [], [], []
    for code, fname in enumerate(MMSSL_FILES):
        path = src / fname
        u, i = read_mmssl_json(path)
        if len(u) == 0:
            raise DataError(f"{path}: empty split (no interactions)")
        users.append(u)
        items.append(i)
        split.append(np.full(len(u), code, dtype=np.int8))
    users_a, items_a = np.concatenate(users), np.concatenate(items)
    split_a = np.concatenate(split)
    arrays, paths = dense_features(src, opts.feature_paths)
    n_items = _item_count(src, arrays, paths, users_a, items_a, split_a)
    top = int(np.argmax(users_a))
    n_users = check_index_space(
        users_a, "user", f'{src / MMSSL_FILES[int(split_a[top])]}: user "{users_a[top]}"', _ADVICE
    )
    notes: list[str] = []
    return RawInteractions(
        where=str(src),
        users=users_a,
        items=items_a,
        user_ids=index_ids(n_users),
        item_ids=index_ids(n_items),
        features=align_dense_features(arrays, paths, opts.feature_id_col, index_ids(n_items), notes),
        notes=notes,
        feature_paths=paths,
        dense=True,
        split=split_a,
        split_names=tuple(str(src / f) for f in MMSSL_FILES),
        split_source="given (mmssl train.json/val.json/test.json)",
    )


def _item_count(src, arrays, paths, users, items, split) -> int:
    """n_items: the rows of the feature files (which must agree), else the largest index + 1."""
    n, first = None, None
    for name, f in arrays.items():
        if n is None:
            n, first = f.shape[0], paths[name]
        elif f.shape[0] != n:
            raise DataError(
                f"{paths[name]}: {f.shape[0]} rows but {first} has {n}: feature files must agree"
            )
    top = int(np.argmax(items))
    path = src / MMSSL_FILES[int(split[top])]
    if n is None:
        return check_index_space(items, "item", f'{path}: user "{users[top]}"', _ADVICE)
    if items[top] >= n:
        bad = int(np.argmax(items >= n))
        path = src / MMSSL_FILES[int(split[bad])]
        raise DataError(
            f'{path}: user "{users[bad]}": item index {items[bad]} out of range '
            f"(the feature files have {n} rows)"
        )
    return int(n)


def read_mmssl_json(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(users, items), int64 (n,) each, of one split file; a user listed twice is merged."""
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
        if not re.fullmatch(r"[0-9]+", key):
            what = "negative" if re.fullmatch(r"\s*-[0-9]+\s*", key) else "not an integer"
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
