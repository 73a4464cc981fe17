"""The ``mmssl`` command. Each group of sub-commands lives beside the code it drives and adds
itself here through a ``register(subparsers)`` function."""

from __future__ import annotations

import argparse
import importlib
import sys

from mmssl.errors import MmsslError

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "mmssl.datasets.commands",  # the data group: mmssl.data.commands plus prepare
    "mmssl.training.commands",
    "mmssl.bench",
    "mmssl.features.commands",
    "mmssl.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmssl", description="Multimodal recommendation: data, training, evaluation."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if name == e.name or name.startswith(f"{e.name}."):  # a group not installed
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MmsslError as e:
        print(f"mmssl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mmssl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
