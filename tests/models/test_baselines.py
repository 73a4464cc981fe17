"""The MMRec baselines (BPR, LightGCN, VBPR, LATTICE, FREEDOM, BM3) and their sparse helpers:
gradients reach every parameter, no NaN with all-zero feature rows, any number of modalities,
and each model learns a planted two-cluster preference better than a random ranking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import mmssl
from mmssl.data.dataset import Dataset
from mmssl.models import create_model, get_model_class
from mmssl.models.base import Batch
from mmssl.models.freedom import modality_graph_weights
from mmssl.models.graph import (
    SparseGraph,
    bipartite_adjacency,
    coalesce,
    csr_product,
    knn_edges,
    sparse_product,
    sym_normalise,
)

MODELS = ["bpr", "lightgcn", "vbpr", "lattice", "freedom", "bm3"]
MULTIMODAL = ["vbpr", "lattice", "freedom", "bm3"]
ZERO_ITEM = 3  # its kg row is all zero


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def random_dataset(make_dataset, modalities=None) -> Dataset:
    """60 users, 40 items, text (8) and kg (3) features; item 3 has an all-zero kg row."""
    ds = make_dataset(n_users=60, n_items=40, per_user=(5, 12),
                      modalities={"text": 8, "kg": 3} if modalities is None else modalities, seed=3)
    if "kg" in ds.features:
        ds.features["kg"][ZERO_ITEM] = 0.0
    return ds


def planted_dataset(modalities=("text", "kg")) -> Dataset:
    """Two clusters: users 0-29 like items 0-19 only, users 30-59 items 20-39; 8 items each,
    the last one test and the one before valid. Features encode the cluster (plus noise);
    one kg row is all zero."""
    rng = np.random.default_rng(0)
    users, items, split = [], [], []
    for u in range(60):
        cluster = u // 30
        chosen = rng.choice(20, size=8, replace=False) + 20 * cluster
        users += [u] * 8
        items += chosen.tolist()
        split += [0] * 6 + [1, 2]
    sign = np.where(np.arange(40) < 20, 1.0, -1.0)[:, None]
    features = {
        "text": (np.hstack([sign, -sign, np.zeros((40, 6))]) + 0.3 * rng.standard_normal((40, 8))),
        "kg": sign * np.ones((40, 3)) + 0.3 * rng.standard_normal((40, 3)),
    }
    features["kg"][ZERO_ITEM] = 0.0
    return Dataset(users=np.array(users), items=np.array(items), split=np.array(split),
                   user_ids=np.array([f"u{u}" for u in range(60)]),
                   item_ids=np.array([f"i{i}" for i in range(40)]),
                   features={m: features[m].astype(np.float32) for m in modalities})


def build(name: str, ds: Dataset, **overrides):
    cls = get_model_class(name)
    torch.manual_seed(0)
    return create_model(name, ds, cls.Config(batch_size=64, **overrides))


def train_step(model, batch):
    """One optimisation step, with the optimisers the trainer would build (kept on the model)."""
    if not hasattr(model, "_test_optimizers"):
        opts = model.configure_optimizers()
        model._test_optimizers = {"adam": opts} if isinstance(opts, torch.optim.Optimizer) else opts
    return model.training_step(batch, model._test_optimizers)


def train_batch(ds: Dataset, size: int = 64, seed: int = 0) -> Batch:
    train = ds.matrix("train").tocoo()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(train.nnz, generator=g)[:size]
    users = torch.from_numpy(train.row).long()[pick]
    return Batch(users, torch.from_numpy(train.col).long()[pick],
                 torch.randint(ds.n_items, (len(pick),), generator=g))


def expected_random_recall(ds: Dataset, k: int) -> float:
    """Mean Recall@k of a uniformly random ranking of the items not seen in train or valid."""
    seen = (ds.matrix("train") + ds.matrix("valid")).tocsr()
    test = ds.matrix("test").tocsr()
    recalls = []
    for u in np.flatnonzero(np.diff(test.indptr)):
        candidates = ds.n_items - seen[u].nnz
        recalls.append(min(k, candidates) / candidates)
    return float(np.mean(recalls))


# ------------------------------------------------------------------ every model


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_finite_gradient_and_scores_are_finite(name, make_dataset):
    ds = random_dataset(make_dataset)
    model = build(name, ds)
    losses = model.loss(train_batch(ds))
    assert next(iter(losses)) == "loss"
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    model.eval()
    scores = model.scorer()(torch.arange(ds.n_users))
    assert scores.shape == (ds.n_users, ds.n_items)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", MODELS)
def test_train_step_updates_parameters_and_scorer_returns_a_fresh_tensor(name, make_dataset):
    ds = random_dataset(make_dataset)
    model = build(name, ds)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = train_batch(ds)
    model.on_epoch_start(0)
    first = train_step(model, batch)
    second = train_step(model, batch)
    for out in (first, second):
        assert next(iter(out)) == "loss"
        assert all(isinstance(v, float) and np.isfinite(v) for v in out.values())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    model.eval()
    scorer = model.scorer()
    users = torch.arange(5)
    scores = scorer(users)
    scores[:, 0] = float("-inf")  # the evaluator writes into it
    assert torch.isfinite(scorer(users)).all()


@pytest.mark.parametrize("name", MULTIMODAL)
def test_runs_on_a_single_modality(name, make_dataset):
    ds = random_dataset(make_dataset, modalities={"kg": 3})
    model = build(name, ds)
    losses = model.loss(train_batch(ds))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    model.on_epoch_start(0)
    train_step(model, train_batch(ds, seed=1))
    model.eval()
    assert torch.isfinite(model.scorer()(torch.arange(ds.n_users))).all()


@pytest.mark.parametrize("name", MULTIMODAL)
def test_runs_on_three_modalities(name, make_dataset):
    ds = random_dataset(make_dataset, modalities={"text": 8, "kg": 3, "image": 5})
    model = build(name, ds)
    model.on_epoch_start(0)
    train_step(model, train_batch(ds))
    model.eval()
    assert torch.isfinite(model.scorer()(torch.arange(ds.n_users))).all()


# MMRec's embedding-norm loss is not squared, so its pull on each row grows as 1/sqrt(B):
# at the tiny batch here (32, not 2048) its weight is scaled by sqrt(32 / 2048) = 1/8.
PLANTED_OVERRIDES = {"bpr": {"reg_weight": 1.0 / 8}, "vbpr": {"reg_weight": 1.0 / 8}}


@pytest.mark.parametrize("name", MODELS)
def test_learns_a_planted_cluster_preference(name, tmp_path):
    ds = planted_dataset()
    metrics = mmssl.fit(name, ds, device="cpu", threads=1, seed=1, epochs=10, batch_size=32,
                        lr=0.01, ks=(10, 20), eval_batch_size=64, progress=False,
                        **PLANTED_OVERRIDES.get(name, {})).metrics
    random_recall = expected_random_recall(ds, 10)
    assert metrics["test"]["recall@10"] > random_recall + 0.2, (metrics["test"], random_recall)


def test_single_modality_model_learns_the_planted_clusters(tmp_path):
    ds = planted_dataset(modalities=("text",))
    metrics = mmssl.fit("freedom", ds, device="cpu", threads=1, seed=1, epochs=10, batch_size=32,
                        lr=0.01, ks=(10, 20), progress=False).metrics
    assert metrics["test"]["recall@10"] > expected_random_recall(ds, 10) + 0.2


def test_configs_carry_mmrec_defaults():
    from mmssl.config import RunConfig, build_config

    for name in MODELS:
        cls = get_model_class(name)
        config = cls.Config()
        run = build_config(RunConfig, cls.run_defaults)
        assert (config.embed_dim, config.batch_size, run.epochs, run.patience) == (64, 2048, 1000, 20)
        assert run.protocol == "standard"
        assert cls.sampling == "interaction"
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.lr = 1.0
    assert get_model_class("vbpr").Config().reg_weight == 1.0
    assert get_model_class("bpr").Config().reg_weight == 0.1  # not 1.0: that does not learn on sparse data (issue 14)
    assert get_model_class("lightgcn").Config().n_layers == 3
    assert get_model_class("lattice").Config().lr == 1e-4


# --------------------------------------------------------------- modality handling


def test_lattice_and_freedom_give_zero_feature_items_no_modality_edges(make_dataset):
    ds = random_dataset(make_dataset)
    kg = list(ds.features).index("kg")
    lattice = build("lattice", ds)
    rows, cols, values = lattice.fixed_edges[kg]
    assert ZERO_ITEM not in rows.tolist() and ZERO_ITEM not in cols.tolist()
    assert torch.isfinite(values).all()
    freedom = build("freedom", ds, modality_weights=(0.0, 1.0) if kg == 1 else (1.0, 0.0))
    graph = freedom.item_graph.csr.to_dense()
    assert graph[ZERO_ITEM].abs().sum() == 0 and graph[:, ZERO_ITEM].abs().sum() == 0


def test_freedom_modality_weights_generalise_mmrec():
    assert modality_graph_weights(["kg", "text"], 0.9) == pytest.approx([0.1, 0.9])
    assert modality_graph_weights(["text"], 0.9) == [1.0]
    assert modality_graph_weights(["image", "audio"], 0.9) == [0.5, 0.5]
    assert modality_graph_weights(["text", "image", "kg"], 0.9) == pytest.approx([0.9, 0.05, 0.05])
    assert modality_graph_weights(["a", "b"], 0.9, (0.3, 0.7)) == [0.3, 0.7]


# ---------------------------------------------------------------- sparse helpers


def test_knn_edges_match_a_dense_reference_and_skip_zero_rows():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((30, 5)).astype(np.float32)
    f[[4, 17]] = 0.0
    rows, cols, sims = knn_edges(torch.from_numpy(f), k=4, chunk_rows=7)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    sim = unit @ unit.T
    sim[:, [4, 17]] = -np.inf
    for i in set(range(30)) - {4, 17}:
        expected = set(np.argsort(-sim[i])[:4].tolist())
        assert set(cols[rows == i].tolist()) == expected
        assert i in expected  # itself first, as in MMRec
    assert not ({4, 17} & set(rows.tolist() + cols.tolist()))
    np.testing.assert_allclose(sims.numpy(), sim[rows.numpy(), cols.numpy()], rtol=1e-5)


def test_knn_edges_with_fewer_valid_items_than_k():
    f = torch.zeros(5, 3)
    f[1] = torch.tensor([1.0, 0, 0])
    f[2] = torch.tensor([0.0, 1, 0])
    rows, cols, _ = knn_edges(f, k=10)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_sparse_product_gradients_match_dense():
    g = torch.Generator().manual_seed(0)
    rows = torch.tensor([0, 0, 1, 3, 3, 3])
    cols = torch.tensor([1, 4, 0, 0, 2, 4])
    values = torch.rand(6, generator=g, requires_grad=True)
    dense = torch.rand(5, 3, generator=g, requires_grad=True)
    out = sparse_product(rows, cols, values, dense, 4)
    weights = torch.rand(4, 3, generator=g)
    (out * weights).sum().backward()
    v2 = values.detach().clone().requires_grad_()
    x2 = dense.detach().clone().requires_grad_()
    matrix = torch.zeros(4, 5).index_put((rows, cols), v2)
    ((matrix @ x2) * weights).sum().backward()
    torch.testing.assert_close(out, matrix @ x2)
    torch.testing.assert_close(values.grad, v2.grad)
    torch.testing.assert_close(dense.grad, x2.grad)


def test_csr_product_writes_every_row_of_its_uninitialised_output(monkeypatch):
    """csr_product skips the zero fill of ``s @ x``: every row of the fresh output, empty rows
    of s included, must still be written. Fresh memory is made NaN here so a row left
    unwritten shows."""
    m = sp.random(40, 30, density=0.1, format="csr", dtype=np.float32, random_state=0)
    m[[3, 17, 39]] = 0  # empty rows, the last one too
    m.eliminate_zeros()
    s = SparseGraph(m).csr
    x = torch.rand(30, 5, generator=torch.Generator().manual_seed(0))
    real_new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty",
                        lambda self, *size, **kw: real_new_empty(self, *size, **kw).fill_(float("nan")))
    out = csr_product(s, x)
    assert torch.equal(out, s @ x)  # the same bits as the zero-filled product
    assert float(out[[3, 17, 39]].abs().sum()) == 0.0


def test_bf16_matmul_rounds_once_and_matmul_stays_fp32_even_under_autocast():
    """``bf16_matmul``: G @ X (and its backward, G^T @ grad) is the product of the
    bfloat16-rounded G and X, summed in float32 and rounded once, returned as float32.
    ``G @ X`` is the float32 CSR product, bit for bit, also under bfloat16 autocast. Empty rows
    give zeros either way."""
    m = sp.random(50, 30, density=0.15, format="csr", dtype=np.float32, random_state=1)
    m[[4, 49]] = 0
    m.eliminate_zeros()
    graph, dense = SparseGraph(m), torch.from_numpy(m.toarray())
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    plain = graph @ x
    assert plain.dtype == torch.float32 and torch.equal(plain, csr_product(graph.csr, x.detach()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(graph @ x, plain)
    low = graph.bf16_matmul(x)
    assert low.dtype == torch.float32
    assert torch.equal(low, low.bfloat16().float())  # rounded to bfloat16 once
    want = dense.bfloat16().float() @ x.detach().bfloat16().float()
    torch.testing.assert_close(low, want, rtol=2**-8, atol=1e-6)
    assert float(low[[4, 49]].abs().sum()) == 0.0
    grad = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    low.backward(grad)
    assert x.grad.dtype == torch.float32 and torch.equal(x.grad, x.grad.bfloat16().float())
    torch.testing.assert_close(x.grad, dense.bfloat16().float().T @ grad.bfloat16().float(),
                               rtol=2**-8, atol=1e-6)
    assert plain.sub(low).abs().max() > 0  # bfloat16 really ran


def test_coalesce_sums_duplicates_and_sym_normalise_guards_empty_rows():
    rows, cols, values = coalesce(torch.tensor([2, 0, 2]), torch.tensor([1, 1, 1]),
                                  torch.tensor([1.0, 2.0, 3.0]), 3)
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 1] and values.tolist() == [2.0, 4.0]
    normed = sym_normalise(torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2]),
                           torch.tensor([1.0, 3.0, -1.0]), 3)
    # row 0 sums to 4, row 1 is empty (D^-1/2 = 0), row 2 sums below zero (D^-1/2 = 0)
    assert normed.tolist() == [0.25, 0.0, 0.0]


def test_rows_product_is_bit_identical_to_the_rows_of_the_full_product():
    """SparseGraph.rows_product: (G @ X)[rows] and X's gradient from those rows of G only, the
    same bits (MMSSL's forward for a batch relies on it); rows with no entries give zeros."""
    m = sp.random(300, 50, density=0.05, format="csr", dtype=np.float32, random_state=0)
    m[7] = 0  # an empty row
    graph = SparseGraph(m)
    rows = torch.tensor([0, 7, 8, 120, 299])
    weights = torch.rand(len(rows), 6)
    grads = []
    for by_rows in (False, True):
        x = torch.rand(50, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
        y = graph.rows_product(rows, x) if by_rows else (graph @ x)[rows]
        (y * weights).sum().backward()
        grads.append((y.detach(), x.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert float(grads[1][0][1].abs().sum()) == 0.0
    np.testing.assert_allclose(grads[1][0].numpy(), (m @ x.detach().numpy())[rows.numpy()], rtol=1e-5)


def test_sum_of_squares_has_the_values_and_gradient_of_square_sum():
    from mmssl.models.losses import sum_of_squares

    x = torch.randn(200, 16, requires_grad=True)
    expected = x.square().sum()
    expected.backward(torch.tensor(0.3))
    grad, x.grad = x.grad, None
    value = sum_of_squares(x)
    value.backward(torch.tensor(0.3))
    assert torch.equal(value, expected) and torch.equal(x.grad, grad)


def test_bipartite_adjacency_normalisations():
    train = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))
    sym = bipartite_adjacency(train, "sym").toarray()
    assert sym.shape == (5, 5)
    assert sym[0, 2 + 1] == pytest.approx(1 / np.sqrt(2 * 2))  # user 0 (degree 2), item 1 (degree 2)
    np.testing.assert_allclose(sym, sym.T)
    left = bipartite_adjacency(train, "left_self_loops").toarray()
    np.testing.assert_allclose(left.sum(axis=1), 1.0, rtol=1e-6)
    assert left[0, 0] == pytest.approx(1 / 3)
    graph = SparseGraph(sp.csr_matrix(sym))
    x = torch.rand(5, 2, requires_grad=True)
    (graph @ x).sum().backward()
    torch.testing.assert_close(x.grad, torch.from_numpy(sym.T @ np.ones((5, 2), dtype=np.float32)))
