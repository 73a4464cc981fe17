"""The real command line against malformed inputs and faults.

Every case runs ``python -m mmssl ...`` in a subprocess inside its own temporary folder and
asserts: exit code 2, exactly one line on stderr that names the file or field, and no file
created, changed or removed anywhere in that folder (the inputs included).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

FAST = ["--set", "epochs=1", "--set", "batch_size=64", "--set", "threads=1", "--quiet"]


@dataclass
class Case:
    """One bad input: the command (``{root}`` is the case folder), what stderr must say, and an
    optional setup that writes the inputs."""

    name: str
    argv: list[str]
    expect: str
    setup: Callable[[Path], None] | None = None
    limit_file_size: int | None = None  # bytes (RLIMIT_FSIZE): a disk that fills up
    partial_run: bool = False  # a fault mid-training: the run so far stays, no temporaries do


def _dataset(root: Path, name: str = "data", **kw) -> Path:
    values = dict(n_users=40, n_items=30, n_interactions=400, seed=1)
    values.update(kw)
    return save_dataset(planted_dataset(**values), root / name)


def _run(root: Path, model: str = "bpr", out: str = "run", *sets: str) -> Path:
    from mmssl.api import train

    train(model, _dataset(root) if not (root / "data").exists() else root / "data", root / out,
          overrides=["epochs=1", "batch_size=64", "threads=1", *sets], progress=False)
    return root / out


def _with_run(model: str = "bpr"):
    return lambda root: _run(root, model)


def _npz(change: Callable[[dict], None]):
    def setup(root: Path) -> None:
        run = _run(root)
        path = run / "recommender.npz"
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        change(arrays)
        np.savez(path, **arrays)
    return setup


def _truncate(name: str, keep: int = 100):
    def setup(root: Path) -> None:
        run = _run(root)
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[:keep])
    return setup


def _hostile_pickle(name: str):
    def setup(root: Path) -> None:
        import pickle

        run = _run(root)

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {root}/PWNED",))

        with open(run / name, "wb") as fh:
            pickle.dump({"model": Evil()}, fh)
    return setup


def _file(name: str, text: str = "x"):
    return lambda root: (root / name).parent.mkdir(parents=True, exist_ok=True) or (root / name).write_text(text)


def _single_item(root: Path) -> None:
    from mmssl.data.dataset import Dataset

    ds = Dataset(users=np.array([0, 0, 0, 1, 1, 1]), items=np.zeros(6, dtype=np.int64),
                 split=np.array([0, 1, 2, 0, 1, 2]), user_ids=["a", "b"], item_ids=["only"])
    save_dataset(ds, root / "one")


def _no_modalities(root: Path) -> None:
    _dataset(root, "plain", modalities={})


def _other_dataset(root: Path) -> None:
    _run(root)
    _dataset(root, "other", n_users=35, n_items=31)


def _two(*setups):
    def setup(root: Path) -> None:
        for s in setups:
            s(root)
    return setup


def _foreign_run(root: Path) -> None:
    run = _run(root)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("epochs: 1", "epochs: 2"))


def _bench_run(root: Path) -> None:
    from mmssl.experiments.bench import run_bench

    _dataset(root)
    run_bench(str(root / "data"), ["pop"], [1], root / "bench")
    (root / "bench" / "runs" / "pop" / "seed-1" / "config.yaml").write_text(
        (root / "bench" / "runs" / "pop" / "seed-1" / "config.yaml").read_text().replace(
            "seed: 1", "seed: 5"))


def _mmssl_layout(train: dict, items: int | None = None):
    """A source in the authors' layout with the given train.json; valid/test one item each."""
    def setup(root: Path) -> None:
        src = root / "src"
        src.mkdir()
        (src / "train.json").write_text(json.dumps(train))
        first = next(iter(train))
        (src / "val.json").write_text(json.dumps({first: [train[first][0]]}))
        (src / "test.json").write_text(json.dumps({first: [train[first][-1]]}))
        if items:
            np.save(src / "text_feat.npy", np.ones((items, 3), dtype=np.float32))
    return setup


def _tamper(old: str, new: str, name: str = "interactions.tsv"):
    def setup(root: Path) -> None:
        path = _dataset(root) / name
        lines = path.read_text().splitlines()
        lines[4] = lines[4].replace(old, new, 1) if old else new
        path.write_text("\n".join(lines) + "\n")
    return setup


def _bad_modality_in_dataset_json(root: Path) -> None:
    path = _dataset(root) / "dataset.json"
    meta = json.loads(path.read_text())
    meta["modalities"] = {"../../x": 3}
    path.write_text(json.dumps(meta))


def _items_table(root: Path) -> None:
    _dataset(root)
    ids = (root / "data" / "item_ids.txt").read_text().split()
    (root / "items.tsv").write_text("item_id\tgenre\n" + "".join(f"{i}\ta b\n" for i in ids))


T = ["train", "--model", "bpr", "--data", "{root}/data", "--out", "{root}/run"]
CAT = ["features", "categorical", "--items", "{root}/items.tsv", "--columns", "genre",
       "--dataset", "{root}/data", "--add-to", "{root}/data"]
TM = ["train", "--model", "mmssl", "--data", "{root}/data", "--out", "{root}/run"]

CASES = [
    # ----------------------------------------------------------- settings (--set)
    Case("unknown key", T + ["--set", "nosuchkey=3"], "--set: unknown key 'nosuchkey'", _dataset),
    Case("epochs not a number", T + ["--set", "epochs=abc"], "--set: epochs: expected an integer", _dataset),
    Case("negative lr", T + ["--set", "lr=-0.1"], "lr: -0.1 is out of range (must be > 0)", _dataset),
    Case("nan lr", T + ["--set", "lr=.nan"], "lr: must be a finite number", _dataset),
    Case("zero epochs", T + ["--set", "epochs=0"], "epochs: 0 is out of range", _dataset),
    Case("zero batch", T + ["--set", "batch_size=0"], "batch_size: 0 is out of range", _dataset),
    Case("zero eval_every", T + ["--set", "eval_every=0"], "eval_every: 0 is out of range", _dataset),
    Case("empty ks", T + ["--set", "ks=[]"], "ks: give at least one cut-off", _dataset),
    Case("negative ks", T + ["--set", "ks=-5"], "ks: -5 is out of range", _dataset),
    Case("select not in ks", T + ["--set", "ks=10"], "select: recall@20 needs 20 among ks [10]", _dataset),
    Case("tuple length", TM + ["--set", "d_betas=0.5"], "d_betas: expected 2 values, got 1", _dataset),
    Case("unknown device", T + ["--set", "device=gpu"], "device: unknown device 'gpu'", _dataset),
    Case("absent cuda", T + ["--set", "device=cuda"], "device: 'cuda' requested but CUDA is not available", _dataset),
    Case("unknown variant", TM + ["--set", "variant=fancy"], "variant: 'fancy' is not one of", _dataset),
    Case("embed_dim vs heads", TM + ["--set", "embed_dim=30"], "embed_dim 30 must be divisible by n_heads 4", _dataset),
    Case("set without =", T + ["--set", "epochs"], "--set 'epochs': expected KEY=VALUE", _dataset),
    # ----------------------------------------------------------------- train
    Case("unknown model", ["train", "--model", "nope", "--data", "{root}/data", "--out", "{root}/run"],
         "unknown model 'nope'", _dataset),
    Case("no --out", ["train", "--model", "bpr", "--data", "{root}/data"], "train needs --out", _dataset),
    Case("missing data", ["train", "--model", "bpr", "--data", "{root}/absent", "--out", "{root}/run"],
         "absent/dataset.json: missing"),
    Case("out is a file", ["train", "--model", "bpr", "--data", "{root}/data", "--out", "{root}/f"],
         "/f: is a file, not a run folder", _two(_dataset, _file("f"))),
    Case("out under a file", ["train", "--model", "bpr", "--data", "{root}/data", "--out", "{root}/f/run"],
         "/f is a file, not a folder", _two(_dataset, _file("f"))),
    Case("finished run not overwritten", ["train", "--model", "pop", "--data", "{root}/data", "--out", "{root}/run"],
         "/run: not empty (a previous run); continue it with --resume", _with_run()),
    Case("overwrite refuses a non-run folder", T + ["--overwrite"],
         "not empty and not a run folder (no config.yaml); refusing to delete it", _two(_dataset, _file("run/notes.txt"))),
    Case("resume with a changed lr", ["train", "--resume", "{root}/run", "--set", "lr=0.5"],
         "--set lr: cannot change when resuming (only epochs, patience, eval_every, threads, malloc, device, dist_timeout can)",
         _with_run()),
    Case("resume of nothing", ["train", "--resume", "{root}/nothing"], "/nothing: no such run folder"),
    Case("resume of a non-run", ["train", "--resume", "{root}/d"], "/d/config.yaml: missing; is",
         _file("d/x.txt")),
    Case("config file missing", T + ["--config", "{root}/c.yaml"], "c.yaml: config file not found", _dataset),
    Case("config malformed", T + ["--config", "{root}/c.yaml"], "c.yaml: line 3: malformed YAML",
         _two(_dataset, _file("c.yaml", "epochs: 1\nlr: [\n"))),
    Case("config bad value", T + ["--config", "{root}/c.yaml"], "c.yaml: epochs: 0 is out of range",
         _two(_dataset, _file("c.yaml", "epochs: 0\n"))),
    Case("config of another model", T + ["--config", "{root}/c.yaml"], "c.yaml: written for model 'pop', not 'bpr'",
         _two(_dataset, _file("c.yaml", "model: pop\n"))),
    Case("mmssl without modalities", ["train", "--model", "mmssl", "--data", "{root}/plain", "--out", "{root}/run"],
         "mmssl needs at least one item modality", _no_modalities),
    Case("single-item dataset", ["train", "--model", "bpr", "--data", "{root}/one", "--out", "{root}/run"] + FAST,
         "interacted with every one of the 1 items in training, so no negative", _single_item),
    Case("disk full while training", T + FAST, "cannot write: File too large", _dataset,
         limit_file_size=20_000, partial_run=True),
    # ----------------------------------------------------- checkpoints and runs
    Case("truncated last.pt", ["train", "--resume", "{root}/run", "--set", "epochs=3"],
         "last.pt: not a readable checkpoint", _truncate("last.pt")),
    Case("hostile last.pt", ["train", "--resume", "{root}/run", "--set", "epochs=3"],
         "last.pt: refused: it holds objects other than tensors", _hostile_pickle("last.pt")),
    Case("truncated best.pt", ["evaluate", "--run", "{root}/run"], "best.pt: not a readable checkpoint",
         _truncate("best.pt")),
    Case("evaluate on another dataset", ["evaluate", "--run", "{root}/run", "--data", "{root}/other"],
         "other: does not match the run's dataset (40 users x 30 items", _other_dataset),
    Case("evaluate a non-run", ["evaluate", "--run", "{root}/d"], "/d/config.yaml: missing", _file("d/x.txt")),
    # -------------------------------------------------------------- recommend
    Case("crafted seen_indptr", ["recommend", "--run", "{root}/run", "--user", "u4"],
         "seen_indptr must rise from 0", _npz(lambda a: a["seen_indptr"].__setitem__(5, 10**9))),
    Case("truncated recommender", ["recommend", "--run", "{root}/run", "--user", "u4"],
         "recommender.npz: not a readable recommender file", _truncate("recommender.npz", 300)),
    Case("1-d factors", ["recommend", "--run", "{root}/run", "--user", "u4"],
         "user_factors has shape (40,), expected (40, d)",
         _npz(lambda a: a.__setitem__("user_factors", a["user_factors"][:, 0].copy()))),
    Case("negative seen index", ["recommend", "--run", "{root}/run", "--user", "u4"],
         "seen_indices holds item index -3, outside [0, 30)",
         _npz(lambda a: a["seen_indices"].__setitem__(0, -3))),
    Case("nan factors", ["recommend", "--run", "{root}/run", "--user", "u4"], "item_factors holds NaN",
         _npz(lambda a: a["item_factors"].__setitem__((0, 0), np.nan))),
    Case("unknown user", ["recommend", "--run", "{root}/run", "--user", "nobody"], "unknown user id 'nobody'",
         _with_run()),
    Case("k zero", ["recommend", "--run", "{root}/run", "--user", "u1", "--k", "0"],
         "k must be a whole number of at least 1, got 0", _with_run()),
    Case("k negative", ["recommend", "--run", "{root}/run", "--user", "u1", "--k", "-1"],
         "k must be a whole number of at least 1, got -1", _with_run()),
    Case("k not a number", ["recommend", "--run", "{root}/run", "--user", "u1", "--k", "many"],
         "argument --k: invalid int value: 'many' (see mmssl recommend --help)"),
    Case("no command", [], "the following arguments are required: COMMAND"),
    Case("recommend without a run", ["recommend", "--run", "{root}/none", "--user", "u1"], "/none: no such run folder"),
    # ------------------------------------------------------------- data and features
    Case("modality name escaping the dataset", CAT + ["--name", "../../ESCAPED"],
         "--name: modality name '../../ESCAPED' must be", _items_table),
    Case("absolute modality name", CAT + ["--name", "/tmp/x/ABS"],
         "--name: modality name '/tmp/x/ABS' must be", _items_table),
    Case("feature flag with a path as name", ["data", "import", "--format", "mmssl", "{root}/src",
                                              "{root}/d", "--feature", "../x={root}/src/text_feat.npy"],
         "modality name '../x' must be", _mmssl_layout({"0": [0, 1], "1": [1, 2]}, items=3)),
    Case("dataset.json names a path", ["data", "stats", "{root}/data"],
         "dataset.json: modalities: modality name '../../x' must be", _bad_modality_in_dataset_json),
    Case("huge user id", ["data", "import", "--format", "mmssl", "{root}/src", "{root}/d"],
         'user "99999999999999": user index 99999999999999 would make an index space',
         _mmssl_layout({"0": [0, 1], "99999999999999": [1, 2]}, items=3)),
    Case("huge item id without features", ["data", "import", "--format", "mmssl", "{root}/src", "{root}/d"],
         "item index 2000000000 would make an index space of 2000000001 items",
         _mmssl_layout({"0": [0, 2000000000], "1": [1, 2]})),
    Case("tampered interactions.tsv", ["train", "--model", "pop", "--data", "{root}/data", "--out", "{root}/r"],
         "interactions.tsv: line 5: item index 999 out of range [0, 30)", _tamper("", "3\t999\ttrain")),
    Case("negative index in interactions.tsv", ["data", "stats", "{root}/data"],
         "interactions.tsv: line 5: user index '-1' is negative", _tamper("", "-1\t3\ttrain")),
    Case("import into a file", ["data", "import", "--format", "mmssl", "{root}/src", "{root}/f"],
         "f: is a file, not a folder", _two(_mmssl_layout({"0": [0, 1], "1": [1, 2]}, items=3), _file("f"))),
    Case("import under a file", ["data", "import", "--format", "mmssl", "{root}/src", "{root}/f/d"],
         "cannot write the dataset folder", _two(_mmssl_layout({"0": [0, 1], "1": [1, 2]}, items=3), _file("f"))),
    Case("import over a dataset", ["data", "import", "--format", "mmssl", "{root}/src", "{root}/data"],
         "data: destination exists (use --overwrite", _two(_dataset, _mmssl_layout({"0": [0, 1], "1": [1, 2]}, items=3))),
    Case("unknown import format", ["data", "import", "--format", "xls", "{root}/src", "{root}/d"],
         "unknown format 'xls'"),
    Case("features take only threads", CAT + ["--set", "lr=1"], "--set lr=1: unknown key 'lr'", _items_table),
    Case("stats of a non-dataset", ["data", "stats", "{root}"], "dataset.json: missing"),
    # ------------------------------------------------------------------ bench
    Case("bench zero seeds", ["bench", "--data", "{root}/data", "--models", "pop", "--seeds", "0", "--out", "{root}/b"],
         "--seeds 0: give a number of seeds of at least 1", _dataset),
    Case("bench negative seeds", ["bench", "--data", "{root}/data", "--models", "pop", "--seeds", "-2", "--out", "{root}/b"],
         "--seeds -2", _dataset),
    Case("bench no models", ["bench", "--data", "{root}/data", "--models", ",", "--out", "{root}/b"],
         "--models: give at least one model name", _dataset),
    Case("bench protocol conflict", ["bench", "--data", "{root}/data", "--models", "pop", "--protocol", "mmrec",
                                     "--set", "protocol=mmssl", "--out", "{root}/b"],
         "--protocol mmrec conflicts with --set protocol=mmssl", _dataset),
    Case("bench unknown model", ["bench", "--data", "{root}/data", "--models", "pop,nope", "--out", "{root}/b"],
         "unknown model 'nope'", _dataset),
    Case("bench focus not benched", ["bench", "--data", "{root}/data", "--models", "pop", "--focus", "bpr",
                                     "--out", "{root}/b"], "--focus bpr: not among --models", _dataset),
    Case("bench bad setting", ["bench", "--data", "{root}/data", "--models", "pop,bpr", "--set", "bpr:lr=-1",
                               "--out", "{root}/b"], "--set (bpr): lr: -1.0 is out of range", _dataset),
    Case("bench foreign run", ["bench", "--data", "{root}/data", "--models", "pop", "--seeds", "1",
                               "--first-seed", "1", "--out", "{root}/bench"],
         "seed-1/config.yaml: seed is 5 but this bench asks for 1", _bench_run),
]


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (folders as 'dir')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(case: Case, root: Path) -> tuple[int, str, dict, dict]:
    root.mkdir(parents=True)
    if case.setup:
        case.setup(root)
    before = snapshot(root)
    argv = [a.replace("{root}", str(root)) for a in case.argv]

    def limits():
        if case.limit_file_size:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.limit_file_size, case.limit_file_size))

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "mmssl", *argv], cwd=root, capture_output=True,
                          text=True, timeout=300, env=env, preexec_fn=limits)
    return done.returncode, done.stderr, before, snapshot(root)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c.name: pool.submit(run_case, c, base / f"case-{i}") for i, c in enumerate(CASES)}
        return {name: f.result() for name, f in futures.items()}


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, results):
    code, stderr, before, after = results[case.name]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, f"exit {code}; stderr:\n{stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("mmssl: error: "), lines[0]
    assert case.expect in lines[0], f"{case.expect!r} not in {lines[0]!r}"
    if case.partial_run:  # the inputs are untouched and no temporary file is left
        assert {k: v for k, v in after.items() if k in before} == before
        assert not [k for k in after if ".tmp-" in k], after
    else:
        assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    assert "PWNED" not in after


def test_version_and_help_are_not_errors():
    done = subprocess.run([sys.executable, "-m", "mmssl", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("mmssl 0.")
    done = subprocess.run([sys.executable, "-m", "mmssl", "train", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "lightgcn" in done.stdout and "mmssl" in done.stdout
    assert "``" not in done.stdout


def test_resume_records_allowed_changes_and_honours_them(tmp_path):
    from mmssl.api import train

    run = _run(tmp_path, "bpr", "run", "epochs=2")
    metrics = train(None, None, run, overrides=["epochs=4", "patience=100"], resume=True, progress=False)
    assert metrics["epochs"] == 4
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event") == "resume"]
    assert events == [{"event": "resume", "after_epoch": 1,
                       "changed": {"epochs": [2, 4], "patience": [20, 100]}}]
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["run"]["epochs"] == 4 and saved["run"]["patience"] == 100
