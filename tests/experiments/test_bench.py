"""The bench command: statistics against scipy, resuming, reports, validation-only search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import ConfigError
from mmssl.experiments import bench, report


def test_paired_tests_match_scipy_on_fixed_numbers():
    values = {"a": [0.30, 0.31, 0.29, 0.32, 0.30], "b": [0.28, 0.30, 0.27, 0.29, 0.28],
              "c": [0.30, 0.31, 0.29, 0.32, 0.30]}
    out = report.paired_tests(values, best="a")
    assert out["b"][0] == pytest.approx(stats.ttest_rel(values["b"], values["a"]).pvalue, rel=1e-12)
    assert out["b"][1] == pytest.approx(stats.wilcoxon(values["b"], values["a"]).pvalue, rel=1e-12)
    # by hand: differences mean -0.02, sd 0.00707, t = -6.32 with 4 df: two-sided p = 0.0032
    assert out["b"][0] == pytest.approx(0.0032, abs=1e-4)
    assert math.isnan(out["c"][0])  # identical to the best: no test
    assert "a" not in out


def test_model_scoped_overrides():
    sets = ["epochs=3", "mmssl:variant=official", "pop:seed=1"]
    assert bench.model_overrides(sets, "mmssl") == ["epochs=3", "variant=official"]
    assert bench.model_overrides(sets, "lightgcn") == ["epochs=3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    ds = planted_dataset(n_users=50, n_items=40, n_interactions=700, seed=2)
    return str(save_dataset(ds, tmp_path_factory.mktemp("d") / "planted"))


def test_bench_writes_reports_and_resumes_without_redoing(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    sets = ["mmssl:epochs=1", "mmssl:batch_size=64", "threads=1"]
    rows = bench.run_bench(data_dir, ["pop", "mmssl"], [1, 2], out, overrides=sets)
    assert len(rows) == 4
    for name in ("results.csv", "summary.md", "summary.png"):
        assert (out / name).exists()
    summary = (out / "summary.md").read_text()
    assert "Best on test Recall@20" in summary and "**" in summary

    # An interrupted bench: remove one finished run; only that one is trained again.
    import shutil

    import mmssl.api as api

    shutil.rmtree(out / "runs" / "mmssl" / "seed-2")
    calls = []
    real_fit = api.fit
    monkeypatch.setattr(api, "fit", lambda *a, **k: calls.append(a[0]) or real_fit(*a, **k))
    capsys.readouterr()
    again = bench.run_bench(data_dir, ["pop", "mmssl"], [1, 2], out, overrides=sets)
    assert calls == ["mmssl"]
    assert [r["test_recall@20"] for r in again[:3]] == [r["test_recall@20"] for r in rows[:3]]
    assert capsys.readouterr().out.count("done before") == 3

    # The same directory with another setting is refused, not silently reused.
    with pytest.raises(ConfigError, match=r"seed-1/config.yaml: epochs is 1 but this bench asks for 2"):
        bench.run_bench(data_dir, ["mmssl"], [1], out, overrides=["mmssl:epochs=2", "mmssl:batch_size=64",
                                                                   "threads=1"])


def test_the_chosen_trial_is_the_first_seeds_run_not_trained_twice(data_dir, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    import mmssl.api as api

    grid = tmp_path / "grid.yaml"
    grid.write_text("bpr:\n  reg_weight: [0.1, 0.001]\n")
    calls = []
    real_fit = api.fit
    monkeypatch.setattr(api, "fit", lambda *a, **k: calls.append(a[2]) or real_fit(*a, **k))
    out = tmp_path / "bench"
    rows = bench.run_bench(data_dir, ["bpr"], [1, 2], out, grid=str(grid), search_method="grid",
                           overrides=["epochs=2", "threads=1"])
    from mmssl.config import read_yaml

    reg = read_yaml(out / "chosen.yaml")["bpr"]["reg_weight"]
    trials = sorted((out / "search" / "bpr").glob("trial-*"))
    trial = next(t for t in trials if read_yaml(t / "config.yaml")["params"]["reg_weight"] == reg)
    first = out / "runs" / "bpr" / "seed-1"
    # two trials and the second seed were trained; the first seed is the chosen trial's copy
    assert sorted(str(Path(c).relative_to(out)) for c in calls) == [
        "runs/bpr/seed-2", *(str(t.relative_to(out)) for t in trials)]
    assert (first / "metrics.json").read_text() == (trial / "metrics.json").read_text()
    assert rows[0]["valid_recall@20"] == json.loads((trial / "metrics.json").read_text())["valid"]["recall@20"]
    # a trial with other settings is never taken for a run
    other = next(t for t in trials if t != trial)
    assert (other / "metrics.json").read_text() != (first / "metrics.json").read_text()


def test_search_chooses_on_validation_only(tmp_path):
    """The chosen setting is the one with the best validation score, whatever test says."""
    from mmssl.experiments.search import search

    fake = {0.1: (0.5, 0.1), 0.2: (0.7, 0.0), 0.3: (0.6, 0.9)}  # lr -> (valid, test)

    def fake_trial(model, trial_dir, sets):
        lr = next(float(s.split("=")[1]) for s in sets if s.startswith("lr="))
        valid, test = fake[lr]
        return {"valid": {"recall@20": valid}, "test": {"recall@20": test}}

    chosen = search(["bpr"], tmp_path, {"bpr": {"lr": [0.1, 0.2, 0.3]}}, fake_trial)
    assert chosen == {"bpr": {"lr": 0.2}}
    assert (tmp_path / "chosen.yaml").exists()
    assert np.isclose(fake[chosen["bpr"]["lr"]][0], 0.7)


def test_example_grid_names_real_settings():
    """Every key and value of examples/grid.yaml builds a valid config of its model."""
    from pathlib import Path

    from mmssl.config import config_to_dict, read_yaml, resolve
    from mmssl.models import get_model_class

    space = read_yaml(Path(__file__).parents[2] / "examples" / "grid.yaml")
    models = [k for k in space if k not in ("search", "trials", "seed")]
    assert models
    for model in models:
        cls = get_model_class(model)
        for key, values in space[model].items():
            for value in values:
                settings = resolve(model, cls.Config, overrides={key: value})
                merged = {**config_to_dict(settings.run), **config_to_dict(settings.params)}
                assert merged[key] == value


def test_paired_tests_pair_by_seed_when_models_have_different_seeds():
    values = {"a": {1: 0.30, 2: 0.31, 3: 0.29}, "b": {2: 0.30, 3: 0.27, 4: 0.5}, "c": {1: 0.2}}
    out = report.paired_tests(values, best="a")
    assert out["b"][0] == pytest.approx(stats.ttest_rel([0.30, 0.27], [0.31, 0.29]).pvalue, rel=1e-12)
    assert math.isnan(out["c"][0])  # one common seed: no test
