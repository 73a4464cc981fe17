"""--log tensorboard and --log mlflow: the same values as log.jsonl and metrics.json."""

from __future__ import annotations

import json

import pytest

from mmssl.cli import main
from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    ds = planted_dataset(60, 40, 800, seed=5)
    return str(save_dataset(ds, tmp_path_factory.mktemp("d") / "planted"))


def _train(data_dir, out, kind):
    assert main(["train", "--model", "bpr", "--data", data_dir, "--out", str(out), "--quiet",
                 "--log", kind, "--set", "epochs=3", "--set", "threads=1"]) == 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in log if "epoch" in r], json.loads((out / "metrics.json").read_text())


def test_tensorboard_gets_every_epoch_and_the_final_metrics(data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="the [track] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    epochs, metrics = _train(data_dir, tmp_path / "run", "tensorboard")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("loss/loss")]
    assert loss == [(r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in epochs]
    recall = [e.value for e in events.Scalars("valid/recall@20")]
    assert recall == [pytest.approx(r["valid_recall@20"], rel=1e-6) for r in epochs]
    (test,) = events.Scalars("test/recall@20")
    assert test.value == pytest.approx(metrics["test"]["recall@20"], rel=1e-6)
    assert test.step == metrics["best_epoch"]


def test_mlflow_gets_the_settings_every_epoch_and_the_final_metrics(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the [track] extra is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    epochs, metrics = _train(data_dir, tmp_path / "run", "mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mmssl").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["reg_weight"] == "0.1" and run.data.params["model"] == "bpr"
    history = client.get_metric_history(run.info.run_id, "valid_recall_20")
    assert sorted((m.step, m.value) for m in history) == [
        (r["epoch"], pytest.approx(r["valid_recall@20"])) for r in epochs]
    assert run.data.metrics["test_recall_20"] == pytest.approx(metrics["test"]["recall@20"])


def test_an_unknown_tracker_is_a_usage_error(data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "bpr", "--data", data_dir, "--out", str(tmp_path / "r"),
              "--log", "wandb"])
    assert e.value.code == 2
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
