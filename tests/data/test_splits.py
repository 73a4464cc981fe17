"""Splits, k-core and de-duplication against slow per-user references and hand-made cases."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mmssl.data.splits import (
    TEST,
    TRAIN,
    VALID,
    GlobalTimeSplit,
    RandomSplit,
    UserTimeSplit,
    deduplicate,
    holdout_counts,
    kcore,
    parse_split,
    split_report,
)
from mmssl.errors import DataError


# ------------------------------------------------------------------- slow references
def reference_random_split(users, seed, ratios=(8, 1, 1)):
    """The shared ml100k-mm rule, one user at a time: permute the user's interactions (input
    order) with one default_rng, users ascending; test first, then valid."""
    users = np.asarray(users)
    codes = np.zeros(len(users), dtype=np.int8)
    rng = np.random.default_rng(seed)
    for u in range(users.max() + 1):
        positions = np.flatnonzero(users == u)
        n = len(positions)
        if n == 0:
            continue
        perm = positions[rng.permutation(n)]
        n_valid, n_test = reference_counts(n, ratios)
        codes[perm[:n_test]] = TEST
        codes[perm[n_test : n_test + n_valid]] = VALID
    return codes


def reference_counts(n, ratios):
    total = sum(ratios)
    n_test, n_valid = round(n * ratios[2] / total), round(n * ratios[1] / total)
    if n >= 3:
        n_test = max(n_test, 1) if ratios[2] else n_test
        n_valid = max(n_valid, 1) if ratios[1] else n_valid
    room = n - 1 if ratios[0] > 0 else n
    while n_test + n_valid > max(room, 0):
        if n_valid:
            n_valid -= 1
        else:
            n_test -= 1
    return n_valid, n_test


def reference_kcore(users, items, k):
    pairs = list(zip(users.tolist(), items.tolist()))
    alive = [True] * len(pairs)
    changed = True
    while changed:
        changed = False
        uc, ic = {}, {}
        for (u, i), a in zip(pairs, alive):
            if a:
                uc[u] = uc.get(u, 0) + 1
                ic[i] = ic.get(i, 0) + 1
        for j, (u, i) in enumerate(pairs):
            if alive[j] and (uc[u] < k or ic[i] < k):
                alive[j] = False
                changed = True
    return np.array(alive)


def random_interactions(n_users=50, n_items=40, n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_users, n), rng.integers(0, n_items, n)


# ------------------------------------------------------------------ holdout counts
def test_holdout_counts_follow_the_documented_rule():
    n = np.array([0, 1, 2, 3, 4, 5, 14, 15, 20, 25, 35, 100])
    n_valid, n_test = holdout_counts(n, (8, 1, 1))
    expected = [0, 0, 0] + [max(1, round(0.1 * x)) for x in n[3:]]
    assert n_test.tolist() == expected
    assert n_valid.tolist() == expected
    assert ((n - n_valid - n_test)[1:] >= 1).all()


@pytest.mark.parametrize("ratios", [(8, 1, 1), (0.7, 0.1, 0.2), (1, 1, 1), (1, 0, 1), (0, 1, 1)])
def test_holdout_counts_match_reference(ratios):
    n = np.arange(0, 60)
    n_valid, n_test = holdout_counts(n, ratios)
    ref = [reference_counts(int(x), ratios) for x in n]
    assert list(zip(n_valid.tolist(), n_test.tolist())) == ref


# ---------------------------------------------------------------------- random split
@pytest.mark.parametrize("seed", [0, 2022])
def test_random_split_matches_slow_reference(seed):
    users, _ = random_interactions(seed=seed)
    assert np.array_equal(
        RandomSplit((8, 1, 1), seed).assign(users), reference_random_split(users, seed)
    )


def test_random_split_other_ratios_match_reference():
    users, _ = random_interactions(n=900, seed=3)
    got = RandomSplit((0.6, 0.2, 0.2), 7).assign(users)
    assert np.array_equal(got, reference_random_split(users, 7, (0.6, 0.2, 0.2)))


def test_random_split_is_seeded():
    users, _ = random_interactions()
    a = RandomSplit(seed=1).assign(users)
    assert np.array_equal(a, RandomSplit(seed=1).assign(users))
    assert not np.array_equal(a, RandomSplit(seed=2).assign(users))


def test_random_split_gives_every_user_with_three_a_valid_and_a_test():
    users = np.repeat(np.arange(6), [1, 2, 3, 4, 10, 30])
    codes = RandomSplit().assign(users)
    for u, n in enumerate([1, 2, 3, 4, 10, 30]):
        c = codes[users == u]
        if n < 3:
            assert (c == TRAIN).all()
        else:
            assert (c == VALID).sum() >= 1 and (c == TEST).sum() >= 1 and (c == TRAIN).sum() >= 1


def test_random_split_is_fast_on_large_input():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 20_000, 300_000)
    start = time.perf_counter()
    codes = RandomSplit().assign(users)
    assert time.perf_counter() - start < 5.0
    assert 0.08 < (codes == TEST).mean() < 0.12


# --------------------------------------------------------------------- time splits
def test_user_time_split_holds_out_the_latest():
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2])
    times = np.array([5, 1, 4, 2, 3, 10, 30, 20, 0], dtype=float)
    codes = UserTimeSplit((8, 1, 1)).assign(users, times)
    assert codes.tolist() == [TEST, TRAIN, VALID, TRAIN, TRAIN, TRAIN, TEST, VALID, TRAIN]


def test_user_time_split_ties_keep_input_order():
    users = np.zeros(4, dtype=int)
    codes = UserTimeSplit((1, 1, 1)).assign(users, np.zeros(4))
    assert codes.tolist() == [TRAIN, TRAIN, VALID, TEST]


def test_user_time_split_matches_reference():
    users, _ = random_interactions(seed=5)
    times = np.random.default_rng(5).integers(0, 50, len(users)).astype(float)
    codes = UserTimeSplit().assign(users, times)
    for u in np.unique(users):
        pos = np.flatnonzero(users == u)
        ordered = pos[np.lexsort((pos, times[pos]))]
        n_valid, n_test = reference_counts(len(pos), (8, 1, 1))
        expected = np.zeros(len(pos), dtype=np.int8)
        expected[len(pos) - n_test :] = TEST
        expected[len(pos) - n_test - n_valid : len(pos) - n_test] = VALID
        assert codes[ordered].tolist() == expected.tolist()


def test_global_time_split_cutoffs():
    t = np.array([0, 9.9, 10, 15, 19.99, 20, 100])
    codes = GlobalTimeSplit(10, 20).assign(np.zeros(len(t), dtype=int), t)
    assert codes.tolist() == [TRAIN, TRAIN, VALID, VALID, VALID, TEST, TEST]


def test_time_splits_need_timestamps():
    with pytest.raises(DataError, match="timestamps"):
        UserTimeSplit().assign(np.zeros(3, dtype=int), None)
    with pytest.raises(DataError, match="timestamps"):
        GlobalTimeSplit(1, 2).assign(np.zeros(3, dtype=int), None)


# ---------------------------------------------------------------------- spec parsing
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("random:8:1:1", RandomSplit((8.0, 1.0, 1.0), 5)),
        ("random", RandomSplit((8.0, 1.0, 1.0), 5)),
        ("user-time:0.8:0.1:0.1", UserTimeSplit((0.8, 0.1, 0.1))),
        ("global-time:100:200", GlobalTimeSplit(100.0, 200.0)),
        ("global-time:1970-01-02:1970-01-03", GlobalTimeSplit(86400.0, 172800.0)),
    ],
)
def test_parse_split(spec, expected):
    assert parse_split(spec, seed=5) == expected


def test_describe_round_trips():
    for spec in ["random:8:1:1", "user-time:7:1.5:1.5", "global-time:10:20"]:
        assert parse_split(spec).describe() == spec


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "random:8:1",
        "random:a:b:c",
        "random:8:-1:1",
        "random:8:1:0",
        "shuffle:8:1:1",
        "global-time:5",
        "global-time:20:10",
        "global-time:x:y",
        "user-time:1:2:3:4",
    ],
)
def test_parse_split_rejects_bad_specs(spec):
    with pytest.raises(DataError, match="--split"):
        parse_split(spec)


# ------------------------------------------------------------------------ dedup/kcore
def test_deduplicate_first_and_last_by_input_order():
    users = np.array([0, 0, 1, 0, 1])
    items = np.array([5, 6, 5, 5, 5])
    assert deduplicate(users, items, "first").tolist() == [True, True, True, False, False]
    assert deduplicate(users, items, "last").tolist() == [False, True, False, True, True]


def test_deduplicate_by_timestamp():
    users = np.array([0, 0, 0])
    items = np.array([1, 1, 1])
    times = np.array([30.0, 10.0, 20.0])
    assert deduplicate(users, items, "first", times).tolist() == [False, True, False]
    assert deduplicate(users, items, "last", times).tolist() == [True, False, False]


def test_deduplicate_matches_reference():
    users, items = random_interactions(n_users=10, n_items=8, n=300, seed=4)
    seen, expected = set(), []
    for pair in zip(users.tolist(), items.tolist()):
        expected.append(pair not in seen)
        seen.add(pair)
    assert deduplicate(users, items, "first").tolist() == expected


def test_deduplicate_rejects_unknown_keep():
    with pytest.raises(DataError, match="--dedup"):
        deduplicate(np.zeros(1, dtype=int), np.zeros(1, dtype=int), "middle")


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_kcore_matches_reference(k):
    users, items = random_interactions(n_users=60, n_items=50, n=700, seed=k)
    mask = kcore(users, items, k)
    assert np.array_equal(mask, reference_kcore(users, items, k))
    if mask.any():
        assert np.bincount(users[mask]).max() >= k
        assert np.bincount(users[mask])[np.unique(users[mask])].min() >= k
        assert np.bincount(items[mask])[np.unique(items[mask])].min() >= k


def test_kcore_iterates_until_stable():
    # k=2: user 3 has one interaction; dropping it leaves item 2 with one, dropping that leaves
    # user 2 with one; only users 0 and 1 (items 0 and 1) remain.
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 1, 2, 2])
    assert kcore(users, items, 2).tolist() == [True] * 4 + [False] * 3
    assert kcore(users, items, 1).all()


def test_split_report_counts_cold_start():
    users = np.array([0, 0, 1, 2])
    items = np.array([0, 1, 2, 0])
    split = np.array([TRAIN, TEST, VALID, TRAIN])
    report = split_report(users, items, split, n_users=4)
    assert report == {"users_without_test": 3, "cold_users": 1, "cold_items": 2}


def test_negative_seed_is_rejected():
    with pytest.raises(DataError, match="--seed -1"):
        parse_split("random:8:1:1", seed=-1)
