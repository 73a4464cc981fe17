"""The demo end to end on the real data, with a one-epoch schedule (skips without ../shared)."""

from __future__ import annotations

import argparse

import pytest

from mmssl import demo


def test_demo_prints_metrics_and_titled_recommendations(shared_data, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setattr(demo, "DEMO_MODELS", {"pop": [], "lightgcn": ["epochs=1"],
                                              "mmssl": ["variant=paper", "epochs=1", "threads=1"]})
    args = argparse.Namespace(data=str(tmp_path / "ml"), source=str(shared_data / "raw"),
                              out=str(tmp_path / "runs"), users="1,2")
    assert demo.run_demo(args) == 0
    out = capsys.readouterr().out
    assert "== test metrics" in out and "mmssl" in out and "lightgcn" in out
    assert "== user 1: five favourite training movies" in out
    assert "Toy Story (1995)" in out or "(19" in out  # titles, not ids
    assert out.count("MMSSL's top-10 recommendations") == 2
    assert out.rstrip().splitlines()[-1].strip() == f"mmssl serve --run {tmp_path / 'runs' / 'mmssl'}"
