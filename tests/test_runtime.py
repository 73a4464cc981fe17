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
    cpu, n = torch.device("cpu"), runtime.MALLOC_HINT_ABOVE_ITEMS
    monkeypatch.setattr(runtime, "malloc_name", lambda: "system")
    hint = runtime.malloc_hint(n + 1, cpu)
    assert hint.startswith(f"{n + 1} items on CPU with the system malloc")
    assert "LD_PRELOAD=libtcmalloc_minimal.so.4" in hint
    assert runtime.malloc_hint(n, cpu) is None  # at the threshold: no hint
    assert runtime.malloc_hint(n + 1, torch.device("cuda")) is None  # the GPU's memory is not malloc's
    monkeypatch.setattr(runtime, "malloc_name", lambda: "tcmalloc")
    assert runtime.malloc_hint(n + 1, cpu) is None  # already preloaded


@linux
def test_training_a_large_catalogue_with_the_system_malloc_logs_the_hint(tmp_path, monkeypatch):
    ds = planted_dataset(n_users=400, n_items=200, n_interactions=4000, n_clusters=4, seed=1)
    data = save_dataset(ds, tmp_path / "data")
    notes = {}
    for name, malloc in (("system", "system"), ("tcmalloc", "tcmalloc")):
        monkeypatch.setattr(runtime, "MALLOC_HINT_ABOVE_ITEMS", 100)  # 200 items are "large"
        monkeypatch.setattr(runtime, "malloc_name", lambda malloc=malloc: malloc)
        out = tmp_path / name
        train("lightgcn", data, out, overrides=["epochs=1", "threads=1", "device=cpu"],
              progress=False)
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        notes[name] = [r["text"] for r in records if r.get("event") == "note"]
    assert any("preloading tcmalloc" in n for n in notes["system"])
    assert not any("preloading tcmalloc" in n for n in notes["tcmalloc"])
