"""Bad input through ``mmssl features ...`` (issue 10): one line, exit code 2, nothing written
outside the intended paths and nothing half-written."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from mmssl.cli import main
from mmssl.data.dataset import load_dataset, save_dataset
from mmssl.errors import DataError
from mmssl.features.io import FeatureMatrix, add_to_dataset, read_table, write_features


def one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("mmssl: error: "), err
    return lines[0]


@pytest.fixture
def graph(tmp_path):
    kg = tmp_path / "g.kg"
    kg.write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "e1\tgenre\tcomedy\ne2\tgenre\tcomedy\ne3\tgenre\tdrama\ne1\tgenre\tdrama\n"
    )
    link = tmp_path / "g.link"
    link.write_text("item_id:token\tentity_id:token\ni1\te1\ni2\te2\ni3\te3\n")
    return ["features", "kg", "--kg", str(kg), "--link", str(link), "--dim", "1"]


@pytest.fixture
def dataset_dir(tmp_path, make_dataset):
    return save_dataset(make_dataset(n_items=5), tmp_path / "deep" / "er" / "ds")


@pytest.mark.parametrize("name", ["../../ESCAPED", "/ABSOLUTE/x", "a/b", ".."])
def test_name_cannot_escape_the_dataset(name, graph, dataset_dir, tmp_path, capsys):
    message = one_line_error(capsys, [*graph, "--add-to", str(dataset_dir), "--name", name])
    assert f"--name: modality name {name!r}" in message
    assert not list(tmp_path.rglob("ESCAPED*")) and not list(tmp_path.rglob("x.npy"))
    assert load_dataset(dataset_dir).modalities == {"text": 8, "image": 4}


def test_add_to_dataset_checks_the_name_too(dataset_dir):
    ds = load_dataset(dataset_dir)
    fm = FeatureMatrix(np.ones((ds.n_items, 2)), ds.item_ids, [], "test")
    with pytest.raises(DataError, match="modality name '../x'"):
        add_to_dataset(dataset_dir, "../x", fm)


def test_existing_modality_is_refused_before_anything_is_written(graph, dataset_dir, tmp_path,
                                                                  capsys):
    out = tmp_path / "kg.npy"
    message = one_line_error(
        capsys, [*graph, "--add-to", str(dataset_dir), "--name", "text", "--out", str(out)]
    )
    assert "already has modality 'text'" in message and not out.exists()


def test_threads_flag_and_set_threads_reach_torch(graph, dataset_dir, tmp_path, monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    assert main([*graph, "--item-ids", str(dataset_dir), "--out", str(tmp_path / "a.npy"),
                 "--threads", "1"]) == 0
    assert main([*graph, "--item-ids", str(dataset_dir), "--out", str(tmp_path / "b.npy"),
                 "--set", "threads=2"]) == 0
    assert calls == [1, 2]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "lr=0.1"], "--set lr=0.1: unknown key 'lr' (feature commands take only threads=N)"),
        (["--set", "threads"], "--set threads: expected KEY=VALUE"),
        (["--set", "threads=0"], "--set threads=0: expected a positive integer"),
        (["--threads", "many"], "--threads many: expected a positive integer"),
        (["--threads", "1", "--set", "threads=2"], "disagree"),
    ],
)
def test_bad_thread_settings_are_one_line(extra, message, graph, dataset_dir, tmp_path, capsys):
    out = tmp_path / "o.npy"
    err = one_line_error(capsys, [*graph, "--item-ids", str(dataset_dir), "--out", str(out), *extra])
    assert message in err and not out.exists()


def test_out_under_a_file_or_onto_a_folder_is_one_line(graph, dataset_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    err = one_line_error(capsys, [*graph, "--item-ids", str(dataset_dir), "--out",
                                  str(tmp_path / "f" / "o.npy")])
    assert f"cannot write under {tmp_path / 'f'}: it is a file" in err
    (tmp_path / "d.npy").mkdir()
    err = one_line_error(capsys, [*graph, "--item-ids", str(dataset_dir), "--out",
                                  str(tmp_path / "d.npy"), "--overwrite"])
    assert "is a folder, expected a file path" in err


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_writing_features_is_one_line_and_leaves_nothing(graph, dataset_dir, tmp_path,
                                                                   capsys, monkeypatch):
    monkeypatch.setattr("mmssl.features.io.np.save", _disk_full)
    out = tmp_path / "out" / "kg.npy"
    err = one_line_error(capsys, [*graph, "--item-ids", str(dataset_dir), "--out", str(out)])
    assert err == f"mmssl: error: {out}: cannot write: No space left on device"
    assert list(out.parent.iterdir()) == []


def test_disk_full_adding_to_a_dataset_keeps_the_old_one(graph, dataset_dir, capsys, monkeypatch):
    before = load_dataset(dataset_dir).checksums()
    monkeypatch.setattr("mmssl.data.layout.np.save", _disk_full)
    err = one_line_error(capsys, [*graph, "--add-to", str(dataset_dir), "--name", "kg"])
    assert "cannot write: No space left on device" in err
    assert load_dataset(dataset_dir).checksums() == before
    assert sorted(p.name for p in dataset_dir.parent.iterdir()) == ["ds"]


def test_a_failed_sidecar_leaves_neither_file(tmp_path, monkeypatch):
    fm = FeatureMatrix(np.ones((2, 2)), np.array(["a", "b"]), [], "test")
    monkeypatch.setattr("mmssl.features.io.json.dumps", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_features(fm, tmp_path / "f.npy")
    assert list(tmp_path.iterdir()) == []


def test_written_features_get_the_usual_file_mode(tmp_path):
    fm = FeatureMatrix(np.ones((2, 2)), np.array(["a", "b"]), [], "test")
    old = os.umask(0o022)
    try:
        path = write_features(fm, tmp_path / "f.npy")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert stat.S_IMODE(path.with_suffix(".json").stat().st_mode) == 0o644


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_model_help_says_torchscript_must_be_trusted(kind, capsys):
    with pytest.raises(SystemExit):
        main(["features", kind, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "trusted files only: loading TorchScript runs code from the file" in out


def test_items_tables_keep_line_numbers_across_blank_lines(tmp_path):
    from mmssl.features.io import row_positions

    path = tmp_path / "items.tsv"
    path.write_text("item_id\ttitle\n1\tA\n\n2\tB\n1\tC\n")
    df = read_table(path)
    assert df["title"].tolist() == ["A", "B", "C"]
    with pytest.raises(DataError, match="line 5: item id '1' appears twice"):
        row_positions(df, "item_id", np.array(["1", "2"]), str(path))
