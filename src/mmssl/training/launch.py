"""``mmssl train --nproc N``: N processes on this machine, started as torchrun would start them.

Each process runs ``python -m mmssl train ...`` (the same arguments, without ``--nproc``) with
torchrun's environment: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR`` (loopback) and ``MASTER_PORT``. The rendezvous store is hosted here, on a port
the operating system picks, so two runs never race for one port. Rank 0's output is shown; the
others print only their errors (one line each).

When a process fails, the others stop by themselves: at their next collective when it died, or
when ``dist_timeout`` expires when it hangs. This launcher waits for them a minute at most, then
ends them; its exit code is the first failure's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mmssl.runtime import say

GRACE_SECONDS = 60.0  # how long the others get to stop by themselves after one failed


def launched() -> bool:
    """Whether this process is already one of a distributed run (torchrun or ``--nproc``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return True


def launch(argv: list[str], nproc: int, grace: float = GRACE_SECONDS) -> int:
    """Run ``python -m mmssl *argv`` as ``nproc`` processes of one distributed run; wait for all
    of them and return 0, or the first failure's exit code (128 + signal for a killed one)."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(store.port),
               WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0",
               TORCHELASTIC_USE_AGENT_STORE="True")  # every rank joins the store hosted here
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: loopback only
    procs = []
    for rank in range(nproc):
        child = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen([sys.executable, "-m", "mmssl", *argv], env=child,
                                      stdout=None if rank == 0 else subprocess.DEVNULL))
    previous = signal.signal(signal.SIGTERM, lambda *_: _stop(procs, signal.SIGTERM))
    try:
        return _wait(procs, grace)
    except KeyboardInterrupt:  # the children got the same SIGINT from the terminal
        _finish(procs, grace)
        say("mmssl: interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(procs, signal.SIGKILL)
        del store


def _wait(procs: list[subprocess.Popen], grace: float) -> int:
    """Poll until all have ended; after the first failure give the rest ``grace`` seconds.

    Every rank killed by a signal is reported (it could not say why itself). When several
    failures show up in one poll, a killed rank counts as the first: the others' errors
    (lost contact) are its consequence."""
    failed: tuple[int, int] | None = None  # (rank, exit code)
    reported: set[int] = set()
    deadline = None
    while True:
        codes = [p.poll() for p in procs]
        for rank, code in enumerate(codes):
            if code is not None and code < 0 and rank not in reported:
                reported.add(rank)
                say(f"mmssl: error: rank {rank} of {len(procs)} was killed by "
                    f"{_signal_name(-code)}")
        if failed is None:
            failures = [(code >= 0, rank, code) for rank, code in enumerate(codes)
                        if code not in (None, 0)]
            if failures:
                failed = min(failures)[1:]
                deadline = time.monotonic() + grace
        if all(code is not None for code in codes):
            break
        if deadline is not None and time.monotonic() > deadline:
            left = [r for r, c in enumerate(codes) if c is None]
            say(f"mmssl: error: rank{'s' if len(left) > 1 else ''} "
                f"{', '.join(map(str, left))} still running {grace:g} s after rank "
                f"{failed[0]} failed; stopped them")
            _stop(procs, signal.SIGKILL)
            break
        time.sleep(0.05)
    if failed is None:
        return 0
    code = failed[1]
    return code if code > 0 else 128 - code


def _finish(procs: list[subprocess.Popen], grace: float) -> None:
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def _stop(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
    if sig == signal.SIGKILL:
        for p in procs:
            p.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


__all__ = ["GRACE_SECONDS", "launch", "launched"]
