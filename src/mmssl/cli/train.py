"""``mmssl train``, ``mmssl evaluate`` and ``mmssl recommend``: thin layers over
:mod:`mmssl.api` and :class:`mmssl.serving.Recommender`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mmssl.errors import ConfigError

METRIC_COLUMNS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@20")


def register(sub: argparse._SubParsersAction) -> None:
    """Add train, evaluate and recommend to the ``mmssl`` parser."""
    p = sub.add_parser(
        "train", help="train a model into a run directory (or resume one)",
        description="Train a model on a dataset folder into a run directory. Models: {models}. "
                    "Settings are flat names, e.g. --set epochs=50 --set lr=0.01 "
                    "--set protocol=mmssl --set variant=paper.")
    _list_models_in_help(p)
    p.add_argument("--model", help="model name (listed above)")
    p.add_argument("--data", help="dataset folder (made by 'mmssl data import' or 'data prepare')")
    p.add_argument("--out", help="run directory to create (must not exist or be empty)")
    p.add_argument("--config", help="YAML file of settings (a run's config.yaml works)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, repeatable (e.g. --set ks=10,20,50)")
    p.add_argument("--resume", metavar="RUN",
                   help="continue an interrupted run; --set may change epochs, patience, "
                        "eval_every, threads or device")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run at --out (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of a table")
    p.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                   help="train as N processes on this machine, each on its share of every batch "
                        "(gloo on CPU, NCCL with one GPU each); the same as torchrun "
                        "--nproc-per-node N -m mmssl train ... (default: 1)")
    p.add_argument("--log", action="append", default=[], choices=["tensorboard", "mlflow"],
                   help="also write the epochs' losses and validation metrics and the final "
                        "metrics to TensorBoard (RUN/tensorboard) or MLflow (RUN/mlflow.db, "
                        "or $MLFLOW_TRACKING_URI); needs mmssl[track]; repeatable")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="re-evaluate a saved run",
                       description="Full-ranking metrics of a saved run on valid or test.")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--protocol", choices=["standard", "mmssl", "mmrec"],
                   help="evaluation protocol (default: the run's)")
    p.add_argument("--split", choices=["valid", "test"], default="test",
                   help="split to evaluate (default: test)")
    p.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--device", help="device to evaluate on (default: the run's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("recommend", help="top-k items for users of a saved run",
                       description="Top-k items for users of a saved run, from RUN/recommender.npz "
                                   "(NumPy only: no torch, no dataset).")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--user", action="append", required=True,
                   help="original user id (repeatable)")
    p.add_argument("--k", type=int, default=20, help="items per user (default: 20)")
    p.add_argument("--keep-seen", action="store_true",
                   help="do not exclude the user's training items (default: exclude them)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--data", help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--device", help="device to rebuild the model on (default: the run's)")
    p.set_defaults(func=_recommend)


def _list_models_in_help(parser: argparse.ArgumentParser) -> None:
    """Fill the model names into the description when help is shown: importing the models (and
    torch) only then keeps every other command fast."""
    template, original = parser.description, parser.format_help

    def format_help() -> str:
        from mmssl.models import available_models

        parser.description = template.replace("{models}", ", ".join(available_models()))
        return original()

    parser.format_help = format_help


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.model or args.data or args.config or args.overwrite:
            raise ConfigError("--resume RUN takes its model, data and config from RUN; drop "
                              "--model/--data/--config/--overwrite")
        if args.out and Path(args.out) != Path(args.resume):
            raise ConfigError("--resume RUN continues RUN in place; drop --out")
    else:
        missing = [f"--{n}" for n in ("model", "data", "out") if not getattr(args, n)]
        if args.config:  # a run's config.yaml names its model and data
            from mmssl.config import read_yaml

            saved = read_yaml(args.config)
            missing = [m for m in missing if not (m == "--model" and saved.get("model"))
                       and not (m == "--data" and saved.get("data"))]
        if missing:
            raise ConfigError(f"train needs {', '.join(missing)} (or --resume RUN)")
    from mmssl.training.launch import launch, launched

    if args.nproc > 1:
        if launched():
            raise ConfigError("--nproc starts its own processes, but this one is already part of "
                              "a distributed run (WORLD_SIZE is set); drop --nproc under torchrun")
        return launch(_child_argv(args), args.nproc)
    if launched():  # one process of a distributed run: torch's C++ notices once, not N times
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # read when torch loads, below
    from mmssl import api

    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone prints
    progress = not args.quiet and main_process
    out = args.resume or args.out
    from mmssl.training.tracking import Trackers

    trackers = Trackers(args.log if main_process else [], out)
    try:
        metrics = api.train(args.model, args.data, out, args.config, args.set,
                            resume=bool(args.resume), progress=progress,
                            overwrite=args.overwrite, on_epoch=trackers.on_epoch)
    except BaseException:
        trackers.close(failed=True)
        raise
    trackers.finish(metrics)
    if not main_process:
        return 0
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(summary_table(metrics))
    print(f"run written to {out}")
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    """``mmssl train`` arguments that repeat these ones, without ``--nproc``."""
    argv = ["train"]
    for name in ("model", "data", "out", "config", "resume"):
        if getattr(args, name):
            argv += [f"--{name}", str(getattr(args, name))]
    for pair in args.set:
        argv += ["--set", pair]
    for kind in args.log:
        argv += ["--log", kind]
    argv += [f"--{flag}" for flag in ("overwrite", "quiet", "json") if getattr(args, flag)]
    return argv


def summary_table(metrics: dict) -> str:
    """A few lines: best epoch, then valid and test metrics in columns."""
    select = metrics.get("select", "recall@20")
    head = (f"{metrics['model']}: best epoch {metrics['best_epoch']} of {metrics['epochs']} "
            f"(valid {select} {metrics['valid'].get(select, float('nan')):.4f}), "
            f"{metrics['seconds_per_epoch']:.1f} s/epoch, protocol {metrics['protocol']}")
    return head + "\n" + metric_table({"valid": metrics["valid"], "test": metrics["test"]})


def metric_table(rows: dict[str, dict]) -> str:
    """Rows of metrics under short column names (Recall@10 ... Prec@20)."""
    cols = [c for c in METRIC_COLUMNS if any(c in r for r in rows.values())]
    names = [c.replace("recall", "Recall").replace("ndcg", "NDCG").replace("precision", "Prec")
             for c in cols]
    lines = [f"{'':<8}" + "".join(f"{n:>11}" for n in names)]
    for label, r in rows.items():
        lines.append(f"{label:<8}" + "".join(f"{r.get(c, float('nan')):>11.4f}" for c in cols))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from mmssl import api

    trained = api.load(args.run, device=args.device, data=args.data)
    result = trained.evaluate(split=args.split, protocol=args.protocol)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.run}: {args.split}, protocol {result['protocol']}, "
              f"{result['users']} users evaluated")
        print(metric_table({args.split: result}))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from mmssl.serving.recommender import FILE_NAME, Recommender

    t0 = time.perf_counter()
    if not Path(args.run).is_dir():
        raise ConfigError(f"{args.run}: no such run folder")
    saved = Path(args.run) / FILE_NAME
    if saved.exists() and not args.data and not args.device:
        recommender = Recommender.load(saved)  # NumPy only: no torch, no dataset, no model code
    else:
        from mmssl import api

        recommender = api.load(args.run, device=args.device, data=args.data).recommender()
        if not args.data and os.access(args.run, os.W_OK) and not saved.exists():
            recommender.save(saved)  # a run from before recommender.npz existed: later queries are fast
    recs = recommender.recommend(args.user, k=args.k, exclude_seen=not args.keep_seen)
    if args.json:
        print(json.dumps([r.__dict__ for r in recs], indent=2))
    else:
        for r in recs:
            print(f"user {r.user}:")
            for rank, (item, score) in enumerate(zip(r.items, r.scores), start=1):
                print(f"  {rank:>3}. item {item}  score {score:.4f}")
    import logging

    logging.getLogger("mmssl").info("%.2f s", time.perf_counter() - t0)
    return 0
