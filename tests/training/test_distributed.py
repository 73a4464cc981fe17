"""Distributed training: 2 processes on loopback with gloo (CPU), small generated data.

* after one epoch the two ranks hold the same weights and state for every learned model, and
  BPR and LightGCN (no dropout, no batch norm) hold, in float64, what one process trained on the
  same global batches holds;
* MMSSL's critic is synchronised by SyncedBatchNorm: its WGAN-GP loss (a gradient of a gradient
  through batch norm) on 2 uneven slices gives the whole batch's value, gradients and running
  statistics; so do the other losses that need the whole batch;
* a 2-process run writes one complete run directory, and --resume of a killed one finishes as
  the uninterrupted run did;
* a rank that dies (or hangs) makes the other exit non-zero, within the timeout, with one line.

Every process started here is bounded in time and killed at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset
from mmssl.training.sampler import BprSampler, ShardedSampler, split_sizes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.distributed.is_available() or not sys.platform.startswith("linux"),
                       reason="needs torch.distributed with gloo and Linux's loopback (lo, /proc)"),
]

WORKER = Path(__file__).with_name("distributed_worker.py")
RUN_FILES = {"config.yaml", "log.jsonl", "metrics.json", "curves.png", "best.pt", "last.pt",
             "recommender.npz", "coldstart.npz"}
LIMIT = 240  # seconds any group of processes here may take


def ranks(command: list[str], nproc: int = 2, env: dict | None = None) -> list[subprocess.Popen]:
    """``command`` started as ``nproc`` ranks of one run, the rendezvous store hosted here
    (what ``mmssl train --nproc`` does), each in its own session so it can be killed whole."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    procs = []
    for rank in range(nproc):
        child = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port),
                     RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                     LOCAL_WORLD_SIZE=str(nproc), TORCHELASTIC_USE_AGENT_STORE="True",
                     GLOO_SOCKET_IFNAME="lo", **(env or {}))
        procs.append(subprocess.Popen(command, env=child, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    procs[0].store = store  # kept alive as long as the processes
    return procs


def finish(procs: list[subprocess.Popen], limit: float = LIMIT) -> list[tuple[int, str]]:
    """Wait for every process (killing all if one runs past ``limit``): (exit code, stderr)."""
    deadline = time.monotonic() + limit
    try:
        out = []
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, err))
        return out
    finally:
        kill(procs)


def kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def mmssl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmssl", *args]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    ds = planted_dataset(n_users=300, n_items=200, n_interactions=6000, seed=4)
    return save_dataset(ds, tmp_path_factory.mktemp("dist") / "planted")


def epochs_logged(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"epoch"' in line)


def wait_for(ready, procs: list[subprocess.Popen], limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"ended early: {dead[0].stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# ------------------------------------------------------------------ the batch
@pytest.mark.parametrize("mode,batch_size", [("interaction", 97), ("user", 33), ("user", 1000)])
def test_slices_are_disjoint_and_their_union_is_one_process_batch(mode, batch_size):
    train = planted_dataset(n_users=50, n_items=40, n_interactions=600, seed=1).matrix("train")
    single = list(BprSampler(train, batch_size, mode, torch.Generator().manual_seed(3)).epoch())
    parts = [list(ShardedSampler(BprSampler(train, batch_size, mode,
                                            torch.Generator().manual_seed(3)), r, 3, None).epoch())
             for r in range(3)]
    assert all(len(p) == len(single) for p in parts)
    for step, whole in enumerate(single):
        pieces = [p[step] for p in parts]
        assert [x.shard.size for x in pieces] == list(split_sizes(len(whole.users), 3))
        for field in ("users", "pos_items", "neg_items"):
            joined = torch.cat([getattr(x.batch, field) for x in pieces])
            assert torch.equal(joined, getattr(whole, field))
        if mode == "interaction":  # never the same interaction twice in a step
            pairs = {(int(u), int(i)) for x in pieces for u, i in zip(x.batch.users, x.batch.pos_items)}
            assert len(pairs) == len(whole.users)


def test_split_sizes_are_as_even_as_possible():
    assert split_sizes(11, 2) == (6, 5)
    assert split_sizes(1, 2) == (1, 0)
    assert split_sizes(9, 3) == (3, 3, 3)


# ------------------------------------------------------------- the weights
def test_ranks_agree_and_bpr_lightgcn_match_one_process_in_float64(tmp_path):
    from distributed_worker import MODELS

    names = list(MODELS)
    single = subprocess.run([sys.executable, str(WORKER), "train", str(tmp_path), "bpr",
                             "lightgcn"], capture_output=True, text=True, timeout=LIMIT)
    assert single.returncode == 0, single.stderr
    results = finish(ranks([sys.executable, str(WORKER), "train", str(tmp_path), *names]))
    assert [code for code, _ in results] == [0, 0], results
    r0, r1, one = (torch.load(tmp_path / f"{n}.pt", weights_only=False)
                   for n in ("rank0", "rank1", "single"))
    for name in names:
        a, b = r0[name], r1[name]
        assert a["state"].keys() == b["state"].keys()
        for key in a["state"]:
            assert torch.equal(a["state"][key], b["state"][key]), f"{name}: {key} differs"
        assert _same(a["extra"], b["extra"]), f"{name}: extra state differs"
        assert a["losses"] == b["losses"]
    for name in ("bpr", "lightgcn"):
        assert r0[name]["batch_size"] == one[name]["batch_size"]
        for key, value in one[name]["state"].items():
            assert value.dtype == torch.float64
            torch.testing.assert_close(r0[name]["state"][key], value, rtol=0, atol=1e-12)
        for key, value in one[name]["losses"].items():  # the logged losses are the whole batch's
            assert r0[name]["losses"][key] == pytest.approx(value, rel=1e-12)


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_sharded_losses_and_the_synced_critic_equal_the_whole_batch(tmp_path):
    results = finish(ranks([sys.executable, str(WORKER), "units", str(tmp_path)]))
    assert [code for code, _ in results] == [0, 0], results
    for rank in (0, 1):
        found = json.loads((tmp_path / f"units-rank{rank}.json").read_text())
        for name in ("embedding_norm_loss", "squared_norm_loss", "info_nce", "wgan_gp_loss"):
            assert found[name]["value"] < 1e-9 and found[name]["grad"] < 1e-9, (name, found[name])
        assert found["running_stats"] < 1e-12


# -------------------------------------------------------- the run directory
SETS = ["--set", "threads=1", "--set", "batch_size=256", "--set", "patience=100", "--quiet"]


def test_two_processes_write_exactly_one_complete_run(data_dir, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(mmssl_command("train", "--model", "bpr", "--data", str(data_dir),
                                        "--out", str(out), "--nproc", "2", "--set", "epochs=3",
                                        *SETS, "--json"),
                          capture_output=True, text=True, timeout=LIMIT)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings, no second rank's output
    assert json.loads(done.stdout.rsplit("run written to", 1)[0])["epochs"] == 3  # printed once
    assert {p.name for p in tmp_path.iterdir()} == {"run"}
    assert {p.name for p in out.iterdir()} == RUN_FILES
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "epoch" in r] == [0, 1, 2]  # each epoch once
    assert [r for r in log if r.get("event") == "distributed"] == [
        {"event": "distributed", "world_size": 2, "backend": "gloo", "device": "cpu"}]


def test_resume_of_a_killed_two_process_run_finishes_as_the_uninterrupted_run(data_dir, tmp_path):
    args = ["--model", "lightgcn", "--data", str(data_dir), "--set", "epochs=6", *SETS]
    full = subprocess.run(mmssl_command("train", *args, "--out", str(tmp_path / "full"),
                                        "--nproc", "2"),
                          capture_output=True, text=True, timeout=LIMIT)
    assert full.returncode == 0, full.stderr
    cut = tmp_path / "cut"
    launcher = subprocess.Popen(mmssl_command("train", *args, "--out", str(cut), "--nproc", "2"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        wait_for(lambda: epochs_logged(cut / "log.jsonl") >= 2, [launcher])
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and both ranks at once
        launcher.wait(timeout=30)
    finally:
        kill([launcher])
    assert not (cut / "metrics.json").exists()
    resumed = subprocess.run(mmssl_command("train", "--resume", str(cut), "--nproc", "2",
                                           "--quiet"),
                             capture_output=True, text=True, timeout=LIMIT)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert (a["test"], a["valid"], a["best_epoch"], a["epochs"]) == (
        b["test"], b["valid"], b["best_epoch"], b["epochs"])
    assert [r["epoch"] for r in map(json.loads, (cut / "log.jsonl").read_text().splitlines())
            if "epoch" in r] == list(range(6))
    assert {p.name for p in cut.iterdir()} == RUN_FILES


# ----------------------------------------------------------------- failures
@pytest.mark.parametrize("victim,how", [(1, "kill"), (0, "kill"), (1, "stop")])
def test_a_dead_or_hung_rank_stops_the_other_within_the_timeout_with_one_line(
        data_dir, tmp_path, victim, how):
    timeout = 10
    out = tmp_path / "run"
    procs = ranks(mmssl_command("train", "--model", "lightgcn", "--data", str(data_dir), "--out",
                                str(out), "--set", "epochs=500", "--set",
                                f"dist_timeout={timeout}", *SETS))
    try:
        wait_for(lambda: epochs_logged(out / "log.jsonl") >= 1, procs)
        os.kill(procs[victim].pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        t0 = time.monotonic()
        survivor = procs[1 - victim]
        _, err = survivor.communicate(timeout=timeout + 60)
        waited = time.monotonic() - t0
    finally:
        kill(procs)
    assert survivor.returncode == 2, err
    assert waited < timeout + 30  # a dead peer is noticed at once, a hung one at the timeout
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mmssl: error: rank {1 - victim} of 2: lost contact with the "
                               "other processes while training")
    # gloo words a hung peer "Timed out ..." or, under load, "Application timeout caused pair
    # closure"; a dead one "Connection reset/closed"
    if how == "stop":
        assert "timed out" in lines[0].lower() or "timeout" in lines[0].lower(), lines[0]
    else:
        assert "Connection" in lines[0], lines[0]
    assert f"mmssl train --resume {out} --nproc 2" in lines[0]


def test_launcher_reports_a_killed_rank_and_exits_non_zero(data_dir, tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        mmssl_command("train", "--model", "lightgcn", "--data", str(data_dir), "--out", str(out),
                      "--nproc", "2", "--set", "epochs=500", "--set", "dist_timeout=10", *SETS),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: epochs_logged(out / "log.jsonl") >= 1, [launcher])
        rank1 = next(pid for pid in _children(launcher.pid)
                     if "RANK=1" in _environ(pid))
        os.kill(rank1, signal.SIGKILL)
        _, err = launcher.communicate(timeout=90)
    finally:
        kill([launcher])
    assert launcher.returncode != 0
    lines = err.strip().splitlines()
    assert "mmssl: error: rank 1 of 2 was killed by SIGKILL" in lines
    assert any(x.startswith("mmssl: error: rank 0 of 2: lost contact") for x in lines)
    assert len(lines) == 2, err


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""
