"""``mmssl bench``: every model x seed under one protocol, with significance tests and plots.

Layout of a bench directory::

    runs/MODEL/seed-S/      one run directory per model and seed (skipped when finished,
                            resumed when interrupted)
    search/MODEL/trial-N/   hyper-parameter trials (--grid, --search), chosen on validation only
    search/trials.csv|png   with --search optuna: every trial and its validation score
    chosen.yaml             the settings the search chose, per model
    results.csv             one row per run: model, seed, best epoch, seconds, every metric
    summary.md              mean +- std over seeds, best model in bold, paired tests vs the best
    summary.png             test Recall@20 and NDCG@20 per model with error bars

A bench can be killed at any point and run again with the same command: finished runs are
reused, the interrupted one resumes from its last epoch, and a run directory trained with other
settings is refused rather than mixed in.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmssl.config import config_to_dict, parse_overrides, read_yaml
from mmssl.errors import ConfigError
from mmssl.experiments.report import paired_tests, result_row, write_results, write_summary
from mmssl.experiments.search import search
from mmssl.experiments.tune import DEFAULT_TRIALS

__all__ = ["check_reusable", "model_overrides", "paired_tests", "register", "run_bench"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``mmssl`` parser."""
    p = sub.add_parser("bench", help="benchmark models over seeds, with significance tests",
                       description="Train every model with every seed under one protocol, then "
                                   "write results.csv, summary.md (paired t-test and Wilcoxon "
                                   "against the best) and summary.png. Run it again to resume.")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--models", required=True, help="comma-separated model names")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default: 5)")
    p.add_argument("--first-seed", type=int, default=2022,
                   help="first seed; the others follow it (default: 2022)")
    p.add_argument("--out", required=True, help="bench directory (reused to resume)")
    p.add_argument("--protocol", choices=["standard", "mmssl", "mmrec"],
                   help="evaluation protocol of every run (default: standard)")
    p.add_argument("--focus", metavar="MODEL",
                   help="also compare MODEL with the best other model in summary.md")
    p.add_argument("--grid", help="YAML search space per model (MODEL: {KEY: [values]}), searched "
                                  "on validation first (with --search optuna: replaces the "
                                  "declared spaces of the models it names)")
    p.add_argument("--search", choices=["grid", "random", "optuna"],
                   help="how to search: every combination of --grid, a random sample of it, or "
                        "Optuna's TPE over each model's declared space (needs mmssl[tune])")
    p.add_argument("--trials", type=int, help="trials per model, the same for every model "
                   f"(grid/random: the grid file's trials; optuna: default {DEFAULT_TRIALS})")
    p.add_argument("--timeout", type=float, help="optuna: seconds of search per model at most")
    p.add_argument("--log", action="append", default=[], choices=["tensorboard", "mlflow"],
                   help="also track every run (and trial) in TensorBoard (RUN/tensorboard) or "
                        "MLflow (OUT/mlflow.db, or $MLFLOW_TRACKING_URI); needs mmssl[track]")
    p.add_argument("--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="override a setting for all models, or for one with MODEL: (repeatable)")
    p.set_defaults(func=_bench)

    t = sub.add_parser("tune", help="search one model's settings on validation (Optuna)",
                       description="Search MODEL's settings on validation only with Optuna's TPE "
                                   "sampler and pruning (needs mmssl[tune]), or with --search "
                                   "grid/random over --grid. Writes OUT/chosen.yaml, "
                                   "OUT/search/trials.csv and trials.png; run it again to resume.")
    t.add_argument("--model", required=True, help="model name")
    t.add_argument("--data", required=True, help="dataset folder")
    t.add_argument("--out", required=True, help="search directory (reused to resume)")
    t.add_argument("--trials", type=int, default=None, help=f"budget in trials (default: {DEFAULT_TRIALS})")
    t.add_argument("--timeout", type=float, help="seconds of search at most")
    t.add_argument("--search", choices=["grid", "random", "optuna"], default="optuna",
                   help="default: optuna")
    t.add_argument("--grid", help="YAML search space (MODEL: {KEY: [values]}) instead of the "
                                  "model's declared one")
    t.add_argument("--seed", type=int, default=2022, help="seed of every trial (default: 2022)")
    t.add_argument("--protocol", choices=["standard", "mmssl", "mmrec"],
                   help="evaluation protocol of every trial (default: standard)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed setting of every trial (repeatable)")
    t.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from mmssl.models import get_model_class

    if not get_model_class(args.model).learned:
        raise ConfigError(f"--model {args.model}: has nothing to tune (it is not trained)")
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: seeds are non-negative integers")
    out = Path(args.out)
    chosen = run_bench(args.data, [args.model], [args.seed], out, protocol=args.protocol,
                       grid=args.grid, overrides=args.set, search_method=args.search,
                       trials=args.trials, timeout=args.timeout, search_only=True)[0]
    values = chosen.get(args.model, {})
    sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in values.items())
    print(f"chosen: {out / 'chosen.yaml'}\ntrain it: mmssl train --model {args.model} "
          f"--data {args.data} --out RUN {sets}".rstrip())
    return 0


def _bench(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: give a number of seeds of at least 1")
    if args.first_seed < 0:
        raise ConfigError(f"--first-seed {args.first_seed}: seeds are non-negative integers")
    seeds = [args.first_seed + i for i in range(args.seeds)]
    run_bench(args.data, models, seeds, Path(args.out), protocol=args.protocol,
              grid=args.grid, overrides=args.set, focus=args.focus, search_method=args.search,
              trials=args.trials, timeout=args.timeout, log=args.log)
    print(f"summary: {Path(args.out) / 'summary.md'}")
    return 0


def model_overrides(overrides: list[str], model: str) -> list[str]:
    """The ``--set`` items that apply to ``model``: unscoped ones and ``MODEL:KEY=VALUE``."""
    out = []
    for item in overrides:
        scope, sep, rest = item.partition(":")
        if sep and "=" not in scope:
            if scope == model:
                out.append(rest)
        else:
            out.append(item)
    return out


def run_bench(data: str, models: list[str], seeds: list[int], out: Path,
              protocol: str | None = None, grid: str | None = None,
              overrides: list[str] | None = None, focus: str | None = None,
              progress: bool = False, search_method: str | None = None, trials: int | None = None,
              timeout: float | None = None, search_only: bool = False,
              log: list[str] | None = None) -> list[dict[str, Any]]:
    """Train (or reuse) every model x seed run under ``out``; write the reports; return the rows.

    With ``grid`` or ``search_method`` each model's setting is first searched on validation
    (with the first seed); ``search_only`` stops there and returns ``[chosen]`` (mmssl tune).
    Everything is checked before the first run starts: model names, seeds, the protocol, every
    model's settings (``--set`` and the grid), and reusable run directories.
    """
    from mmssl.data.dataset import load_dataset
    from mmssl.models import get_model_class

    if not models:
        raise ConfigError("--models: give at least one model name, e.g. --models pop,bpr")
    if len(set(models)) != len(models):
        raise ConfigError(f"--models: {','.join(models)} names a model twice")
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    for m in models:
        get_model_class(m)  # fail early on unknown names
    if focus is not None and focus not in models:
        raise ConfigError(f"--focus {focus}: not among --models ({', '.join(models)})")
    overrides = list(overrides or [])
    asked = {m: parse_overrides(model_overrides(overrides, m)).get("protocol") for m in models}
    for m, p in asked.items():
        if protocol is not None and p is not None and p != protocol:
            raise ConfigError(f"--protocol {protocol} conflicts with --set protocol={p} "
                              f"({m}); give one of them")
    chosen_protocols = {p for p in asked.values() if p is not None} | ({protocol} - {None})
    if len(chosen_protocols) > 1 or (chosen_protocols and None in asked.values()
                                     and protocol is None and len(models) > 1):
        raise ConfigError("--set protocol=...: every model of a bench must use one protocol "
                          "(use --protocol, or an unscoped --set protocol=...)")
    protocol = chosen_protocols.pop() if chosen_protocols else "standard"
    base = {m: model_overrides(overrides, m) + [f"protocol={protocol}"] for m in models}
    space = read_yaml(grid) if grid else None
    if search_method in ("grid", "random"):
        if not space:
            raise ConfigError(f"--search {search_method}: give the grid with --grid FILE")
        space = {**space, "search": search_method} | ({"trials": trials} if trials else {})
    elif search_method is None and (trials or timeout):
        raise ConfigError("--trials/--timeout: give --search (grid, random or optuna)")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials {trials}: give a budget of at least 1 trial")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout {timeout:g}: give a positive number of seconds")
    budget = ""
    if search_method == "optuna":
        from mmssl.experiments.tune import check_space, import_optuna

        import_optuna()  # fail before anything runs when it is missing
        where = grid or "search_space"
        unknown = sorted(set(space or {}) - set(models))
        if unknown:
            raise ConfigError(f"{grid}: {unknown[0]!r} is not a benchmarked model")
        spaces = {m: check_space(m, (space or {}).get(m) or get_model_class(m).search_space, where)
                  for m in models if get_model_class(m).learned}
        trials, space = trials or DEFAULT_TRIALS, None
        budget = f"Optuna TPE, {trials} trials per model" + (f", {timeout:g} s at most" if timeout else "")
    elif space:
        budget = f"{space.get('search', 'grid')} search" + (f", {space['trials']} trials per model"
                                                             if space.get("trials") else "")
    if log:
        from mmssl.training.tracking import Trackers

        Trackers(log, out)  # a missing tracker package fails here, before any run
    data_dir = str(Path(data).resolve())
    for m in models:  # every setting checked before anything is trained or written
        _settings(m, data_dir, base[m] + [f"seed={seeds[0]}"])
    dataset = load_dataset(data)
    out.mkdir(parents=True, exist_ok=True)
    select = _settings(models[0], data_dir, base[models[0]]).run.select

    def run_one(model: str, run_dir: Path, sets: list[str],
                on_epoch=None) -> tuple[dict[str, Any], str]:
        check_reusable(run_dir, model, data_dir, sets)
        if (run_dir / "metrics.json").exists():
            return json.loads((run_dir / "metrics.json").read_text()), "done before"
        from mmssl import api
        from mmssl.training.tracking import Trackers

        t = time.perf_counter()
        name = str(run_dir.relative_to(out)) if run_dir.is_relative_to(out) else run_dir.name
        trackers = Trackers(log or [], run_dir, name=name, store=out)

        def each(record: dict[str, Any]) -> None:
            trackers.on_epoch(record)
            if on_epoch is not None:
                on_epoch(record)

        try:
            if (run_dir / "last.pt").exists():
                trained, note = api.resume(run_dir, progress=progress, on_epoch=each), "resumed"
            else:  # new, or killed before its first epoch ended (config.yaml checked above)
                trained = api.fit(model, dataset, run_dir, overrides=sets, overwrite=True,
                                  progress=progress, on_epoch=each)
                note = ""
        except BaseException:
            trackers.close(failed=True)
            raise
        trackers.finish(trained.metrics)
        return trained.metrics, f"{time.perf_counter() - t:.0f} s" + (f" ({note})" if note else "")

    chosen: dict[str, dict[str, Any]] = {}
    if search_method == "optuna":
        from mmssl.experiments.tune import optuna_search

        settings = {m: _settings(m, data_dir, base[m]) for m in spaces}
        chosen = optuna_search(list(spaces), out, spaces, lambda m, d, s, cb: run_one(
            m, d, base[m] + s + [f"seed={seeds[0]}"], cb)[0], trials=trials, timeout=timeout,
            select=select, seed=seeds[0], warmup={m: v.run.patience for m, v in settings.items()},
            start={m: config_to_dict(v.params) for m, v in settings.items()})
        for m, values in chosen.items():
            base[m] += [f"{k}={json.dumps(v)}" for k, v in values.items()]
    elif space:
        chosen = search(models, out, space, lambda m, d, s: run_one(m, d, base[m] + s + [f"seed={seeds[0]}"])[0],
                        select=select)
        for m, values in chosen.items():
            base[m] += [f"{k}={json.dumps(v)}" for k, v in values.items()]
    if search_only:
        return [chosen] if budget else [{}]
    search_note = (f"Settings chosen on validation (seed {seeds[0]}; {budget}): " + "; ".join(
        f"{m} {', '.join(f'{k}={v}' for k, v in vs.items())}" for m, vs in chosen.items())
        + ". Trials: chosen.yaml, search/.") if budget else None

    jobs = [(m, s) for m in models for s in seeds]
    rows, started = [], time.perf_counter()
    durations: dict[str, list[float]] = {}
    for n, (model, seed) in enumerate(jobs, start=1):
        t = time.perf_counter()
        run_dir, sets = out / "runs" / model / f"seed-{seed}", base[model] + [f"seed={seed}"]
        if seed == seeds[0] and not run_dir.exists():
            _reuse_trial(out / "search" / model, run_dir, model, data_dir, sets)
        metrics, note = run_one(model, run_dir, sets)
        if note != "done before":
            durations.setdefault(model, []).append(time.perf_counter() - t)
        rows.append(result_row(model, seed, metrics))
        print(f"[{n}/{len(jobs)}] {model} seed {seed}: valid {select} {metrics['valid'][select]:.4f}, "
              f"test {select} {metrics['test'][select]:.4f}, {note}{_time_left(jobs[n:], durations)}",
              flush=True)
    write_results(rows, out)
    write_summary(rows, out, protocol, time.perf_counter() - started, select=select, focus=focus,
                  dataset=Path(data).name, note=search_note)
    return rows


def _reuse_trial(trials: Path, run_dir: Path, model: str, data_dir: str, sets: list[str]) -> None:
    """Copy a finished search trial trained with exactly ``sets`` (the chosen setting, first
    seed) to ``run_dir``, so that the bench does not train the same run twice."""
    import shutil

    from mmssl import io

    for trial in sorted(trials.glob("trial-*")) if trials.is_dir() else []:
        if not (trial / "metrics.json").exists():
            continue
        try:
            check_reusable(trial, model, data_dir, sets)
        except ConfigError:
            continue
        with io.atomic_directory(run_dir) as tmp:
            shutil.copytree(trial, tmp, dirs_exist_ok=True)
        print(f"{model} {run_dir.name}: reused {trial.relative_to(trials.parent.parent)} (the "
              "chosen trial: same settings, same seed)", flush=True)
        return


def _settings(model: str, data_dir: str, sets: list[str]):
    from mmssl.config import resolve
    from mmssl.models import get_model_class

    cls = get_model_class(model)
    return resolve(model, cls.Config, run_defaults=cls.run_defaults, overrides=sets,
                   override_where=f"--set ({model})", data=data_dir)


def _time_left(jobs: list[tuple[str, int]], durations: dict[str, list[float]]) -> str:
    """Each job left costs its model's mean so far, or the mean of all models for a new one."""
    if not jobs or not durations:
        return ""
    overall = float(np.mean([d for ds in durations.values() for d in ds]))
    left = sum(float(np.mean(durations[m])) if m in durations else overall for m, _ in jobs)
    return f", about {left / 60:.0f} min left" + ("" if all(m in durations for m, _ in jobs)
                                                  else " (a guess until each model has run once)")


def check_reusable(run_dir: Path, model: str, data: str, overrides: list[str]) -> None:
    """Refuse to reuse (or resume) a run directory trained with another config or dataset."""
    from mmssl.config import config_to_dict, resolve
    from mmssl.models import get_model_class

    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    values = read_yaml(saved_path)
    wanted = _settings(model, str(Path(data).resolve()), overrides)
    if values.get("model") != model:
        raise ConfigError(f"{saved_path}: model is {values.get('model')!r} but this bench asks "
                          f"for {model!r}; use another --out, or delete {run_dir}")
    cls = get_model_class(model)
    saved = resolve(model, cls.Config, run_defaults=cls.run_defaults, file_values=values,
                    file_where=str(saved_path), data=values.get("data"))
    pairs = [("data", saved.data, wanted.data)]
    for section in ("run", "params"):
        a, b = config_to_dict(getattr(saved, section)), config_to_dict(getattr(wanted, section))
        pairs += [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))]
    for key, have, want in pairs:
        if have != want:
            raise ConfigError(f"{saved_path}: {key} is {have!r} but this bench asks for "
                              f"{want!r}; use another --out, or delete {run_dir}")
