"""The Python API: fit in memory or into a run, evaluate, recommend, save, load, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mmssl
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import ConfigError


@pytest.fixture(scope="module")
def dataset():
    return planted_dataset(n_users=60, n_items=50, n_interactions=900, seed=2)


def test_fit_in_memory_then_save_and_load_back(dataset, tmp_path):
    model = mmssl.fit("bpr", dataset, epochs=3, batch_size=64, threads=1, progress=False)
    assert model.path is None and model.metrics["epochs"] == 3
    recs = model.recommend(["u1", "u2"], k=5)
    assert [len(r.items) for r in recs] == [5, 5]
    path = model.save(tmp_path / "run")
    for name in ("config.yaml", "log.jsonl", "metrics.json", "best.pt", "last.pt",
                 "recommender.npz", "curves.png", "dataset/dataset.json"):
        assert (path / name).exists(), name
    again = mmssl.load(path)
    assert again.evaluate("test") ["recall@20"] == pytest.approx(model.evaluate("test")["recall@20"])
    assert [r.items for r in again.recommend(["u1", "u2"], k=5)] == [r.items for r in recs]
    # the saved in-memory run resumes exactly like a run trained on disk
    resumed = mmssl.resume(path, {"epochs": 5}, progress=False)
    direct = mmssl.fit("bpr", dataset, tmp_path / "direct", epochs=5, batch_size=64, threads=1,
                       progress=False)
    assert resumed.metrics["test"] == direct.metrics["test"]


def test_fit_an_in_memory_dataset_into_a_run_keeps_the_data(dataset, tmp_path):
    model = mmssl.fit("pop", dataset, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "dataset" / "dataset.json").exists()
    loaded = mmssl.load(tmp_path / "run")
    assert loaded.evaluate("test")["recall@20"] == pytest.approx(model.metrics["test"]["recall@20"])


def test_keyword_settings_are_checked_like_set(dataset):
    with pytest.raises(ConfigError, match=r"fit\(\): lr: -1.0 is out of range"):
        mmssl.fit("bpr", dataset, lr=-1, progress=False)
    with pytest.raises(ConfigError, match="fit\\(\\): unknown key 'nosuch'"):
        mmssl.fit("bpr", dataset, nosuch=1, progress=False)


def test_evaluate_under_another_protocol_and_cutoffs(dataset):
    model = mmssl.fit("pop", dataset, progress=False)
    standard = model.evaluate("test")
    mmrec = model.evaluate("test", protocol="mmrec", ks=(5, 10))
    assert mmrec["protocol"] == "mmrec" and "recall@5" in mmrec and "recall@20" not in mmrec
    assert standard["protocol"] == "standard"


def test_from_frame_fit_recommend_end_to_end():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(40, size=600).astype(str),
                          "item_id": rng.integers(30, size=600).astype(str)})
    ds = mmssl.Dataset.from_frame(frame, split="random:8:1:1")
    model = mmssl.fit("lightgcn", ds, epochs=2, batch_size=64, threads=1, progress=False)
    assert np.isfinite(model.evaluate()["recall@20"])
    assert "Dataset(" in repr(ds) and len(repr(ds)) < 400
