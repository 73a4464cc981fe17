"""The ``mmssl data`` command group, with ``prepare`` for the well-known datasets.

    mmssl data prepare NAME DEST [--source DIR] [--overwrite]

The group's import, export and stats actions come from :mod:`mmssl.data.commands`; this module
sits above both :mod:`mmssl.data` and :mod:`mmssl.datasets`, so it assembles the group and adds
``prepare`` (``mmssl.data`` never imports ``mmssl.datasets``).
"""

from __future__ import annotations

import argparse
import importlib

from mmssl.data import commands as data_commands
from mmssl.errors import DataError

# the recipes module, imported when ``prepare`` runs: the other data actions do not need it
REGISTRY_MODULE = "mmssl.datasets.registry"


def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``data`` group (import, export, stats, prepare) to the ``mmssl`` parser."""
    actions = data_commands.register(subparsers)
    prep = actions.add_parser(
        "prepare",
        help="build a named dataset from its sources",
        description="Build the well-known dataset NAME (download, import, features) into DEST.",
    )
    prep.add_argument("name", metavar="NAME", help="dataset name, e.g. movielens-100k")
    prep.add_argument("dest", metavar="DEST", help="dataset directory to create")
    prep.add_argument(
        "--source",
        metavar="DIR",
        help="directory holding the source files (default: the cache, else download)",
    )
    prep.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    prep.set_defaults(func=_cmd_prepare)
    return actions


def _cmd_prepare(args: argparse.Namespace) -> int:
    try:
        registry = importlib.import_module(REGISTRY_MODULE)
    except ModuleNotFoundError as e:
        if e.name != REGISTRY_MODULE:
            raise
        raise DataError(f"data prepare is unavailable: {REGISTRY_MODULE} is not installed") from None
    registry.prepare(args.name, args.dest, source=args.source, overwrite=args.overwrite)
    return 0
