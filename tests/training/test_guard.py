"""The guard: one warning line when a model stays below the popularity ranking on validation."""

from __future__ import annotations

import json

import pytest

from mmssl import api
from mmssl.data.synthetic import planted_dataset
from mmssl.models.bpr import BPRConfig
from mmssl.models.mmssl.config import MMSSLConfig
from mmssl.training.trainer import likely_culprits

SETS = ["device=cpu", "epochs=6", "patience=3", "eval_every=1"]


@pytest.fixture(scope="module")
def skewed():
    # popular items inside each cluster: the popularity ranking is a real bar to clear
    return planted_dataset(300, 200, 4000, n_clusters=4, popularity=1.0, seed=3)


def test_a_run_that_cannot_learn_gets_one_warning_naming_the_settings(skewed, tmp_path, capsys):
    run = api.fit("bpr", skewed, tmp_path / "run", overrides=[*SETS, "reg_weight=1000", "lr=0.01"],
                  progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mmssl: warning: bpr: valid recall@20 ")
    assert "after 3 epochs is still below the popularity ranking's" in err[0]
    assert "lr (now 0.01), reg_weight (now 1000.0)" in err[0]
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["text"] for e in events if e.get("event") == "warning"] == [err[0].split("warning: ", 1)[1]]
    assert run.metrics["valid"]["recall@20"] < api.fit("pop", skewed, overrides=SETS,
                                                        progress=False).metrics["valid"]["recall@20"]


def test_a_healthy_run_is_silent(skewed, capsys):
    run = api.fit("bpr", skewed, overrides=[*SETS, "patience=5", "reg_weight=0.01", "lr=0.05"],
                  progress=False)
    assert capsys.readouterr().err == ""
    assert run.metrics["valid"]["recall@20"] > api.fit("pop", skewed, overrides=SETS,
                                                        progress=False).metrics["valid"]["recall@20"]


def test_a_run_shorter_than_the_patience_is_not_judged(skewed, capsys):
    api.fit("bpr", skewed, overrides=["device=cpu", "epochs=2", "patience=3", "reg_weight=1000"],
            progress=False)
    assert capsys.readouterr().err == ""


def test_the_named_settings_are_learning_rates_and_regularisation():
    assert likely_culprits(BPRConfig()) == "lr (now 0.001), reg_weight (now 0.1)"
    assert likely_culprits(MMSSLConfig()) == ("lr (now 0.00055), weight_decay (now 0.01), emb_reg "
                                              "(now 1e-05), feat_reg (now 1e-05), d_lr (now 0.0003)")
