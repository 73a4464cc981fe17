"""The recipes of well-known datasets and ``prepare(name, dest)``.

A recipe names a dataset, its aliases and a one-line summary, and points at the function that
builds it (in its own module, imported only when that dataset is prepared). Raw files are cached
in :func:`cache_dir`; nothing of the data is ever written into the repository.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmssl.data.layout import check_destination
from mmssl.errors import DataError


@dataclass(frozen=True)
class Recipe:
    """How one well-known dataset is fetched and built.

    ``builder`` is ``"module:function"``; the function is called as
    ``build(dest, source, overwrite, progress)`` and returns ``dest``.
    """

    name: str
    aliases: tuple[str, ...]
    summary: str
    builder: str

    def build(self, dest: Path, source: Path | None, overwrite: bool, progress: bool) -> Path:
        """Import the recipe's module and run its build function."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(dest, source, overwrite, progress)


RECIPES = (
    Recipe(
        name="movielens-100k",
        aliases=("ml-100k", "ml100k"),
        summary="MovieLens-100K, implicit, random 8:1:1 seed 2022, text (384) + kg (64)",
        builder="mmssl.datasets.movielens:build_movielens_100k",
    ),
)


def available() -> dict[str, str]:
    """Dataset name -> one-line summary."""
    return {r.name: r.summary for r in RECIPES}


def prepare(
    name: str,
    dest: str | os.PathLike,
    source: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build the dataset ``name`` into the directory ``dest``.

    Args:
        name: a recipe name or alias (``movielens-100k``, ``ml-100k``, ``ml100k``).
        source: a folder with the raw files; without it they come from the cache or are
            downloaded (and cached).
        overwrite: replace an existing ``dest``.
        progress: print what is happening to stderr.

    Returns:
        ``dest``.

    Raises:
        DataError (unknown name, existing dest, bad or unreachable sources; one line naming
        what was tried), ConfigError (the ``text`` extra is not installed).
    """
    by_alias = {a: r for r in RECIPES for a in (r.name, *r.aliases)}
    recipe = by_alias.get(name.strip().lower())
    if recipe is None:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(available())})")
    dest = check_destination(dest, overwrite)
    return recipe.build(dest, Path(source) if source is not None else None, overwrite, progress)


def cache_dir() -> Path:
    """``$MMSSL_CACHE``, else ``$XDG_CACHE_HOME/mmssl``, else ``~/.cache/mmssl``."""
    if os.environ.get("MMSSL_CACHE"):
        return Path(os.environ["MMSSL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mmssl"


def printer(progress: bool) -> Callable[[str], None]:
    """A function printing ``mmssl: MESSAGE`` to stderr when ``progress``, else nothing."""

    def say(message: str) -> None:
        if progress:
            print(f"mmssl: {message}", file=sys.stderr, flush=True)

    return say


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["RECIPES", "Recipe", "available", "cache_dir", "prepare", "printer", "sha256_file"]
