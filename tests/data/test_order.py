"""Locality orders (mmssl.data.order) and ``mmssl data reorder``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmssl.cli import main
from mmssl.data.coldsplit import hold_out_items, load_cold_items, save_with_cold_items
from mmssl.data.dataset import load_dataset, save_dataset
from mmssl.data.order import locality_order, reorder, reorder_for_locality
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import DataError

CLUSTERS = 8


@pytest.fixture(scope="module")
def planted():
    # items of cluster c are c, c + 8, ...: the generator's numbering interleaves the clusters
    return planted_dataset(n_users=1600, n_items=800, n_interactions=24000, n_clusters=CLUSTERS,
                           seed=3)


def changes(labels: np.ndarray) -> int:
    return int((np.diff(labels) != 0).sum())


def test_the_order_puts_each_planted_cluster_together(planted):
    train = planted.matrix("train")
    user_order, item_order = locality_order(train)
    item_cluster = np.arange(planted.n_items) % CLUSTERS
    assert changes(item_cluster) == planted.n_items - 1  # every neighbour of another cluster
    assert changes(item_cluster[item_order]) < 0.05 * planted.n_items
    # a user's cluster: the one most of its training items are in
    user_cluster = np.asarray([np.bincount(item_cluster[train[u].indices], minlength=CLUSTERS).argmax()
                               for u in range(planted.n_users)])
    assert changes(user_cluster) > 0.7 * planted.n_users
    assert changes(user_cluster[user_order]) < 0.1 * planted.n_users


def test_orders_are_seeded_permutations_that_place_nodes_without_edges(planted):
    train = planted.matrix("train").tolil()
    train[5, :] = 0  # a user and an item without training interactions
    train[:, 7] = 0
    train = train.tocsr()
    train.eliminate_zeros()
    a = locality_order(train, seed=1)
    b = locality_order(train, seed=1)
    for first, second, n in zip(a, b, train.shape):
        assert np.array_equal(first, second)
        assert np.array_equal(np.sort(first), np.arange(n))
    with pytest.raises(ValueError, match="1 to 62"):
        locality_order(train, dim=63)


def test_reorder_keeps_the_data_under_new_numbers():
    ds = planted_dataset(n_users=300, n_items=200, n_interactions=5000, seed=5)
    ds.timestamps = np.arange(len(ds.users), dtype=np.float64)
    ds.item_table = pd.DataFrame({"item_id": ds.item_ids, "title": [f"t{i}" for i in range(ds.n_items)]})
    out, user_order = reorder_for_locality(ds)
    assert not np.array_equal(out.items, ds.items)

    def keyed(d):
        return sorted(zip(d.user_ids[d.users], d.item_ids[d.items], d.split, d.timestamps))
    assert keyed(out) == keyed(ds)
    position = {item: k for k, item in enumerate(ds.item_ids)}
    moved = np.asarray([position[i] for i in out.item_ids])
    for m, f in ds.features.items():
        assert np.array_equal(out.features[m], f[moved])
    assert list(out.item_table["item_id"]) == list(out.item_ids)
    assert list(out.item_table["title"]) == [f"t{k}" for k in moved]
    assert np.array_equal(out.user_ids, ds.user_ids[user_order])
    assert out.info["order"]["kind"] == "locality" and "renumbered" in out.info["notes"][-1]
    for split in ("train", "valid", "test"):
        assert out.split_size(split) == ds.split_size(split)


def test_reorder_rejects_an_order_that_is_not_a_permutation(planted):
    items = np.arange(planted.n_items)
    with pytest.raises(DataError, match="user order is not a permutation"):
        reorder(planted, np.zeros(planted.n_users, dtype=np.int64), items)
    with pytest.raises(DataError, match="item order is not a permutation"):
        reorder(planted, np.arange(planted.n_users), items[:-1])


def test_reorder_command_renumbers_the_cold_part_with_the_same_users(tmp_path, capsys):
    ds = planted_dataset(n_users=120, n_items=80, n_interactions=2000, seed=2)
    warm, cold = hold_out_items(ds, 0.1, seed=4)
    save_with_cold_items(warm, cold, tmp_path / "src")
    assert main(["data", "reorder", str(tmp_path / "src"), str(tmp_path / "dest")]) == 0
    assert "locality order in" in capsys.readouterr().out
    new_warm, new_cold = load_dataset(tmp_path / "dest"), load_cold_items(tmp_path / "dest")
    assert np.array_equal(new_warm.user_ids, new_cold.user_ids)
    for before, after in ((warm, new_warm), (cold, new_cold)):
        assert (sorted(zip(after.user_ids[after.users], after.item_ids[after.items]))
                == sorted(zip(before.user_ids[before.users], before.item_ids[before.items])))


def test_reorder_command_errors_are_one_line(tmp_path, capsys):
    save_dataset(planted_dataset(n_users=40, n_items=30, n_interactions=400), tmp_path / "src")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("x")
    for argv, message in (
        (["--dim", "0"], "--dim 0: expected 1 to 62"),
        (["--iterations", "0"], "--iterations 0: expected at least 1"),
        ([], "destination exists"),
    ):
        assert main(["data", "reorder", str(tmp_path / "src"), str(tmp_path / "dest"), *argv]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert (tmp_path / "dest" / "keep.txt").read_text() == "x"  # nothing replaced
    assert main(["data", "reorder", str(tmp_path / "nowhere"), str(tmp_path / "d2")]) != 0
    assert "nowhere" in capsys.readouterr().err


def test_training_a_large_unordered_catalogue_logs_a_reorder_hint(planted, tmp_path, monkeypatch):
    import json

    import mmssl.data.order as order
    from mmssl import runtime
    from mmssl.api import train

    assert "mmssl data reorder" in order.order_hint(planted, 500)  # the planted data have 800 items
    ordered, _ = reorder_for_locality(planted)
    assert order.order_hint(ordered, 500) is None  # already reordered: no hint
    assert order.order_hint(planted, 800) is None  # at the threshold: no hint
    monkeypatch.setattr(runtime, "LARGE_CATALOGUE_ITEMS", 500)  # the trainer's threshold
    notes = {}
    for name, ds in (("plain", planted), ("ordered", ordered)):
        out = tmp_path / name
        train("lightgcn", save_dataset(ds, tmp_path / f"data-{name}"), out,
              overrides=["epochs=1", "batch_size=2048", "threads=1"], progress=False)
        records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        notes[name] = [r["text"] for r in records if r.get("event") == "note"]
    assert any("mmssl data reorder" in n for n in notes["plain"])
    assert not any("mmssl data reorder" in n for n in notes["ordered"])
