"""Bad input through ``mmssl data import``: exit code 2, one stderr line naming the file and the
problem, and no destination (nor temporary directory) left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmssl.cli import main


def one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("mmssl: error: ")
    return lines[0]


def assert_nothing_written(dest):
    assert not dest.exists()
    if dest.parent.exists():
        assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}")]


# Each case: (layout, corrupt(sources) -> src path, extra CLI args, strings the message names).
def _write(path, text):
    path.write_text(text)
    return path


def _mmssl(name, text):
    def corrupt(s):
        _write(s["mmssl"] / name, text)
        return s["mmssl"]

    return corrupt


def _npy(name, array):
    def corrupt(s):
        np.save(s["mmssl"] / name, array)
        return s["mmssl"]

    return corrupt


def _mmrec_line(line_no, new_line):
    def corrupt(s):
        path = s["mmrec"] / "tiny.inter"
        lines = path.read_text().splitlines()
        lines[line_no - 1] = new_line
        path.write_text("\n".join(lines) + "\n")
        return s["mmrec"]

    return corrupt


def _csv_text(text):
    def corrupt(s):
        return _write(s["csv"], text)

    return corrupt


def _unlink(name):
    def corrupt(s):
        (s["mmssl"] / name).unlink()
        return s["mmssl"]

    return corrupt


def _garbage_npy(s):
    (s["mmssl"] / "text_feat.npy").write_bytes(b"\x00garbage, not an npy file\xff" * 10)
    return s["mmssl"]


CSV_ARGS = ["--user-col", "user", "--item-col", "item", "--split-col", "part"]
NAN = np.ones((6, 3), dtype=np.float32)
NAN[2, 1] = np.nan
INF = np.ones((6, 3))
INF[4, 0] = np.inf

CASES = {
    "missing file": ("mmssl", _unlink("test.json"), [], ["test.json", "missing"]),
    "missing source": ("mmssl", lambda s: s["mmssl"] / "nope", [], ["nope", "no such file"]),
    "malformed json": (
        "mmssl",
        _mmssl("train.json", '{"0": [1, 2,\n'),
        [],
        ["train.json", "line 2", "malformed JSON"],
    ),
    "json not an object": ("mmssl", _mmssl("val.json", "[1, 2]"), [], ["val.json", "JSON object"]),
    "malformed csv": (
        "csv",
        _csv_text("user,item,part\n1,2,train\n1,3,test,extra\n"),
        CSV_ARGS,
        ["tiny.csv", "malformed", "line 3"],
    ),
    "missing value in csv": (
        "csv",
        _csv_text("user,item,part\n1,2,train\n1,,test\n"),
        CSV_ARGS,
        ["tiny.csv", "line 3", "missing item"],
    ),
    "empty csv": ("csv", _csv_text(""), CSV_ARGS, ["tiny.csv", "empty file"]),
    "feature rows disagree": (
        "mmssl",
        _npy("text_feat.npy", np.ones((5, 3), dtype=np.float32)),
        [],
        ["text_feat.npy", "5 rows", "kg_feat.npy"],
    ),
    "feature rows != items": (
        "recbole",
        lambda s: _save_npy(s["recbole"] / "f.npy", (4, 2)),
        ["--split", "random", "--feature", "f=f.npy"],
        ["f.npy", "4 rows", "6 items"],
    ),
    "nan features": ("mmssl", _npy("text_feat.npy", NAN), [], ["text_feat.npy", "NaN", "row 2"]),
    "inf features": ("mmssl", _npy("text_feat.npy", INF), [], ["text_feat.npy", "row 4"]),
    "unreadable npy": ("mmssl", _garbage_npy, [], ["text_feat.npy", "unreadable .npy"]),
    "truncated npy": (
        "mmssl",
        lambda s: _truncate(s["mmssl"] / "kg_feat.npy"),
        [],
        ["kg_feat.npy", "unreadable .npy"],
    ),
    "negative user (mmssl)": (
        "mmssl",
        _mmssl("test.json", '{"-1": [2]}'),
        [],
        ["test.json", 'user "-1"', "negative"],
    ),
    "negative item (mmssl)": (
        "mmssl",
        _mmssl("val.json", '{"0": [3, -4]}'),
        [],
        ["val.json", 'user "0"', "-4", "negative"],
    ),
    "negative id (mmrec)": (
        "mmrec",
        _mmrec_line(3, "-1\t2\t4\t0\t0"),
        [],
        ["tiny.inter", "line 3", "userID", "negative"],
    ),
    "out of range item (mmssl)": (
        "mmssl",
        _mmssl("test.json", '{"0": [6]}'),
        [],
        ["test.json", 'user "0"', "6", "out of range"],
    ),
    "out of range item (mmrec)": (
        "mmrec",
        _mmrec_line(5, "1\t60\t4\t0\t2"),
        [],
        ["tiny.inter", "line 5", "60", "out of range"],
    ),
    "non-integer user (mmssl)": (
        "mmssl",
        _mmssl("train.json", '{"a": [1]}'),
        [],
        ["train.json", 'user "a"', "not an integer"],
    ),
    "float item (mmssl)": (
        "mmssl",
        _mmssl("train.json", '{"0": [1, 1.5]}'),
        [],
        ["train.json", "1.5", "not an integer"],
    ),
    "string item (mmssl)": (
        "mmssl",
        _mmssl("train.json", '{"0": ["3"]}'),
        [],
        ["train.json", '"3"', "not an integer"],
    ),
    "non-integer id (mmrec)": (
        "mmrec",
        _mmrec_line(2, "0\tx7\t4\t0\t0"),
        [],
        ["tiny.inter", "line 2", "itemID", "'x7'", "not an integer"],
    ),
    "bad x_label (mmrec)": (
        "mmrec",
        _mmrec_line(4, "0\t1\t4\t0\t7"),
        [],
        ["tiny.inter", "line 4", "x_label", "'7'"],
    ),
    "empty test.json": ("mmssl", _mmssl("test.json", "{}"), [], ["test.json", "empty split"]),
    "empty file test.json": ("mmssl", _mmssl("test.json", ""), [], ["test.json", "malformed"]),
    "bad split spec": (
        "recbole",
        lambda s: s["recbole"],
        ["--split", "random:8:1"],
        ["--split 'random:8:1'"],
    ),
    "unknown split protocol": (
        "recbole",
        lambda s: s["recbole"],
        ["--split", "loo"],
        ["--split 'loo'", "unknown protocol"],
    ),
    "split needed": ("recbole", lambda s: s["recbole"], [], ["tiny.inter", "--split"]),
    "split on a split layout": (
        "mmssl",
        lambda s: s["mmssl"],
        ["--split", "random"],
        ["--split", "already split"],
    ),
    "missing column": (
        "csv",
        lambda s: s["csv"],
        ["--user-col", "uid", "--split", "random"],
        ["tiny.csv", "missing column 'uid'", "--user-col"],
    ),
    "time split without time": (
        "csv",
        lambda s: s["csv"],
        ["--user-col", "user", "--item-col", "item", "--split", "user-time"],
        ["tiny.csv", "timestamps"],
    ),
    "bad time value": (
        "csv",
        _csv_text("user_id,item_id,t\n1,2,3\n1,3,soon\n"),
        ["--time-col", "t", "--split", "user-time"],
        ["tiny.csv", "line 3", "'soon'"],
    ),
    "unknown format": ("xml", lambda s: s["mmssl"], [], ["unknown format 'xml'"]),
    "bad dedup": ("mmssl", lambda s: s["mmssl"], ["--dedup", "middle"], ["--dedup 'middle'"]),
    "bad feature spec": (
        "mmssl",
        lambda s: s["mmssl"],
        ["--feature", "text"],
        ["--feature 'text'", "NAME=PATH"],
    ),
    "missing feature file": (
        "mmssl",
        lambda s: s["mmssl"],
        ["--feature", "img=img_feat.npy"],
        ["img_feat.npy", "missing"],
    ),
    "feature table without id column": (
        "mmssl",
        lambda s: _write_table(s, "t.csv", "id,a\n0,1\n"),
        ["--feature", "t=t.csv"],
        ["t.csv", "missing column 'item_id'", "--feature-id-col"],
    ),
    "feature table non-numeric": (
        "mmssl",
        lambda s: _write_table(s, "t.csv", "item_id,a\n0,1\n1,big\n"),
        ["--feature", "t=t.csv"],
        ["t.csv", "line 3", "'a'", "not numeric"],
    ),
    "feature table duplicate item": (
        "mmssl",
        lambda s: _write_table(s, "t.csv", "item_id,a\n0,1\n0,2\n"),
        ["--feature", "t=t.csv"],
        ["t.csv", "line 2", "more than one row"],
    ),
    "threshold without ratings": (
        "mmssl",
        lambda s: s["mmssl"],
        ["--threshold", "3"],
        ["--threshold", "mmssl"],
    ),
}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    return path.parent


def _save_npy(path, shape):
    np.save(path, np.ones(shape))
    return path.parent


def _write_table(s, name, text):
    _write(s["mmssl"] / name, text)
    return s["mmssl"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_error_and_writes_nothing(case, sources, tmp_path, capsys):
    fmt, corrupt, extra, needles = CASES[case]
    src = corrupt(sources)
    dest = tmp_path / "out" / "ds"
    message = one_line_error(
        capsys, ["data", "import", "--format", fmt, str(src), str(dest), *extra]
    )
    for needle in needles:
        assert needle in message, message
    assert_nothing_written(dest)


def test_destination_exists_without_overwrite(sources, tmp_path, capsys):
    dest = tmp_path / "ds"
    dest.mkdir()
    (dest / "mine").write_text("x")
    message = one_line_error(
        capsys, ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]
    )
    assert str(dest) in message and "--overwrite" in message
    assert (dest / "mine").exists()
    assert (
        main(
            ["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest), "--overwrite"]
        )
        == 0
    )
    assert not (dest / "mine").exists() and (dest / "dataset.json").exists()


def test_duplicates_are_reported_not_an_error(sources, tmp_path, capsys):
    path = sources["mmrec"] / "tiny.inter"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[1:3]) + "\n")
    dest = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmrec", str(sources["mmrec"]), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "removed 2 duplicate" in out
    info = json.loads((dest / "dataset.json").read_text())["info"]
    assert info["counts"]["duplicates_removed"] == 2


def test_cold_start_is_legal_and_counted(sources, tmp_path, capsys):
    # user 4 only in test, item 5 only in valid/test once train loses it
    (sources["mmssl"] / "test.json").write_text('{"0": [4], "4": [1]}')
    (sources["mmssl"] / "train.json").write_text('{"0": [0, 1, 2], "1": [1, 2, 3], "2": [2, 3]}')
    dest = tmp_path / "ds"
    assert main(["data", "import", "--format", "mmssl", str(sources["mmssl"]), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "only in valid/test" in out
    counts = json.loads((dest / "dataset.json").read_text())["info"]["counts"]
    assert counts["cold_users"] == 1 and counts["cold_items"] == 2
    assert counts["users_without_test"] == 3
