"""Training speed of MMSSL: median seconds per epoch, seconds per full validation, peak memory.

Each (variant, precision) runs in its own process, so peak resident memory is its own.

    python benchmarks/train_speed.py --data data/ml100k-mm --threads 1
    python benchmarks/train_speed.py --generate sports --device cuda   # Amazon-Sports size

`--generate sports` builds a planted dataset of Amazon-Sports size (35,598 users x 18,357 items,
256,308 interactions, modalities image 4096-d and text 384-d) in memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SPORTS = {"n_users": 35598, "n_items": 18357, "n_interactions": 256308,
          "modalities": {"image": 4096, "text": 384}}


def measure(args: argparse.Namespace) -> dict:
    import torch

    from mmssl.config import build_config
    from mmssl.data.dataset import load_dataset
    from mmssl.data.synthetic import planted_dataset
    from mmssl.evaluation import evaluate
    from mmssl.models.mmssl import MMSSL, MMSSLConfig
    from mmssl.training.sampler import BprSampler
    from mmssl.training.trainer import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.generate == "sports":
        ds = planted_dataset(**SPORTS, seed=0)
    else:
        ds = load_dataset(args.data)
    config = build_config(MMSSLConfig, {"variant": args.variant, "precision": args.precision,
                                        "device": args.device})
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = MMSSL(ds, config, device)
    sampler = BprSampler(ds.matrix("train"), config.batch_size, "user",
                         torch.Generator().manual_seed(config.seed),
                         model.config.sample_users_with_replacement)
    epochs, recalls = [], []
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        steps = 0
        for step, batch in enumerate(sampler.epoch()):
            model.train_step(batch, step)
            steps += 1
            if steps == args.steps:
                break
        model.end_epoch(epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        # With --steps, the epoch time is extrapolated from the steps run.
        epochs.append((time.perf_counter() - t0) * sampler.steps_per_epoch() / steps)
        model.eval()
        t1 = time.perf_counter()
        with torch.no_grad():
            result = evaluate(model.scorer(), ds, split="valid", protocol=model.config.protocol,
                              device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        valid_seconds = time.perf_counter() - t1
        recalls.append(result["recall@20"])
    out = {
        "variant": args.variant, "precision": args.precision, "device": str(device),
        "threads": torch.get_num_threads(), "steps_per_epoch": sampler.steps_per_epoch(),
        "epoch_seconds": [round(s, 2) for s in epochs],
        "extrapolated_from_steps": args.steps or None,
        "median_epoch_seconds": round(statistics.median(epochs), 2),
        "validation_seconds": round(valid_seconds, 3),
        "valid_recall@20": [round(r, 4) for r in recalls],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/ml100k-mm")
    p.add_argument("--generate", choices=["sports"])
    p.add_argument("--variants", default="official,paper")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=0,
                   help="time only this many steps per epoch and extrapolate (0: whole epochs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        args.variant, args.precision = args.one
        print(json.dumps(measure(args)))
        return
    print(f"{'variant':<9} {'precision':<9} {'threads':>7} {'s/epoch (median)':>16} "
          f"{'s/validation':>12} {'peak RSS MB':>11}  epochs (s)")
    for variant in args.variants.split(","):
        for precision in args.precisions.split(","):
            cmd = [sys.executable, __file__, "--one", variant, precision, "--data", args.data,
                   "--epochs", str(args.epochs), "--threads", str(args.threads), "--device", args.device,
                   "--steps", str(args.steps)]
            if args.generate:
                cmd += ["--generate", args.generate]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{variant} {precision}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            extra = f"  GPU peak {r['peak_gpu_mb']} MB" if "peak_gpu_mb" in r else ""
            print(f"{variant:<9} {precision:<9} {r['threads']:>7} {r['median_epoch_seconds']:>16} "
                  f"{r['validation_seconds']:>12} {r['peak_rss_mb']:>11}  {r['epoch_seconds']} "
                  f"valid R@20 {r['valid_recall@20']} on {r['device']}{extra}", flush=True)


if __name__ == "__main__":
    main()
