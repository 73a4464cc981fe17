"""Cold start: the content paths in NumPy equal the models' own, coldstart.npz is checked on
load, new features are validated field by field, the k-NN fallback averages neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmssl.api import fit
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import DataError
from mmssl.serving.coldstart import FILE_NAME, ITEMS_FILE, ColdStart, content_space

from .conftest import planted_with_titles


@pytest.fixture(scope="module")
def dataset():
    return planted_dataset(n_users=40, n_items=30, n_interactions=500, seed=2)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    out = {}
    for name in ("vbpr", "mmssl", "bpr"):
        path = tmp_path_factory.mktemp("cold") / name
        out[name] = (fit(name, dataset, path, epochs=2, threads=1, progress=False), path)
    return out


def _torch(features):
    return {m: torch.from_numpy(np.asarray(f, dtype=np.float32)) for m, f in features.items()}


@pytest.mark.parametrize("name", ["vbpr", "mmssl"])
def test_the_saved_content_path_equals_the_models_content_item_factors(runs, dataset, name):
    trained, path = runs[name]
    cold = ColdStart.load(path)
    assert cold.method == "content" and cold.model == name
    features = {m: np.asarray(f) for m, f in dataset.features.items()}
    with torch.no_grad():
        expected = trained.model.content_item_factors(_torch(features)).numpy()
    np.testing.assert_allclose(cold.item_vectors(features, None), expected, rtol=1e-5, atol=1e-6)


def test_vbpr_content_vectors_are_its_item_vectors_without_the_id_part(runs, dataset):
    trained, _ = runs["vbpr"]
    d = trained.model.config.embed_dim
    with torch.no_grad():
        _, items = trained.model.factors()
        content = trained.model.content_item_factors(_torch(dataset.features))
    assert torch.equal(content[:, :d], torch.zeros_like(content[:, :d]))
    torch.testing.assert_close(content[:, d:], items[:, d:])


def test_mmssl_content_vector_is_the_scaled_sum_of_unit_encodings_plus_the_layer_constant(runs, dataset):
    trained, _ = runs["mmssl"]
    net, cfg = trained.model, trained.model.config
    with torch.no_grad():
        content = net.content_item_factors(_torch(dataset.features))
        h = [torch.nn.functional.normalize(net.encoders[m](torch.from_numpy(np.asarray(f))), dim=1)
             for m, f in dataset.features.items()]
    constant = 1.0 / (cfg.embed_dim * (cfg.n_layers + 1))
    torch.testing.assert_close(content, cfg.modality_rate * sum(h) + constant)


def test_models_without_a_content_path_use_the_knn_fallback(runs, dataset):
    trained, path = runs["bpr"]
    assert trained.model.content_item_factors(_torch(dataset.features)) is None
    cold = ColdStart.load(path)
    assert cold.method == "knn" and cold.content is None
    items = trained.recommender().item_factors
    one = {m: np.asarray(f)[[3]] for m, f in dataset.features.items()}
    vec = cold.item_vectors(one, items, k=1)  # its nearest warm item is itself
    np.testing.assert_allclose(vec[0], items[3], rtol=1e-6)
    sims = content_space(one, list(dataset.features)) @ cold.knn_features.T
    near = np.argsort(-sims[0])[:5]
    np.testing.assert_allclose(cold.item_vectors(one, items, k=5)[0], items[near].mean(0), rtol=1e-5)
    with pytest.raises(DataError, match="only zeros"):
        cold.knn_vectors({m: np.zeros_like(f) for m, f in one.items()}, items)


def test_training_writes_coldstart_and_the_items_table(tmp_path):
    ds = planted_with_titles()
    fit("pop", ds, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / FILE_NAME).is_file()
    assert (tmp_path / "run" / ITEMS_FILE).read_text().splitlines()[1] == "i0\tFilm 0 of cluster 0\t1990"


def test_new_features_are_checked_field_by_field(runs):
    cold = ColdStart.load(runs["vbpr"][1])
    good = {"image": np.zeros(32), "text": np.ones(16)}
    checked, zero = cold.check_features(good)
    assert checked["image"].shape == (1, 32) and zero == []
    assert cold.check_features({"text": np.ones(16)})[1] == ["image"]
    for bad, message in [({}, "at least one"), ({"sound": [1.0]}, "features.sound: unknown"),
                         ({"text": np.ones(15)}, "features.text: expected 16 numbers"),
                         ({"text": [np.nan] * 16}, "features.text: NaN"),
                         ({"text": [np.inf] * 16}, "features.text: NaN or infinite"),
                         ({"text": ["x"] * 16}, "features.text: expected numbers"),
                         ({"text": np.ones((2, 16)), "image": np.ones((3, 32))}, "same")]:
        with pytest.raises(DataError, match=message):
            cold.check_features(bad)


def test_a_damaged_coldstart_file_is_a_one_line_error(runs, tmp_path):
    path = runs["mmssl"][1] / FILE_NAME
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    for change, message in [({"content_weight_0": arrays["content_weight_0"] * np.nan}, "NaN"),
                            ({"content_weight_0": arrays["content_weight_0"][:, :3]}, "content_weight_0"),
                            ({"knn_features": arrays["knn_features"][:2]}, "knn_features"),
                            ({"content_combine": np.array("cubic")}, "content_combine"),
                            ({"modality_dims": np.array([0, 1])}, "modality_dims"),
                            ({"meta": np.array("{not json")}, "meta")]:
        broken = tmp_path / "broken.npz"
        np.savez(broken, **{**arrays, **change})
        with pytest.raises(DataError, match=message):
            ColdStart.load(broken)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable cold-start file"):
        ColdStart.load(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="missing"):
        ColdStart.load(tmp_path / "absent.npz")
