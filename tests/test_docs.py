"""The documentation's code works: the examples run, the CLI reference covers every command and
option, every command the pages show parses, and the anchors other pages cite exist."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import io
import re
import runpy
import shlex
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import mmssl
from mmssl.cli import build_parser
from mmssl.config import RunConfig, config_fields, unchecked_numeric_fields
from mmssl.data.synthetic import planted_dataset
from mmssl.evaluation import evaluate
from mmssl.models import get_model_class, registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"


def _load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_lines(path: Path) -> list[str]:
    """Lines of code: not blank, not only a comment, not the module docstring."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    doc = set()
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
        doc = set(range(first.lineno, first.end_lineno + 1))
    return [line for n, line in enumerate(source.splitlines(), start=1)
            if line.strip() and not line.strip().startswith("#") and n not in doc]


# ----------------------------------------------------------------- examples
def test_quickstart_is_at_most_15_lines_of_code_and_runs(monkeypatch, tmp_path):
    path = EXAMPLES / "quickstart.py"
    assert len(_code_lines(path)) <= 15, _code_lines(path)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with redirect_stdout(out):
        runpy.run_path(str(path), run_name="__main__")
    lines = out.getvalue().splitlines()
    assert 0.0 <= float(lines[0]) <= 1.0  # test Recall@20
    assert [line.split()[0] for line in lines[1:]] == ["0", "1"]  # two users' top-5
    assert list(tmp_path.iterdir()) == []  # it writes nothing


@pytest.fixture
def my_model(monkeypatch):
    """docs/examples/my_model.py imported, its registration undone afterwards."""
    registry.available_models()  # the built-in models first, so the copy below holds them
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    return _load_file(EXAMPLES / "my_model.py", "docs_example_my_model")


def test_model_example_is_under_60_lines_and_follows_the_contract(my_model):
    path = EXAMPLES / "my_model.py"
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n < 60, f"{path.name} has {n} lines"
    cls = get_model_class("content-mf")
    assert cls is my_model.ContentMF and cls.Config is my_model.ContentMFConfig
    assert unchecked_numeric_fields(cls.Config) == []
    assert not set(config_fields(cls.Config)) & set(config_fields(RunConfig))


def test_model_example_trains_with_fit_and_beats_a_random_ranking(my_model):
    dataset = planted_dataset(n_users=100, n_items=60, n_interactions=1500, seed=0)
    model = mmssl.fit("content-mf", dataset, epochs=20, threads=1, progress=False)
    trained = model.evaluate(split="test")["recall@10"]
    random_scores = torch.rand(dataset.n_users, dataset.n_items,
                               generator=torch.Generator().manual_seed(0))
    random = evaluate(random_scores, dataset, split="test")["recall@10"]
    assert trained > 2 * random, (trained, random)
    assert model.recommend(["u0"], k=5)[0].items


# ------------------------------------------------------------ CLI reference
def _hook():
    return _load_file(DOCS / "hooks" / "cli_reference.py", "docs_hook_cli_reference")


def test_cli_reference_has_every_command_and_option():
    hook = _hook()
    text = hook.reference_markdown()
    missing = []
    for path, parser in hook.commands(build_parser()):
        if f"`{path}`" not in text:
            missing.append(path)
        for action in parser._actions:
            names = action.option_strings or ([action.metavar or action.dest]
                                              if not isinstance(action, argparse._SubParsersAction)
                                              else list(action.choices))
            missing += [f"{path} {name}" for name in names if name not in text]
    assert not missing, missing
    assert hook.MARKER in (DOCS / "cli.md").read_text(encoding="utf-8")


def test_cli_reference_lists_every_command_of_the_parser():
    paths = [p for p, _ in _hook().commands(build_parser())]
    assert {"mmssl train", "mmssl evaluate", "mmssl recommend", "mmssl bench", "mmssl demo",
            "mmssl data import", "mmssl features text"} <= set(paths)


# --------------------------------------------------- commands shown in pages
def _shell_commands(markdown: str) -> list[str]:
    """Every ``mmssl ...`` line of the bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("mmssl "):
                out.append(line)
    return out


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_parses_and_names_known_settings(page):
    parser = build_parser()
    problems = []
    for command in _shell_commands(page.read_text(encoding="utf-8")):
        argv = shlex.split(command, comments=True)[1:]
        err = io.StringIO()
        try:
            stderr, sys.stderr = sys.stderr, err
            args = parser.parse_args(argv)
        except SystemExit:
            problems.append(f"{command}: {err.getvalue().strip()}")
            continue
        finally:
            sys.stderr = stderr
        if args.command == "train" and args.model:
            known = set(config_fields(RunConfig)) | set(config_fields(
                get_model_class(args.model).Config))
            problems += [f"{command}: unknown setting {kv.partition('=')[0]}"
                         for kv in args.set if kv.partition("=")[0] not in known]
    assert not problems, problems


# ------------------------------------------------------------------ anchors
def test_method_page_has_the_ten_departures_in_order():
    text = (DOCS / "mmssl.md").read_text(encoding="utf-8")
    rows = re.findall(r'^\| <a id="departure-(\d+)"></a>(\d+) \|', text, flags=re.M)
    assert [(int(a), int(b)) for a, b in rows] == [(n, n) for n in range(1, 11)]


def test_readme_cites_an_anchor_that_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "departure 6" in readme
    assert 'id="departure-6"' in (DOCS / "mmssl.md").read_text(encoding="utf-8")
