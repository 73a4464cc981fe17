"""``mmssl bench``: every model x seed under one protocol, with significance tests and plots.

Layout of a bench directory::

    runs/MODEL/seed-S/      one run directory per model and seed (skipped when finished,
                            resumed when interrupted)
    search/MODEL/trial-N/   hyper-parameter trials (with --grid), chosen on validation only
    chosen.yaml             the settings the search chose, per model
    results.csv             one row per run: model, seed, best epoch, seconds, every metric
    summary.md              mean +- std over seeds, best model in bold, paired tests vs the best
    summary.png             test Recall@20 and NDCG@20 per model with error bars
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmssl.config import read_yaml
from mmssl.errors import ConfigError

SUMMARY_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20")
SELECT = "recall@20"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark models over seeds, with significance tests")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--models", required=True, help="comma-separated model names")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (2022, 2023, ...)")
    p.add_argument("--first-seed", type=int, default=2022)
    p.add_argument("--out", required=True, help="bench directory")
    p.add_argument("--protocol", default="standard", choices=["standard", "mmssl", "mmrec"])
    p.add_argument("--grid", help="YAML hyper-parameter search space per model")
    p.add_argument("--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="override a setting for all models, or for one with MODEL: (repeatable)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [args.first_seed + i for i in range(args.seeds)]
    run_bench(args.data, models, seeds, Path(args.out), protocol=args.protocol,
              grid=args.grid, overrides=args.set)
    print(f"summary: {Path(args.out) / 'summary.md'}")
    return 0


def model_overrides(overrides: list[str], model: str) -> list[str]:
    out = []
    for item in overrides:
        scope, sep, rest = item.partition(":")
        if sep and "=" not in scope:
            if scope == model:
                out.append(rest)
        else:
            out.append(item)
    return out


def run_bench(data: str, models: list[str], seeds: list[int], out: Path, protocol: str = "standard",
              grid: str | None = None, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    from mmssl.models import get_model_class
    from mmssl.training.trainer import train

    for m in models:
        get_model_class(m)  # fail early on unknown names
    out.mkdir(parents=True, exist_ok=True)
    base = {m: model_overrides(overrides or [], m) + [f"protocol={protocol}"] for m in models}
    if grid:
        chosen = search(data, models, seeds[0], out, read_yaml(grid), base)
        for m, values in chosen.items():
            base[m] += [f"{k}={json.dumps(v)}" for k, v in values.items()]

    jobs = [(m, s) for m in models for s in seeds]
    rows, started = [], time.perf_counter()
    durations: dict[str, list[float]] = {}  # seconds of the runs trained now, per model
    for n, (model, seed) in enumerate(jobs, start=1):
        run_dir = out / "runs" / model / f"seed-{seed}"
        metrics_path = run_dir / "metrics.json"
        check_reusable(run_dir, model, data, base[model] + [f"seed={seed}"])
        if metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
            note = "done before"
        else:
            t = time.perf_counter()
            resume = (run_dir / "last.pt").exists()
            metrics = train(model, data, run_dir, overrides=base[model] + [f"seed={seed}"],
                            resume=resume, progress=False)
            durations.setdefault(model, []).append(time.perf_counter() - t)
            note = f"{durations[model][-1]:.0f} s" + (" (resumed)" if resume else "")
        rows.append(_row(model, seed, metrics))
        eta = _time_left(jobs[n:], durations)
        print(f"[{n}/{len(jobs)}] {model} seed {seed}: valid R@20 {metrics['valid'][SELECT]:.4f}, "
              f"test R@20 {metrics['test'][SELECT]:.4f}, {note}{eta}", flush=True)
    write_results(rows, out)
    write_summary(rows, out, protocol, time.perf_counter() - started)
    return rows


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
    from mmssl.config import config_to_dict, parse_overrides
    from mmssl.training.trainer import make_config

    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = read_yaml(saved_path)
    wanted = {"model": model, "data": str(Path(data).resolve())}
    wanted.update(config_to_dict(make_config(model, parse_overrides(overrides))))
    wanted = yaml.safe_load(yaml.safe_dump(wanted, sort_keys=False))  # tuples as YAML lists
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            raise ConfigError(f"{saved_path}: {key} is {saved.get(key)!r} but this bench asks for "
                              f"{wanted.get(key)!r}; use another --out, or delete {run_dir}")


def _row(model: str, seed: int, metrics: dict[str, Any]) -> dict[str, Any]:
    row = {"model": model, "seed": seed, "best_epoch": metrics.get("best_epoch"),
           "epochs": metrics.get("epochs"),
           "seconds": round(metrics.get("seconds_per_epoch", 0.0) * max(1, metrics.get("epochs") or 1), 1)}
    row.update({f"test_{k}": v for k, v in metrics["test"].items()})
    row.update({f"valid_{k}": v for k, v in metrics["valid"].items()})
    return row


# ------------------------------------------------------------------ search
def search(data: str, models: list[str], seed: int, out: Path, space: dict[str, Any],
           base: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Pick each model's setting by validation Recall@20 (test metrics are never read)."""
    from mmssl.training.trainer import train

    method = space.get("search", "grid")
    budget = space.get("trials")
    rng = random.Random(space.get("seed", 0))
    chosen_path = out / "chosen.yaml"
    chosen: dict[str, dict[str, Any]] = read_yaml(chosen_path) if chosen_path.exists() else {}
    for model in models:
        grid = space.get(model)
        if not grid or model in chosen:
            continue
        if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
            raise ConfigError(f"grid: {model}: expected a mapping of key: [values]")
        combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
        if method == "random":
            combos = rng.sample(combos, min(int(budget or len(combos)), len(combos)))
        elif method != "grid":
            raise ConfigError(f"grid: search must be grid or random, got {method!r}")
        elif budget:
            combos = combos[: int(budget)]
        best, best_score = None, -1.0
        for n, values in enumerate(combos):
            trial = out / "search" / model / f"trial-{n}"
            sets = base[model] + [f"{k}={json.dumps(v)}" for k, v in values.items()] + [f"seed={seed}"]
            check_reusable(trial, model, data, sets)
            if (trial / "metrics.json").exists():
                metrics = json.loads((trial / "metrics.json").read_text())
            else:
                metrics = train(model, data, trial, overrides=sets, progress=False)
            score = metrics["valid"][SELECT]  # validation only
            print(f"search {model} trial {n} {values}: valid R@20 {score:.4f}", flush=True)
            if score > best_score:
                best, best_score = values, score
        chosen[model] = best
        chosen_path.write_text(yaml.safe_dump(chosen, sort_keys=False))
    return chosen


# ------------------------------------------------------------------ reports
def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)


def paired_tests(values: dict[str, dict[int, float] | list[float]], best: str
                 ) -> dict[str, tuple[float, float]]:
    """p-values of a paired t-test and a Wilcoxon signed-rank test of each model against
    ``best``, pairing runs by seed (``{seed: value}``; a list pairs by position) over the seeds
    both have. NaN where undefined (identical, or fewer than two common seeds)."""
    from scipy import stats

    values = {m: v if isinstance(v, dict) else dict(enumerate(v)) for m, v in values.items()}
    out = {}
    for model, v in values.items():
        if model == best:
            continue
        seeds = sorted(set(v) & set(values[best]))
        a = np.array([v[s] for s in seeds], dtype=float)
        b = np.array([values[best][s] for s in seeds], dtype=float)
        if len(a) < 2 or np.allclose(a, b):
            out[model] = (float("nan"), float("nan"))
            continue
        t_p = float(stats.ttest_rel(a, b).pvalue)
        try:
            w_p = float(stats.wilcoxon(a, b).pvalue)
        except ValueError:
            w_p = float("nan")
        out[model] = (t_p, w_p)
    return out


def write_summary(rows: list[dict[str, Any]], out: Path, protocol: str, seconds: float) -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    per_model = {m: sorted((r for r in rows if r["model"] == m), key=lambda r: r["seed"]) for m in models}
    mean = {m: {k: float(np.mean([r[f"test_{k}"] for r in rs])) for k in SUMMARY_METRICS}
            for m, rs in per_model.items()}
    std = {m: {k: float(np.std([r[f"test_{k}"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0
               for k in SUMMARY_METRICS} for m, rs in per_model.items()}
    best = max(models, key=lambda m: mean[m][SELECT])
    by_seed = {m: {r["seed"]: r[f"test_{SELECT}"] for r in rs} for m, rs in per_model.items()}
    tests = paired_tests(by_seed, best)
    n_seeds = max(len(rs) for rs in per_model.values())
    lines = [f"# Benchmark ({protocol} protocol, {n_seeds} seeds, test metrics at the best validation epoch)", "",
             "| model | " + " | ".join(k.replace("recall", "Recall").replace("ndcg", "NDCG").replace("precision", "Precision")
                                       for k in SUMMARY_METRICS) + f" | p (t-test vs {best}) | p (Wilcoxon) |",
             "|---|" + "---|" * (len(SUMMARY_METRICS) + 2)]
    for m in models:
        cells = [f"{mean[m][k]:.4f} ± {std[m][k]:.4f}" for k in SUMMARY_METRICS]
        if m == best:
            cells = [f"**{c}**" for c in cells]
            p_cells = ["—", "—"]
        else:
            p_cells = [_fmt_p(p) for p in tests[m]]
        lines.append(f"| {'**' + m + '**' if m == best else m} | " + " | ".join(cells + p_cells) + " |")
    runner_up = max((m for m in models if m != best), key=lambda m: mean[m][SELECT], default=None)
    lines.append("")
    if runner_up:
        gain = mean[best][SELECT] - mean[runner_up][SELECT]
        t_p, w_p = tests[runner_up]
        lines.append(f"Best on test Recall@20: **{best}** ({mean[best][SELECT]:.4f}), ahead of {runner_up} "
                     f"({mean[runner_up][SELECT]:.4f}) by {gain:.4f} ({100 * gain / max(mean[runner_up][SELECT], 1e-12):.1f}% "
                     f"relative); paired t-test p = {_fmt_p(t_p)}, Wilcoxon p = {_fmt_p(w_p)} over {n_seeds} seeds.")
        if n_seeds < 6:
            lines.append(f"With {n_seeds} seeds the two-sided Wilcoxon p-value cannot go below "
                         f"{2 / 2 ** n_seeds:.3f}; read it as a sign test, not as evidence.")
    if "mmssl" in models and len(models) > 1:
        other = max((m for m in models if m != "mmssl"), key=lambda m: mean[m][SELECT])
        diff = mean["mmssl"][SELECT] - mean[other][SELECT]
        t_p, w_p = paired_tests({m: by_seed[m] for m in ("mmssl", other)}, "mmssl")[other]
        lines.append(f"MMSSL against the best other model, {other}: test Recall@20 {mean['mmssl'][SELECT]:.4f} "
                     f"against {mean[other][SELECT]:.4f}, difference {diff:+.4f} "
                     f"({100 * diff / max(mean[other][SELECT], 1e-12):+.1f}% relative); paired t-test "
                     f"p = {_fmt_p(t_p)}, Wilcoxon p = {_fmt_p(w_p)}.")
    train_min = sum(r["seconds"] or 0.0 for r in rows) / 60
    lines.append(f"\nTraining time of the runs, summed: {train_min:.0f} min (median seconds per epoch x "
                 f"epochs; validation not included). Wall time of this invocation: {seconds / 60:.1f} min "
                 "(runs finished before it are reused, not timed). Per-run rows: results.csv.")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    _plot(models, mean, std, out / "summary.png")


def _fmt_p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def _plot(models, mean, std, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(models)), 3.8))
    for offset, k in ((-0.2, "recall@20"), (0.2, "ndcg@20")):
        ax.bar(x + offset, [mean[m][k] for m in models], 0.4, yerr=[std[m][k] for m in models],
               capsize=3, label=k.replace("recall", "Recall").replace("ndcg", "NDCG"))
    ax.set_xticks(x, models, rotation=30, ha="right")
    ax.set_ylabel("test metric (mean ± std over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
