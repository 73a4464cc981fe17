"""``mmssl train``, ``mmssl evaluate`` and ``mmssl recommend``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (or fit) a model into a run directory")
    p.add_argument("--model", help="model name, e.g. mmssl, pop, itemknn-cbf, lightgcn")
    p.add_argument("--data", help="dataset directory (made by 'mmssl data import')")
    p.add_argument("--out", help="run directory to write")
    p.add_argument("--config", help="YAML file of config values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="re-evaluate a saved run, print metrics as JSON")
    p.add_argument("--run", required=True)
    p.add_argument("--protocol", choices=["standard", "mmssl", "mmrec"])
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--data", help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--device")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("recommend", help="top-k items for users of a saved run")
    p.add_argument("--run", required=True)
    p.add_argument("--user", action="append", required=True, help="original user id (repeatable)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--keep-seen", action="store_true", help="do not exclude training items")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--data", help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--device")
    p.set_defaults(func=_recommend)


def _train(args: argparse.Namespace) -> int:
    from mmssl.errors import ConfigError
    from mmssl.training.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.resume:
        metrics = train(None, None, args.resume, resume=True, progress=not args.quiet)
        out = args.resume
    else:
        missing = [f"--{n}" for n in ("model", "data", "out") if not getattr(args, n)]
        if missing:
            raise ConfigError(f"train needs {', '.join(missing)} (or --resume RUN)")
        metrics = train(args.model, args.data, args.out, args.config, args.set,
                        progress=not args.quiet)
        out = args.out
    print(json.dumps(metrics, indent=2))
    print(f"run written to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mmssl.training.run import load_run

    run = load_run(args.run, device=args.device, data=args.data)
    result = run.evaluate(split=args.split, protocol=args.protocol)
    print(json.dumps(result, indent=2))
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from mmssl.recommender import FILE_NAME, Recommender

    t0 = time.perf_counter()
    saved = Path(args.run) / FILE_NAME
    if saved.exists() and not args.data and not args.device:
        recommender = Recommender.load(saved)  # NumPy only: no torch, no dataset, no model code
    else:
        from mmssl.training.run import load_run

        recommender = load_run(args.run, device=args.device, data=args.data).recommender()
        if not args.data and os.access(args.run, os.W_OK):
            recommender.save(saved)  # a run from before recommender.npz existed: later queries are fast
    recs = recommender.recommend(args.user, k=args.k, exclude_seen=not args.keep_seen)
    if args.json:
        print(json.dumps([r.__dict__ for r in recs], indent=2))
    else:
        for r in recs:
            print(f"user {r.user}:")
            for rank, (item, score) in enumerate(zip(r.items, r.scores), start=1):
                print(f"  {rank:>3}. item {item}  score {score:.4f}")
    logging.getLogger("mmssl").info("%.2f s", time.perf_counter() - t0)
    return 0
