"""The package's shape: what ``data`` may import, module sizes, docstrings, and CLI help text."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmssl.cli import build_parser

SRC = Path(__file__).resolve().parents[2] / "src" / "mmssl"
PACKAGES = ("data", "features", "datasets")
# what each package may import from mmssl (itself included); arrows run one way
ALLOWED = {
    "data": ("mmssl.data", "mmssl.errors", "mmssl.io"),
    "features": ("mmssl.features", "mmssl.data", "mmssl.errors", "mmssl.io"),
    "datasets": ("mmssl.datasets", "mmssl.data", "mmssl.features", "mmssl.errors", "mmssl.io"),
}
MAX_LINES = 450


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _mmssl_imports(path: Path) -> set[str]:
    """Every ``mmssl...`` module a file imports, at the top or inside a function, and every
    ``"mmssl...."`` string literal (``importlib.import_module`` targets)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("mmssl.") and " " not in node.value:
                found.add(node.value.split(":")[0])
    return {m for m in found if m == "mmssl" or m.startswith("mmssl.")}


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_sits_below_them(package):
    allowed = ALLOWED[package]
    bad = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in _modules(package)
        for name in _mmssl_imports(path)
        if not any(name == a or name.startswith(a + ".") for a in allowed)
    }
    assert not bad, sorted(bad)


def test_importing_data_and_its_commands_loads_no_features_or_datasets():
    code = (
        "import sys, mmssl.data.formats, mmssl.data.commands, mmssl.data.dataset;"
        "bad = [m for m in sys.modules if m.startswith(('mmssl.features', 'mmssl.datasets',"
        " 'mmssl.models', 'mmssl.training'))];"
        "assert not bad, bad"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("path", [p for pkg in PACKAGES for p in _modules(pkg)], ids=str)
def test_no_module_is_over_450_lines(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines"


def _public_objects(module):
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            yield name, obj
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(target, (classmethod, staticmethod)):
                    target = target.__func__
                if inspect.isfunction(target):
                    yield f"{name}.{attr}", target


def test_every_public_function_class_and_method_has_a_docstring():
    missing = []
    for package in PACKAGES:
        pkg = importlib.import_module(f"mmssl.{package}")
        names = [f"mmssl.{package}"] + [
            m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"mmssl.{package}.")
        ]
        for modname in names:
            module = importlib.import_module(modname)
            if not (module.__doc__ or "").strip():
                missing.append(modname)
            for name, obj in _public_objects(module):
                if not (obj.__doc__ or "").strip():
                    missing.append(f"{modname}.{name}")
    assert not missing, missing


def _parsers(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _groups_of_mine():
    top = build_parser()
    for path, parser in _parsers(top, "mmssl"):
        if path.split()[1:2] in (["data"], ["features"]):
            yield path, parser


def test_help_has_no_rest_markup_and_states_defaults():
    problems = []
    for path, parser in _groups_of_mine():
        if "``" in (parser.description or ""):
            problems.append(f"{path}: description has ``")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = action.help or ""
            flag = "/".join(action.option_strings) or action.dest
            if "``" in text:
                problems.append(f"{path} {flag}: help has ``")
            if not text:
                problems.append(f"{path} {flag}: no help")
            has_default = action.default not in (None, False, [], argparse.SUPPRESS)
            if has_default and "default" not in text:
                problems.append(f"{path} {flag}: default {action.default!r} not stated")
    assert not problems, problems


def test_data_group_has_its_four_actions():
    top = build_parser()
    data = dict(_parsers(top, "mmssl"))["mmssl data"]
    actions = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    assert list(actions.choices) == ["import", "export", "stats", "prepare"]
