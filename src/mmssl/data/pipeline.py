"""What every importer does after reading: the options, then filter, de-duplicate, k-core,
re-index, split and check.

A reader (:mod:`mmssl.data.readers`) turns a source into :class:`RawInteractions`: codes into
the source's id space, with what the source says about splits, times and ratings. :func:`finish`
then runs, in order:

1. rating threshold: keep ``rating >= threshold``;
2. de-duplication of (user, item) pairs: keep the first or the last (by time when known);
3. k-core filtering;
4. re-indexing: token sources (recbole, csv) and any k-cored source keep only the users and
   items left, in the source's id order; dense sources (mmssl, mmrec) keep their indices;
5. the split: the one the source gives, or ``ImportOptions.split``;
6. checks (no empty split) and the cold-start report.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from mmssl.data.dataset import SPLITS, Dataset, check_modality_name
from mmssl.data.splits import DEFAULT_SEED, deduplicate, kcore, parse_split, split_report
from mmssl.errors import DataError

FeatureSpecs = Mapping[str, "str | os.PathLike"] | Sequence[str] | None


@dataclass(frozen=True)
class ImportOptions:
    """Everything an import can be told; the CLI fills it from ``mmssl data import`` flags."""

    split: str | None = None  # split spec for unsplit sources, e.g. "random:8:1:1"
    seed: int = DEFAULT_SEED  # seed of the random split (2022, the MMSSL authors')
    kcore: int | None = None  # keep users and items with >= kcore interactions
    dedup: str = "first"  # which of repeated (user, item) interactions stays: first or last
    # modality name -> feature file; a mapping or ["NAME=PATH", ...], kept as (name, path) pairs
    features: tuple[tuple[str, str], ...] = ()
    feature_id_col: str = "item_id"  # item-id column of feature tables
    user_col: str | None = None  # column names; None: the format's default
    item_col: str | None = None
    rating_col: str | None = None
    time_col: str | None = None
    split_col: str | None = None
    threshold: float | None = None  # keep interactions with rating >= threshold
    name: str | None = None  # NAME of NAME.inter (mmrec, recbole)
    items: str | None = None  # items table (titles, ...) keyed by item id; recbole: NAME.item by default

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", _parse_feature_specs(self.features))
        if self.dedup not in ("first", "last"):
            raise DataError(f"--dedup {self.dedup!r}: expected first or last")
        if self.kcore is not None and (isinstance(self.kcore, bool) or int(self.kcore) < 1):
            raise DataError(f"--kcore {self.kcore}: expected a positive integer")
        try:
            object.__setattr__(self, "seed", int(self.seed))
        except (TypeError, ValueError):
            raise DataError(f"--seed {self.seed!r}: expected an integer") from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ImportOptions:
        """Options from parsed ``mmssl data import`` arguments (``--feature`` -> features)."""
        values = {}
        for f in fields(cls):
            flag = "feature" if f.name == "features" else f.name
            if hasattr(args, flag):
                value = getattr(args, flag)
                values[f.name] = () if f.name == "features" and value is None else value
        return cls(**values)

    @property
    def feature_paths(self) -> dict[str, str]:
        """Modality name -> path as given."""
        return dict(self.features)


def _parse_feature_specs(features: FeatureSpecs | tuple) -> tuple[tuple[str, str], ...]:
    if features is None:
        return ()
    if isinstance(features, (str, os.PathLike)):
        features = [features]
    if isinstance(features, Mapping):
        pairs = [(str(k), str(v)) for k, v in features.items()]
    elif all(isinstance(p, tuple) and len(p) == 2 for p in features):
        pairs = [(str(k), str(v)) for k, v in features]
    else:
        pairs = []
        for spec in features:
            name, sep, path = str(spec).partition("=")
            if not sep or not name.strip() or not path.strip():
                raise DataError(f"--feature {spec!r}: expected NAME=PATH, e.g. text=text_feat.npy")
            pairs.append((name.strip(), path.strip()))
    seen: set[str] = set()
    for name, path in pairs:
        check_modality_name(name, f"--feature {name}={path}")
        if name in seen:
            raise DataError(f"--feature {name}=...: modality {name!r} given twice")
        seen.add(name)
    return tuple(pairs)


@dataclass
class RawInteractions:
    """What a reader hands to :func:`finish`: interactions as codes into the source id space.

    Attributes:
        where: the interaction file(s), for messages.
        users, items: int64 (n_read,) codes into ``user_ids`` / ``item_ids``.
        user_ids, item_ids: str, the source's id space in index order.
        features: name -> float32 (len(item_ids), dim), one row per source item.
        feature_paths: name -> where the features came from (for ``info``).
        dense: ids are indices used as they are (mmssl, mmrec).
        split: int8 (n_read,) codes when the source is split, else None.
        split_names: how to name each split's source in an "empty split" message.
        split_source: the protocol recorded for a given split.
        timestamps, ratings: float64 (n_read,) or None.
        items_path: the source's items table (RecBole ``NAME.item``), or None.
    """

    where: str
    users: np.ndarray
    items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    features: dict[str, np.ndarray]
    feature_paths: dict[str, str]
    dense: bool
    split: np.ndarray | None = None
    split_names: tuple[str, str, str] | None = None
    split_source: str = "given"
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    items_path: str | None = None  # the source's own items table (RecBole NAME.item), if any


# --------------------------------------------------------------------- the steps
def finish(fmt: str, source: str, raw: RawInteractions, opts: ImportOptions) -> Dataset:
    """Filter, de-duplicate, k-core, re-index, split and check ``raw`` (module docstring).

    ``source`` is recorded as ``info["source"]``. Returns the dataset; DataError when nothing
    is left or a split is empty.
    """
    notes, counts = list(raw.notes), dict(raw.counts)
    counts["read"] = len(raw.users)
    if counts["read"] == 0:
        raise DataError(f"{raw.where}: no interactions")
    idx = np.arange(counts["read"])
    idx = _above_threshold(raw, idx, opts, counts, notes)
    idx = _deduplicated(raw, idx, opts, counts, notes)
    idx = _in_kcore(raw, idx, opts, counts, notes)
    users, items, user_ids, item_ids, features = _reindexed(raw, idx, opts, counts, notes)
    if len(users) == 0:
        raise DataError(f"{raw.where}: no interactions left after filtering")
    timestamps = raw.timestamps[idx] if raw.timestamps is not None else None
    split, protocol, seed = _assign_split(raw, idx, users, timestamps, opts)
    _report_cold_start(users, items, split, len(user_ids), counts, notes)
    info = {
        "source_format": fmt,
        "source": source,
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


def _above_threshold(raw, idx, opts, counts, notes) -> np.ndarray:
    """Positions with ``rating >= threshold`` (all of ``idx`` without a threshold)."""
    if opts.threshold is None:
        return idx
    above = raw.ratings[idx] >= opts.threshold
    counts["below_threshold"] = int((~above).sum())
    notes.append(f"kept ratings >= {opts.threshold:g}: removed {counts['below_threshold']}")
    return idx[above]


def _deduplicated(raw, idx, opts, counts, notes) -> np.ndarray:
    """Positions of ``idx`` left once each (user, item) pair appears once."""
    ts = raw.timestamps[idx] if raw.timestamps is not None else None
    unique = deduplicate(raw.users[idx], raw.items[idx], keep=opts.dedup, timestamps=ts)
    counts["duplicates_removed"] = int((~unique).sum())
    if counts["duplicates_removed"]:
        notes.append(
            f"removed {counts['duplicates_removed']} duplicate (user, item) interactions "
            f"(kept the {opts.dedup})"
        )
    return idx[unique]


def _in_kcore(raw, idx, opts, counts, notes) -> np.ndarray:
    """Positions of ``idx`` in the k-core (all of them without ``kcore``)."""
    if not opts.kcore:
        return idx
    core = kcore(raw.users[idx], raw.items[idx], opts.kcore)
    counts["kcore_removed"] = int((~core).sum())
    notes.append(f"{opts.kcore}-core: removed {counts['kcore_removed']} interactions")
    return idx[core]


def _reindexed(raw, idx, opts, counts, notes):
    """(users, items, user_ids, item_ids, features) of the kept interactions.

    Token sources and k-cored ones keep only the users and items that are left (in the
    source's id order, features subset alike); dense sources otherwise keep their id space.
    """
    users, items = raw.users[idx], raw.items[idx]
    user_ids, item_ids, features = raw.user_ids, raw.item_ids, raw.features
    if raw.dense and not opts.kcore:
        return users, items, user_ids, item_ids, features
    kept_users, users = np.unique(users, return_inverse=True)
    kept_items, items = np.unique(items, return_inverse=True)
    dropped_u, dropped_i = len(user_ids) - len(kept_users), len(item_ids) - len(kept_items)
    if dropped_u or dropped_i:
        notes.append(f"dropped {dropped_u} users and {dropped_i} items left without interactions")
    counts["users_dropped"], counts["items_dropped"] = dropped_u, dropped_i
    features = {n: np.ascontiguousarray(f[kept_items]) for n, f in features.items()}
    return users.ravel(), items.ravel(), user_ids[kept_users], item_ids[kept_items], features


def _assign_split(raw, idx, users, timestamps, opts) -> tuple[np.ndarray, str, int | None]:
    """(split codes int8 (n,), protocol, seed): the source's split or ``opts.split``."""
    if raw.split is not None:
        split, protocol, seed, valid_may_be_empty = raw.split[idx], raw.split_source, None, False
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
    return split, protocol, seed


def _report_cold_start(users, items, split, n_users, counts, notes) -> None:
    """Add the split's cold-start facts to ``counts`` and, when nonzero, to ``notes``."""
    report = split_report(users, items, split, n_users)
    counts.update(report)
    if report["users_without_test"]:
        notes.append(f"{report['users_without_test']} users have no test interactions")
    if report["cold_users"]:
        notes.append(f"{report['cold_users']} users are only in valid/test (cold start)")
    if report["cold_items"]:
        notes.append(f"{report['cold_items']} items are only in valid/test (cold start)")


__all__ = ["ImportOptions", "RawInteractions", "finish"]
