"""Optuna search: validation only, pruning, the same budget, resuming, the declared spaces."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("optuna", reason="the [tune] extra (Optuna) is not installed")

from mmssl.cli import main  # noqa: E402
from mmssl.config import config_to_dict, resolve  # noqa: E402
from mmssl.data.dataset import save_dataset  # noqa: E402
from mmssl.data.synthetic import planted_dataset  # noqa: E402
from mmssl.errors import ConfigError  # noqa: E402
from mmssl.experiments import bench  # noqa: E402
from mmssl.experiments.tune import check_space, grid_size, optuna_search  # noqa: E402
from mmssl.models import available_models, get_model_class  # noqa: E402


class ValidOnly(dict):
    """Metrics whose test part must never be read by a search."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("the search read test metrics")
        return super().__getitem__(key)


def _value(sets, key):
    return next(json.loads(s.split("=", 1)[1]) for s in sets if s.startswith(f"{key}="))


def test_the_choice_is_the_best_on_validation_whatever_test_says(tmp_path):
    # by construction validation prefers lr 0.2 and test prefers lr 0.3
    scores = {0.1: (0.5, 0.1), 0.2: (0.7, 0.0), 0.3: (0.6, 0.9)}  # lr -> (valid, test)
    calls = []

    def trial(model, trial_dir, sets, on_epoch):
        lr = _value(sets, "lr")
        calls.append(lr)
        valid, test = scores[lr]
        return ValidOnly(valid={"recall@20": valid}, test={"recall@20": test}, epochs=1)

    chosen = optuna_search(["bpr"], tmp_path, {"bpr": {"lr": [0.1, 0.2, 0.3]}}, trial, trials=10)
    assert chosen == {"bpr": {"lr": 0.2}}
    assert sorted(calls) == [0.1, 0.2, 0.3]  # a finite space: each setting once, then it stops
    rows = list(csv.DictReader(open(tmp_path / "search" / "trials.csv")))
    assert {json.loads(r["params"])["lr"] for r in rows} == {0.1, 0.2, 0.3}
    assert (tmp_path / "search" / "trials.png").stat().st_size > 0
    assert "bpr" in (tmp_path / "chosen.yaml").read_text()


def test_every_model_gets_the_same_budget_of_distinct_settings(tmp_path):
    tried = {"bpr": set(), "lightgcn": set()}

    def trial(model, trial_dir, sets, on_epoch):
        tried[model].add(tuple(sets))
        return {"valid": {"recall@20": _value(sets, "reg_weight")}}

    spaces = {m: {"reg_weight": {"low": 1e-5, "high": 1.0, "log": True}} for m in tried}
    optuna_search(list(tried), tmp_path, spaces, trial, trials=5, seed=1)
    assert [len(v) for v in tried.values()] == [5, 5]


def test_trials_whose_curves_fall_behind_are_pruned(tmp_path):
    def trial(model, trial_dir, sets, on_epoch):
        level = _value(sets, "lr")  # the curve peaks at this level after epoch 3, then falls
        curve = [level * min(epoch, 3) / 3 - 0.01 * max(0, epoch - 3) for epoch in range(12)]
        for epoch, value in enumerate(curve):
            on_epoch({"epoch": epoch, "loss": 1.0, "valid_recall@20": value})
        return {"valid": {"recall@20": max(curve)}}

    space = {"bpr": {"lr": {"low": 0.0, "high": 1.0}}}
    optuna_search(["bpr"], tmp_path, space, trial, trials=12, seed=0, warmup={"bpr": 4})
    rows = list(csv.DictReader(open(tmp_path / "search" / "trials.csv")))
    pruned = [r for r in rows if r["state"] == "pruned"]
    complete = [r for r in rows if r["state"] == "complete"]
    assert pruned and complete
    # below the median, and below its epoch-3 peak for 3 epochs (PatientPruner's patience
    # 4 // 2, plus the epoch it compares with): stopped after epoch 6
    assert all(int(r["epochs"]) == 7 for r in pruned)
    assert len(rows) == 12
    best = max(float(r["valid_recall@20"]) for r in complete)
    assert all(float(r["valid_recall@20"]) < best for r in pruned)


def test_a_slow_starter_that_still_improves_is_not_pruned(tmp_path):
    def trial(model, trial_dir, sets, on_epoch):
        slow = _value(sets, "lr") > 0.5  # the slow ones start lower but keep climbing
        curve = [(0.3 * epoch / 12 + 0.1 * (epoch > 10)) if slow else min(0.2, 0.1 * epoch)
                 for epoch in range(12)]
        for epoch, value in enumerate(curve):
            on_epoch({"epoch": epoch, "loss": 1.0, "valid_recall@20": value})
        return {"valid": {"recall@20": max(curve)}}

    space = {"bpr": {"lr": {"low": 0.0, "high": 1.0}}}
    chosen = optuna_search(["bpr"], tmp_path, space, trial, trials=10, seed=0, warmup={"bpr": 4})
    rows = list(csv.DictReader(open(tmp_path / "search" / "trials.csv")))
    assert all(json.loads(r["params"])["lr"] <= 0.5 for r in rows if r["state"] == "pruned")
    assert chosen["bpr"]["lr"] > 0.5


def test_a_killed_search_goes_on_where_it_stopped(tmp_path):
    calls = []

    def trial(model, trial_dir, sets, on_epoch):
        calls.append(sets)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third trial
        return {"valid": {"recall@20": _value(sets, "reg_weight")}}

    space = {"bpr": {"reg_weight": {"low": 0.0, "high": 1.0}}}
    with pytest.raises(KeyboardInterrupt):
        optuna_search(["bpr"], tmp_path, space, trial, trials=4)
    optuna_search(["bpr"], tmp_path, space, trial, trials=4)
    assert calls[3] == calls[2]  # the interrupted setting runs again first
    assert len(calls) == 5  # 2 finished + the interrupted one + 2 more
    rows = list(csv.DictReader(open(tmp_path / "search" / "trials.csv")))
    assert [r["state"] for r in rows].count("complete") == 4


def test_every_learned_model_declares_a_space_of_its_own_settings():
    learned = [m for m in available_models() if get_model_class(m).learned]
    assert len(learned) == 7
    for model in learned:
        cls = get_model_class(model)
        space = check_space(model, cls.search_space, "search_space")
        assert grid_size(space) and grid_size(space) > 1
        for key, values in space.items():
            for value in values:
                settings = resolve(model, cls.Config, overrides={key: value})
                assert config_to_dict(settings.params)[key] == value


def test_bad_spaces_and_budgets_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"lr: expected a list of values"):
        check_space("bpr", {"lr": 0.1}, "grid.yaml")
    with pytest.raises(ConfigError, match=r"--trials 0"):
        bench.run_bench(str(tmp_path), ["bpr"], [1], tmp_path / "b", search_method="optuna", trials=0)
    with pytest.raises(ConfigError, match=r"give --search"):
        bench.run_bench(str(tmp_path), ["bpr"], [1], tmp_path / "b", trials=3)
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    ds = planted_dataset(300, 200, 4000, n_clusters=4, popularity=1.0, seed=3)
    return str(save_dataset(ds, tmp_path_factory.mktemp("d") / "planted"))


def test_tune_command_searches_a_real_model_and_says_how_to_train_it(data_dir, tmp_path, capsys):
    out = tmp_path / "tune"
    args = ["tune", "--model", "bpr", "--data", data_dir, "--out", str(out), "--trials", "3",
            "--set", "epochs=4", "--set", "lr=0.05", "--set", "threads=1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "search" / "trials.csv")))
    assert len({r["params"] for r in rows}) == 3
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["valid_recall@20"]))
    assert f"--set reg_weight={json.loads(best['params'])['reg_weight']}" in printed
    metrics = json.loads((out / best["dir"] / "metrics.json").read_text())
    assert metrics["valid"]["recall@20"] == pytest.approx(float(best["valid_recall@20"]))
    assert main(args) == 0  # again: nothing left to do, the same choice
    assert f"--set reg_weight={json.loads(best['params'])['reg_weight']}" in capsys.readouterr().out


def test_bench_with_optuna_trains_the_chosen_setting_over_the_seeds(data_dir, tmp_path):
    out = tmp_path / "bench"
    rows = bench.run_bench(data_dir, ["pop", "bpr"], [1, 2], out, search_method="optuna", trials=2,
                           overrides=["epochs=3", "bpr:lr=0.05", "threads=1"])
    assert [r["model"] for r in rows] == ["pop", "pop", "bpr", "bpr"]
    chosen = (out / "chosen.yaml").read_text()
    assert "bpr:" in chosen and "pop" not in chosen
    summary = (out / "summary.md").read_text()
    assert "Settings chosen on validation (seed 1; Optuna TPE, 2 trials per model): bpr reg_weight=" in summary


def test_without_optuna_the_search_says_how_to_install_it(data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "optuna", None)  # import optuna fails
    with pytest.raises(ConfigError, match=r"needs Optuna: pip install 'mmssl\[tune\]'"):
        bench.run_bench(data_dir, ["bpr"], [1], tmp_path / "b", search_method="optuna", trials=2)
    assert not (tmp_path / "b").exists()


def test_the_first_trial_is_the_models_own_setting_so_the_choice_is_never_worse(tmp_path):
    scores = {0.1: 0.36, 1e-5: 0.35, 1e-3: 0.35, 0.01: 0.354}
    tried = []

    def trial(model, trial_dir, sets, on_epoch):
        tried.append(_value(sets, "reg_weight"))
        return {"valid": {"recall@20": scores.get(tried[-1], 0.3)}}

    space = {"bpr": {"reg_weight": [2.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5]}}
    chosen = optuna_search(["bpr"], tmp_path, space, trial, trials=3, seed=0,
                           start={"bpr": {"reg_weight": 0.1, "lr": 0.001}})
    assert tried[0] == 0.1
    assert chosen == {"bpr": {"reg_weight": 0.1}}
