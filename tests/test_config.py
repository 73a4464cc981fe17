"""Typed configs: parsing --set values, ranges, cross-field checks, the one resolver."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mmssl.config import (
    RunConfig,
    build_config,
    parse_overrides,
    read_yaml,
    resolve,
    split_values,
    unchecked_numeric_fields,
)
from mmssl.errors import ConfigError
from mmssl.models import available_models, get_model_class


def test_overrides_parse_yaml_values_and_lists():
    values = parse_overrides(["lr=0.001", "variant=paper", "ks=10,20", "ks2=[5, 6]", "flag=true"])
    assert values == {"lr": 0.001, "variant": "paper", "ks": "10,20", "ks2": [5, 6], "flag": True}
    with pytest.raises(ConfigError, match="--set 'lr': expected KEY=VALUE"):
        parse_overrides(["lr"])


def test_numbers_in_exponent_form_without_a_dot():
    cls = get_model_class("bpr").Config
    assert build_config(cls, parse_overrides(["lr=1e-3"]), where="--set").lr == 1e-3
    with pytest.raises(ConfigError, match="lr: expected a number, got 'fast'"):
        build_config(cls, {"lr": "fast"}, where="--set")


def test_ks_from_a_comma_list_and_a_single_value():
    assert build_config(RunConfig, {"ks": "10,20"}, where="--set").ks == (10, 20)
    assert build_config(RunConfig, {"ks": [5, 20, 50]}).ks == (5, 20, 50)
    assert build_config(RunConfig, {"ks": 20}).ks == (20,)


@pytest.mark.parametrize("values, message", [
    ({"ks": 10}, "select: recall@20 needs 20 among ks [10]"),
    ({"ks": []}, "ks: give at least one cut-off"),
    ({"ks": -5}, "ks: -5 is out of range (must be >= 1)"),
    ({"ks": "10,10,20"}, "repeats a cut-off"),
    ({"epochs": 0}, "epochs: 0 is out of range (must be >= 1)"),
    ({"eval_every": 0}, "eval_every: 0 is out of range"),
    ({"patience": -1}, "patience: -1 is out of range (must be >= 0)"),
    ({"seed": "abc"}, "seed: expected an integer, got 'abc'"),
    ({"device": "gpu"}, "device: unknown device 'gpu'"),
    ({"select": "recall"}, "select: 'recall' is not METRIC@K"),
    ({"select": "ndcg@7"}, "select: ndcg@7 needs 7 among ks"),
    ({"protocol": "fancy"}, "protocol: 'fancy' is not one of"),
])
def test_run_settings_are_checked_when_built(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(RunConfig, values, where="--set")


@pytest.mark.parametrize("values, message", [
    ({"lr": -0.1}, "lr: -0.1 is out of range (must be > 0)"),
    ({"lr": float("nan")}, "lr: must be a finite number, got nan"),
    ({"lr": float("inf")}, "lr: must be a finite number"),
    ({"batch_size": 0}, "batch_size: 0 is out of range (must be >= 1)"),
    ({"d_betas": [0.5]}, "d_betas: expected 2 values, got 1"),
    ({"d_betas": [0.5, 1.5]}, "d_betas: 1.5 is out of range"),
    ({"feature_dropout": 1.0}, "feature_dropout: 1.0 is out of range (must be >= 0 and < 1)"),
    ({"embed_dim": 30}, "embed_dim 30 must be divisible by n_heads 4"),
    ({"variant": "fancy"}, "variant: 'fancy' is not one of"),
])
def test_model_settings_are_checked_when_built(values, message):
    cls = get_model_class("mmssl").Config
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(cls, values, where="--set")


@pytest.mark.parametrize("name", available_models())
def test_every_numeric_setting_of_every_model_has_a_range(name):
    cls = get_model_class(name)
    assert unchecked_numeric_fields(cls.Config) == []
    assert dataclasses.is_dataclass(cls.Config)
    # no setting of a model hides a run setting of the same name
    assert not set(f.name for f in dataclasses.fields(cls.Config)) & set(
        f.name for f in dataclasses.fields(RunConfig))
    build_config(RunConfig, cls.run_defaults)  # its run defaults are valid
    build_config(cls.Config, {})  # and so are its own defaults


def test_run_config_has_ranges_and_defaults_build():
    assert unchecked_numeric_fields(RunConfig) == []
    run = RunConfig()
    assert (run.protocol, run.ks, run.select, run.patience) == ("standard", (10, 20, 50), "recall@20", 7)


def test_resolve_splits_flat_names_and_names_the_source_of_an_error(tmp_path):
    cls = get_model_class("bpr")
    settings = resolve("bpr", cls.Config, run_defaults=cls.run_defaults,
                       overrides=["epochs=3", "lr=0.01", "protocol=mmrec"])
    assert (settings.run.epochs, settings.run.protocol, settings.params.lr) == (3, "mmrec", 0.01)
    assert settings.run.patience == 20  # the model's published run default
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  epochs: 5\nparams:\n  lr: 0.5\nreg_weight: 2.0\n")
    settings = resolve("bpr", cls.Config, file_values=read_yaml(path), file_where=str(path),
                       overrides=["epochs=7"])
    assert (settings.run.epochs, settings.params.lr, settings.params.reg_weight) == (7, 0.5, 2.0)
    with pytest.raises(ConfigError, match=r"^--set: unknown key 'nosuchkey' for BPRConfig"):
        resolve("bpr", cls.Config, overrides=["nosuchkey=3"])
    with pytest.raises(ConfigError, match=r"^--set: epochs: expected an integer, got 'abc'"):
        resolve("bpr", cls.Config, overrides=["epochs=abc"])
    path.write_text("epochs: 0\n")
    with pytest.raises(ConfigError, match=rf"^{path}: epochs: 0 is out of range"):
        resolve("bpr", cls.Config, file_values=read_yaml(path), file_where=str(path))


def test_split_values_reads_old_flat_run_configs():
    cls = get_model_class("mmssl").Config
    run, params = split_values({"seed": 1, "protocol": "mmssl", "variant": "paper", "lr": 0.1},
                               cls, "old config.yaml")
    assert run == {"seed": 1, "protocol": "mmssl"} and params == {"variant": "paper", "lr": 0.1}


def test_read_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [\n")
    with pytest.raises(ConfigError, match=rf"{bad}: line \d+: malformed YAML"):
        read_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "absent.yaml")
