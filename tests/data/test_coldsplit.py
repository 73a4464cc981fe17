"""Items tables from importers (RecBole .item, --items) and cold-item splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmssl.cli import main
from mmssl.data.coldsplit import hold_out_items, load_cold_items, save_with_cold_items
from mmssl.data.dataset import load_dataset
from mmssl.data.formats import import_dataset
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import DataError


def test_recbole_item_file_becomes_the_items_table(sources):
    (sources["recbole"] / "tiny.item").write_text(
        "item_id:token\tmovie_title:token_seq\n1000\tFirst film\n999\tSecond film\n")
    ds = import_dataset("recbole", sources["recbole"], split="random:8:1:1")
    table = ds.item_table.set_index("item_id")
    assert list(ds.item_table["item_id"]) == list(ds.item_ids)
    assert table.loc["1000", "movie_title"] == "First film"
    assert table.loc["995", "movie_title"] == ""  # an item without a row gets empty cells


def test_items_option_reads_a_csv_table(sources, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n1000,A\n998,C\n")
    ds = import_dataset("csv", sources["csv"], user_col="user", item_col="item", split_col="part",
                        items=str(items))
    assert dict(zip(ds.item_table["item_id"], ds.item_table["title"]))["998"] == "C"
    items.write_text("film,title\n1000,A\n")
    with pytest.raises(DataError, match="no item id column"):
        import_dataset("csv", sources["csv"], user_col="user", item_col="item",
                       split_col="part", items=str(items))


def test_hold_out_items_removes_them_entirely_and_keeps_every_interaction():
    ds = planted_dataset(n_users=50, n_items=40, n_interactions=800, seed=1)
    ds.item_table = pd.DataFrame({"item_id": ds.item_ids, "title": [f"t{i}" for i in ds.item_ids]})
    warm, cold = hold_out_items(ds, 0.25, seed=7)
    assert cold.n_items == 10 and warm.n_items == 30
    assert not set(warm.item_ids) & set(cold.item_ids)
    assert len(warm.users) + len(cold.users) == len(ds.users)
    assert (cold.split == 2).all() and np.array_equal(cold.user_ids, ds.user_ids)
    pairs = {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(ds.users, ds.items)}
    again = {(warm.user_ids[u], warm.item_ids[i]) for u, i in zip(warm.users, warm.items)}
    again |= {(cold.user_ids[u], cold.item_ids[i]) for u, i in zip(cold.users, cold.items)}
    assert again == pairs
    for part in (warm, cold):
        for m, f in part.features.items():
            index = [ds.item_index(i) for i in part.item_ids]
            np.testing.assert_array_equal(f, np.asarray(ds.features[m])[index])
        assert list(part.item_table["title"]) == [f"t{i}" for i in part.item_ids]
    assert warm.info["cold_items"]["items"] == 10
    again_warm, _ = hold_out_items(ds, 0.25, seed=7)
    assert np.array_equal(again_warm.item_ids, warm.item_ids)  # seeded
    assert not np.array_equal(hold_out_items(ds, 0.25, seed=8)[0].item_ids, warm.item_ids)
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(DataError, match="--cold-items"):
            hold_out_items(ds, bad)


def test_cold_part_is_saved_beside_the_warm_dataset_and_read_back(tmp_path):
    ds = planted_dataset(n_users=30, n_items=20, n_interactions=300, seed=2)
    warm, cold = hold_out_items(ds, 0.2)
    save_with_cold_items(warm, cold, tmp_path / "ds")
    for back, part in ((load_dataset(tmp_path / "ds"), warm), (load_cold_items(tmp_path / "ds"), cold)):
        assert back.checksums() == part.checksums()
        assert np.array_equal(back.item_ids, part.item_ids)
    with pytest.raises(DataError, match="--cold-items FRACTION"):
        load_cold_items(tmp_path / "ds" / "cold")


def test_import_with_cold_items_on_the_command_line(sources, tmp_path, capsys):
    dest = tmp_path / "cold-ds"
    assert main(["data", "import", "--format", "mmrec", str(sources["mmrec"]), str(dest),
                 "--cold-items", "0.34", "--seed", "3"]) == 0
    assert "held out" in capsys.readouterr().out
    assert load_cold_items(dest).n_items == 2 and load_dataset(dest).n_items == 4


@pytest.mark.real_data
def test_ml100k_mm_with_a_tenth_of_the_items_held_out(shared_data, tmp_path):
    dest = tmp_path / "ml100k-cold"
    assert main(["data", "import", "--format", "recbole", str(shared_data / "raw"), str(dest),
                 "--split", "random:8:1:1", "--seed", "2022", "--cold-items", "0.1",
                 "--feature", f"text={shared_data / 'mmrec' / 'text_feat.npy'}"]) == 0
    warm, cold = load_dataset(dest), load_cold_items(dest)
    assert (warm.n_items, cold.n_items, len(cold.users)) == (1514, 168, 11756)
    assert warm.item_table.columns.tolist() == ["item_id", "movie_title", "release_year", "class"]
    assert cold.item_table["movie_title"].str.len().gt(0).all()
