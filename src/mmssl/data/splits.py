"""Splitting interactions into train / valid / test, k-core filtering and de-duplication.

Split codes are those of :class:`mmssl.data.dataset.Dataset`: 0 train, 1 valid, 2 test.

Three splitters, one job each, all built from a spec string by :func:`parse_split`:

- ``random:8:1:1`` (:class:`RandomSplit`): per user, a seeded random permutation of the user's
  interactions; the first ``n_test`` go to test, the next ``n_valid`` to valid, the rest to train.
- ``user-time:8:1:1`` (:class:`UserTimeSplit`): per user, the latest ``n_test`` interactions (by
  timestamp) go to test, the ``n_valid`` before them to valid, the rest to train.
- ``global-time:T1:T2`` (:class:`GlobalTimeSplit`): ``t < T1`` train, ``T1 <= t < T2`` valid,
  ``t >= T2`` test. T1 and T2 are numbers (same unit as the timestamps) or ``YYYY-MM-DD`` dates
  (midnight UTC, compared with timestamps in seconds since the epoch).

How many held-out interactions a user with ``n`` interactions gets (:func:`holdout_counts`),
with ratios normalised to fractions ``r_train + r_valid + r_test = 1``:

1. ``n_test = round(n * r_test)`` and ``n_valid = round(n * r_valid)`` (round half to even);
2. if ``n >= 3``, a held-out part whose ratio is positive gets at least 1;
3. if ``r_train > 0``, train keeps at least 1: any excess is taken from valid first, then test.

So with 8:1:1 a user with 1 or 2 interactions is all train, with 3..14 gets 1 valid and 1 test,
with 15 gets 2 and 2, and so on: ``max(1, round(0.1 n))`` each for ``n >= 3``.

The random split reproduces the shared ml100k-mm split exactly: one
``numpy.random.default_rng(seed)`` drawn from user by user in ascending user index,
``rng.permutation(n)`` over the user's interactions in their input order (file order), test first,
then valid. The permutations come from a short Python loop over users (one numpy call each), the
rest is vectorised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from mmssl.errors import DataError

TRAIN, VALID, TEST = 0, 1, 2
DEFAULT_RATIOS = (8.0, 1.0, 1.0)
DEFAULT_SEED = 2022  # the MMSSL authors' seed


# ------------------------------------------------------------------------- helpers
def _group_ranks(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each interaction within its user group, following ``order``.

    ``order`` must list interaction positions grouped by user (ascending user). Returns
    ``(rank, count)``: int64 (n_interactions,) rank within the group and the group's size.
    """
    sorted_users = users[order]
    n = len(users)
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]]) if n else []
    sizes = np.diff(np.r_[starts, n])
    start_of = np.repeat(starts, sizes)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start_of
    count = np.empty(n, dtype=np.int64)
    count[order] = np.repeat(sizes, sizes)
    return rank, count


def holdout_counts(
    n: np.ndarray, ratios: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of valid and test interactions for users with ``n`` interactions each.

    Args:
        n: int (n_users,) interactions per user.
        ratios: (train, valid, test) proportions, any positive scale (8:1:1 or 0.8:0.1:0.1).

    Returns:
        (n_valid, n_test), int64 arrays shaped like ``n``; see the module docstring for the rule.
    """
    n = np.asarray(n, dtype=np.int64)
    total = float(sum(ratios))
    r_train, r_valid, r_test = (r / total for r in ratios)
    n_test = np.round(n * r_test).astype(np.int64)
    n_valid = np.round(n * r_valid).astype(np.int64)
    enough = n >= 3
    if r_test > 0:
        n_test = np.where(enough, np.maximum(n_test, 1), n_test)
    if r_valid > 0:
        n_valid = np.where(enough, np.maximum(n_valid, 1), n_valid)
    room = np.maximum(n - (1 if r_train > 0 else 0), 0)
    excess = np.maximum(n_test + n_valid - room, 0)
    cut = np.minimum(excess, n_valid)
    n_valid = n_valid - cut
    n_test = n_test - (excess - cut)
    return n_valid, n_test


def _codes_from_rank(rank: np.ndarray, n_valid: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Rank < n_test -> test, < n_test + n_valid -> valid, else train."""
    codes = np.full(len(rank), TRAIN, dtype=np.int8)
    codes[rank < n_test + n_valid] = VALID
    codes[rank < n_test] = TEST
    return codes


# ------------------------------------------------------------------------ splitters
@dataclass(frozen=True)
class RandomSplit:
    """Per-user random split; reproduces the shared ml100k-mm split (module docstring)."""

    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = DEFAULT_SEED
    needs_timestamps = False

    def describe(self) -> str:
        """The spec string, e.g. ``random:8:1:1``."""
        return "random:" + ":".join(_fmt_number(r) for r in self.ratios)

    def holds_out_valid(self) -> bool:
        """Whether the split can put interactions in valid (a positive valid ratio)."""
        return self.ratios[1] > 0

    def assign(self, users: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Split codes, int8 (n_interactions,), for interactions of ``users`` in input order."""
        users = np.asarray(users, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        counts = np.bincount(users) if len(users) else np.zeros(0, dtype=np.int64)
        sizes = counts[counts > 0]
        rng = np.random.default_rng(self.seed)
        # The one loop: numpy's permutation draws depend on n, so users are drawn in turn.
        perms = (
            np.concatenate([rng.permutation(int(c)) for c in sizes])
            if len(sizes)
            else np.zeros(0, dtype=np.int64)
        )
        starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
        within = np.arange(len(users)) - starts
        # perms[j] is the within-user position drawn j-th; that interaction gets rank j.
        rank = np.empty(len(users), dtype=np.int64)
        rank[order[starts + perms]] = within
        n_valid, n_test = holdout_counts(counts, self.ratios)
        return _codes_from_rank(rank, n_valid[users], n_test[users])


@dataclass(frozen=True)
class UserTimeSplit:
    """Per-user temporal split: each user's latest interactions are held out."""

    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    needs_timestamps = True

    def describe(self) -> str:
        """The spec string, e.g. ``user-time:8:1:1``."""
        return "user-time:" + ":".join(_fmt_number(r) for r in self.ratios)

    def holds_out_valid(self) -> bool:
        """Whether the split can put interactions in valid (a positive valid ratio)."""
        return self.ratios[1] > 0

    def assign(self, users: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Split codes; ties in time keep input order (the later line is the later event)."""
        if timestamps is None:
            raise DataError("--split user-time needs timestamps (a timestamp column)")
        users = np.asarray(users, dtype=np.int64)
        pos = np.arange(len(users))
        order = np.lexsort((pos, np.asarray(timestamps), users))
        rank, count = _group_ranks(users, order)
        from_end = count - 1 - rank
        counts = np.bincount(users) if len(users) else np.zeros(0, dtype=np.int64)
        n_valid, n_test = holdout_counts(counts, self.ratios)
        return _codes_from_rank(from_end, n_valid[users], n_test[users])


@dataclass(frozen=True)
class GlobalTimeSplit:
    """Global temporal split at two cut-offs: ``t < t1`` train, ``t1 <= t < t2`` valid, else test."""

    t1: float
    t2: float
    needs_timestamps = True

    def describe(self) -> str:
        """The spec string, e.g. ``global-time:100:200``."""
        return f"global-time:{_fmt_number(self.t1)}:{_fmt_number(self.t2)}"

    def holds_out_valid(self) -> bool:
        """Whether the split can put interactions in valid (``t1 < t2``)."""
        return self.t1 < self.t2

    def assign(self, users: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """Split codes, int8 (n_interactions,), from float (n_interactions,) timestamps."""
        if timestamps is None:
            raise DataError("--split global-time needs timestamps (a timestamp column)")
        t = np.asarray(timestamps, dtype=np.float64)
        return np.where(t < self.t1, TRAIN, np.where(t < self.t2, VALID, TEST)).astype(np.int8)


Splitter = RandomSplit | UserTimeSplit | GlobalTimeSplit


def parse_split(spec: str, seed: int = DEFAULT_SEED) -> Splitter:
    """Build a splitter from ``random:8:1:1``, ``user-time:8:1:1`` or ``global-time:T1:T2``.

    ``random`` and ``user-time`` alone mean 8:1:1. DataError on anything else.
    """
    kind, _, rest = spec.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind in ("random", "user-time"):
        if not parts:
            ratios = DEFAULT_RATIOS
        elif len(parts) == 3:
            try:
                ratios = tuple(float(p) for p in parts)
            except ValueError:
                raise DataError(
                    f"--split {spec!r}: ratios must be numbers, e.g. {kind}:8:1:1"
                ) from None
            if any(not np.isfinite(r) or r < 0 for r in ratios) or sum(ratios) <= 0:
                raise DataError(f"--split {spec!r}: ratios must be >= 0 with a positive sum")
            if ratios[2] == 0:
                raise DataError(f"--split {spec!r}: the test ratio must be positive")
        else:
            raise DataError(
                f"--split {spec!r}: expected {kind}:TRAIN:VALID:TEST, e.g. {kind}:8:1:1"
            )
        if kind == "random":
            if int(seed) < 0:
                raise DataError(f"--seed {seed}: expected a non-negative integer")
            return RandomSplit(ratios=ratios, seed=int(seed))
        return UserTimeSplit(ratios=ratios)
    if kind == "global-time":
        if len(parts) != 2:
            raise DataError(
                f"--split {spec!r}: expected global-time:T1:T2 (numbers or YYYY-MM-DD dates)"
            )
        t1, t2 = (_parse_time(p, spec) for p in parts)
        if t1 > t2:
            raise DataError(f"--split {spec!r}: T1 must not be after T2")
        return GlobalTimeSplit(t1=t1, t2=t2)
    raise DataError(
        f"--split {spec!r}: unknown protocol {kind!r} (known: random, user-time, global-time)"
    )


def _parse_time(text: str, spec: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day.timestamp()
        except ValueError:
            pass
    raise DataError(f"--split {spec!r}: {text!r} is neither a number nor a YYYY-MM-DD date")


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# ---------------------------------------------------------------- filtering steps
def deduplicate(
    users: np.ndarray,
    items: np.ndarray,
    keep: str = "first",
    timestamps: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of interactions to keep so that each (user, item) pair appears once.

    ``keep="first"`` keeps the earliest occurrence, ``"last"`` the latest: by timestamp when
    given (ties broken by input order), else by input order. Returns bool (n_interactions,);
    the number removed is ``(~mask).sum()``.
    """
    if keep not in ("first", "last"):
        raise DataError(f"--dedup {keep!r}: expected first or last")
    n = len(users)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    pos = np.arange(n)
    keys = (pos,) if timestamps is None else (pos, np.asarray(timestamps))
    order = np.lexsort((*keys, items, users))
    u, i = users[order], items[order]
    new_pair = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]
    if keep == "first":
        chosen = new_pair
    else:
        chosen = np.r_[new_pair[1:], True]
    mask[order[chosen]] = True
    return mask


def kcore(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Mask of interactions in the k-core: repeatedly drop users and items with fewer than ``k``
    interactions until none is left. Returns bool (n_interactions,)."""
    if k < 1:
        raise DataError(f"--kcore {k}: expected a positive integer")
    mask = np.ones(len(users), dtype=bool)
    n_u = int(users.max()) + 1 if len(users) else 0
    n_i = int(items.max()) + 1 if len(items) else 0
    while True:
        u, i = users[mask], items[mask]
        u_count = np.bincount(u, minlength=n_u)
        i_count = np.bincount(i, minlength=n_i)
        drop = (u_count[users] < k) | (i_count[items] < k)
        drop &= mask
        if not drop.any():
            return mask
        mask &= ~drop


def split_report(users: np.ndarray, items: np.ndarray, split: np.ndarray, n_users: int) -> dict:
    """Cold-start facts of a split (legal, only reported).

    Returns counts: ``users_without_test`` (of ``n_users``), ``cold_users`` (in valid/test but not
    train), ``cold_items`` (in valid/test but not train).
    """
    train = split == TRAIN
    held = ~train
    in_train_u = np.zeros(n_users, dtype=bool)
    in_train_u[users[train]] = True
    has_test = np.zeros(n_users, dtype=bool)
    has_test[users[split == TEST]] = True
    n_items = int(items.max()) + 1 if len(items) else 0
    in_train_i = np.zeros(n_items, dtype=bool)
    in_train_i[items[train]] = True
    cold_u = np.unique(users[held][~in_train_u[users[held]]])
    cold_i = np.unique(items[held][~in_train_i[items[held]]])
    return {
        "users_without_test": int((~has_test).sum()),
        "cold_users": int(len(cold_u)),
        "cold_items": int(len(cold_i)),
    }
