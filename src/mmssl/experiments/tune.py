"""Budgeted hyper-parameter search with Optuna (``pip install mmssl[tune]``).

Each model is searched with the same budget (``trials``, and ``timeout`` seconds if given) by
a TPE sampler over its declared space (``Model.search_space``; MMRec's grids for the baselines,
the authors' parser for MMSSL). A trial trains one run and reports its validation curve: once a
few trials have finished, a trial that is below the median of the earlier trials at the same
epoch and has stopped improving is pruned (see ``_pruner``). The setting with the
best *validation* score is chosen; test metrics are never read.

Everything a search did is kept under ``out/search/``: one run directory per trial, the Optuna
journal (``MODEL.journal``, so that a killed search goes on where it stopped), ``trials.csv``
(one row per trial: model, number, state, validation score, epochs, the values) and
``trials.png`` (validation score against trial, per model, with the running best). The budget
counts distinct settings: TPE may propose a setting again, which then takes the first one's result
without a run; a search over a finite space stops once it has tried every setting.
"""

from __future__ import annotations

import csv
import hashlib
import io as _io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mmssl import io
from mmssl.config import read_yaml
from mmssl.errors import ConfigError

# (model, trial directory, settings, on_epoch) -> the run's metrics (only "valid" is read)
RunTrial = Callable[[str, Path, list[str], Callable[[dict[str, Any]], None]], dict[str, Any]]
DEFAULT_TRIALS = 20  # the budget of --search optuna when --trials is not given
STARTUP_TRIALS = 3  # finished trials before pruning starts (and TPE's random start-up trials)
MAX_PROPOSALS = 20  # per trial of the budget: TPE proposals (repeats included) before it stops


def import_optuna():
    """Optuna, or a ConfigError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("--search optuna needs Optuna: pip install 'mmssl[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check_space(model: str, space: Any, where: str) -> dict[str, Any]:
    """``space`` as a mapping of setting -> list of values or {low, high[, log]}; ConfigError
    naming ``where`` otherwise."""
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: {model}: no search space (a mapping of key: [values, ...])")
    for key, values in space.items():
        if isinstance(values, list) and values:
            continue
        if (isinstance(values, dict) and {"low", "high"} <= set(values) <= {"low", "high", "log"}
                and all(isinstance(values[k], (int, float)) for k in ("low", "high"))
                and values["low"] < values["high"]):
            continue
        raise ConfigError(f"{where}: {model}: {key}: expected a list of values or "
                          f"{{low: A, high: B, log: true}} with A < B, got {values!r}")
    return space


def in_space(space: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``space`` can draw (one of a list, or inside a range)."""
    out = {}
    for key, choice in space.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(choice, list):
            if value in choice:
                out[key] = value
        elif isinstance(value, (int, float)) and choice["low"] <= value <= choice["high"]:
            out[key] = value
    return out


def grid_size(space: dict[str, Any]) -> int | None:
    """The number of distinct settings of a space of lists only; None when it has a range."""
    if not all(isinstance(v, list) for v in space.values()):
        return None
    return math.prod(len({json.dumps(x) for x in v}) for v in space.values())


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """One setting drawn by ``trial`` from ``space``."""
    values = {}
    for key, choice in space.items():
        if isinstance(choice, list):
            values[key] = trial.suggest_categorical(key, choice)
        elif all(isinstance(choice[k], int) for k in ("low", "high")):
            values[key] = trial.suggest_int(key, choice["low"], choice["high"], log=bool(choice.get("log")))
        else:
            values[key] = trial.suggest_float(key, float(choice["low"]), float(choice["high"]),
                                              log=bool(choice.get("log")))
    return values


def optuna_search(models: list[str], out: Path, spaces: dict[str, dict[str, Any]],
                  run_trial: RunTrial, trials: int, timeout: float | None = None,
                  select: str = "recall@20", seed: int = 0,
                  warmup: dict[str, int] | None = None,
                  start: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Search each model's space under the same budget; return (and save in ``out/chosen.yaml``)
    each model's setting with the best validation ``select`` score.

    ``start[model]`` (its current settings) is the first trial, for the keys whose value lies
    in the space, so the choice is never worse on validation than what the model had. A model
    already in chosen.yaml is not searched again; a killed search resumes from its journal (a
    trial that was running is run again, reusing its run directory).
    """
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    if trials < 1:
        raise ConfigError(f"--trials {trials}: give a budget of at least 1 trial")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"--timeout {timeout:g}: give a positive number of seconds")
    chosen_path = out / "chosen.yaml"
    chosen: dict[str, dict[str, Any]] = read_yaml(chosen_path) if chosen_path.exists() else {}
    (out / "search").mkdir(parents=True, exist_ok=True)
    for model in models:
        if model in chosen:
            continue
        space = spaces[model]
        storage = JournalStorage(JournalFileBackend(str(out / "search" / f"{model}.journal")))
        study = optuna.create_study(
            study_name=model, storage=storage, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS),
            pruner=_pruner(optuna, (warmup or {}).get(model, 0)))
        _retry_interrupted(study, TrialState)
        first = in_space(space, (start or {}).get(model, {}))
        if first and not study.trials:
            study.enqueue_trial(first, user_attrs={"start": True})
        _optimize(optuna, study, model, space, out, run_trial, trials, timeout, select)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise ConfigError(f"search {model}: no trial finished within the budget "
                              f"(--trials {trials}" + (f", --timeout {timeout:g}" if timeout else "")
                              + "); give it more")
        best = max(complete, key=lambda t: t.value)
        chosen[model] = best.params
        print(f"search {model}: chose {best.params} (valid {select} {best.value:.4f}, trial "
              f"{best.number} of {len(study.trials)})", flush=True)
        io.write_text(chosen_path, yaml.safe_dump(chosen, sort_keys=False))
        write_history(out, models, select)
    return chosen


def _pruner(optuna: Any, patience: int) -> Any:
    """Prune a trial only when both hold: its validation score is below the median of the
    earlier trials at the same epoch (after ``patience`` epochs of warm-up), and it has not
    improved for ``patience // 2 + 1`` epochs. The median rule alone prunes slow starters: on
    ml100k-mm it stopped BPR with reg_weight 0.1 at epoch 21, 0.001 below the median, though
    that setting ends higher than the trials it was compared with."""
    import warnings

    median = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=patience)
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.PatientPruner(median, patience=max(1, patience // 2))


def _optimize(optuna: Any, study: Any, model: str, space: dict[str, Any], out: Path,
              run_trial: RunTrial, trials: int, timeout: float | None, select: str) -> None:
    """Run ``study`` until it has tried ``trials`` distinct settings (or every setting of a
    finite space, or ``timeout`` seconds have passed)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED)
    budget = min(trials, grid_size(space) or trials)

    def objective(trial: Any) -> float:
        values = suggest(trial, space)
        for seen in study.get_trials(deepcopy=False, states=done):  # a repeat: no new run
            if seen.params == values:
                trial.set_user_attr("repeat_of", seen.number)
                print(f"search {model} trial {trial.number} {values}: a repeat of trial "
                      f"{seen.number}, not run again", flush=True)
                if seen.state == TrialState.PRUNED:
                    raise optuna.TrialPruned()
                return seen.value
        sets = [f"{k}={json.dumps(v)}" for k, v in values.items()]
        key = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
        trial.set_user_attr("dir", f"search/{model}/trial-{key}")

        def report(record: dict[str, Any]) -> None:
            if f"valid_{select}" in record:
                trial.report(record[f"valid_{select}"], record["epoch"])
                if trial.should_prune():
                    print(f"search {model} trial {trial.number} {values}: pruned after epoch "
                          f"{record['epoch']} (valid {select} {record[f'valid_{select}']:.4f}, "
                          "below the earlier trials' median)", flush=True)
                    raise optuna.TrialPruned()

        metrics = run_trial(model, out / "search" / model / f"trial-{key}", sets, report)
        score = float(metrics["valid"][select])  # validation only
        trial.set_user_attr("epochs", metrics.get("epochs"))
        print(f"search {model} trial {trial.number} {values}: valid {select} {score:.4f}",
              flush=True)
        return score

    def distinct() -> int:
        return len({json.dumps(t.params, sort_keys=True)
                    for t in study.get_trials(deepcopy=False, states=done)})

    def stop_at_budget(study: Any, _trial: Any) -> None:
        # the budget counts distinct settings: a repeat takes the first one's result, no run
        if distinct() >= budget or len(study.trials) >= MAX_PROPOSALS * trials:
            study.stop()

    if distinct() < budget:
        study.optimize(objective, timeout=timeout, catch=(), callbacks=[stop_at_budget])


def _retry_interrupted(study: Any, TrialState: Any) -> None:
    """Trials a killed (RUNNING) or interrupted (FAIL) search left unfinished run again first,
    each once, resuming their run directories."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    finished = [t.params for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    for t in trials:
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
        if (t.state in (TrialState.RUNNING, TrialState.FAIL) and t.number not in retried
                and t.params and t.params not in finished):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def write_history(out: Path, models: list[str], select: str) -> list[dict[str, Any]]:
    """``out/search/trials.csv`` and ``trials.png`` from the journals of ``models``."""
    optuna = import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    rows = []
    for model in models:
        path = out / "search" / f"{model}.journal"
        if not path.exists():
            continue
        study = optuna.load_study(study_name=model,
                                  storage=JournalStorage(JournalFileBackend(str(path))))
        for t in study.trials:
            last = max(t.intermediate_values) if t.intermediate_values else None
            rows.append({"model": model, "trial": t.number, "state": t.state.name.lower(),
                         f"valid_{select}": t.value if t.value is not None else
                         (t.intermediate_values[last] if last is not None else ""),
                         "epochs": t.user_attrs.get("epochs") or ("" if last is None else last + 1),
                         "params": json.dumps(t.params, sort_keys=True),
                         "dir": t.user_attrs.get("dir", "")})
    if not rows:
        return rows
    text = _io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(out / "search" / "trials.csv", text.getvalue())
    _plot(rows, out / "search" / "trials.png", select)
    return rows


def _plot(rows: list[dict[str, Any]], path: Path, select: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for n, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model and r[f"valid_{select}"] != ""]
        color = f"C{n % 10}"
        for state, marker in (("complete", "o"), ("pruned", "x")):
            pts = [(r["trial"], r[f"valid_{select}"]) for r in mine if r["state"] == state]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, color=color,
                           label=model if state == "complete" else None)
        best, line = float("-inf"), []
        for r in sorted((r for r in mine if r["state"] == "complete"), key=lambda r: r["trial"]):
            best = max(best, r[f"valid_{select}"])
            line.append((r["trial"], best))
        if line:
            ax.step(*zip(*line), where="post", color=color, alpha=0.6)
    ax.set_xlabel("trial (x: pruned; line: best so far)")
    ax.set_ylabel(f"valid {select}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


__all__ = ["check_space", "import_optuna", "in_space", "optuna_search", "suggest", "write_history"]
