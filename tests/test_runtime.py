"""Process settings (mmssl.runtime): which malloc a process runs with, and the training hint."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest
import torch

import mmssl.runtime as runtime
from mmssl.api import train
from mmssl.data.dataset import save_dataset
from mmssl.data.synthetic import planted_dataset

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def _name_in_child(env: dict[str, str]) -> str:
    code = "from mmssl.runtime import malloc_name; print(malloc_name())"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True,
                          capture_output=True, text=True).stdout.strip()


@linux
def test_malloc_name_sees_a_preloaded_tcmalloc_and_the_system_malloc_otherwise():
    assert _name_in_child({"LD_PRELOAD": ""}) == "system"
    library = ctypes.util.find_library("tcmalloc_minimal")
    if library is None:
        pytest.skip("libtcmalloc_minimal is not installed (Debian: libtcmalloc-minimal4)")
    assert _name_in_child({"LD_PRELOAD": library}) == "tcmalloc"


@linux
def test_the_hint_is_for_large_catalogues_on_cpu_with_the_system_malloc_only(monkeypatch):
    cpu, n = torch.device("cpu"), runtime.LARGE_CATALOGUE_ITEMS
    monkeypatch.setattr(runtime, "malloc_name", lambda: "system")
    hint = runtime.malloc_hint(n + 1, cpu, n)
    assert hint.startswith(f"{n + 1} items on CPU with the system malloc")
    assert "LD_PRELOAD=libtcmalloc_minimal.so.4" in hint
    assert runtime.malloc_hint(n, cpu, n) is None  # at the threshold: no hint
    assert runtime.malloc_hint(n + 1, torch.device("cuda"), n) is None  # the GPU's memory is not malloc's
    monkeypatch.setattr(runtime, "malloc_name", lambda: "tcmalloc")
    assert runtime.malloc_hint(n + 1, cpu, n) is None  # already preloaded


@linux
def test_training_a_large_catalogue_with_the_system_malloc_logs_the_hint(tmp_path, monkeypatch):
    ds = planted_dataset(n_users=400, n_items=200, n_interactions=4000, n_clusters=4, seed=1)
    data = save_dataset(ds, tmp_path / "data")
    notes = {}
    monkeypatch.setattr(runtime, "LARGE_CATALOGUE_ITEMS", 100)  # 200 items are "large"
    for name, malloc in (("system", "system"), ("tcmalloc", "tcmalloc")):
        monkeypatch.setattr(runtime, "malloc_name", lambda malloc=malloc: malloc)
        out = tmp_path / name
        train("lightgcn", data, out, overrides=["epochs=1", "threads=1", "device=cpu"],
              progress=False)
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        notes[name] = [r["text"] for r in records if r.get("event") == "note"]
    assert any("preloading tcmalloc" in n for n in notes["system"])
    assert not any("preloading tcmalloc" in n for n in notes["tcmalloc"])


def _freed_mb_kept(mode: str, env: dict[str, str] | None = None) -> float:
    """MB of resident memory a child keeps after freeing 100 blocks of 1 MB it had touched."""
    code = f"""
import numpy as np
from mmssl.runtime import tune_malloc
tune_malloc({mode!r})
page = __import__("os").sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
before = rss()
blocks = [np.ones(2**18, dtype=np.float32) for _ in range(100)]
touched = rss()
del blocks
print(rss() - before, touched - before)
"""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LD_PRELOAD": "", **(env or {})},
                         check=True, capture_output=True, text=True).stdout.split()
    kept, touched = map(float, out)
    assert touched > 90  # the blocks were resident
    return kept


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or __import__("platform").libc_ver()[0] != "glibc",
                           reason="tunes glibc's malloc")


@glibc
def test_tuned_malloc_keeps_freed_blocks_and_system_gives_them_back():
    assert _freed_mb_kept("tuned") > 90  # kept for the next step's blocks
    assert _freed_mb_kept("system") < 10  # glibc's default: each 1 MB block was its own mapping
    # a user's own glibc settings are left alone
    assert _freed_mb_kept("tuned", {"MALLOC_MMAP_THRESHOLD_": "131072"}) < 10


def test_the_malloc_setting_is_applied_and_saved_with_the_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runtime, "tune_malloc", lambda mode="tuned": calls.append(mode) or False)
    ds = planted_dataset(n_users=60, n_items=40, n_interactions=600, n_clusters=2, seed=1)
    data = save_dataset(ds, tmp_path / "data")
    for mode in ("tuned", "system"):
        out = tmp_path / mode
        train("bpr", data, out, overrides=["epochs=1", "device=cpu", f"malloc={mode}"], progress=False)
        assert f"malloc: {mode}" in (out / "config.yaml").read_text()
    assert calls == ["tuned", "system"]
