"""``Dataset``: from a DataFrame, its repr, its path, its optional item table on disk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmssl.data.dataset import Dataset, load_dataset, save_dataset
from mmssl.data.formats import import_dataset
from mmssl.errors import DataError


def frame() -> pd.DataFrame:
    """3 users x 4 items (ids 30, 4, 100, 7: numeric order 4, 7, 30, 100), with times."""
    rows = [(u, i) for u in (2, 1, 3) for i in (30, 4, 100, 7)]
    return pd.DataFrame(
        {"user": [u for u, _ in rows], "item": [i for _, i in rows], "t": range(len(rows))}
    )


def test_from_frame_is_the_csv_import_fed_from_memory(tmp_path):
    df = frame()
    ds = Dataset.from_frame(df, user_col="user", item_col="item", split="random:8:1:1", seed=3)
    df.to_csv(tmp_path / "x.csv", index=False)
    ref = import_dataset("csv", tmp_path / "x.csv", user_col="user", item_col="item",
                         split="random:8:1:1", seed=3)
    assert ds.checksums() == ref.checksums()
    assert ds.user_ids.tolist() == ["1", "2", "3"] and ds.item_ids.tolist() == ["4", "7", "30", "100"]
    assert ds.info["source_format"] == "frame" and ds.info["split"] == "random:8:1:1"
    assert ds.path is None


def test_from_frame_split_column_and_time_split():
    df = frame()
    df["part"] = ["train", "train", "valid", "test"] * 3
    ds = Dataset.from_frame(df, user_col="user", item_col="item", split_col="part")
    assert ds.split_size("valid") == 3 and ds.info["split"] == "given (column part)"
    ds = Dataset.from_frame(df, user_col="user", item_col="item", time_col="t",
                            split="user-time:2:1:1")
    latest = ds.timestamps[ds.split == 2]
    assert sorted(latest.tolist()) == [3.0, 7.0, 11.0]


def test_from_frame_features_in_every_alignment():
    df = frame()
    order = np.array([4, 7, 30, 100])  # sorted distinct item ids
    by_order = np.stack([order, -order], axis=1).astype(np.float64)
    keyed = pd.DataFrame({"item": [100, 4, 999], "a": [1.0, 2.0, 3.0]})
    pairs = (["7", "30"], np.array([[1.5], [2.5]]))
    ds = Dataset.from_frame(
        df, features={"rows": by_order, "table": keyed, "pairs": pairs},
        user_col="user", item_col="item", split="random",
    )
    assert ds.features["rows"][:, 0].tolist() == [4, 7, 30, 100]
    assert ds.features["table"][:, 0].tolist() == [2.0, 0.0, 0.0, 1.0]
    assert ds.features["pairs"][:, 0].tolist() == [0.0, 1.5, 2.5, 0.0]
    assert all(f.dtype == np.float32 for f in ds.features.values())
    notes = " ".join(ds.info["notes"])
    assert "table: 2 items without a row" in notes and "table: 1 rows" in notes


@pytest.mark.parametrize(
    "features, message",
    [
        ({"x": np.ones((3, 2))}, r"features\['x'\]: 3 rows but the source has 4 items"),
        ({"x": np.ones(4)}, r"features\['x'\]: expected a 2-d array"),
        ({"x": np.array([[np.nan]] * 4)}, r"features\['x'\]: NaN or infinite value in row 0"),
        ({"x": (["4"], np.ones((2, 2)))}, r"features\['x'\]: 1 ids for 2 rows"),
        ({"x": pd.DataFrame({"id": [4], "a": [1]})}, r"features\['x'\]: missing column 'item'"),
        ({"x": pd.DataFrame({"item": [4, 4], "a": [1, 2]})}, r"row 0: item '4' has more than one"),
        ({"x": pd.DataFrame({"item": [4], "a": ["big"]})}, r"row 0: column 'a' is not numeric"),
        ({"../x": np.ones((4, 2))}, r"modality name '../x'"),
        ({"x": [1, 2]}, r"features\['x'\]: expected a path, an array"),
    ],
)
def test_from_frame_bad_features_are_one_line_errors(features, message):
    with pytest.raises(DataError, match=message) as e:
        Dataset.from_frame(frame(), features=features, user_col="user", item_col="item",
                           split="random")
    assert "\n" not in str(e.value)


def test_from_frame_bad_interactions_are_one_line_errors():
    df = frame()
    with pytest.raises(DataError, match="interactions: missing column 'user_id'"):
        Dataset.from_frame(df, split="random")
    df.loc[5, "item"] = None
    with pytest.raises(DataError, match="interactions: row 5: missing item"):
        Dataset.from_frame(df, user_col="user", item_col="item", split="random")
    with pytest.raises(DataError, match="not split: give --split"):
        Dataset.from_frame(frame(), user_col="user", item_col="item")


def test_item_table_is_aligned_saved_and_loaded(tmp_path):
    items = pd.DataFrame({"item": [30, 4, 555], "title": ["Thirty", "Four", "Unknown"]})
    ds = Dataset.from_frame(frame(), items=items, user_col="user", item_col="item", split="random")
    assert ds.item_table.columns.tolist() == ["item_id", "title"]
    assert ds.item_table["item_id"].tolist() == ds.item_ids.tolist()
    assert ds.item_table["title"].tolist() == ["Four", "", "Thirty", ""]
    save_dataset(ds, tmp_path / "ds")
    assert (tmp_path / "ds" / "items.tsv").is_file()
    back = load_dataset(tmp_path / "ds")
    pd.testing.assert_frame_equal(back.item_table, ds.item_table, check_dtype=False)


def test_item_table_refuses_tabs_and_line_breaks():
    items = pd.DataFrame({"item": [4], "title": ["two\nlines"]})
    with pytest.raises(DataError, match="column 'title' of item '4' has a tab or line break"):
        Dataset.from_frame(frame(), items=items, user_col="user", item_col="item", split="random")


def test_datasets_saved_before_item_tables_still_load(tmp_path, make_dataset):
    ds = make_dataset()
    save_dataset(ds, tmp_path / "ds")
    meta_path = tmp_path / "ds" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["has_item_table"]  # as written before
    meta_path.write_text(json.dumps(meta))
    back = load_dataset(tmp_path / "ds")
    assert back.item_table is None and back.checksums() == ds.checksums()


def test_path_is_set_by_load_and_save_and_kept_out_of_repr(tmp_path, make_dataset):
    ds = make_dataset()
    assert ds.path is None
    save_dataset(ds, tmp_path / "ds")
    assert ds.path == (tmp_path / "ds").resolve()
    back = load_dataset(tmp_path / "ds")
    assert back.path == (tmp_path / "ds").resolve() and str(tmp_path) not in repr(back)


def test_repr_is_one_short_line(make_dataset):
    ds = make_dataset(n_users=3, n_items=5, per_user=(3, 3), modalities={"text": 8, "kg": 4})
    ds.info.update(split="random:8:1:1", seed=2022)
    assert repr(ds) == (
        "Dataset(3 users, 5 items, 9 interactions: train 3 / valid 3 / test 3; "
        "modalities text (8), kg (4); split random:8:1:1 seed 2022)"
    )


def test_real_repr(shared_data):
    ds = import_dataset("mmssl", shared_data / "mmssl")
    text = repr(ds)
    assert text.startswith("Dataset(943 users, 1682 items, 100000 interactions: train 80024 /")
    assert "modalities kg (64), text (384)" in text and len(text) < 200


def test_planted_popularity_skews_each_clusters_draws_like_zipf():
    from mmssl.data.synthetic import planted_dataset

    flat = planted_dataset(4000, 200, 4000, n_clusters=4, in_cluster=1.0, seed=1)
    zipf = planted_dataset(4000, 200, 4000, n_clusters=4, in_cluster=1.0, popularity=1.0, seed=1)
    counts = np.bincount(zipf.items, minlength=200)
    # item j of a cluster (ids c, c + 4, ...) has weight 1 / (j + 1): the first beat the tenth
    assert (counts[:4] > 3 * counts[36:40]).all()
    assert np.bincount(flat.items, minlength=200).max() < 2 * counts[:4].min()
