"""Feature files: item-id lists, atomic .npy + JSON sidecar, attaching to a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmssl.data.dataset import load_dataset, save_dataset
from mmssl.errors import DataError
from mmssl.features.io import (
    FeatureMatrix,
    add_to_dataset,
    read_item_ids,
    read_table,
    sidecar_path,
    write_features,
)


def _matrix(ids=("a", "b", "c"), dim=2) -> FeatureMatrix:
    values = np.arange(len(ids) * dim, dtype=np.float64).reshape(len(ids), dim)
    values[1] = 0
    return FeatureMatrix(values, np.array(ids), missing=["b"], encoder="test:1", info={"k": 1})


def test_read_item_ids_from_file_and_dataset_dir(tmp_path, make_dataset):
    (tmp_path / "ids.txt").write_text("10\n2\n33\n\n")
    assert read_item_ids(tmp_path / "ids.txt").tolist() == ["10", "2", "33"]
    ds = make_dataset(n_items=5)
    save_dataset(ds, tmp_path / "ds")
    assert read_item_ids(tmp_path / "ds").tolist() == ds.item_ids.tolist()


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\n2\n1\n", "line 3: item id '1' repeats line 1"),
        ("1\n\n2\n", "line 2: blank"),
        ("", "no item ids"),
    ],
)
def test_read_item_ids_rejects_bad_lists(tmp_path, text, message):
    (tmp_path / "ids.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_item_ids(tmp_path / "ids.txt")


def test_read_item_ids_names_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="item_ids.txt: missing"):
        read_item_ids(tmp_path)


def test_read_table_strips_recbole_types_and_keeps_blank_cells(tmp_path):
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token_seq\n1\tA\n2\t\n")
    df = read_table(tmp_path / "x.item")
    assert list(df.columns) == ["item_id", "title"]
    assert df["title"].tolist() == ["A", ""]


def test_write_features_is_float32_with_sidecar_and_no_temp_files(tmp_path):
    out = write_features(_matrix(), tmp_path / "sub" / "f.npy")
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (3, 2)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["encoder"] == "test:1" and meta["dim"] == 2 and meta["items"] == 3
    assert meta["missing"] == 1 and meta["missing_items"] == ["b"] and meta["k"] == 1
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.json", "f.npy"]


def test_write_features_refuses_to_overwrite_unless_asked(tmp_path):
    write_features(_matrix(), tmp_path / "f.npy")
    with pytest.raises(DataError, match="exists"):
        write_features(_matrix(), tmp_path / "f.npy")
    write_features(_matrix(dim=3), tmp_path / "f.npy", overwrite=True)
    assert np.load(tmp_path / "f.npy").shape == (3, 3)


def test_add_to_dataset_rewrites_the_dataset_with_the_new_modality(tmp_path, make_dataset):
    ds = make_dataset(n_items=4, modalities={"text": 3})
    save_dataset(ds, tmp_path / "ds")
    fm = _matrix(ids=tuple(ds.item_ids), dim=5)
    add_to_dataset(tmp_path / "ds", "image", fm)
    back = load_dataset(tmp_path / "ds")
    assert back.modalities == {"text": 3, "image": 5}
    np.testing.assert_array_equal(back.features["image"], fm.values)
    assert back.split_checksums() == ds.split_checksums()
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["info"]["feature_sources"]["image"]["encoder"] == "test:1"
    with pytest.raises(DataError, match="already has modality 'image'"):
        add_to_dataset(tmp_path / "ds", "image", fm)


def test_add_to_dataset_rejects_another_item_order(tmp_path, make_dataset):
    ds = make_dataset(n_items=3)
    save_dataset(ds, tmp_path / "ds")
    fm = _matrix(ids=tuple(reversed(ds.item_ids)))
    with pytest.raises(DataError, match="item order differs"):
        add_to_dataset(tmp_path / "ds", "x", fm)
