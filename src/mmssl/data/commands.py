"""``mmssl data``: import, export and inspect datasets.

    mmssl data import --format {mmssl,mmrec,recbole,csv} SRC DEST [--split SPEC] [--seed N]
                      [--items FILE] [--cold-items FRACTION] ...
    mmssl data export --format {mmssl,mmrec} DIR DEST [--overwrite]
    mmssl data stats DIR [--json]
    mmssl data reorder DIR DEST [--dim 16] [--iterations 6] [--seed 0] [--overwrite]

DEST of ``import`` and DIR of ``export`` / ``stats`` are dataset directories in mmssl's own layout
(:mod:`mmssl.data.layout`). ``mmssl data prepare`` (well-known datasets, which need feature
extraction) is added to this group by :mod:`mmssl.datasets.commands`, which sits above both.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mmssl.data.dataset import Dataset, load_dataset, save_dataset
from mmssl.data.formats import EXPORT_FORMATS, IMPORT_FORMATS, export_dataset, import_dataset
from mmssl.data.layout import check_destination
from mmssl.data.pipeline import ImportOptions
from mmssl.data.splits import DEFAULT_SEED
from mmssl.errors import DataError


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``data`` command group to the top-level ``mmssl`` parser; returns its actions
    (the sub-parsers of ``mmssl data``) so that a module above can add more."""
    data = subparsers.add_parser(
        "data",
        help="import, export, inspect and prepare datasets",
        description="Import, export, inspect and prepare datasets.",
    )
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    _add_import(actions)

    exp = actions.add_parser(
        "export",
        help="write a dataset directory in another layout",
        description="Write the dataset directory DIR in --format to DEST (atomically).",
    )
    exp.add_argument(
        "--format",
        required=True,
        metavar="{" + ",".join(EXPORT_FORMATS) + "}",
        help="layout to write (required)",
    )
    exp.add_argument("dir", metavar="DIR", help="dataset directory")
    exp.add_argument("dest", metavar="DEST", help="directory to create")
    exp.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    exp.set_defaults(func=_cmd_export)

    stats = actions.add_parser(
        "stats",
        help="counts, density, modalities, cold start",
        description="Print the counts of the dataset directory DIR.",
    )
    stats.add_argument("dir", metavar="DIR", help="dataset directory")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=_cmd_stats)

    order = actions.add_parser(
        "reorder",
        help="renumber users and items for memory locality (large catalogues)",
        description="Write DIR to DEST with users and items renumbered by a locality order of "
        "the training graph (mmssl.data.order): the same data and original ids, faster sparse "
        "products once the model's tables leave the cache. A cold/ part gets the same users' "
        "numbering.",
    )
    order.add_argument("dir", metavar="DIR", help="dataset directory")
    order.add_argument("dest", metavar="DEST", help="dataset directory to create")
    order.add_argument("--dim", type=int, default=16, help="embedding coordinates (default 16)")
    order.add_argument("--iterations", type=int, default=6,
                       help="subspace iterations (default 6)")
    order.add_argument("--seed", type=int, default=0, help="seed of the start (default 0)")
    order.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    order.set_defaults(func=_cmd_reorder)
    return actions


def _add_import(actions: argparse._SubParsersAction) -> None:
    imp = actions.add_parser(
        "import",
        help="read another layout into a dataset directory",
        description="Read SRC in --format into the dataset directory DEST (written atomically).",
    )
    # Formats are checked by the handler, not argparse, so a wrong one is a one-line error.
    imp.add_argument(
        "--format",
        required=True,
        metavar="{" + ",".join(IMPORT_FORMATS) + "}",
        help="layout of SRC (required)",
    )
    imp.add_argument("src", metavar="SRC", help="source directory (or file for csv)")
    imp.add_argument("dest", metavar="DEST", help="dataset directory to create")
    imp.add_argument(
        "--split",
        metavar="SPEC",
        help="random:8:1:1, user-time:8:1:1 or global-time:T1:T2 for unsplit sources "
        "(default: the source's own split)",
    )
    imp.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the random split (default {DEFAULT_SEED})",
    )
    imp.add_argument(
        "--kcore",
        type=int,
        metavar="K",
        help="keep the K-core: users and items with >= K interactions (default: no filter)",
    )
    imp.add_argument(
        "--dedup",
        default="first",
        metavar="{first,last}",
        help="which of repeated (user, item) interactions to keep (default first)",
    )
    imp.add_argument(
        "--feature",
        action="append",
        metavar="NAME=PATH",
        help="item features: .npy in item order or a table with an item-id column; repeatable "
        "(default for mmssl and mmrec: every *_feat.npy of SRC)",
    )
    imp.add_argument(
        "--feature-id-col",
        default="item_id",
        help="item-id column of feature tables (default item_id)",
    )
    imp.add_argument(
        "--user-col", help="user id column (default: userID for mmrec, user_id otherwise)"
    )
    imp.add_argument(
        "--item-col", help="item id column (default: itemID for mmrec, item_id otherwise)"
    )
    imp.add_argument(
        "--rating-col",
        help="rating column, for --threshold (default: rating for mmrec and recbole, if present)",
    )
    imp.add_argument(
        "--threshold", type=float, help="keep interactions with rating >= this (default: all)"
    )
    imp.add_argument(
        "--time-col",
        help="timestamp column, numbers or dates (default: timestamp for mmrec and recbole, "
        "if present)",
    )
    imp.add_argument(
        "--split-col",
        help="column with train/valid/test or 0/1/2 (default: x_label for mmrec, none otherwise)",
    )
    imp.add_argument(
        "--name", help="NAME of NAME.inter for mmrec and recbole (default: the only one)"
    )
    imp.add_argument(
        "--items",
        help="items table (titles, ...) with an item id column, kept as items.tsv "
        "(default: RecBole's NAME.item when present, else none)",
    )
    imp.add_argument(
        "--cold-items",
        type=float,
        metavar="FRACTION",
        help="hold out this share of the items entirely, drawn with --seed, into DEST/cold/ "
        "for cold-start evaluation (default: none)",
    )
    imp.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    imp.set_defaults(func=_cmd_import)


# ------------------------------------------------------------------------ handlers
def _cmd_import(args: argparse.Namespace) -> int:
    if args.format not in IMPORT_FORMATS:
        raise DataError(f"unknown format {args.format!r} (known: {', '.join(IMPORT_FORMATS)})")
    dest = check_destination(args.dest, args.overwrite)
    ds = import_dataset(args.format, args.src, ImportOptions.from_args(args))
    if args.cold_items is not None:
        from mmssl.data.coldsplit import hold_out_items, save_with_cold_items

        ds, cold = hold_out_items(ds, args.cold_items, args.seed)
        save_with_cold_items(ds, cold, dest, overwrite=args.overwrite)
    else:
        save_dataset(ds, dest, overwrite=args.overwrite)
    print(f"imported {args.format} {args.src} -> {dest}")
    print(summary(ds))
    for note in ds.info.get("notes", []):
        print(f"  note: {note}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.format not in EXPORT_FORMATS:
        raise DataError(
            f"unknown export format {args.format!r} (known: {', '.join(EXPORT_FORMATS)})"
        )
    dest = check_destination(args.dest, args.overwrite, what="export")
    ds = load_dataset(args.dir)
    export_dataset(ds, args.format, dest, overwrite=args.overwrite)
    print(f"exported {args.dir} -> {dest} ({args.format})")
    print(summary(ds))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    stats = load_dataset(args.dir).stats()
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=False))
    else:
        print(format_stats(stats))
    return 0


def _cmd_reorder(args: argparse.Namespace) -> int:
    import time

    from mmssl.data.coldsplit import COLD_DIR, load_cold_items, save_with_cold_items
    from mmssl.data.order import reorder, reorder_for_locality

    if not 1 <= args.dim <= 62:
        raise DataError(f"--dim {args.dim}: expected 1 to 62")
    if args.iterations < 1:
        raise DataError(f"--iterations {args.iterations}: expected at least 1")
    dest = check_destination(args.dest, args.overwrite)
    ds = load_dataset(args.dir)
    start = time.perf_counter()
    out, user_order = reorder_for_locality(ds, args.dim, args.iterations, args.seed)
    seconds = time.perf_counter() - start
    if ds.path is not None and (ds.path / COLD_DIR / "dataset.json").is_file():
        cold = load_cold_items(ds.path)
        cold = reorder(cold, user_order, np.arange(cold.n_items))
        save_with_cold_items(out, cold, dest, overwrite=args.overwrite)
    else:
        save_dataset(out, dest, overwrite=args.overwrite)
    print(f"reordered {args.dir} -> {dest} (locality order in {seconds:.1f} s)")
    print(summary(out))
    return 0


# ------------------------------------------------------------------------ printing
def summary(ds: Dataset) -> str:
    """Three indented lines: counts per split, modalities, split protocol."""
    sizes = ", ".join(f"{s} {ds.split_size(s)}" for s in ("train", "valid", "test"))
    mods = ", ".join(f"{n} ({d})" for n, d in ds.modalities.items()) or "none"
    lines = [
        f"  users {ds.n_users}, items {ds.n_items}, interactions {len(ds.users)} ({sizes})",
        f"  modalities: {mods}",
        f"  split: {ds.info.get('split')}"
        + (f" (seed {ds.info['seed']})" if ds.info.get("seed") is not None else ""),
    ]
    return "\n".join(lines)


def format_stats(stats: dict) -> str:
    """Human-readable lines of ``Dataset.stats()``."""
    mods = ", ".join(f"{n} ({d})" for n, d in stats["modalities"].items()) or "none"
    zero = ", ".join(f"{n} {c}" for n, c in stats["zero_feature_rows"].items()) or "-"
    split = stats.get("split_protocol") or "-"
    if stats.get("seed") is not None:
        split += f" (seed {stats['seed']})"
    rows = [
        ("users", stats["users"]),
        ("items", stats["items"]),
        ("interactions", stats["interactions"]),
        ("  train", stats["train"]),
        ("  valid", stats["valid"]),
        ("  test", stats["test"]),
        ("density", f"{stats['density']:.4%}"),
        ("modalities", mods),
        ("cold items", f"{stats['cold_items']} (in valid/test, not in train)"),
        ("cold users", f"{stats['cold_users']} (in valid/test, not in train)"),
        ("users with valid", stats["users_with_valid"]),
        ("users with test", stats["users_with_test"]),
        ("zero feature rows", zero),
        ("split", split),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
