"""Training speed of MMSSL on a dataset folder: seconds per epoch, seconds per full validation,
peak memory, for each variant x discriminator mode x precision, and the speed-ups between them
measured in the same run.

    python benchmarks/train_speed.py --data data/ml100k-mm --threads 1
    python benchmarks/train_speed.py --data data/ml100k-mm --modes exact,sketch --precisions fp32
    python benchmarks/train_speed.py --generate sports --device cuda   # Amazon-Sports size
    python benchmarks/train_speed.py --data data/ml100k-mm --modes exact --allocator tcmalloc

Each configuration runs in its own process (so peak resident memory is its own), with the same
seed, for ``--epochs`` epochs; with ``--steps N`` only N steps of each epoch are timed and the
epoch time is extrapolated (steps per epoch x median step). ``--generate sports`` builds a
planted dataset of Amazon-Sports size (35,598 users x 18,357 items, 256,308 interactions,
modalities image 4096-d and text 384-d) in memory. ``--allocator`` is as in ``scale.py``: by
default (``tuned``) each configuration runs with glibc's malloc as ``mmssl train`` tunes it,
``system`` leaves glibc's malloc untouched (it returns a step's freed blocks to the system and
pays page faults for them again in the next step), ``tcmalloc`` preloads that malloc (the
README's advice for long runs). The last line is the JSON of every record.

With ``--nproc``, it compares distributed training with one process instead: each model is
trained to its end (early stopping) by ``mmssl train --nproc N`` for each N, with the same
seed and the same global batch, and the table gives seconds per epoch (median), the speed-up
over the first N, and the best validation Recall@20 with its difference from the first N's:

    python benchmarks/train_speed.py --data data/ml100k-mm --nproc 1,2 --threads 1 \
        --models bpr,lightgcn,mmssl --set mmssl:discriminator=sketch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import MALLOCS, allocator_library  # benchmarks/scale.py, beside this script

from mmssl.runtime import cpu_name, malloc_name, tune_malloc

SPORTS = {"n_users": 35598, "n_items": 18357, "n_interactions": 256308,
          "modalities": {"image": 4096, "text": 384}}


def measure(args: argparse.Namespace, variant: str, mode: str, precision: str) -> dict:
    """Train one configuration here; time its epochs and validations."""
    import torch

    from mmssl.config import build_config
    from mmssl.data.dataset import load_dataset
    from mmssl.data.synthetic import planted_dataset
    from mmssl.evaluation import evaluate
    from mmssl.models import create_model
    from mmssl.models.mmssl import MMSSLConfig
    from mmssl.runtime import peak_memory_mb, resolve_device
    from mmssl.training.sampler import BprSampler

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = planted_dataset(**SPORTS, seed=0) if args.generate == "sports" else load_dataset(args.data)
    device = resolve_device(args.device)
    torch.manual_seed(2022)
    config = build_config(MMSSLConfig, {"variant": variant, "discriminator": mode,
                                        "precision": precision})
    model = create_model("mmssl", ds, config).to(device)
    optimizers = model.configure_optimizers()
    schedulers = model.configure_schedulers(optimizers)
    sampler = BprSampler(ds.matrix("train"), config.batch_size, "user",
                         torch.Generator().manual_seed(2022), model.users_with_replacement)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    epochs, valid_seconds, recalls = [], [], []
    for epoch in range(args.epochs):
        model.train()
        model.on_epoch_start(epoch)
        step_times = []
        sync()
        t0 = time.perf_counter()
        for step, batch in enumerate(sampler.epoch()):
            t = time.perf_counter()
            model.training_step(batch.to(device), optimizers)
            sync()
            step_times.append(time.perf_counter() - t)
            if args.steps and step + 1 == args.steps:
                break
        model.on_epoch_end(epoch)
        for s in schedulers.values():
            s.step()
        sync()
        if args.steps:
            epochs.append(statistics.median(step_times) * sampler.steps_per_epoch())
        else:
            epochs.append(time.perf_counter() - t0)
        model.eval()
        t1 = time.perf_counter()
        with torch.no_grad():
            result = evaluate(model.scorer(), ds, split="valid", device=device)
        sync()
        valid_seconds.append(time.perf_counter() - t1)
        recalls.append(result["recall@20"])
    out = {
        "variant": variant, "mode": mode, "precision": precision, "device": str(device),
        "discriminator": "sketch" if model.sketched else "exact",
        "threads": torch.get_num_threads(), "steps_per_epoch": sampler.steps_per_epoch(),
        "epoch_seconds": [round(s, 2) for s in epochs],
        "extrapolated_from_steps": args.steps or None,
        "median_epoch_seconds": round(statistics.median(epochs), 2),
        "validation_seconds": round(statistics.median(valid_seconds), 3),
        "valid_recall@20": [round(r, 4) for r in recalls],
        "peak_rss_mb": peak_memory_mb(), "malloc": malloc_name() + (" (tuned)" if args.tuned else ""),
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def distributed(args: argparse.Namespace) -> int:
    """Each model trained by ``mmssl train --nproc N`` for every N: speed and validation."""
    counts = [int(n) for n in args.nproc.split(",")]
    print(f"{cpu_name()}; {len(counts)} process counts {counts}; torch threads per process "
          f"{args.threads or 'default'}; data {args.data}; seed {args.seed}", flush=True)
    print(f"{'model':<9} {'nproc':>5} {'s/epoch':>8} {'speed-up':>8} {'valid R@20':>10} "
          f"{'vs first':>8} {'best/epochs':>11} {'wall s':>7}  backend", flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        for model in args.models.split(","):
            sets = [kv.split(":", 1)[1] for kv in args.set if kv.startswith(f"{model}:")]
            sets += [kv for kv in args.set if ":" not in kv.split("=", 1)[0]]
            first = None
            for n in counts:
                out = Path(tmp) / f"{model}-{n}"
                cmd = [sys.executable, "-m", "mmssl", "train", "--model", model, "--data", args.data,
                       "--out", str(out), "--nproc", str(n), "--quiet", "--set", f"seed={args.seed}",
                       "--set", f"threads={args.threads}", "--set", f"device={args.device}"]
                if args.epochs:
                    cmd += ["--set", f"epochs={args.epochs}"]
                for kv in sets:
                    cmd += ["--set", kv]
                t0 = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if done.returncode != 0:
                    print(f"{model} --nproc {n}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                metrics = json.loads((out / "metrics.json").read_text())
                log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
                seconds = [r["train_seconds"] for r in log if "epoch" in r]
                backend = next((x["backend"] for x in log if x.get("event") == "distributed"),
                               "none (one process)")
                r = {"model": model, "nproc": n, "settings": sets, "backend": backend,
                     "median_epoch_seconds": round(statistics.median(seconds), 3),
                     "valid_recall@20": metrics["valid"]["recall@20"],
                     "test_recall@20": metrics["test"]["recall@20"],
                     "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs"],
                     "wall_seconds": round(wall, 1)}
                first = first or r
                r["speedup"] = round(first["median_epoch_seconds"] / r["median_epoch_seconds"], 2)
                r["valid_relative"] = r["valid_recall@20"] / first["valid_recall@20"] - 1
                records.append(r)
                print(f"{model:<9} {n:>5} {r['median_epoch_seconds']:>8.3f} {r['speedup']:>7.2f}x "
                      f"{r['valid_recall@20']:>10.4f} {100 * r['valid_relative']:>+7.2f}% "
                      f"{r['best_epoch']:>5}/{r['epochs']:<5} {wall:>7.0f}  {backend}", flush=True)
    print(json.dumps(records))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in its own process; print a table, speed-ups and the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/ml100k-mm", help="dataset folder (default: data/ml100k-mm)")
    p.add_argument("--generate", choices=["sports"], help="a planted dataset instead of --data")
    p.add_argument("--variants", default="official", help="default: official")
    p.add_argument("--modes", default="exact,sketch", help="discriminator modes (default: exact,sketch)")
    p.add_argument("--precisions", default="fp32,bf16", help="default: fp32,bf16")
    p.add_argument("--epochs", type=int, default=None, help="epochs per configuration (default: 2; "
                   "with --nproc, the models' own unless given)")
    p.add_argument("--steps", type=int, default=0,
                   help="time only this many steps per epoch and extrapolate (default: 0, whole epochs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--device", default="auto", help="default: auto")
    p.add_argument("--nproc", help="compare distributed training: process counts, e.g. 1,2 "
                   "(default: off, the MMSSL configurations above)")
    p.add_argument("--models", default="bpr,lightgcn,mmssl", help="with --nproc: models to train "
                   "(default: bpr,lightgcn,mmssl)")
    p.add_argument("--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE",
                   help="with --nproc: a setting for every model, or for MODEL only (repeatable)")
    p.add_argument("--seed", type=int, default=2022, help="with --nproc: the seed (default: 2022)")
    p.add_argument("--allocator", choices=MALLOCS, default="tuned",
                   help="malloc the configurations run with (default: tuned, glibc's as mmssl "
                        "train tunes it; system: glibc's untouched; tcmalloc keeps freed memory)")
    p.add_argument("--one", nargs=3, metavar=("VARIANT", "MODE", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.nproc:
        return distributed(args)
    args.epochs = args.epochs or 2
    if args.one:
        args.tuned = tune_malloc(args.allocator)  # tunes glibc for "tuned" only
        print(json.dumps(measure(args, *args.one)))
        return 0
    library = allocator_library(args.allocator)
    env = dict(os.environ)
    if library:
        env["LD_PRELOAD"] = " ".join(filter(None, (library, env.get("LD_PRELOAD"))))
    print(f"{cpu_name()}; torch threads {args.threads or 'default'}; "
          f"data {args.generate or args.data}; malloc {args.allocator}", flush=True)
    print(f"{'variant':<9} {'mode':<7} {'precision':<9} {'s/epoch':>9} {'s/valid':>8} "
          f"{'peak MB':>8}  epochs (s); valid R@20", flush=True)
    records = []
    for variant in args.variants.split(","):
        for mode in args.modes.split(","):
            for precision in args.precisions.split(","):
                cmd = [sys.executable, __file__, "--one", variant, mode, precision,
                       "--data", args.data, "--epochs", str(args.epochs),
                       "--threads", str(args.threads), "--device", args.device,
                       "--steps", str(args.steps), "--allocator", args.allocator] + (["--generate", args.generate] if args.generate else [])
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    print(f"{variant} {mode} {precision}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                records.append(r)
                gpu = f"  GPU peak {r['peak_gpu_mb']} MB" if "peak_gpu_mb" in r else ""
                print(f"{variant:<9} {mode:<7} {precision:<9} {r['median_epoch_seconds']:>9} "
                      f"{r['validation_seconds']:>8} {r['peak_rss_mb']:>8}  {r['epoch_seconds']}; "
                      f"{r['valid_recall@20']}{gpu}", flush=True)
    for variant in args.variants.split(","):
        by = {(r["mode"], r["precision"]): r["median_epoch_seconds"] for r in records
              if r["variant"] == variant}
        for precision in args.precisions.split(","):
            if ("exact", precision) in by and ("sketch", precision) in by:
                print(f"{variant} {precision}: sketch is {by['exact', precision] / by['sketch', precision]:.2f}x "
                      f"faster per epoch than exact", flush=True)
        for mode in args.modes.split(","):
            if (mode, "fp32") in by and (mode, "bf16") in by:
                print(f"{variant} {mode}: bf16 is {by[mode, 'fp32'] / by[mode, 'bf16']:.2f}x "
                      f"faster per epoch than fp32", flush=True)
    print(json.dumps(records))
    return 0



if __name__ == "__main__":
    sys.exit(main())
