"""Fixtures of the serving tests: a planted dataset with titles, trained runs, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmssl.api import train
from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

N_CLUSTERS = 4


def planted_with_titles(seed: int = 5):
    """Planted clusters (item i is in cluster i % 4) with an items table of titles."""
    ds = planted_dataset(n_users=80, n_items=60, n_interactions=1600, n_clusters=N_CLUSTERS,
                         modalities={"image": 12, "text": 8}, noise=0.3, seed=seed)
    ds.item_table = pd.DataFrame({"item_id": ds.item_ids,
                                  "title": [f"Film {i} of cluster {i % N_CLUSTERS}"
                                            for i in range(ds.n_items)],
                                  "year": [str(1990 + i % 10) for i in range(ds.n_items)]})
    return ds


def user_clusters(ds) -> np.ndarray:
    """Each user's majority cluster among their training items."""
    train = ds.matrix("train").tocoo()
    counts = np.zeros((ds.n_users, N_CLUSTERS))
    np.add.at(counts, (train.row, train.col % N_CLUSTERS), 1)
    return counts.argmax(axis=1)


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory) -> Path:
    return save_dataset(planted_with_titles(), tmp_path_factory.mktemp("serving-data") / "planted")


@pytest.fixture(scope="session")
def vbpr_run(planted_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serving-runs") / "vbpr"
    train("vbpr", planted_dir, out, overrides=["epochs=40", "batch_size=128", "lr=0.01",
                                               "reg_weight=0.001", "threads=1", "patience=40"],
          progress=False)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``mmssl serve`` in a child process on 127.0.0.1 and a free port."""

    def __init__(self, run: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mmssl", "serve", "--run", str(run), "--port", str(self.port),
             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def wait(self, timeout: float = 90.0) -> Server:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not answer /health in time")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


@pytest.fixture(scope="session")
def server(vbpr_run):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mmssl[serve]'")
    pytest.importorskip("httpx", reason="the serve extra is not installed: pip install 'mmssl[serve]'")
    s = Server(vbpr_run).wait()
    yield s
    s.stop()
