"""Smoke tests of benchmark scripts whose figures the README quotes (tiny sizes: these check
that the scripts run and measure what they say, not any speed)."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("allocator", ["system", "tcmalloc"])
def test_train_speed_times_both_precisions_in_one_run(tmp_path, capsys, allocator):
    import scale
    import train_speed

    from mmssl.data.layout import save_dataset
    from mmssl.data.synthetic import planted_dataset

    if allocator != "system":
        try:
            scale.allocator_library(allocator)
        except SystemExit as e:
            pytest.skip(str(e))
    folder = save_dataset(planted_dataset(n_users=60, n_items=50, n_interactions=600), tmp_path / "d")
    assert train_speed.main(["--data", str(folder), "--modes", "exact", "--precisions", "fp32,bf16",
                             "--epochs", "1", "--steps", "2", "--threads", "1",
                             "--allocator", allocator]) == 0
    out = capsys.readouterr().out
    assert f"malloc {allocator}" in out.splitlines()[0]
    assert re.search(r"^official exact: bf16 is [\d.]+x faster per epoch than fp32$", out, flags=re.M), out
    records = json.loads(out.splitlines()[-1])
    assert [r["precision"] for r in records] == ["fp32", "bf16"]
    assert all(r["median_epoch_seconds"] > 0 and r["peak_rss_mb"] > 0 for r in records)
    assert all(r["malloc"] == allocator for r in records)  # preloaded into the workers indeed


def test_scale_plants_clusters_of_the_size_asked(tmp_path, capsys):
    import numpy as np
    import scale

    ds = scale.scale_dataset(2000, tmp_path, clusters=4)
    counts = np.zeros((ds.n_users, 4))
    np.add.at(counts, (ds.users, ds.items % 4), 1)  # a cluster's items are c, c + 4, ...
    own = counts.max(1) / counts.sum(1)
    assert np.median(own) >= 0.8  # 90% of a user's items are drawn from its cluster
    assert (tmp_path / "planted-2000-0-c4").is_dir() and not (tmp_path / "planted-2000-0").exists()
    within = scale.scale_dataset(2000, tmp_path, clusters=4, cross=0.0)  # no edge across clusters
    counts = np.zeros((within.n_users, 4))
    np.add.at(counts, (within.users, within.items % 4), 1)
    assert (counts.max(1) == counts.sum(1)).all() and (tmp_path / "planted-2000-0-c4-x0").is_dir()
    with pytest.raises(SystemExit):
        scale.main(["--cross-share", "1.5"])
    assert scale.main(["--items", "1000", "--modes", "sketch", "--precisions", "fp32", "--steps", "1",
                       "--threads", "1", "--cluster-items", "250", "--plot", "", "--huge-pages",
                       "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith(
        "planted clusters of 250 items, 0.1 of the interactions across them; huge pages")
    (record,) = json.loads(out.splitlines()[-1])
    assert record["items"] == 1000 and record["step_seconds"] > 0
    assert (tmp_path / "planted-1000-0-c4").is_dir()
