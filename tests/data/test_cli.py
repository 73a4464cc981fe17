"""``mmssl data import | export | stats | prepare`` end to end through ``mmssl.cli.main``."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

from mmssl.cli import main
from mmssl.data.dataset import load_dataset
from mmssl.data.formats import import_dataset


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_import_prints_a_summary_and_writes_a_dataset(sources, tmp_path, capsys):
    dest = tmp_path / "ds"
    rc, out, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "recbole",
        str(sources["recbole"]),
        str(dest),
        "--split",
        "random:8:1:1",
        "--seed",
        "7",
    )
    assert rc == 0, err
    assert "users 4, items 6, interactions 18" in out
    assert "random:8:1:1 (seed 7)" in out
    ds = load_dataset(dest)
    assert ds.info["seed"] == 7 and ds.info["source_format"] == "recbole"
    direct = import_dataset("recbole", sources["recbole"], split="random:8:1:1", seed=7)
    assert ds.checksums() == direct.checksums()


def test_import_all_flags(sources, tmp_path, capsys):
    table = sources["recbole"] / "f.csv"
    table.write_text("item_id,a\n995,1\n996,2\n")
    rc, out, err = run(
        capsys,
        "data",
        "import",
        "--format",
        "csv",
        str(sources["csv"]),
        str(tmp_path / "ds"),
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--rating-col",
        "rating",
        "--threshold",
        "2",
        "--time-col",
        "time",
        "--split",
        "user-time:8:1:1",
        "--kcore",
        "1",
        "--dedup",
        "last",
        "--feature",
        f"f={table}",
        "--feature-id-col",
        "item_id",
    )
    assert rc == 0, err
    ds = load_dataset(tmp_path / "ds")
    assert ds.info["split"] == "user-time:8:1:1" and ds.info["dedup"] == "last"
    assert ds.modalities == {"f": 1}
    assert "without a row" in out


def test_stats_human_and_json(sources, tmp_path, capsys):
    dest = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]) == 0
    capsys.readouterr()
    rc, out, _ = run(capsys, "data", "stats", str(dest))
    assert rc == 0
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines())
    assert lines["users"] == "4" and lines["items"] == "6" and lines["interactions"] == "18"
    assert lines["train"] == "11" and lines["valid"] == "3" and lines["test"] == "4"
    assert lines["modalities"] == "kg (2), text (3)"
    assert lines["users with test"] == "4" and lines["zero feature rows"] == "kg 0, text 0"
    rc, out, _ = run(capsys, "data", "stats", str(dest), "--json")
    stats = json.loads(out)
    assert stats["users_with_valid"] == 3 and stats["users_with_test"] == 4
    assert stats["modalities"] == {"kg": 2, "text": 3}
    assert stats["zero_feature_rows"] == {"kg": 0, "text": 0}


def test_stats_of_a_non_dataset_is_one_line_error(tmp_path, capsys):
    rc, _, err = run(capsys, "data", "stats", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "dataset.json" in err


@pytest.mark.parametrize("fmt", ["mmssl", "mmrec"])
def test_export_then_import_round_trip(fmt, sources, tmp_path, capsys):
    ds_dir = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(ds_dir)]) == 0
    out_dir = tmp_path / "exported"
    rc, out, err = run(capsys, "data", "export", "--format", fmt, str(ds_dir), str(out_dir))
    assert rc == 0, err
    back = tmp_path / "back"
    assert main(["data", "import", "--format", fmt, str(out_dir), str(back)]) == 0
    assert load_dataset(back).checksums() == load_dataset(ds_dir).checksums()


def test_export_errors(sources, tmp_path, capsys):
    ds_dir = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(ds_dir)]) == 0
    capsys.readouterr()
    rc, _, err = run(capsys, "data", "export", "--format", "csv", str(ds_dir), str(tmp_path / "x"))
    assert rc == 2 and "unknown export format 'csv'" in err and err.count("\n") == 1
    (tmp_path / "taken").mkdir()
    rc, _, err = run(
        capsys, "data", "export", "--format", "mmssl", str(ds_dir), str(tmp_path / "taken")
    )
    assert rc == 2 and "destination exists" in err
    assert not (tmp_path / "x").exists()


def test_prepare_calls_the_registry(monkeypatch, tmp_path, capsys):
    calls = []
    fake = types.ModuleType("mmssl.datasets.registry")
    fake.prepare = lambda name, dest, source=None, overwrite=False: calls.append(
        (name, dest, source, overwrite)
    )
    monkeypatch.setitem(sys.modules, "mmssl.datasets.registry", fake)
    rc, _, err = run(
        capsys,
        "data",
        "prepare",
        "ml100k-mm",
        str(tmp_path / "d"),
        "--source",
        "/src",
        "--overwrite",
    )
    assert rc == 0, err
    assert calls == [("ml100k-mm", str(tmp_path / "d"), "/src", True)]


def test_prepare_without_registry_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mmssl.datasets.registry", None)  # import fails
    rc, _, err = run(capsys, "data", "prepare", "ml100k-mm", str(tmp_path / "d"))
    assert rc == 2 and err.count("\n") == 1 and "prepare is unavailable" in err


def test_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "import", "--help"])
    assert exc.value.code == 0
    assert "{mmssl,mmrec,recbole,csv}" in capsys.readouterr().out


# ------------------------------------------------------------------------ real data
def test_real_stats_outputs(shared_data, tmp_path, capsys):
    for fmt in ("mmssl", "mmrec"):
        dest = tmp_path / fmt
        assert main(["data", "import", "--format", fmt, str(shared_data / fmt), str(dest)]) == 0
        capsys.readouterr()
        rc, out, _ = run(capsys, "data", "stats", str(dest), "--json")
        stats = json.loads(out)
        assert (stats["users"], stats["items"]) == (943, 1682)
        assert (stats["train"], stats["valid"], stats["test"]) == (80024, 9988, 9988)
        assert stats["modalities"] == {"kg": 64, "text": 384}
