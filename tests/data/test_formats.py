"""Importers and exporters on tiny hand-made sources and, when present, the real ml100k-mm."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from mmssl.data.dataset import load_dataset, save_dataset
from mmssl.data.formats import export_dataset, import_dataset
from mmssl.errors import DataError, WriteError


def pairs(ds, code):
    mask = ds.split == code
    return sorted(zip(ds.users[mask].tolist(), ds.items[mask].tolist()))


def expected_pairs(tiny, code):
    return sorted((u, i) for u, i, c in tiny.rows() if c == code)


# ---------------------------------------------------------------------------- mmssl
def test_mmssl_import_keeps_indices_and_never_unpickles_train_mat(tiny, sources):
    ds = import_dataset("mmssl", sources["mmssl"])  # train_mat holds garbage bytes
    assert (ds.n_users, ds.n_items) == (4, tiny.n_items)
    for code in range(3):
        assert pairs(ds, code) == expected_pairs(tiny, code)
    assert ds.user_ids.tolist() == ["0", "1", "2", "3"]
    assert ds.item_ids.tolist() == [str(i) for i in range(tiny.n_items)]
    assert ds.modalities == {"kg": 2, "text": 3}
    assert all(f.dtype == np.float32 for f in ds.features.values())
    np.testing.assert_array_equal(ds.features["text"], tiny.features()["text"])
    assert ds.info["source_format"] == "mmssl"
    assert ds.info["split"].startswith("given")
    assert ds.info["seed"] is None
    assert ds.timestamps is None


def test_mmssl_n_items_comes_from_feature_rows(sources):
    np.save(sources["mmssl"] / "text_feat.npy", np.ones((10, 3), dtype=np.float32))
    np.save(sources["mmssl"] / "kg_feat.npy", np.ones((10, 2), dtype=np.float32))
    ds = import_dataset("mmssl", sources["mmssl"])
    assert ds.n_items == 10


def test_mmssl_without_features_uses_max_item_index(tiny, sources):
    for f in sources["mmssl"].glob("*_feat.npy"):
        f.unlink()
    ds = import_dataset("mmssl", sources["mmssl"])
    assert ds.n_items == tiny.n_items and ds.modalities == {}


def test_mmssl_feature_flag_replaces_discovery(sources):
    ds = import_dataset("mmssl", sources["mmssl"], features=["words=text_feat.npy"])
    assert ds.modalities == {"words": 3}


def test_mmssl_duplicates_are_removed_and_reported(tiny, sources):
    (sources["mmssl"] / "train.json").write_text(
        '{"0": [0, 1, 2, 2], "1": [1, 2, 3], "2": [2, 3, 4], "3": [0, 5], "0": [1]}'
    )
    ds = import_dataset("mmssl", sources["mmssl"])
    assert ds.info["counts"]["duplicates_removed"] == 2
    assert any("duplicate" in n for n in ds.info["notes"])
    assert pairs(ds, 0) == expected_pairs(tiny, 0)


# ---------------------------------------------------------------------------- mmrec
def test_mmrec_import_equals_mmssl_import(sources):
    a = import_dataset("mmssl", sources["mmssl"])
    b = import_dataset("mmrec", sources["mmrec"])
    assert a.checksums() == b.checksums()
    assert b.timestamps is not None and b.info["source_format"] == "mmrec"


def test_mmrec_column_flags(tiny, sources):
    path = sources["mmrec"] / "tiny.inter"
    text = path.read_text().replace("userID\titemID", "uid\tiid").replace("x_label", "part")
    path.write_text(text)
    ds = import_dataset("mmrec", sources["mmrec"], user_col="uid", item_col="iid", split_col="part")
    assert pairs(ds, 2) == expected_pairs(tiny, 2)


def test_mmrec_explicit_feature_flags(sources):
    ds = import_dataset("mmrec", sources["mmrec"], features={"text": "text_feat.npy"})
    assert ds.modalities == {"text": 3}


# --------------------------------------------------------------------------- recbole
def test_recbole_maps_ids_in_numeric_order_and_splits(tiny, sources):
    ds = import_dataset("recbole", sources["recbole"], split="random:8:1:1", seed=3)
    assert ds.user_ids.tolist() == ["100", "101", "102", "103"]
    # items 1000 - i: ascending original id reverses the index (995 is index 0)
    assert ds.item_ids.tolist() == [str(995 + k) for k in range(tiny.n_items)]
    assert len(ds.users) == len(tiny.rows())
    assert ds.info["split"] == "random:8:1:1" and ds.info["seed"] == 3
    assert ds.timestamps is not None
    assert ds.split_size("test") == 4  # every user has >= 3 interactions
    assert ds.split_size("valid") == 4


def test_recbole_numeric_not_string_order(tmp_path):
    d = tmp_path / "ids"
    d.mkdir()
    rows = [(9, 1), (10, 2), (100, 3), (9, 2), (10, 3), (100, 1), (9, 3), (10, 1), (100, 2)]
    body = "".join(f"{u}\t{i}\n" for u, i in rows)
    (d / "ids.inter").write_text("user_id:token\titem_id:token\n" + body)
    ds = import_dataset("recbole", d, split="random:1:1:1")
    assert ds.user_ids.tolist() == ["9", "10", "100"]


def test_recbole_string_ids_sort_as_strings(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    rows = [("b", "x"), ("a", "y"), ("a10", "x"), ("a", "x"), ("b", "y"), ("a10", "y"), ("a", "z")]
    body = "".join(f"{u}\t{i}\n" for u, i in rows)
    (d / "s.inter").write_text("user_id:token\titem_id:token\n" + body)
    ds = import_dataset("recbole", d, split="random:1:1:1")
    assert ds.user_ids.tolist() == ["a", "a10", "b"]
    assert ds.item_ids.tolist() == ["x", "y", "z"]


def test_recbole_threshold_and_name(tiny, sources):
    (sources["recbole"] / "other.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    ds = import_dataset("recbole", sources["recbole"], split="random", threshold=3)
    ratings = np.array([1 + n % 5 for n in range(len(tiny.rows()))])
    assert len(ds.users) == int((ratings >= 3).sum())
    assert ds.info["counts"]["below_threshold"] == int((ratings < 3).sum())
    with pytest.raises(DataError, match="several .inter"):
        import_dataset(
            "recbole", sources["recbole"].rename(sources["recbole"].parent / "x"), split="random"
        )


def test_recbole_user_time_split(sources):
    ds = import_dataset("recbole", sources["recbole"], split="user-time:8:1:1")
    for u in range(ds.n_users):
        mine = ds.users == u
        latest = ds.timestamps[mine].max()
        assert ds.split[mine][ds.timestamps[mine] == latest].tolist() == [2]


def test_recbole_kcore_reindexes_and_subsets_features(tiny, sources):
    # 12 items of features in ascending original-id order would not fit: use a table instead
    table = sources["recbole"] / "feat.csv"
    table.write_text(
        "item_id,a,b\n" + "".join(f"{995 + k},{k},{-k}\n" for k in range(tiny.n_items))
    )
    ds = import_dataset(
        "recbole", sources["recbole"], split="random", kcore=3, features=["t=feat.csv"]
    )
    counts_u = np.bincount(ds.users)
    counts_i = np.bincount(ds.items, minlength=ds.n_items)
    assert counts_u.min() >= 3 and counts_i.min() >= 3
    assert ds.info["kcore"] == 3
    for idx, original in enumerate(ds.item_ids):
        k = int(original) - 995
        assert ds.features["t"][idx].tolist() == [k, -k]


# ------------------------------------------------------------------------------- csv
def test_csv_with_split_column(tiny, sources):
    ds = import_dataset(
        "csv", sources["csv"], user_col="user", item_col="item", split_col="part", time_col="time"
    )
    index_of = {i: tiny.n_items - 1 - i for i in range(tiny.n_items)}  # 1000 - i, ascending
    for code in range(3):
        assert pairs(ds, code) == sorted((u, index_of[i]) for u, i in expected_pairs(tiny, code))
    assert ds.info["split"] == "given (column part)"


def test_csv_numeric_split_column_and_tsv(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("user_id\titem_id\ts\n" + "a\tp\t0\na\tq\t1\nb\tp\t2\nb\tq\t0\n")
    ds = import_dataset("csv", path, split_col="s")
    assert ds.split.tolist() == [0, 1, 2, 0]


def test_csv_needs_a_split(sources):
    with pytest.raises(DataError, match="not split: give --split"):
        import_dataset("csv", sources["csv"], user_col="user", item_col="item")


def test_csv_global_time_split_with_dates(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "user_id,item_id,when\n"
        "1,1,2020-01-01\n1,2,2020-02-01\n2,1,2020-03-01\n2,2,2020-01-15\n1,3,2020-03-05\n"
    )
    ds = import_dataset("csv", path, time_col="when", split="global-time:2020-02-01:2020-03-01")
    assert ds.split.tolist() == [0, 1, 2, 0, 2]


def test_parquet_import(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet support needs pyarrow")
    import pandas as pd

    path = tmp_path / "x.parquet"
    pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 3],
            "item_id": [5, 6, 5, 6, 5, 6],
            "split": ["train", "test", "train", "valid", "train", "test"],
        }
    ).to_parquet(path)
    ds = import_dataset("csv", path, split_col="split")
    assert ds.user_ids.tolist() == ["1", "2", "3"] and ds.split_size("valid") == 1


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path):
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        path = tmp_path / "x.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(DataError, match="needs pyarrow"):
            import_dataset("csv", path, split="random")
    else:
        pytest.skip("pyarrow is installed")


# -------------------------------------------------------------------------- features
def test_feature_table_fills_missing_items_with_zeros(tiny, sources):
    table = sources["mmssl"] / "img.tsv"
    table.write_text("item_id\tv1\tv2\n0\t1.5\t2\n3\t-1\t0.25\n99\t7\t7\n")
    ds = import_dataset("mmssl", sources["mmssl"], features=["img=img.tsv"])
    f = ds.features["img"]
    assert f.dtype == np.float32 and f.shape == (tiny.n_items, 2)
    assert f[0].tolist() == [1.5, 2.0] and f[3].tolist() == [-1.0, 0.25]
    assert not f[[1, 2, 4, 5]].any()
    notes = " ".join(ds.info["notes"])
    assert "4 items without a row" in notes and "1 rows" in notes


def test_feature_table_custom_id_column(tiny, sources):
    table = sources["mmssl"] / "t.csv"
    table.write_text("movie,x\n" + "".join(f"{i},{i}\n" for i in range(tiny.n_items)))
    ds = import_dataset("mmssl", sources["mmssl"], features=["t=t.csv"], feature_id_col="movie")
    assert ds.features["t"][:, 0].tolist() == list(range(tiny.n_items))


def test_npy_feature_for_token_source_follows_sorted_ids(tiny, sources):
    rows = np.arange(tiny.n_items, dtype=np.float64)[:, None] * [1.0, 2.0]
    np.save(sources["recbole"] / "f.npy", rows)
    ds = import_dataset("recbole", sources["recbole"], split="random", features={"f": "f.npy"})
    assert ds.features["f"].dtype == np.float32
    assert ds.features["f"][:, 0].tolist() == list(range(tiny.n_items))


# -------------------------------------------------------------------------- exporters
def test_export_mmssl_round_trip(tmp_path, make_dataset):
    ds = make_dataset()
    dest = export_dataset(ds, "mmssl", tmp_path / "out")
    back = import_dataset("mmssl", dest)
    assert back.checksums() == ds.checksums()
    test = json.loads((dest / "test.json").read_text())
    assert all(v == sorted(v) for v in test.values())
    with open(dest / "train_mat", "rb") as fh:  # our own file, written just above
        train_mat = pickle.load(fh)
    assert sp.isspmatrix_csr(train_mat) and train_mat.shape == (ds.n_users, ds.n_items)
    assert train_mat.nnz == ds.split_size("train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_mmrec_round_trip(tmp_path, make_dataset):
    ds = make_dataset(timestamps=False)
    dest = export_dataset(ds, "mmrec", tmp_path / "toy")
    header = (dest / "toy.inter").read_text().splitlines()[0]
    assert header.split("\t") == ["userID", "itemID", "rating", "timestamp", "x_label"]
    assert (dest / "text_feat.npy").exists()
    back = import_dataset("mmrec", dest)
    assert back.checksums() == ds.checksums()


def test_export_refuses_existing_destination_and_overwrites_atomically(tmp_path, make_dataset):
    ds = make_dataset()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_text("old")
    with pytest.raises(DataError, match="destination exists"):
        export_dataset(ds, "mmssl", dest)
    assert (dest / "keep").exists()
    export_dataset(ds, "mmssl", dest, overwrite=True)
    assert not (dest / "keep").exists() and (dest / "train.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_failure_leaves_nothing(tmp_path, make_dataset, monkeypatch):
    ds = make_dataset()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("mmssl.data.export.np.save", boom)
    with pytest.raises(WriteError, match="disk full"):  # one line, not a traceback
        export_dataset(ds, "mmssl", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_unknown_formats(tmp_path, make_dataset):
    with pytest.raises(DataError, match="unknown format 'xml'"):
        import_dataset("xml", tmp_path)
    with pytest.raises(DataError, match="unknown export format"):
        export_dataset(make_dataset(), "recbole", tmp_path / "x")


# ------------------------------------------------------------------------ real data
def test_real_mmssl_and_mmrec_agree(shared_data):
    a = import_dataset("mmssl", shared_data / "mmssl")
    b = import_dataset("mmrec", shared_data / "mmrec")
    for ds in (a, b):
        assert (ds.n_users, ds.n_items) == (943, 1682)
        assert [ds.split_size(s) for s in ("train", "valid", "test")] == [80024, 9988, 9988]
        assert ds.modalities == {"kg": 64, "text": 384}
    assert a.checksums() == b.checksums()


def test_real_recbole_random_split_reproduces_shared_split(shared_data):
    ds = import_dataset("recbole", shared_data / "raw", split="random:8:1:1", seed=2022)
    assert len(ds.users) == 100_000
    assert (ds.n_users, ds.n_items) == (943, 1682)
    shared = import_dataset("mmssl", shared_data / "mmssl")
    assert ds.split_checksums() == shared.split_checksums()


def test_real_export_round_trip(shared_data, tmp_path):
    ds = import_dataset("mmssl", shared_data / "mmssl")
    save_dataset(ds, tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    back = import_dataset("mmssl", export_dataset(loaded, "mmssl", tmp_path / "out"))
    assert back.checksums() == ds.checksums()
    assert set(back.checksums()) == {
        "split:train",
        "split:valid",
        "split:test",
        "features:kg",
        "features:text",
    }


def test_kcore_on_a_dense_layout_keeps_original_indices_as_ids(tiny, sources):
    # the tiny data is a 3-core; add item 6 (one row more) seen only by a new user 4
    root = sources["mmssl"]
    train = json.loads((root / "train.json").read_text())
    (root / "train.json").write_text(json.dumps({**train, "4": [6, 0]}))
    feats = {
        n: np.vstack([f, np.full((1, f.shape[1]), 9, np.float32)])
        for n, f in tiny.features().items()
    }
    for name, f in feats.items():
        np.save(root / f"{name}_feat.npy", f)
    assert import_dataset("mmssl", root).n_items == tiny.n_items + 1
    ds = import_dataset("mmssl", root, kcore=3)
    assert ds.item_ids.tolist() == [str(i) for i in range(tiny.n_items)]
    assert ds.user_ids.tolist() == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(ds.features["text"], feats["text"][: tiny.n_items])
    assert ds.info["counts"]["kcore_removed"] == 2
    assert np.bincount(ds.items, minlength=ds.n_items).min() >= 3


def test_unusual_ids_survive_save_and_load(tmp_path):
    path = tmp_path / "odd.csv"
    ids = ["a\x85b", "c\u2028d", "e f", "g"]
    rows = [(u, i) for u in ids for i in ("x", "y", "z")]
    path.write_text("user_id,item_id\n" + "".join(f"{u},{i}\n" for u, i in rows))
    ds = import_dataset("csv", path, split="random")
    save_dataset(ds, tmp_path / "ds")
    assert load_dataset(tmp_path / "ds").user_ids.tolist() == sorted(ids)


def test_ids_with_line_breaks_are_rejected(tmp_path):
    path = tmp_path / "nl.csv"
    path.write_text('user_id,item_id\n"a\nb",x\nc,y\n')
    with pytest.raises(DataError, match="line 2: user_id 'a\\\\nb' has a line break"):
        import_dataset("csv", path, split="random")
