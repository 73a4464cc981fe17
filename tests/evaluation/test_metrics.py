"""Full-ranking metrics against a slow per-user reference and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mmssl.data.dataset import Dataset
from mmssl.errors import ConfigError
from mmssl.evaluation import PROTOCOLS, evaluate, exclusion_matrix, rank_metrics, top_items


# ------------------------------------------------------------------- slow reference
def reference_metrics(scores, exclude, truth, ks, ndcg):
    """Per-user python loop: stable order by (-score, item index), metrics from definitions."""
    scores = np.asarray(scores, dtype=np.float64)
    exclude, truth = sp.csr_matrix(exclude), sp.csr_matrix(truth)
    n_users, n_items = scores.shape
    k_max = max(ks)
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "precision", "ndcg", "hit", "map") for k in ks}
    users = 0
    for u in range(n_users):
        held_out = set(truth[u].indices.tolist())
        if not held_out:
            continue
        users += 1
        excluded = set(exclude[u].indices.tolist())
        s = scores[u].copy()
        s[list(excluded)] = -np.inf
        order = np.lexsort((np.arange(n_items), -s))  # last key primary: -score, then index
        ranked = order[:k_max].tolist()
        hits = [int(i in held_out and i not in excluded) for i in ranked]
        hits += [0] * (k_max - len(hits))
        h_all = sum(hits)
        for k in ks:
            top = hits[:k]
            n_hit = sum(top)
            dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(top) if h)
            n_ideal = min(h_all, k) if ndcg == "mmssl" else min(len(held_out), k)
            idcg = sum(1 / math.log2(r + 2) for r in range(n_ideal))
            ap = sum(sum(top[: r + 1]) / (r + 1) for r, h in enumerate(top) if h)
            sums[f"recall@{k}"] += n_hit / len(held_out)
            sums[f"precision@{k}"] += n_hit / k
            sums[f"ndcg@{k}"] += dcg / idcg if n_ideal else 0.0
            sums[f"hit@{k}"] += float(n_hit > 0)
            sums[f"map@{k}"] += ap / min(len(held_out), k)
    out = {key: v / users for key, v in sums.items()}
    out["users"] = users
    out["skipped_users"] = n_users - users
    return out


def assert_metrics_close(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def random_problem(seed, n_users=37, n_items=53, ties=False, density=0.1, held_out=0.08):
    """Scores (float32), exclude and truth CSR; some users have no held-out items."""
    rng = np.random.default_rng(seed)
    if ties:
        scores = rng.integers(0, 4, size=(n_users, n_items)).astype(np.float32)
    else:
        scores = rng.standard_normal((n_users, n_items)).astype(np.float32)
    exclude = (rng.random((n_users, n_items)) < density).astype(np.float32)
    truth = ((rng.random((n_users, n_items)) < held_out) & (exclude == 0)).astype(np.float32)
    truth[: n_users // 5] = 0  # users without held-out items are skipped
    truth[-1, : n_items // 2] = 1  # a user with more held-out items than any K
    truth[-1] *= 1 - exclude[-1]
    return scores, sp.csr_matrix(exclude), sp.csr_matrix(truth)


def csr(rows):
    return sp.csr_matrix(np.asarray(rows, dtype=np.float32))


# ------------------------------------------------------------- against the reference
@pytest.mark.parametrize("ndcg", ["standard", "mmssl"])
@pytest.mark.parametrize(
    "seed,ks,ties",
    [
        (0, (10, 20, 50), False),
        (1, (1, 5, 10), True),
        (2, (3, 7), True),
        (3, (20,), False),
        (4, (5, 60), False),  # K above n_items
        (5, (1, 2, 3, 50), True),
    ],
)
def test_matches_reference_on_random_problems(seed, ks, ties, ndcg):
    scores, exclude, truth = random_problem(seed, ties=ties)
    want = reference_metrics(scores, exclude, truth, ks, ndcg)
    assert want["skipped_users"] > 0
    got = rank_metrics(torch.from_numpy(scores), exclude, truth, ks=ks, ndcg=ndcg, batch_size=8)
    assert_metrics_close(got, want)


def test_score_function_matches_tensor_and_reference():
    scores, exclude, truth = random_problem(7, n_users=41, n_items=90)
    table = torch.from_numpy(scores)
    calls = []

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        calls.append(len(users))
        return table[users].clone()

    got = rank_metrics(score_fn, exclude, truth, ks=(5, 10), batch_size=6)
    assert max(calls) <= 6 and sum(calls) == got["users"]
    assert_metrics_close(got, reference_metrics(scores, exclude, truth, (5, 10), "standard"))
    assert_metrics_close(rank_metrics(table, exclude, truth, ks=(5, 10), batch_size=1000), got)


@pytest.mark.parametrize("decimals", [1, 2])
def test_small_tie_groups_at_the_cutoff(decimals):
    # Rounded scores give tie groups that straddle K, resolved both by re-sort and fallback.
    rng = np.random.default_rng(11)
    scores = np.round(rng.random((60, 400)), decimals).astype(np.float32)
    truth = csr(rng.random((60, 400)) < 0.05)
    exclude = csr(np.zeros((60, 400)))
    got = rank_metrics(torch.from_numpy(scores), exclude, truth, ks=(10, 20), batch_size=16)
    assert_metrics_close(got, reference_metrics(scores, exclude, truth, (10, 20), "standard"))


@pytest.mark.parametrize("ties", [False, True])
def test_top_items_breaks_ties_by_lower_index(ties):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 3, (30, 200)) if ties else rng.standard_normal((30, 200))
    scores = torch.tensor(values, dtype=torch.float32)
    got = top_items(scores, 25).numpy()
    for row, items in zip(values, got, strict=True):
        np.testing.assert_array_equal(items, np.lexsort((np.arange(200), -row))[:25])


def test_top_items_resolves_a_single_tie_across_the_cutoff():
    # Only the k-th and (k+1)-th scores are equal; topk alone picks either item.
    gen = torch.Generator().manual_seed(0)
    scores = torch.stack([torch.randperm(300, generator=gen).float() for _ in range(100)])
    order = torch.argsort(scores, dim=1, descending=True)
    rows = torch.arange(100)
    scores[rows, order[:, 10]] = scores[rows, order[:, 9]]
    got = top_items(scores, 10).numpy()
    for row, items in zip(scores.numpy(), got, strict=True):
        np.testing.assert_array_equal(items, np.lexsort((np.arange(300), -row))[:10])


def test_users_with_fewer_candidates_than_k():
    # 6 items, 4 excluded: only 2 rankable; the excluded held-out item never counts.
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    exclude = csr([[1, 1, 0, 1, 0, 1]])
    truth = csr([[0, 1, 0, 0, 1, 0]])
    got = rank_metrics(scores, exclude, truth, ks=(1, 5))
    assert_metrics_close(got, reference_metrics(scores.numpy(), exclude, truth, (1, 5), "standard"))
    assert got["hit@1"] == 0.0 and got["recall@5"] == 0.5


# ---------------------------------------------------------------- by hand
def test_one_user_computed_on_paper():
    # Ranking: item 1 (0.9), 3 (0.7), 2 (0.5), 4 (0.3), 0 (0.1); held out {0, 3}: hits at 2, 5.
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3]])
    got = rank_metrics(scores, csr([[0] * 5]), csr([[1, 0, 0, 1, 0]]), ks=(2, 5))
    d2, d5 = 1 / math.log2(3), 1 / math.log2(6)
    assert got["recall@2"] == pytest.approx(0.5)
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["precision@5"] == pytest.approx(0.4)
    assert got["ndcg@2"] == pytest.approx(d2 / (1 + d2))  # 0.3869
    assert got["ndcg@5"] == pytest.approx((d2 + d5) / (1 + d2))  # 0.6241
    assert got["map@2"] == pytest.approx((1 / 2) / 2)
    assert got["map@5"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert got["hit@2"] == 1.0 and got["users"] == 1 and got["skipped_users"] == 0


def test_mmssl_ndcg_normalises_by_the_hits_found():
    # Departure 6: 5 held-out items, one hit at rank 1 -> mmssl NDCG 1.0, standard lower.
    scores = torch.arange(14, 0, -1, dtype=torch.float32)[None]  # item i ranks at i + 1
    truth = csr([[1] + [0] * 9 + [1] * 4])  # held out: item 0 and items 10..13
    exclude = csr([[0] * 14])
    mmssl = rank_metrics(scores, exclude, truth, ks=(5,), ndcg="mmssl")
    standard = rank_metrics(scores, exclude, truth, ks=(5,), ndcg="standard")
    assert mmssl["ndcg@5"] == pytest.approx(1.0)
    assert standard["ndcg@5"] == pytest.approx(1 / sum(1 / math.log2(r + 2) for r in range(5)))
    # With K = 14 the same user's later hits enter the top max(ks) and lower the mmssl NDCG@5.
    assert rank_metrics(scores, exclude, truth, ks=(5, 14), ndcg="mmssl")["ndcg@5"] < 1.0


def test_mmssl_ndcg_is_zero_without_hits():
    got = rank_metrics(
        torch.tensor([[3.0, 2.0, 1.0]]), csr([[0, 0, 0]]), csr([[0, 0, 1]]), ks=(1,), ndcg="mmssl"
    )
    assert got["ndcg@1"] == 0.0


def test_equal_scores_rank_lower_index_first():
    scores = torch.zeros(2, 6)
    got = rank_metrics(
        scores, csr([[0] * 6] * 2), csr([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]), ks=(1,)
    )
    assert got["hit@1"] == 0.5  # user 0's item 0 ranks first, user 1's item 1 does not


def test_excluded_items_are_never_recommended():
    scores = torch.tensor([[9.0, 1.0, 2.0]])
    truth = csr([[0, 0, 1]])
    assert rank_metrics(scores, csr([[0, 0, 0]]), truth, ks=(1,))["hit@1"] == 0.0
    assert rank_metrics(scores, csr([[1, 0, 0]]), truth, ks=(1,))["hit@1"] == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.float64])
def test_other_score_dtypes(dtype):
    scores, exclude, truth = random_problem(12, ties=True)
    got = rank_metrics(torch.from_numpy(scores).to(dtype), exclude, truth, ks=(3, 10))
    assert_metrics_close(got, reference_metrics(scores, exclude, truth, (3, 10), "standard"))


def test_nan_scores_raise():
    scores = torch.tensor([[0.0, 1.0], [float("nan"), 1.0]])
    with pytest.raises(ValueError, match="NaN.*user index 1"):
        rank_metrics(scores, csr([[0, 0], [0, 0]]), csr([[1, 0], [1, 0]]), ks=(1,))


def test_input_scores_are_not_modified():
    scores, exclude, truth = random_problem(9)
    table = torch.from_numpy(scores.copy())
    rank_metrics(table, exclude, truth, ks=(5,), batch_size=4)
    np.testing.assert_array_equal(table.numpy(), scores)


def test_no_evaluated_user_gives_nan():
    got = rank_metrics(torch.zeros(2, 3), csr([[0, 0, 0]] * 2), csr([[0, 0, 0]] * 2), ks=(1,))
    assert got["users"] == 0 and got["skipped_users"] == 2 and math.isnan(got["recall@1"])


@pytest.mark.parametrize(
    "kwargs", [{"ks": (0, 5)}, {"ks": ()}, {"ndcg": "paper"}, {"batch_size": 0}]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        rank_metrics(torch.zeros(1, 3), csr([[0, 0, 0]]), csr([[1, 0, 0]]), **kwargs)


def test_score_fn_with_wrong_shape_raises():
    with pytest.raises(ValueError, match="score_fn returned"):
        rank_metrics(lambda u: torch.zeros(len(u), 2), csr([[0, 0, 0]]), csr([[1, 0, 0]]))


# ---------------------------------------------------------------- protocols
def small_dataset(seed=0, n_users=30, n_items=40):
    """Each user: ~6 train, ~2 valid, ~2 test items, all distinct; some users lack valid/test."""
    rng = np.random.default_rng(seed)
    users, items, split = [], [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=10, replace=False)
        codes = np.array([0] * 6 + [1] * 2 + [2] * 2)
        if u % 7 == 0:
            codes[codes == 2] = 0  # no test items
        if u % 5 == 0:
            codes[codes == 1] = 0  # no valid items
        users += [u] * 10
        items += chosen.tolist()
        split += codes.tolist()
    return Dataset(
        users=users,
        items=items,
        split=split,
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("split", ["valid", "test"])
def test_evaluate_matches_reference_for_each_protocol(protocol, split):
    ds = small_dataset()
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 5, (ds.n_users, ds.n_items)).astype(np.float32)
    train, valid = ds.matrix("train").toarray(), ds.matrix("valid").toarray()
    excluded = train + valid if (protocol == "standard" and split == "test") else train
    ndcg = "mmssl" if protocol == "mmssl" else "standard"
    want = reference_metrics(scores, csr(excluded), ds.matrix(split), (2, 5, 10), ndcg)
    got = evaluate(torch.from_numpy(scores), ds, split, protocol, ks=(2, 5, 10), batch_size=7)
    assert got.pop("protocol") == protocol and got.pop("split") == split
    assert_metrics_close(got, want)
    assert got["skipped_users"] > 0


def test_standard_test_excludes_valid_items_and_mmssl_does_not():
    ds = Dataset(
        users=[0, 0, 0],
        items=[0, 1, 2],
        split=[0, 1, 2],
        user_ids=["a"],
        item_ids=["x", "y", "z", "w"],
    )
    scores = torch.tensor([[0.0, 9.0, 5.0, 1.0]])  # the valid item 1 scores highest
    assert evaluate(scores, ds, "test", "standard", ks=(1,))["hit@1"] == 1.0
    assert evaluate(scores, ds, "test", "mmssl", ks=(1,))["hit@1"] == 0.0
    assert evaluate(scores, ds, "test", "mmrec", ks=(1,))["hit@1"] == 0.0
    assert exclusion_matrix(ds, "test", "standard").toarray().tolist() == [[1, 1, 0, 0]]
    assert exclusion_matrix(ds, "valid", "standard").toarray().tolist() == [[1, 0, 0, 0]]
    assert exclusion_matrix(ds, "test", "mmssl").toarray().tolist() == [[1, 0, 0, 0]]


def test_evaluate_with_device_and_score_fn():
    ds = small_dataset(1)
    table = torch.randn(ds.n_users, ds.n_items)
    by_fn = evaluate(lambda u: table[u] * 1.0, ds, device="cpu", batch_size=4)
    whole = evaluate(table, ds)
    assert by_fn.pop("protocol") == whole.pop("protocol") == "standard"
    assert by_fn.pop("split") == whole.pop("split") == "test"
    assert_metrics_close(by_fn, whole)


def test_unknown_protocol_or_split_is_a_config_error():
    ds = small_dataset()
    with pytest.raises(ConfigError, match="standard, mmssl, mmrec"):
        evaluate(torch.zeros(ds.n_users, ds.n_items), ds, protocol="recbole")
    with pytest.raises(ConfigError, match="split"):
        exclusion_matrix(ds, "train", "standard")


def test_huge_catalogues_are_scored_in_small_blocks(monkeypatch):
    """The batch of users shrinks so that a block of scores stays under BLOCK_ELEMENTS; the
    metrics do not depend on it."""
    import mmssl.evaluation.metrics as metrics

    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.standard_normal((30, 50)).astype(np.float32))
    truth = sp.csr_matrix((rng.random((30, 50)) < 0.1).astype(np.float32))
    exclude = sp.csr_matrix((rng.random((30, 50)) < 0.1).astype(np.float32))
    whole = metrics.rank_metrics(scores, exclude, truth, ks=(5, 10))
    seen = []
    real_score_batch = metrics._score_batch
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 120)  # 2 users of 50 items at a time
    monkeypatch.setattr(metrics, "_score_batch",
                        lambda s, users, *a: seen.append(len(users)) or real_score_batch(s, users, *a))
    small = metrics.rank_metrics(scores, exclude, truth, ks=(5, 10))
    assert max(seen) == 2 and small == whole
