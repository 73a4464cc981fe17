"""``mmssl bench``: every model x seed under one protocol, with significance tests and plots.

Layout of a bench directory::

    runs/MODEL/seed-S/      one run directory per model and seed (skipped when finished,
                            resumed when interrupted)
    search/MODEL/trial-N/   hyper-parameter trials (with --grid), chosen on validation only
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

from mmssl.config import parse_overrides, read_yaml
from mmssl.errors import ConfigError
from mmssl.experiments.report import paired_tests, result_row, write_results, write_summary
from mmssl.experiments.search import search

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
    p.add_argument("--grid", help="YAML search space per model, searched on validation first")
    p.add_argument("--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="override a setting for all models, or for one with MODEL: (repeatable)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: give a number of seeds of at least 1")
    if args.first_seed < 0:
        raise ConfigError(f"--first-seed {args.first_seed}: seeds are non-negative integers")
    seeds = [args.first_seed + i for i in range(args.seeds)]
    run_bench(args.data, models, seeds, Path(args.out), protocol=args.protocol,
              grid=args.grid, overrides=args.set, focus=args.focus)
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
              progress: bool = False) -> list[dict[str, Any]]:
    """Train (or reuse) every model x seed run under ``out``; write the reports; return the rows.

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
    data_dir = str(Path(data).resolve())
    for m in models:  # every setting checked before anything is trained or written
        _settings(m, data_dir, base[m] + [f"seed={seeds[0]}"])
    dataset = load_dataset(data)
    out.mkdir(parents=True, exist_ok=True)
    select = _settings(models[0], data_dir, base[models[0]]).run.select

    def run_one(model: str, run_dir: Path, sets: list[str]) -> tuple[dict[str, Any], str]:
        check_reusable(run_dir, model, data_dir, sets)
        if (run_dir / "metrics.json").exists():
            return json.loads((run_dir / "metrics.json").read_text()), "done before"
        from mmssl import api

        t = time.perf_counter()
        if (run_dir / "last.pt").exists():
            trained, note = api.resume(run_dir, progress=progress), "resumed"
        else:  # new, or killed before its first epoch ended (config.yaml checked above)
            trained = api.fit(model, dataset, run_dir, overrides=sets, overwrite=True,
                              progress=progress)
            note = ""
        return trained.metrics, f"{time.perf_counter() - t:.0f} s" + (f" ({note})" if note else "")

    if space:
        chosen = search(models, out, space, lambda m, d, s: run_one(m, d, base[m] + s + [f"seed={seeds[0]}"])[0],
                        select=select)
        for m, values in chosen.items():
            base[m] += [f"{k}={json.dumps(v)}" for k, v in values.items()]

    jobs = [(m, s) for m in models for s in seeds]
    rows, started = [], time.perf_counter()
    durations: dict[str, list[float]] = {}
    for n, (model, seed) in enumerate(jobs, start=1):
        t = time.perf_counter()
        metrics, note = run_one(model, out / "runs" / model / f"seed-{seed}", base[model] + [f"seed={seed}"])
        if note != "done before":
            durations.setdefault(model, []).append(time.perf_counter() - t)
        rows.append(result_row(model, seed, metrics))
        print(f"[{n}/{len(jobs)}] {model} seed {seed}: valid {select} {metrics['valid'][select]:.4f}, "
              f"test {select} {metrics['test'][select]:.4f}, {note}{_time_left(jobs[n:], durations)}",
              flush=True)
    write_results(rows, out)
    write_summary(rows, out, protocol, time.perf_counter() - started, select=select, focus=focus,
                  dataset=Path(data).name)
    return rows


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
