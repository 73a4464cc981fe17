"""The ablation of MMSSL's fixes: ``variant: official`` with each of the paper's fixes switched on
alone, and ``variant: paper`` with each switched off alone, over seeds, under one protocol.

    python benchmarks/ablation.py --data DATASET --out DIR [--seeds 2022,2023,2024]
                                  [--epochs N] [--threads 1] [--set KEY=VALUE ...]
                                  [--only official|paper]

Each (configuration, seed) is one run directory under DIR (finished runs are reused, so the
script can be killed and started again). The fixes are the settings that
``mmssl.models.mmssl.config.VARIANTS`` gives different values in the two variants. Prints one
line per run, then the table (markdown): configuration, the fix's value, mean validation and
test Recall@20 / NDCG@20 over the seeds, and the change of mean validation Recall@20 against
its variant's own baseline. Choose by the validation column only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mmssl import api
from mmssl.models.mmssl.config import VARIANTS
from mmssl.runtime import cpu_name


def configurations(only: str | None = None) -> list[tuple[str, str, str | None, object]]:
    """(name, variant, fix, value): each variant's baseline, then each fix flipped alone."""
    out = []
    for variant, other in (("official", "paper"), ("paper", "official")):
        if only and variant != only:
            continue
        out.append((variant, variant, None, None))
        for fix in VARIANTS[variant]:
            if VARIANTS[variant][fix] != VARIANTS[other][fix]:
                out.append((f"{variant} {fix}={VARIANTS[other][fix]}", variant, fix, VARIANTS[other][fix]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="2022,2023,2024")
    parser.add_argument("--epochs", type=int, help="cap on epochs (default: the model's, 1000 "
                                                    "with early stopping)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=["official", "paper"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"CPU: {cpu_name()}, {args.threads} threads, torch {torch.__version__}", flush=True)
    common = [f"threads={args.threads}", "device=cpu", *args.set]
    if args.epochs:
        common.append(f"epochs={args.epochs}")
    results: dict[str, list[dict]] = {}
    for seed in seeds:  # seed-major: every configuration has a first seed early
        for name, variant, fix, value in configurations(args.only):
            run = Path(args.out) / name.replace(" ", "__").replace("=", "-") / f"seed-{seed}"
            t = time.perf_counter()
            if (run / "metrics.json").exists():
                metrics, note = json.loads((run / "metrics.json").read_text()), "done before"
            else:
                sets = [*common, f"variant={variant}", f"seed={seed}"]
                if fix is not None:
                    sets.append(f"{fix}={json.dumps(value)}")
                metrics = api.fit("mmssl", args.data, run, overrides=sets, overwrite=True,
                                  progress=False).metrics
                note = f"{time.perf_counter() - t:.0f} s"
            results.setdefault(name, []).append(metrics)
            print(f"{name:48s} seed {seed}: valid R@20 {metrics['valid']['recall@20']:.4f} "
                  f"test R@20 {metrics['test']['recall@20']:.4f} best epoch {metrics['best_epoch']} "
                  f"of {metrics['epochs']} ({note})", flush=True)
    print(table(results))


def table(results: dict[str, list[dict]]) -> str:
    def mean(name: str, split: str, metric: str) -> float:
        return statistics.mean(m[split][metric] for m in results[name])

    lines = ["| configuration | seeds | valid R@20 | valid N@20 | test R@20 | test N@20 | "
             "valid R@20 vs its variant |", "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        base = name.split(" ")[0]
        change = ("" if name == base or base not in results else
                  f"{100 * (mean(name, 'valid', 'recall@20') / mean(base, 'valid', 'recall@20') - 1):+.1f}%")
        lines.append(f"| {name} | {len(runs)} | {mean(name, 'valid', 'recall@20'):.4f} | "
                     f"{mean(name, 'valid', 'ndcg@20'):.4f} | {mean(name, 'test', 'recall@20'):.4f} | "
                     f"{mean(name, 'test', 'ndcg@20'):.4f} | {change} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
