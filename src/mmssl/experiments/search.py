"""Hyper-parameter search on validation data only: a grid, or a random sample of it."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mmssl import io
from mmssl.config import read_yaml
from mmssl.errors import ConfigError


def grid_combinations(model: str, grid: Any, method: str, budget: int | None,
                      rng: random.Random) -> list[dict[str, Any]]:
    """The settings to try for ``model``: every combination of the grid, its first ``budget``,
    or ``budget`` drawn at random."""
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"grid: {model}: expected a mapping of key: [values, ...]")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if method == "random":
        return rng.sample(combos, min(int(budget or len(combos)), len(combos)))
    if method != "grid":
        raise ConfigError(f"grid: search must be grid or random, got {method!r}")
    return combos[: int(budget)] if budget else combos


def search(models: list[str], out: Path, space: dict[str, Any],
           run_trial: Callable[[str, Path, list[str]], dict[str, Any]],
           select: str = "recall@20") -> dict[str, dict[str, Any]]:
    """Pick each model's setting by the validation ``select`` metric (test is never read).

    ``run_trial(model, trial_dir, sets)`` trains (or reuses) one trial and returns its metrics.
    The choice per model is saved in ``out/chosen.yaml`` (atomically) as soon as it is made.
    """
    method = space.get("search", "grid")
    budget = space.get("trials")
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ConfigError(f"grid: trials must be a positive integer, got {budget!r}")
    rng = random.Random(space.get("seed", 0))
    chosen_path = out / "chosen.yaml"
    chosen: dict[str, dict[str, Any]] = read_yaml(chosen_path) if chosen_path.exists() else {}
    unknown = sorted(set(space) - set(models) - {"search", "trials", "seed"})
    if unknown:
        raise ConfigError(f"grid: {unknown[0]!r} is neither a benchmarked model nor one of "
                          "search, trials, seed")
    for model in models:
        grid = space.get(model)
        if not grid or model in chosen:
            continue
        best, best_score = None, float("-inf")
        for n, values in enumerate(grid_combinations(model, grid, method, budget, rng)):
            trial = out / "search" / model / f"trial-{n}"
            sets = [f"{k}={json.dumps(v)}" for k, v in values.items()]
            metrics = run_trial(model, trial, sets)
            score = metrics["valid"][select]  # validation only
            print(f"search {model} trial {n} {values}: valid {select} {score:.4f}", flush=True)
            if score > best_score:
                best, best_score = values, score
        chosen[model] = best
        io.write_text(chosen_path, yaml.safe_dump(chosen, sort_keys=False))
    return chosen


__all__ = ["grid_combinations", "search"]
