"""Bench reports: results.csv, summary.md (mean +- std, paired tests) and summary.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmssl import io

SUMMARY_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20")


def result_row(model: str, seed: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """One row of results.csv from a run's metrics.json."""
    row = {"model": model, "seed": seed, "best_epoch": metrics.get("best_epoch"),
           "epochs": metrics.get("epochs"),
           "seconds": round(metrics.get("seconds_per_epoch", 0.0) * max(1, metrics.get("epochs") or 1), 1)}
    row.update({f"test_{k}": v for k, v in metrics["test"].items()})
    row.update({f"valid_{k}": v for k, v in metrics["valid"].items()})
    return row


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """results.csv, one row per run (atomically)."""
    import pandas as pd

    io.write_text(out / "results.csv", pd.DataFrame(rows).to_csv(index=False))


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


def write_summary(rows: list[dict[str, Any]], out: Path, protocol: str, seconds: float,
                  select: str = "recall@20", focus: str | None = None,
                  dataset: str | None = None, note: str | None = None) -> None:
    """summary.md and summary.png from the rows of every run; ``note`` (how the settings were
    chosen) follows the table."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    per_model = {m: sorted((r for r in rows if r["model"] == m), key=lambda r: r["seed"]) for m in models}
    metrics = list(dict.fromkeys([*SUMMARY_METRICS, select]))
    mean = {m: {k: float(np.mean([r[f"test_{k}"] for r in rs])) for k in metrics}
            for m, rs in per_model.items()}
    std = {m: {k: float(np.std([r[f"test_{k}"] for r in rs], ddof=1)) if len(rs) > 1 else 0.0
               for k in metrics} for m, rs in per_model.items()}
    best = max(models, key=lambda m: mean[m][select])
    by_seed = {m: {r["seed"]: r[f"test_{select}"] for r in rs} for m, rs in per_model.items()}
    tests = paired_tests(by_seed, best)
    n_seeds = max(len(rs) for rs in per_model.values())
    seeds = sorted({r["seed"] for r in rows})
    label = _label(select)
    lines = [f"# Benchmark ({protocol} protocol, {n_seeds} seeds, test metrics at the best validation epoch)", "",
             "| model | " + " | ".join(_label(k) for k in SUMMARY_METRICS)
             + f" | p (t-test vs {best}) | p (Wilcoxon) |",
             "|---|" + "---|" * (len(SUMMARY_METRICS) + 2)]
    for m in models:
        cells = [f"{mean[m][k]:.4f} ± {std[m][k]:.4f}" for k in SUMMARY_METRICS]
        if m == best:
            cells = [f"**{c}**" for c in cells]
            p_cells = ["—", "—"]
        else:
            p_cells = [_fmt_p(p) for p in tests[m]]
        lines.append(f"| {'**' + m + '**' if m == best else m} | " + " | ".join(cells + p_cells) + " |")
    runner_up = max((m for m in models if m != best), key=lambda m: mean[m][select], default=None)
    lines.append("")
    if note:
        lines += [note, ""]
    if runner_up:
        gain = mean[best][select] - mean[runner_up][select]
        t_p, w_p = tests[runner_up]
        lines.append(f"Best on test {label}: **{best}** ({mean[best][select]:.4f}), ahead of {runner_up} "
                     f"({mean[runner_up][select]:.4f}) by {gain:.4f} ({100 * gain / max(mean[runner_up][select], 1e-12):.1f}% "
                     f"relative); paired t-test p = {_fmt_p(t_p)}, Wilcoxon p = {_fmt_p(w_p)} over {n_seeds} seeds.")
        if n_seeds < 6:
            lines.append(f"With {n_seeds} seeds the two-sided Wilcoxon p-value cannot go below "
                         f"{2 / 2 ** n_seeds:.3f}; read it as a sign test, not as evidence.")
    if focus and focus in models and len(models) > 1:
        other = max((m for m in models if m != focus), key=lambda m: mean[m][select])
        diff = mean[focus][select] - mean[other][select]
        t_p, w_p = paired_tests({m: by_seed[m] for m in (focus, other)}, focus)[other]
        lines.append(f"{focus} against the best other model, {other}: test {label} {mean[focus][select]:.4f} "
                     f"against {mean[other][select]:.4f}, difference {diff:+.4f} "
                     f"({100 * diff / max(mean[other][select], 1e-12):+.1f}% relative); paired t-test "
                     f"p = {_fmt_p(t_p)}, Wilcoxon p = {_fmt_p(w_p)}.")
    train_min = sum(r["seconds"] or 0.0 for r in rows) / 60
    lines.append(f"\nTraining time of the runs, summed: {train_min:.0f} min (median seconds per epoch x "
                 f"epochs; validation not included). Wall time of this invocation: {seconds / 60:.1f} min "
                 "(runs finished before it are reused, not timed). Per-run rows: results.csv.")
    io.write_text(out / "summary.md", "\n".join(lines) + "\n")
    title = (f"{dataset + ': ' if dataset else ''}test metrics, {protocol} protocol, "
             f"{n_seeds} seed{'s' if n_seeds > 1 else ''} ({', '.join(map(str, seeds))})")
    plot_summary(models, mean, std, out / "summary.png", title)


def _label(metric: str) -> str:
    return metric.replace("recall", "Recall").replace("ndcg", "NDCG").replace("precision", "Precision")


def _fmt_p(p: float) -> str:
    return "n/a" if p != p else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def plot_summary(models, mean, std, path: Path, title: str) -> None:
    """Test Recall@20 and NDCG@20 per model with error bars, titled, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(models)), 3.8))
    for offset, k in ((-0.2, "recall@20"), (0.2, "ndcg@20")):
        ax.bar(x + offset, [mean[m][k] for m in models], 0.4, yerr=[std[m][k] for m in models],
               capsize=3, label=_label(k))
    ax.set_xticks(x, models, rotation=30, ha="right")
    ax.set_ylabel("test metric (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


__all__ = ["SUMMARY_METRICS", "paired_tests", "plot_summary", "result_row", "write_results",
           "write_summary"]
