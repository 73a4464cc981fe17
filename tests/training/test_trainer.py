"""The shared trainer and run directories: artifacts, seeds, resume, evaluate, recommend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from mmssl import api
from mmssl.api import train
from mmssl.cli import main
from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

FAST = ["epochs=3", "batch_size=64", "patience=10", "threads=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    ds = planted_dataset(n_users=60, n_items=50, n_interactions=900, zero_rows=2, seed=1)
    return save_dataset(ds, tmp_path_factory.mktemp("data") / "planted")


def test_non_learning_model_writes_metrics_and_config(data_dir, tmp_path):
    assert main(["train", "--model", "pop", "--data", str(data_dir), "--out", str(tmp_path / "pop"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert metrics["protocol"] == "standard"
    assert {"recall@10", "recall@20", "ndcg@20", "precision@20", "hit@20"} <= set(metrics["test"])
    assert "recall@20" in metrics["valid"]
    saved = yaml.safe_load((tmp_path / "pop" / "config.yaml").read_text())
    assert saved["model"] == "pop" and saved["run"]["seed"] == 2022


def test_learned_run_artifacts_and_reload(data_dir, tmp_path):
    out = tmp_path / "run"
    metrics = train("mmssl", data_dir, out, overrides=FAST + ["variant=official", "protocol=mmssl"],
                    progress=False)
    for name in ("config.yaml", "log.jsonl", "metrics.json", "curves.png", "best.pt", "last.pt",
                 "recommender.npz"):
        assert (out / name).exists(), name
    assert metrics["epochs"] == 3 and 0 <= metrics["best_epoch"] < 3
    assert metrics["seconds_per_epoch"] > 0 and metrics["protocol"] == "mmssl"
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    lines = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in lines] == [0, 1, 2] and "valid_recall@20" in lines[0]
    notes = [r["text"] for r in records if r.get("event") == "note"]
    assert notes == ["discriminator: auto chose exact (50 items, sketch above 10000)"]
    # The saved config alone reproduces the run.
    again = train(None, None, tmp_path / "again", config_file=str(out / "config.yaml"), progress=False)
    assert again["test"] == metrics["test"]
    # The saved run re-evaluates to the same test metrics.
    run = api.load(out)
    assert run.evaluate("test")["recall@20"] == pytest.approx(metrics["test"]["recall@20"], abs=1e-7)


def test_same_seed_same_metrics_other_seed_differs(data_dir, tmp_path):
    a = train("mmssl", data_dir, tmp_path / "a", overrides=FAST + ["epochs=2"], progress=False)
    b = train("mmssl", data_dir, tmp_path / "b", overrides=FAST + ["epochs=2"], progress=False)
    c = train("mmssl", data_dir, tmp_path / "c", overrides=FAST + ["epochs=2", "seed=7"], progress=False)
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert a["valid"] != c["valid"]


def test_resume_after_interruption_matches_uninterrupted_run(data_dir, tmp_path, monkeypatch):
    full = train("mmssl", data_dir, tmp_path / "full", overrides=FAST + ["epochs=4"], progress=False)

    from mmssl.models.mmssl import MMSSL

    original = MMSSL.on_epoch_end

    def crash_after_epoch_1(self, epoch):
        original(self, epoch)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(MMSSL, "on_epoch_end", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train("mmssl", data_dir, tmp_path / "cut", overrides=FAST + ["epochs=4"], progress=False)
    monkeypatch.setattr(MMSSL, "on_epoch_end", original)
    resumed = train(None, None, tmp_path / "cut", resume=True, progress=False)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    records = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "epoch" in r] == [0, 1, 2, 3]


def test_early_stopping_uses_patience(data_dir, tmp_path):
    metrics = train("mmssl", data_dir, tmp_path / "es",
                    overrides=["epochs=50", "batch_size=64", "patience=0", "threads=1", "lr=1e-12",
                               "d_lr=1e-12"],
                    progress=False)
    # With a negligible learning rate validation never improves after epoch 0: stop at epoch 1.
    assert metrics["best_epoch"] == 0 and metrics["epochs"] == 2


def test_recommend_and_evaluate_commands(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    train("mmssl", data_dir, out, overrides=FAST + ["epochs=1"], progress=False)
    capsys.readouterr()
    assert main(["recommend", "--run", str(out), "--user", "u3", "--user", "u5", "--k", "7", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    run = api.load(out)
    train_items = run.dataset.matrix("train")
    for rec in recs:
        assert len(rec["items"]) == 7 and rec["scores"] == sorted(rec["scores"], reverse=True)
        seen = set(run.dataset.item_ids[train_items[run.dataset.user_index(rec["user"])].indices])
        assert not seen & set(rec["items"])
    assert main(["recommend", "--run", str(out), "--user", "u3", "--k", "50", "--keep-seen", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["items"]) == 50

    assert main(["recommend", "--run", str(out), "--user", "nobody"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown user id 'nobody'" in err[0]

    assert main(["evaluate", "--run", str(out), "--protocol", "mmrec", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "mmrec" and np.isfinite(result["recall@20"])


def test_bad_config_is_one_line_exit_2(data_dir, tmp_path, capsys):
    args = ["train", "--model", "mmssl", "--data", str(data_dir), "--out", str(tmp_path / "x")]
    assert main(args + ["--set", "variant=fancy"]) == 2
    assert "variant" in capsys.readouterr().err
    assert main(args + ["--set", "no_such_key=1"]) == 2
    assert "unknown key 'no_such_key'" in capsys.readouterr().err
    assert main(["train", "--model", "nope", "--data", str(data_dir), "--out", str(tmp_path / "y")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
