"""Multi-hot -> TF-IDF -> truncated SVD, the knowledge-graph recipe, and the shared kg_feat.npy."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmssl.errors import DataError
from mmssl.features.categorical import (
    categorical_features,
    kg_features,
    multi_hot,
    randomized_svd,
    reduce_dimension,
    tfidf,
)


def test_multi_hot_keeps_attributes_shared_by_enough_items():
    X, attrs = multi_hot(
        np.array(["a", "b", "c"]),
        np.array(["a", "b", "c", "a", "a", "zz"]),
        np.array(["x", "x", "y", "z", "z", "y"]),  # "a z" twice; "zz" is not an item
        min_items=2,
    )
    assert attrs.tolist() == ["x"]
    assert X.toarray().tolist() == [[1.0], [1.0], [0.0]]
    X, attrs = multi_hot(np.array(["a", "b"]), np.array(["a", "a"]), np.array(["z", "z"]))
    assert attrs.tolist() == ["z"] and X.toarray().tolist() == [[1.0], [0.0]]


def test_tfidf_weights_columns_by_log_n_over_one_plus_df():
    X = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=float))
    expected = X.toarray() * np.log(4 / (1 + np.array([2, 1, 3])))
    np.testing.assert_allclose(tfidf(X).toarray(), expected)


@pytest.mark.parametrize("shape", [(60, 200), (200, 60)])  # both orientations of the algorithm
def test_randomized_svd_matches_the_exact_svd_on_a_low_rank_matrix(shape):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((shape[0], 5)) @ rng.standard_normal((5, shape[1]))
    U, s, vt = randomized_svd(sp.csr_matrix(X), 5, seed=1)
    exact = np.linalg.svd(X, compute_uv=False)[:5]
    np.testing.assert_allclose(s, exact, rtol=1e-8)
    np.testing.assert_allclose(U * s @ vt, X, atol=1e-8)
    largest = vt[np.arange(5), np.abs(vt).argmax(axis=1)]
    assert (largest > 0).all()  # sign convention: the largest loading of each component is positive
    Z = reduce_dimension(sp.csr_matrix(X), 5, seed=1)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, X @ vt.T, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed"
)
def test_reduce_dimension_reproduces_scikit_learn_truncated_svd():
    from sklearn.decomposition import TruncatedSVD

    rng = np.random.default_rng(3)
    X = sp.random(300, 120, density=0.05, random_state=4, format="csr")
    X.data[:] = rng.random(X.nnz)
    ref = TruncatedSVD(16, random_state=2022).fit_transform(X)
    np.testing.assert_allclose(reduce_dimension(X, 16, seed=2022), ref, atol=1e-6)


def test_reduce_dimension_refuses_more_columns_than_the_data_has():
    with pytest.raises(DataError, match="--dim 5: only 3 attributes kept for 10 items"):
        reduce_dimension(sp.csr_matrix(np.ones((10, 3))), 5)


def test_categorical_features_from_table_columns(tmp_path):
    path = tmp_path / "items.csv"
    pd.DataFrame(
        {
            "item_id": ["1", "2", "3", "4", "5"],
            "genre": ["Action|Comedy", "Action", "Comedy|Drama", "Drama", ""],
            "lang": ["en", "en", "fr", "fr", "de"],
        }
    ).to_csv(path, index=False)
    fm = categorical_features(
        path, np.array(["5", "1", "2", "3", "4"]), ["genre", "lang"], sep="|", dim=2, min_items=2
    )
    assert fm.values.shape == (5, 2)
    assert fm.missing == ["5"] and not fm.values[0].any()
    assert fm.info["attributes_kept"] == 5  # genre=Action/Comedy/Drama, lang=en/fr; "de" is alone
    with pytest.raises(DataError, match=r"items.csv: no column 'year' \(--columns"):
        categorical_features(path, np.array(["1"]), ["year"])


def _write_graph(tmp_path):
    kg = tmp_path / "g.kg"
    link = tmp_path / "g.link"
    kg.write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "e1\tgenre\tcomedy\n"
        "e2\tgenre\tcomedy\n"
        "e3\tgenre\tdrama\n"
        "actor1\tacted_in\te1\n"
        "actor1\tacted_in\te3\n"
        "e2\tsequel_of\te1\n"
        "e4\tgenre\tcomedy\n"
        "e4\tgenre\tdrama\n"
        "e3\trelated\tx9\n"
        "x9\trelated\te1\n"  # (related, x9): e3 outwards, e1 inwards
    )
    link.write_text("item_id:token\tentity_id:token\n10\te1\n20\te2\n30\te3\n40\te4\n50\te5\n")
    return kg, link


def test_kg_features_use_neighbours_in_both_directions_and_zero_unlinked_items(tmp_path):
    kg, link = _write_graph(tmp_path)
    ids = np.array(["10", "20", "30", "40", "50", "60"])
    fm = kg_features(kg, link, ids, dim=2)
    # kept (held by >= 2 films): (genre, comedy), (genre, drama), (acted_in, actor1), (related, x9)
    assert fm.info["attributes_kept"] == 4
    assert fm.values.shape == (6, 2) and fm.values[:4].any(axis=1).all()
    assert fm.missing == ["50", "60"]
    assert fm.info["items_without_link"] == 1  # "60"; "50" is linked but its entity has no edge
    assert fm.info["linked_items_without_kept_neighbours"] == 1
    directed = kg_features(kg, link, ids, dim=2, directed=True)
    assert directed.info["attributes_kept"] == 3  # (related, x9) splits by direction
    assert directed.info["directed"] is True


def test_kg_files_need_their_headers(tmp_path):
    kg, link = _write_graph(tmp_path)
    link.write_text("item\tentity\n10\te1\n")
    with pytest.raises(DataError, match=r"g.link: no column 'item_id'"):
        kg_features(kg, link, np.array(["10"]))


def test_ml100k_kg_recipe_reproduces_the_shared_kg_features(shared_data):
    raw = shared_data / "raw"
    items = pd.read_csv(raw / "ml-100k.item", sep="\t", dtype=str).iloc[:, 0]
    ids = np.array(sorted(items, key=int))
    fm = kg_features(raw / "ml-100k.kg", raw / "ml-100k.link", ids, dim=64, seed=2022)
    ref = np.load(shared_data / "mmssl" / "kg_feat.npy")
    assert fm.values.shape == ref.shape == (1682, 64)
    np.testing.assert_allclose(fm.values, ref, atol=1e-5)
    assert fm.info["items_without_link"] == 84 and len(fm.missing) == 86
