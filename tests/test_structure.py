"""The package's shape: which package may import which (arrows run one way), no model file
importing another, module sizes, docstrings of everything public, and CLI help text."""

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

SRC = Path(__file__).resolve().parents[1] / "src" / "mmssl"
BASE = ("mmssl.errors", "mmssl.io", "mmssl.config")
# what each part may import from mmssl (itself included); the pipeline runs
# data -> features -> models -> evaluation -> training -> serving -> api -> experiments -> cli
ALLOWED = {
    "errors.py": (),
    "io.py": ("mmssl.errors",),
    "config.py": ("mmssl.errors",),
    "runtime.py": ("mmssl.errors",),
    "data": ("mmssl.data", *BASE),
    "features": ("mmssl.features", "mmssl.data", *BASE),
    "datasets": ("mmssl.datasets", "mmssl.data", "mmssl.features", *BASE),
    "models": ("mmssl.models", "mmssl.data", "mmssl.runtime", *BASE),
    "evaluation": ("mmssl.evaluation", "mmssl.data", *BASE),
    "training": ("mmssl.training", "mmssl.models", "mmssl.evaluation", "mmssl.data",
                 "mmssl.runtime", *BASE),
    # features.text only inside ColdStart.encode_text (raw text of a new item, with torch): the
    # arrow points down the pipeline, and known users and items never load it
    "serving": ("mmssl.serving", "mmssl.features.text", *BASE),
    "api.py": ("mmssl.__version__", "mmssl.api", "mmssl.data", "mmssl.models", "mmssl.evaluation",
               "mmssl.training", "mmssl.serving", "mmssl.runtime", *BASE),
    # training.tracking only: the trackers take epoch records and import nothing of the pipeline
    "experiments": ("mmssl.experiments", "mmssl.api", "mmssl.data", "mmssl.models",
                    "mmssl.evaluation", "mmssl.training.tracking", *BASE),
}
PACKAGES = tuple(k for k in ALLOWED if not k.endswith(".py"))
MAX_LINES = 450
OPTIONAL_EXTRAS = ("fastapi", "pydantic", "uvicorn", "starlette")  # mmssl[serve]: serving.app


def _modules(package: str) -> list[Path]:
    if package.endswith(".py"):
        return [SRC / package]
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
            # "from mmssl import io" imports mmssl.io (the package's face only runs its __init__)
            found |= ({node.module} if node.module != "mmssl" else set()) | {
                f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("mmssl.") and " " not in node.value:
                found.add(node.value.split(":")[0])
    return {m for m in found if m == "mmssl" or m.startswith("mmssl.")}


@pytest.mark.parametrize("package", list(ALLOWED))
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


def test_no_model_file_imports_another_model():
    from mmssl.models.registry import BUILTIN_MODULES

    bad = []
    for path in _modules("models"):
        own = path.relative_to(SRC / "models").parts[0].removesuffix(".py")
        for name in _mmssl_imports(path):
            parts = name.split(".")
            if len(parts) > 2 and parts[2] in BUILTIN_MODULES and parts[2] != own:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, bad


def test_serving_and_the_recommend_path_do_not_import_torch():
    code = ("import sys, mmssl, mmssl.serving, mmssl.cli, mmssl.api;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=str)
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
    pkg = importlib.import_module("mmssl")
    names = ["mmssl"] + [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix="mmssl.")
                         if not m.name.endswith("__main__")]
    for _ in (None,):
        for modname in names:
            try:
                module = importlib.import_module(modname)
            except ModuleNotFoundError as e:  # a module of an optional extra not installed
                if e.name in OPTIONAL_EXTRAS:
                    continue
                raise
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
    yield from _parsers(build_parser(), "mmssl")


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


def test_data_group_has_its_five_actions():
    top = build_parser()
    data = dict(_parsers(top, "mmssl"))["mmssl data"]
    actions = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    assert list(actions.choices) == ["import", "export", "stats", "reorder", "prepare"]
