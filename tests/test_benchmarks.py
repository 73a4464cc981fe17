"""Smoke tests of benchmark scripts whose figures the README quotes (tiny sizes: these check
that the scripts run and measure what they say, not any speed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


@pytest.mark.parametrize("order", ["none", "locality"])
def test_step_profile_finds_the_sparse_products(tmp_path, capsys, order):
    import step_profile

    assert step_profile.main(["--items", "400", "--warm", "2", "--top", "3", "--order", order,
                              "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"step ([\d.]+) s: sparse products ([\d.]+) s \((\d+) calls\), the rest", out)
    assert m, out
    step, products, calls = float(m[1]), float(m[2]), int(m[3])
    # the graph propagations forward and backward at least: 16 in an official sketch step
    assert calls >= 16 and 0 < products < step
    assert len(re.findall(r"^  aten::", out, flags=re.M)) == 3
