"""Bad input through ``mmssl data import`` and ``load_dataset`` (issue 10): every case is one
line on stderr, exit code 2, and nothing half-written left behind."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from mmssl.cli import main
from mmssl.data.dataset import check_modality_name, load_dataset, save_dataset
from mmssl.data.formats import import_dataset
from mmssl.errors import DataError
from mmssl.io import temporary_name


def one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("mmssl: error: "), err
    return lines[0]


def leftovers(folder, name):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


# ------------------------------------------------------------------- modality names
@pytest.mark.parametrize(
    "name", ["../../ESCAPED", "/tmp/x/ABS", ".", "..", ".hidden", "a/b", "", "x" * 65, "a b"]
)
def test_unsafe_modality_names_are_refused(name):
    with pytest.raises(DataError, match="modality name"):
        check_modality_name(name, "--name")


@pytest.mark.parametrize("name", ["text", "kg", "img.v2", "a-b_c", "X9", "x" * 64])
def test_safe_modality_names_pass(name):
    assert check_modality_name(name, "--name") == name


def test_feature_flag_refuses_a_path_as_its_name(sources, tmp_path, capsys):
    dest = tmp_path / "ds"
    message = one_line_error(
        capsys,
        ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest),
         "--feature", "../up=text_feat.npy"],
    )
    assert "--feature ../up=text_feat.npy" in message and "modality name" in message
    assert not dest.exists()


def test_dataset_json_with_a_path_as_modality_name_is_refused(tmp_path, make_dataset, capsys):
    save_dataset(make_dataset(), tmp_path / "ds")
    meta_path = tmp_path / "ds" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["modalities"] = {"../../etc/x": 3}
    meta_path.write_text(json.dumps(meta))
    message = one_line_error(capsys, ["data", "stats", str(tmp_path / "ds")])
    assert "dataset.json" in message and "'../../etc/x'" in message


def test_save_refuses_an_unsafe_modality_name(tmp_path, make_dataset):
    ds = make_dataset()
    ds.features["../out"] = ds.features.pop("text")
    with pytest.raises(DataError, match="modality name '../out'"):
        save_dataset(ds, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------- huge ids
def _mmssl(root, train, val='{"0": [1]}', test='{"0": [2]}', features=False):
    root.mkdir()
    (root / "train.json").write_text(train)
    (root / "val.json").write_text(val)
    (root / "test.json").write_text(test)
    if features:
        np.save(root / "text_feat.npy", np.ones((4, 2), np.float32))
    return root


def test_huge_mmssl_user_index_is_refused_not_allocated(tmp_path, capsys):
    src = _mmssl(tmp_path / "s", '{"99999999999999": [1], "0": [3]}', features=True)
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmssl", str(src), str(tmp_path / "ds")]
    )
    assert "train.json" in message and '"99999999999999"' in message
    assert "100000000000000 users for 2 distinct users" in message and "--format csv" in message


def test_huge_mmssl_item_index_without_features_is_refused(tmp_path, capsys):
    src = _mmssl(tmp_path / "s", '{"0": [2000000000], "1": [3]}')
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmssl", str(src), str(tmp_path / "ds")]
    )
    assert "train.json" in message and "item index 2000000000" in message
    assert "for 4 distinct items" in message and "--format csv" in message


def test_huge_mmrec_item_index_is_refused_naming_the_line(tmp_path, capsys):
    src = tmp_path / "m"
    src.mkdir()
    (src / "m.inter").write_text("userID\titemID\tx_label\n0\t1\t0\n1\t2000000000\t1\n0\t2\t2\n")
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmrec", str(src), str(tmp_path / "ds")]
    )
    assert "m.inter: line 3: itemID 2000000000" in message
    assert "--format csv --user-col userID --item-col itemID --split-col x_label" in message


def test_a_sparse_but_reasonable_index_space_still_imports(tmp_path):
    # 99,999 + 1 ids for 2 users: within the 100,000 floor
    src = _mmssl(tmp_path / "s", '{"99999": [1], "0": [3]}')
    assert import_dataset("mmssl", src).n_users == 100_000


# ------------------------------------------------------------------ whitespace ids
def test_ids_differing_by_whitespace_are_merged_with_a_note(tmp_path, capsys):
    path = tmp_path / "w.csv"
    path.write_text(
        "user_id,item_id\n5,a\n 5,b\n5\u00a0,c\n6,a\n6,b\n6,c\n", encoding="utf-8"
    )
    dest = tmp_path / "ds"
    assert main(["data", "import", "--format", "csv", str(path), str(dest), "--split", "random"]) == 0
    out = capsys.readouterr().out
    note = (
        "note: user_id: stripped surrounding whitespace from 2 values; 3 distinct raw ids "
        "merged into 1 (e.g. '5', ' 5', '5\\xa0' -> '5')"
    )
    assert note in out
    assert load_dataset(dest).user_ids.tolist() == ["5", "6"]


def test_recbole_whitespace_without_merging_is_noted_too(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "r.inter").write_text("user_id:token\titem_id:token\n1\t a\n1\t b\n1\t c\n")
    ds = import_dataset("recbole", d, split="random")
    assert "item_id: stripped surrounding whitespace from 3 values (no ids merged)" in ds.info[
        "notes"
    ]


# ---------------------------------------------------- tampered saved dataset
@pytest.mark.parametrize(
    "line, needles",
    [
        ("0\t20\ttrain", ["line 3", "item index 20 out of range [0, 20)", "item_ids.txt has 20"]),
        ("12\t1\ttrain", ["line 3", "user index 12 out of range [0, 12)"]),
        ("-1\t1\ttrain", ["line 3", "user index '-1' is negative", "expected 0 to 11"]),
        ("0\t1.5\ttrain", ["line 3", "item index '1.5' is not an integer"]),
        ("0\t\ttrain", ["line 3", "item index '' is not an integer"]),
        ("0\t99999999999999999999\ttrain", ["line 3", "is too large"]),
        ("0\t1\tholdout", ["line 3", "split 'holdout'"]),
    ],
)
def test_tampered_interactions_name_the_file_the_line_and_the_value(
    line, needles, tmp_path, make_dataset, capsys
):
    save_dataset(make_dataset(timestamps=False), tmp_path / "ds")
    path = tmp_path / "ds" / "interactions.tsv"
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    message = one_line_error(capsys, ["data", "stats", str(tmp_path / "ds")])
    assert "interactions.tsv" in message
    for needle in needles:
        assert needle in message, message


def test_tampered_timestamp_names_the_line(tmp_path, make_dataset):
    save_dataset(make_dataset(), tmp_path / "ds")
    path = tmp_path / "ds" / "interactions.tsv"
    lines = path.read_text().splitlines()
    lines[4] = "\t".join(lines[4].split("\t")[:3] + ["soon"])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"interactions.tsv: line 5: timestamp 'soon'"):
        load_dataset(tmp_path / "ds")


# ------------------------------------------------------------- destinations
def test_destination_under_a_file_is_one_line(sources, tmp_path, capsys):
    (tmp_path / "somefile").write_text("x")
    dest = tmp_path / "somefile" / "sub"
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]
    )
    assert f"{dest}: cannot write the dataset folder: {tmp_path / 'somefile'} is a file" in message


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_destination_that_is_a_file_is_one_line_and_kept(overwrite, sources, tmp_path, capsys):
    dest = tmp_path / "somefile"
    dest.write_text("mine")
    message = one_line_error(
        capsys,
        ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest), *overwrite],
    )
    assert f"{dest}: is a file, not a folder" in message
    assert dest.read_text() == "mine"


def test_export_to_a_file_is_one_line(tmp_path, make_dataset, capsys):
    save_dataset(make_dataset(), tmp_path / "ds")
    (tmp_path / "f").write_text("x")
    message = one_line_error(
        capsys, ["data", "export", "--format", "mmrec", str(tmp_path / "ds"), str(tmp_path / "f")]
    )
    assert "is a file, not a folder" in message


def test_stale_temporaries_of_killed_imports_are_removed(sources, tmp_path, capsys):
    dest = tmp_path / "ds"
    stale = tmp_path / ".ds.tmp-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "interactions.tsv").write_text("half")
    live = tmp_path / f".ds.tmp-{os.getppid()}-xyz"  # a process that runs: kept
    live.mkdir()
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]) == 0
    assert not stale.exists() and live.exists()
    assert (dest / "dataset.json").is_file()


def test_disk_full_during_import_is_one_line_and_leaves_nothing(
    sources, tmp_path, capsys, monkeypatch
):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mmssl.data.layout.np.save", full)
    dest = tmp_path / "out" / "ds"
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]
    )
    assert message == f"mmssl: error: {dest}: cannot write: No space left on device"
    assert not dest.exists() and leftovers(dest.parent, "ds") == []


def test_disk_full_on_overwrite_keeps_the_old_dataset(sources, tmp_path, capsys, monkeypatch):
    dest = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]) == 0
    before = load_dataset(dest).checksums()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mmssl.data.layout._write_lines", full)
    one_line_error(
        capsys,
        ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest), "--overwrite"],
    )
    assert load_dataset(dest).checksums() == before and leftovers(tmp_path, "ds") == []


def test_temporary_names_follow_the_shared_pattern(tmp_path):
    # what remove_stale_temporaries looks for: .NAME.tmp-PID-...
    tmp = temporary_name(tmp_path / "ds")
    assert tmp.name.startswith(f".ds.tmp-{os.getpid()}-")
    tmp.unlink()
