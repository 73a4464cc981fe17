"""The launcher's bookkeeping when ranks end together (no training needed)."""

from __future__ import annotations

import subprocess
import sys

from mmssl.training.launch import _wait


def _ended(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code])
    proc.wait()
    return proc


def test_a_killed_rank_is_reported_and_counts_first_when_both_ended_in_one_poll(capsys):
    # rank 0 ended with its own error, rank 1 was killed: seen in the same poll
    procs = [_ended("raise SystemExit(2)"),
             _ended("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")]
    assert _wait(procs, grace=5.0) == 128 + 9
    assert capsys.readouterr().err.splitlines() == ["mmssl: error: rank 1 of 2 was killed by SIGKILL"]


def test_every_killed_rank_is_reported_and_success_is_zero(capsys):
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert _wait([_ended(killed), _ended(killed)], grace=5.0) == 128 + 15
    assert capsys.readouterr().err.splitlines() == [
        "mmssl: error: rank 0 of 2 was killed by SIGTERM",
        "mmssl: error: rank 1 of 2 was killed by SIGTERM"]
    assert _wait([_ended("pass"), _ended("pass")], grace=5.0) == 0


def test_a_rank_still_running_after_the_grace_is_stopped(capsys):
    procs = [_ended("raise SystemExit(3)"),
             subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
    assert _wait(procs, grace=0.2) == 3
    assert procs[1].poll() is not None
    assert "rank 1 still running 0.2 s after rank 0 failed; stopped them" in capsys.readouterr().err
