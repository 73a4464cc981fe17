"""The ``mmssl`` command: a thin layer over the Python API.

Each group of sub-commands adds itself through a ``register(subparsers)`` function; the groups
are imported in the order ``--help`` lists them. Errors mmssl raises on purpose, and failed
writes, become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mmssl.errors import MmsslError
from mmssl.runtime import say

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES = (
    "mmssl.datasets.commands",
    "mmssl.features.commands",
    "mmssl.cli.train",
    "mmssl.cli.serve",  # serve; extends recommend and evaluate (after mmssl.cli.train)
    "mmssl.experiments.bench",
    "mmssl.demo",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2), like every
    other error of the command line."""

    def error(self, message: str):
        """Print ``mmssl: error: MESSAGE (see PROG --help)`` and exit with code 2."""
        self.exit(2, f"mmssl: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every installed command group."""
    from mmssl import __version__

    parser = OneLineParser(
        prog="mmssl",
        description="Multimodal recommendation: data, features, training, evaluation, "
                    "recommendation and benchmarks.")
    parser.add_argument("--version", action="version", version=f"mmssl {__version__}")
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
    """Run the command line; returns the exit code (0 ok, 2 error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MmsslError as e:
        say(f"mmssl: error: {_one_line(e)}")
        if e.exit_at_once:  # e.g. a lost peer: tearing its threads down would abort the process
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except OSError as e:  # a file that could not be read or written: name it
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        say(f"mmssl: error: {where}{e.strerror or _one_line(e)}")
        return 2
    except MemoryError:
        say("mmssl: error: out of memory (try a smaller batch_size or eval_batch_size)")
        return 2
    except KeyboardInterrupt:
        say("mmssl: interrupted")
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
