"""Run directories written before the redesign (mmssl 0.1) still load for evaluate, recommend
and --resume; a resumed old run continues exactly as a new run of the same length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmssl import api
from mmssl.cli import main
from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs-0.1"
SETS = {"bpr": ["epochs=4", "batch_size=64", "threads=1", "patience=10", "reg_weight=1.0"],  # 0.1's default
        "mmssl-paper": ["variant=paper", "epochs=4", "batch_size=32", "threads=1", "patience=10",
                        "embed_dim=16"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    ds = planted_dataset(n_users=60, n_items=50, n_interactions=900, zero_rows=2, seed=1)
    return save_dataset(ds, tmp_path_factory.mktemp("old") / "planted")


def old_run(name: str, data_dir: Path, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("data: /tmp/fx/planted", f"data: {data_dir}"))
    return run


@pytest.mark.parametrize("name", list(SETS))
def test_old_run_evaluates_and_recommends(name, data_dir, tmp_path, capsys):
    run = old_run(name, data_dir, tmp_path)
    saved = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recall@20"] == pytest.approx(saved["test"]["recall@20"], abs=1e-7)
    assert result["protocol"] == saved["protocol"]
    assert main(["recommend", "--run", str(run), "--user", "u3", "--k", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["items"]) == 5
    assert (run / "recommender.npz").exists()  # written once for the next, torch-free query


@pytest.mark.parametrize("name", list(SETS))
def test_old_run_resumes_exactly(name, data_dir, tmp_path):
    run = old_run(name, data_dir, tmp_path)
    resumed = api.train(None, None, run, overrides=["epochs=4"], resume=True, progress=False)
    model = "mmssl" if name.startswith("mmssl") else name
    fresh = api.train(model, data_dir, tmp_path / "fresh", overrides=SETS[name], progress=False)
    assert resumed["epochs"] == fresh["epochs"] == 4
    assert resumed["test"] == fresh["test"] and resumed["valid"] == fresh["valid"]
