"""MkDocs hook: the CLI reference, generated from mmssl's own argparse parser at build time.

``docs/cli.md`` holds the marker below; at build time it is replaced by one section per command
(``mmssl``, ``mmssl data``, ``mmssl data import``, ...) with that command's ``--help`` text, as
``mmssl.cli.build_parser()`` prints it. The page therefore cannot drift from the code;
``tests/test_docs.py`` checks that every command and option appears in the generated text.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

MARKER = "<!-- cli-reference: generated from mmssl.cli.build_parser() -->"
PAGE = "cli.md"
WIDTH = 100  # columns of the help text, fixed so the page does not depend on the terminal


def commands(parser: argparse.ArgumentParser, path: str = "mmssl"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) of ``parser`` and of every sub-command below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


@contextmanager
def _plain_terminal():
    """A fixed width and no colour for argparse, restored afterwards."""
    keys = ("COLUMNS", "NO_COLOR", "PYTHON_COLORS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({"COLUMNS": str(WIDTH), "NO_COLOR": "1", "PYTHON_COLORS": "0"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def reference_markdown() -> str:
    """The generated part of the page: a heading and the ``--help`` text of every command."""
    from mmssl.cli import build_parser

    parts = []
    with _plain_terminal():
        for path, parser in commands(build_parser()):
            level = "##" if path.count(" ") <= 1 else "###"  # groups and their actions
            parts.append(f"{level} `{path}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker of the CLI page by the generated reference."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{PAGE}: the marker {MARKER!r} is missing")
    return markdown.replace(MARKER, reference_markdown())
