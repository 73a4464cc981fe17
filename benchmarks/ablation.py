"""The ablation of MMSSL's fixes: ``variant: official`` with each of the paper's fixes switched on
alone, and ``variant: paper`` with each switched off alone, over seeds, under one protocol.

    python benchmarks/ablation.py --data DATASET --out DIR [--seeds 2022,2023,2024]
                                  [--epochs N] [--threads 1] [--set KEY=VALUE ...]
                                  [--only official|paper|NAME,...]

Each (configuration, seed) is one run directory under DIR (finished runs are reused, so the
script can be killed and started again). The fixes are the settings that
``mmssl.models.mmssl.config.VARIANTS`` gives different values in the two variants. Prints one
line per run, then the table (markdown): configuration, the fix's value, mean validation and
test Recall@20 / NDCG@20 over the seeds, the seeds' spread, and the change of mean validation
Recall@20 against its variant's own baseline with a paired t-test (by seed) of that change.
Choose by the validation columns only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mmssl import api
from mmssl.experiments.report import paired_tests
from mmssl.models.mmssl.config import VARIANTS
from mmssl.runtime import cpu_name


def configurations(only: str | None = None) -> list[tuple[str, str, str | None, object]]:
    """(name, variant, fix, value): each variant's baseline, then each fix flipped alone;
    ``only``: comma-separated variants or configuration names to keep."""
    out = []
    for variant, other in (("official", "paper"), ("paper", "official")):
        out.append((variant, variant, None, None))
        for fix in VARIANTS[variant]:
            if VARIANTS[variant][fix] != VARIANTS[other][fix]:
                out.append((f"{variant} {fix}={VARIANTS[other][fix]}", variant, fix, VARIANTS[other][fix]))
    if only:
        keep = {x.strip() for x in only.split(",")}
        unknown = keep - {c[0] for c in out} - {c[1] for c in out}
        if unknown:
            raise SystemExit(f"--only: no configuration {sorted(unknown)[0]!r} (names as in the table)")
        out = [c for c in out if c[0] in keep or c[1] in keep]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="2022,2023,2024")
    parser.add_argument("--epochs", type=int, help="cap on epochs (default: the model's, 1000 "
                                                    "with early stopping)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="comma-separated variants (official, paper) or "
                                         "configuration names, e.g. 'paper leaky_slope=1.0'")
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
    """Markdown: means over the seeds, the seeds' standard deviation of validation Recall@20,
    its change against the variant's baseline and a paired t-test of that change (paired by
    seed; runs are listed seed-major, so position i is the same seed everywhere)."""
    def mean(name: str, split: str, metric: str) -> float:
        return statistics.mean(m[split][metric] for m in results[name])

    valid = {name: [m["valid"]["recall@20"] for m in runs] for name, runs in results.items()}
    lines = ["| configuration | seeds | valid R@20 (sd) | valid N@20 | test R@20 | test N@20 | "
             "valid R@20 vs its variant | paired t-test p |", "|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        base = name.split(" ")[0]
        change = p = ""
        if name != base and base in results:
            change = f"{100 * (mean(name, 'valid', 'recall@20') / mean(base, 'valid', 'recall@20') - 1):+.1f}%"
            t_p = paired_tests({name: valid[name], base: valid[base]}, base)[name][0]
            p = "identical" if t_p != t_p and valid[name] == valid[base] else (
                "" if t_p != t_p else f"{t_p:.3f}")
        sd = f" ({statistics.stdev(valid[name]):.4f})" if len(runs) > 1 else ""
        lines.append(f"| {name} | {len(runs)} | {mean(name, 'valid', 'recall@20'):.4f}{sd} | "
                     f"{mean(name, 'valid', 'ndcg@20'):.4f} | {mean(name, 'test', 'recall@20'):.4f} | "
                     f"{mean(name, 'test', 'ndcg@20'):.4f} | {change} | {p} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
