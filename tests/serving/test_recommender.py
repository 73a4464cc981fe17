"""The saved recommender: same top-k as the model, NumPy only, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmssl import api
from mmssl.api import train
from mmssl.cli import main
from mmssl.data.dataset import load_dataset, save_dataset
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import DataError
from mmssl.serving.recommender import FILE_NAME, Recommender


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    ds = planted_dataset(n_users=60, n_items=50, n_interactions=900, zero_rows=2, seed=3)
    return save_dataset(ds, tmp_path_factory.mktemp("data") / "planted")


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bpr"
    train("bpr", data_dir, out, overrides=["epochs=5", "batch_size=64", "threads=1"], progress=False)
    return out


def torch_top_k(run, users, k):
    """The reference: the model's own scorer, training items masked, torch.topk."""
    index = torch.tensor([run.dataset.user_index(u) for u in users])
    scores = run.scorer()(index).clone()
    train = run.dataset.matrix("train")[index.numpy()].tocoo()
    scores[train.row, train.col] = -torch.inf
    return torch.topk(scores, k, dim=1)


def test_saved_recommender_equals_the_models_ranking(run_dir):
    assert (run_dir / FILE_NAME).exists()
    run, saved = api.load(run_dir), Recommender.load(run_dir)
    users = list(run.dataset.user_ids[:25])
    top = torch_top_k(run, users, 10)
    for r, rec in enumerate(saved.recommend(users, k=10)):
        np.testing.assert_allclose(rec.scores, top.values[r].numpy(), rtol=1e-5, atol=1e-6)
        assert rec.items == run.dataset.item_ids[top.indices[r].numpy()].tolist()
    assert [r.items for r in run.recommend(users, k=10)] == [r.items for r in saved.recommend(users, k=10)]


@pytest.mark.parametrize("model", ["pop", "itemknn-cbf"])
def test_factors_of_non_learned_models(model, data_dir):
    from mmssl.models import create_model, get_model_class

    ds = load_dataset(data_dir)
    m = create_model(model, ds, get_model_class(model).Config())
    scores = m.scorer()(torch.arange(ds.n_users))
    train = ds.matrix("train")
    if model == "pop":
        expected = np.broadcast_to(np.asarray(train.sum(axis=0), dtype=np.float32), scores.shape)
    else:
        v = torch.cat([F.normalize(torch.from_numpy(ds.features[n].astype(np.float32)), dim=1)
                       for n in sorted(ds.features)], dim=1)
        v = F.normalize(v, dim=1).numpy()
        sims = v @ v.T  # mean cosine between each item and the user's training items
        expected = (train @ sims) / np.maximum(np.asarray(train.sum(axis=1)), 1)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_k_beyond_unseen_items_and_bad_k(run_dir):
    saved = Recommender.load(run_dir)
    user = saved.user_ids[0]
    n_unseen = saved.seen.shape[1] - saved.seen[0].nnz
    recs = saved.recommend([user], k=10_000)
    assert len(recs[0].items) == n_unseen and np.isfinite(recs[0].scores).all()
    assert len(saved.recommend([user], k=5, exclude_seen=False)[0].items) == 5
    with pytest.raises(DataError, match="k must be a whole number of at least 1"):
        saved.recommend([user], k=0)
    with pytest.raises(DataError, match="unknown user id 'nobody'"):
        saved.recommend(["nobody"])


def test_recommend_command_does_not_import_torch(run_dir):
    code = ("import sys; from mmssl.cli import main; "
            f"rc = main(['recommend', '--run', {str(run_dir)!r}, '--user', 'u1', '--k', '5', '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)[0]["items"]) == 5


def test_run_without_saved_recommender_falls_back_and_saves_it(run_dir, tmp_path, capsys):
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    (old / FILE_NAME).unlink()
    assert main(["recommend", "--run", str(old), "--user", "u2", "--k", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (old / FILE_NAME).exists()
    assert main(["recommend", "--run", str(old), "--user", "u2", "--k", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["items"] == first[0]["items"]


def test_save_is_atomic_and_corrupt_files_fail_in_one_line(run_dir, tmp_path, capsys):
    saved = Recommender.load(run_dir)
    path = saved.save(tmp_path / "copy.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["copy.npz"]
    assert Recommender.load(path).recommend(["u1"], k=3)[0].items == saved.recommend(["u1"], k=3)[0].items

    bad = tmp_path / "run"
    bad.mkdir()
    (bad / FILE_NAME).write_bytes(b"not a zip file")
    assert main(["recommend", "--run", str(bad), "--user", "u1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad / FILE_NAME) in err[0] and "not a readable recommender" in err[0]

    np.savez(tmp_path / "partial.npz", user_ids=np.array(["a"]))
    with pytest.raises(DataError, match="missing arrays"):
        Recommender.load(tmp_path / "partial.npz")
