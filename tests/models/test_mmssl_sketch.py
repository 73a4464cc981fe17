"""MMSSL's sketched discriminator: the sketched rows equal the dense rows times P, the noise has
the dense noise's moments, and a sketch step never builds a (B, I) tensor."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import mmssl.models.mmssl.structure as mmssl_structure
from mmssl.config import build_config
from mmssl.data.synthetic import planted_dataset
from mmssl.models.mmssl import MMSSL, MMSSLConfig
from mmssl.models.mmssl.sketch import (
    GaussianSketch,
    RealRowSketcher,
    SignSketch,
    project_preferences,
    sketched_real_rows,
)
from mmssl.training.sampler import BprSampler

MODALITIES = [{"text": 12}, {"image": 20, "text": 8}, {"image": 20, "text": 8, "audio": 5}]


def sketch_model(ds, **values) -> MMSSL:
    torch.manual_seed(0)
    values = {"batch_size": 32, "discriminator": "sketch", "sketch_dim": 32, **values}
    return MMSSL(ds, build_config(MMSSLConfig, values))


def dense_preferences(p, q, observed):
    return F.normalize((p @ q.T) * (1 - observed), dim=1)


def observed_of(model, users):
    return model._observed(users)


@pytest.mark.parametrize("kind", ["sparse", "gaussian"])
def test_projected_preferences_equal_dense_rows_times_p(kind):
    gen = torch.Generator().manual_seed(0)
    n_items, d = 57, 6
    sketch = (SignSketch(n_items, 16, 3, seed=1) if kind == "sparse" else
              GaussianSketch(n_items, 16, seed=1)).double()
    p = torch.randn(9, d, generator=gen, dtype=torch.float64, requires_grad=True)
    q = torch.randn(n_items, d, generator=gen, dtype=torch.float64, requires_grad=True)
    observed = (torch.rand(9, n_items, generator=gen) < 0.2).double()
    observed[3] = 0  # a user with nothing observed
    rows, cols = observed.nonzero(as_tuple=True)
    dense = dense_preferences(p, q, observed) @ sketch.dense()
    fast = project_preferences(p, q, rows, cols, sketch)
    torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-12)
    weights = torch.randn(9, 16, generator=gen, dtype=torch.float64)
    g_dense = torch.autograd.grad((dense * weights).sum(), [p, q])
    g_fast = torch.autograd.grad((fast * weights).sum(), [p, q])
    for a, b in zip(g_fast, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_sign_sketch_has_distinct_buckets_per_item_and_unit_columns_on_average():
    sketch = SignSketch(1000, 64, 4, seed=3)
    buckets = sketch.buckets
    assert buckets.shape == (1000, 4)
    assert all(len(set(row.tolist())) == 4 for row in buckets)
    dense = sketch.dense()
    assert torch.allclose(dense.square().sum(1), torch.ones(1000))  # each item row has norm 1
    again = SignSketch(1000, 64, 4, seed=3)
    assert torch.equal(again.buckets, buckets) and torch.equal(again.signs, sketch.signs)


@pytest.mark.parametrize("modalities", MODALITIES)
@pytest.mark.parametrize("variant", ["official", "paper"])
def test_model_sketches_of_fake_and_real_rows_equal_dense_rows_times_p(variant, modalities):
    ds = planted_dataset(n_users=40, n_items=48, n_interactions=500, modalities=modalities,
                         zero_rows=3)
    model = sketch_model(ds, variant=variant, gumbel_scale=0.0).double()
    users = torch.tensor([0, 3, 3, 7, 39])
    out = model.forward()
    observed, rows, cols = observed_of(model, users)
    observed = observed.double()
    matrix = model.sketch.dense()
    for u_m, i_m in zip(out["user_modal"], out["item_modal"]):
        dense = dense_preferences(u_m[users], i_m, observed) @ matrix
        torch.testing.assert_close(project_preferences(u_m[users], i_m, rows, cols, model.sketch),
                                   dense, rtol=1e-9, atol=1e-11)
    # real rows, noise off: l2norm(softmax(R_u) + 100 sim(u*, i*)) @ P
    real = torch.softmax(observed, dim=1) + 100 * dense_preferences(out["user"][users], out["item"], observed)
    dense_real = F.normalize(real, dim=1) @ matrix
    fast_real = sketched_real_rows(out["user"][users], out["item"], rows, cols, ds.n_items,
                                   RealRowSketcher(model.sketch), 0.0, 100.0)
    torch.testing.assert_close(fast_real, dense_real, rtol=1e-9, atol=1e-11)


def test_sketched_noise_has_the_dense_noises_mean_and_covariance():
    """Monte Carlo, with a noise scale large enough to be measured (c = 0.2)."""
    n_items, dim, c, draws = 400, 8, 0.2, 4000
    sketch = GaussianSketch(n_items, dim, seed=2).double()
    matrix = sketch.dense()
    gen = torch.Generator().manual_seed(0)
    observed = torch.zeros(1, n_items, dtype=torch.float64)
    observed[0, :20] = 1
    rows, cols = observed.nonzero(as_tuple=True)
    u = torch.zeros(1, 3, dtype=torch.float64)  # no preference term: the softmax part alone
    q = torch.randn(n_items, 3, dtype=torch.float64, generator=gen)
    uni = torch.rand(draws, n_items, generator=gen, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uni + 1e-8) + 1e-8)
    dense = torch.softmax(observed + c * gumbel, dim=1) @ matrix  # (draws, dim)
    sketcher = RealRowSketcher(sketch)
    fast = torch.cat([sketched_soft(u, q, rows, cols, n_items, sketcher, c, gen) for _ in range(draws)])
    clean = sketched_soft(u, q, rows, cols, n_items, sketcher, 0.0, gen)
    scale = (dense - dense.mean(0)).std(0).mean()
    assert ((fast.mean(0) - dense.mean(0)).abs() / scale).max() < 0.15
    assert ((clean[0] - dense.mean(0)).abs() / scale).max() < 0.15
    cov_dense, cov_fast = torch.cov(dense.T), torch.cov(fast.T)
    assert torch.linalg.norm(cov_fast - cov_dense) / torch.linalg.norm(cov_dense) < 0.15


def sketched_soft(u, q, rows, cols, n_items, sketcher, c, gen):
    """The softmax part of a sketched real row (pref_scale 0), before the final l2norm."""
    real = sketched_real_rows(u, q, rows, cols, n_items, sketcher, c, 0.0, generator=gen)
    n = len(rows)
    soft_norm = math.sqrt((n_items - n) + math.e ** 2 * n) / ((n_items - n) + math.e * n)
    return real * soft_norm


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation returns."""

    def __init__(self):
        super().__init__()
        self.largest, self.where = 0, ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(t, torch.Tensor):
                continue
            size = t._nnz() if t.layout != torch.strided else t.numel()  # sparse: what is stored
            if size > self.largest:
                self.largest, self.where = size, str(func)
        return out


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_a_sketch_step_never_builds_a_batch_by_items_tensor(variant, monkeypatch):
    n_items, batch = 3000, 512
    monkeypatch.setattr(mmssl_structure, "BLOCK_ELEMENTS", 20_000)  # dense blocks of 6 rows
    ds = planted_dataset(n_users=1000, n_items=n_items, n_interactions=6000, n_clusters=3,
                         modalities={"text": 8, "image": 6})
    # official with k > 0, so that its top-k gathering runs too
    model = sketch_model(ds, variant=variant, batch_size=batch, embed_dim=16, sketch_dim=16,
                         topk_rate=1e-3, feature_dropout=0.0)
    assert model.k >= 1
    optimizers = model.configure_optimizers()
    sampler = BprSampler(ds.matrix("train"), batch, "user", torch.Generator().manual_seed(0),
                         model.users_with_replacement)
    model.train()
    model.on_epoch_start(0)
    batches = iter(sampler.epoch())
    model.training_step(next(batches), optimizers)  # builds the sketch's constants
    with LargestTensor() as seen:
        for _ in range(2):
            losses = model.training_step(next(batches), optimizers)
        model.on_epoch_end(0)  # paper: every user's top-k, in chunks
    assert all(math.isfinite(v) for v in losses.values())
    # the largest tensors are O(I) (the attention over item views: 4 heads x 2 modalities x I x d)
    assert seen.largest < batch * n_items / 3, (seen.largest, seen.where)


def test_auto_switches_above_the_threshold_and_says_so():
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    exact = MMSSL(ds, build_config(MMSSLConfig, {}))
    assert not exact.sketched and "auto chose exact" in exact.notes[0]
    auto = MMSSL(ds, build_config(MMSSLConfig, {"sketch_above_items": 20, "sketch_dim": 16}))
    assert auto.sketched and "auto chose sketch (40 items, sketch above 20)" in auto.notes[0]
    assert auto.discriminator.input.in_features == 16


def test_sketch_checkpoint_holds_the_projection():
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    model = sketch_model(ds)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert torch.equal(state["sketch.buckets"], model.sketch.buckets)
    other = sketch_model(ds, sketch_seed=5)
    assert not torch.equal(other.sketch.buckets, model.sketch.buckets)
    other.load_state_dict(state)
    assert torch.equal(other.sketch.buckets, model.sketch.buckets)


def test_sketch_mode_learns_like_exact_on_planted_data():
    import mmssl

    ds = planted_dataset(n_users=200, n_items=120, n_interactions=4000, seed=3)
    recalls = {}
    for mode in ("exact", "sketch"):
        recalls[mode] = mmssl.fit("mmssl", ds, variant="paper", epochs=10, batch_size=128,
                                  lr=5e-3, threads=1, discriminator=mode, sketch_dim=64,
                                  progress=False).metrics["valid"]["recall@20"]
    assert recalls["sketch"] > 0.4
    assert abs(recalls["sketch"] - recalls["exact"]) < 0.05, recalls
    assert np.isfinite(list(recalls.values())).all()
