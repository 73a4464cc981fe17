"""What serving adds to the command line: recommend --all/--out/--show/--new-item, evaluate
--cold-items, and serve's own errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mmssl.api import train
from mmssl.cli import main
from mmssl.data.coldsplit import hold_out_items, save_with_cold_items
from mmssl.data.synthetic import planted_dataset


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory):
    ds = planted_dataset(n_users=60, n_items=50, n_interactions=1200, seed=4)
    ds.item_table = pd.DataFrame({"item_id": ds.item_ids, "title": [f"Film {i}" for i in ds.item_ids]})
    warm, cold = hold_out_items(ds, 0.2, seed=2022)
    data = save_with_cold_items(warm, cold, tmp_path_factory.mktemp("cli-data") / "planted")
    out = tmp_path_factory.mktemp("cli-runs") / "vbpr"
    train("vbpr", data, out, overrides=["epochs=15", "batch_size=128", "lr=0.01", "threads=1",
                                        "reg_weight=0.001"], progress=False)
    return out, warm, cold


def test_recommend_shows_titles(cold_run, capsys):
    run, warm, _ = cold_run
    assert main(["recommend", "--run", str(run), "--user", "u1", "--k", "3", "--show", "title"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user u1:" and len(lines) == 4 and all("Film i" in x for x in lines[1:])


def test_recommend_all_writes_csv_and_parquet(cold_run, tmp_path, capsys):
    run, warm, _ = cold_run
    for name in ("top.csv", "top.parquet"):
        assert main(["recommend", "--run", str(run), "--all", "--k", "5", "--out",
                     str(tmp_path / name), "--show", "title"]) == 0
        frame = pd.read_csv(tmp_path / name) if name.endswith("csv") else pd.read_parquet(tmp_path / name)
        assert list(frame.columns) == ["user_id", "rank", "item_id", "score", "title"]
        assert len(frame) == 5 * warm.n_users and frame["rank"].max() == 5
    assert "wrote 300 rows" in capsys.readouterr().out


def test_recommend_with_new_items_from_npy_files(cold_run, tmp_path, capsys):
    run, _, cold = cold_run
    paths = []
    for m, f in cold.features.items():
        np.save(tmp_path / f"{m}.npy", np.asarray(f)[:3])
        paths += ["--new-item", f"{m}={tmp_path / m}.npy"]
    assert main(["recommend", "--run", str(run), "--user", "u0", "--k", "50", "--json", *paths]) == 0
    out = capsys.readouterr().out
    assert out.startswith("added 3 new items (content path): new-1, new-2, new-3")
    rows = json.loads(out[out.index("["):])
    assert {"new-1", "new-2", "new-3"} <= {r["item_id"] for r in rows}


@pytest.mark.parametrize("argv,message", [
    (["--user", "u0", "--all"], "not both"),
    ([], "--user ID"),
    (["--all", "--k", "0"], "--k must be a whole number"),
    (["--user", "u0", "--show", "colour"], "--show colour: not a column"),
    (["--all", "--out", "top.xlsx"], "expected a .parquet, .csv or .tsv"),
    (["--user", "u0", "--new-item", "text=missing.npy"], "cannot read"),
    (["--user", "ghost", "--show", "title"], "unknown user id 'ghost'"),
])
def test_recommend_errors_are_one_line(cold_run, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recommend", "--run", str(cold_run[0]), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_evaluate_cold_items_reports_every_ranking(cold_run, capsys):
    run = cold_run[0]
    assert main(["evaluate", "--run", str(run), "--cold-items", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["rows"]) == {"vbpr (content path)", "vbpr (k-NN fallback, k=10)",
                                   "itemknn-cbf", "random (expected)"}
    assert result["cold_items"] == 10 and result["split"]["seed"] == 2022
    content = result["rows"]["vbpr (content path)"]["held_out"]["recall@20"]
    random = result["rows"]["random (expected)"]["held_out"]["recall@20"]
    assert random == pytest.approx(1.0)  # 20 of 10 held-out items: everything is in the top 20
    assert 0 < content <= 1
    assert main(["evaluate", "--run", str(run), "--cold-items"]) == 0
    assert "x random" in capsys.readouterr().out


def test_serve_refuses_a_bad_port_and_a_missing_run(tmp_path, capsys):
    assert main(["serve", "--run", str(tmp_path / "none"), "--port", "0"]) == 2
    assert "--port 0" in capsys.readouterr().err
    assert main(["serve", "--run", str(tmp_path / "none")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_the_cli_does_not_import_torch_or_fastapi_for_help():
    code = ("import sys; from mmssl.cli import build_parser; build_parser();"
            "assert 'torch' not in sys.modules and 'fastapi' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
