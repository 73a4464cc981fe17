"""Training speed of MMSSL on a dataset folder: seconds per epoch, seconds per full validation,
peak memory, for each variant x discriminator mode x precision, and the speed-ups between them
measured in the same run.

    python benchmarks/train_speed.py --data data/ml100k-mm --threads 1
    python benchmarks/train_speed.py --data data/ml100k-mm --modes exact,sketch --precisions fp32
    python benchmarks/train_speed.py --generate sports --device cuda   # Amazon-Sports size

Each configuration runs in its own process (so peak resident memory is its own), with the same
seed, for ``--epochs`` epochs; with ``--steps N`` only N steps of each epoch are timed and the
epoch time is extrapolated (steps per epoch x median step). ``--generate sports`` builds a
planted dataset of Amazon-Sports size (35,598 users x 18,357 items, 256,308 interactions,
modalities image 4096-d and text 384-d) in memory. The last line is the JSON of every record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from mmssl.runtime import cpu_name

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
        "peak_rss_mb": peak_memory_mb(),
    }
    if device.type == "cuda":
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every configuration in its own process; print a table, speed-ups and the JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/ml100k-mm", help="dataset folder (default: data/ml100k-mm)")
    p.add_argument("--generate", choices=["sports"], help="a planted dataset instead of --data")
    p.add_argument("--variants", default="official", help="default: official")
    p.add_argument("--modes", default="exact,sketch", help="discriminator modes (default: exact,sketch)")
    p.add_argument("--precisions", default="fp32,bf16", help="default: fp32,bf16")
    p.add_argument("--epochs", type=int, default=2, help="epochs per configuration (default: 2)")
    p.add_argument("--steps", type=int, default=0,
                   help="time only this many steps per epoch and extrapolate (default: 0, whole epochs)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--device", default="auto", help="default: auto")
    p.add_argument("--one", nargs=3, metavar=("VARIANT", "MODE", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args, *args.one)))
        return 0
    print(f"{cpu_name()}; torch threads {args.threads or 'default'}; "
          f"data {args.generate or args.data}", flush=True)
    print(f"{'variant':<9} {'mode':<7} {'precision':<9} {'s/epoch':>9} {'s/valid':>8} "
          f"{'peak MB':>8}  epochs (s); valid R@20", flush=True)
    records = []
    for variant in args.variants.split(","):
        for mode in args.modes.split(","):
            for precision in args.precisions.split(","):
                cmd = [sys.executable, __file__, "--one", variant, mode, precision,
                       "--data", args.data, "--epochs", str(args.epochs),
                       "--threads", str(args.threads), "--device", args.device,
                       "--steps", str(args.steps)] + (["--generate", args.generate] if args.generate else [])
                done = subprocess.run(cmd, capture_output=True, text=True)
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
