"""``curves.png``: the training loss and the validation metric per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmssl import io
from mmssl.training.rundir import CURVES


def plot_run(run_dir: Path, history: list[dict[str, Any]], select: str,
             metrics: dict[str, Any] | None) -> None:
    """A run directory's curves.png from its epoch records (nothing without epochs)."""
    if history:
        metrics = metrics or {}
        plot_curves(history, Path(run_dir) / CURVES, select, metrics.get("best_epoch"),
                    title=metrics.get("model"))


def plot_curves(records: list[dict[str, Any]], out: Path, select: str = "recall@20",
                best_epoch: int | None = None, title: str | None = None) -> None:
    """Loss and validation ``select`` against epoch (integer ticks; markers when there are few
    epochs; the best epoch marked), written atomically to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = [r for r in records if "epoch" in r]
    if not records:
        return
    marker = "o" if len(records) <= 30 else None
    metric = select.replace("recall", "Recall").replace("ndcg", "NDCG").replace(
        "precision", "Precision")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot([r["epoch"] for r in records], [r.get("loss", float("nan")) for r in records],
             marker=marker, markersize=3)
    ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ev = [r for r in records if f"valid_{select}" in r]
    ax2.plot([r["epoch"] for r in ev], [r[f"valid_{select}"] for r in ev], marker=marker or ".",
             markersize=3)
    best = next((r for r in ev if r["epoch"] == best_epoch), None)
    if best is not None:
        value = best[f"valid_{select}"]
        ax2.axvline(best_epoch, color="0.6", linestyle="--", linewidth=1)
        ax2.plot([best_epoch], [value], marker="*", markersize=12, color="tab:red",
                 label=f"best: epoch {best_epoch}, {value:.4f}")
        ax2.legend(loc="lower right")
    ax2.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    io.atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


__all__ = ["plot_curves", "plot_run"]
