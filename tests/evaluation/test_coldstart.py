"""Cold-start metrics: the expected random ranking matches simulation; a perfect cold-start
path scores 1 among the held-out items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mmssl.evaluation.coldstart import cold_item_metrics, random_cold_item_metrics


def _case(seed=0, n_users=30, n_warm=25, n_cold=12):
    rng = np.random.default_rng(seed)
    truth = sp.csr_matrix((rng.random((n_users, n_cold)) < 0.3).astype(np.float32))
    truth[0, :] = 0  # a user without held-out items is skipped
    truth.eliminate_zeros()
    seen = sp.csr_matrix((rng.random((n_users, n_warm)) < 0.2).astype(np.float32))
    return rng, truth, seen


def test_expected_random_metrics_match_a_simulation():
    rng, truth, seen = _case()
    expected = random_cold_item_metrics(truth, seen, ks=(5,))
    runs = [cold_item_metrics(rng.random(truth.shape), rng.random(seen.shape), truth, seen, ks=(5,))
            for _ in range(300)]
    for setting in ("held_out", "all_items"):
        for metric in ("recall@5", "ndcg@5"):
            simulated = np.mean([r[setting][metric] for r in runs])
            assert abs(simulated - expected[setting][metric]) < 0.01, (setting, metric)
        assert expected[setting]["users"] == runs[0][setting]["users"] == (truth.getnnz(1) > 0).sum()


def test_a_perfect_cold_path_scores_one_among_held_out_items_and_seen_warm_items_are_left_out():
    _, truth, seen = _case(1)
    scores = truth.toarray() + 0.0
    warm = np.where(seen.toarray() > 0, 100.0, -1.0)  # seen warm items would win: excluded
    r = cold_item_metrics(scores, warm, truth, seen, ks=(20,))
    assert r["held_out"]["recall@20"] == 1.0 and r["held_out"]["ndcg@20"] == 1.0
    assert r["all_items"]["recall@20"] == 1.0
