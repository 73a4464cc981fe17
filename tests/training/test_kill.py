"""kill -9 in the middle of training or of a bench, then the same command again (``--resume``
for training): the final metrics equal an uninterrupted run's, to the bit (CPU, one thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

pytestmark = pytest.mark.slow

SETS = ["--set", "epochs=12", "--set", "batch_size=128", "--set", "threads=1",
        "--set", "patience=100", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    ds = planted_dataset(n_users=1500, n_items=800, n_interactions=40000, seed=4)
    return save_dataset(ds, tmp_path_factory.mktemp("kill") / "planted")


def mmssl_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmssl", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def epochs_logged(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"epoch"' in line)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_kill_during_training_then_resume_is_bit_identical(data_dir, tmp_path):
    full = mmssl_cli("train", "--model", "lightgcn", "--data", str(data_dir), "--out",
                     str(tmp_path / "full"), *SETS)
    assert full.wait() == 0, full.stderr.read()
    cut = tmp_path / "cut"
    proc = mmssl_cli("train", "--model", "lightgcn", "--data", str(data_dir), "--out", str(cut), *SETS)
    kill_when(proc, lambda: epochs_logged(cut / "log.jsonl") >= 3)
    assert not (cut / "metrics.json").exists()
    resumed = mmssl_cli("train", "--resume", str(cut), "--quiet")
    assert resumed.wait() == 0, resumed.stderr.read()
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert (a["test"], a["valid"], a["best_epoch"], a["epochs"]) == (b["test"], b["valid"], b["best_epoch"], b["epochs"])
    records = [json.loads(x) for x in (cut / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "epoch" in r] == list(range(12))
    assert not [p.name for p in cut.iterdir() if ".tmp-" in p.name]  # a killed write is cleaned up


def test_kill_during_bench_then_rerun_gives_the_same_results(data_dir, tmp_path):
    args = ["--data", str(data_dir), "--models", "pop,lightgcn", "--seeds", "2", "--set",
            "lightgcn:epochs=8", "--set", "lightgcn:batch_size=128", "--set", "threads=1",
            "--set", "lightgcn:patience=100"]
    full = mmssl_cli("bench", *args, "--out", str(tmp_path / "full"))
    assert full.wait() == 0, full.stderr.read()
    out = tmp_path / "cut"
    proc = mmssl_cli("bench", *args, "--out", str(out))
    second = out / "runs" / "lightgcn" / "seed-2023" / "log.jsonl"
    kill_when(proc, lambda: epochs_logged(second) >= 2)
    assert not (out / "results.csv").exists()
    again = mmssl_cli("bench", *args, "--out", str(out))
    assert again.wait() == 0, again.stderr.read()
    a = pd.read_csv(tmp_path / "full" / "results.csv").drop(columns="seconds")
    b = pd.read_csv(out / "results.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers, leftovers
