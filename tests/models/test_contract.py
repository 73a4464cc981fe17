"""The model contract, checked for every registered model automatically: a model registered
tomorrow is tested by these without a line added here."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from mmssl.config import build_config
from mmssl.data.synthetic import planted_dataset
from mmssl.errors import DataError
from mmssl.models import available_models, create_model, get_model_class
from mmssl.models.base import Batch, Model
from mmssl.training.sampler import BprSampler

MODELS = available_models()


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def small(name: str, modalities=None):
    """A model on a small planted dataset (one modality with a '.' in its name)."""
    ds = planted_dataset(n_users=40, n_items=36, n_interactions=500, zero_rows=2,
                         modalities={"text": 8, "img.v1": 5} if modalities is None else modalities)
    cls = get_model_class(name)
    values = {"batch_size": 32} if "batch_size" in {f.name for f in dataclasses.fields(cls.Config)} else {}
    torch.manual_seed(0)
    return create_model(name, ds, build_config(cls.Config, values)), ds


def optimizers_of(model: Model):
    opts = model.configure_optimizers()
    return {"adam": opts} if isinstance(opts, torch.optim.Optimizer) else opts


def one_epoch(model: Model, ds, steps: int = 3) -> list[dict[str, float]]:
    sampler = BprSampler(ds.matrix("train"), model.config.batch_size, model.sampling,
                         torch.Generator().manual_seed(0))
    optimizers = optimizers_of(model)
    model.train()
    model.on_epoch_start(0)
    out = []
    for step, batch in enumerate(sampler.epoch()):
        out.append(model.training_step(batch, optimizers))
        if step + 1 == steps:
            break
    model.on_epoch_end(0)
    return out


def test_builtins_are_registered_by_their_decorator():
    assert MODELS[:9] == ["pop", "itemknn-cbf", "bpr", "lightgcn", "vbpr", "lattice", "freedom",
                          "bm3", "mmssl"]
    for name in MODELS:
        assert get_model_class(name).name == name


@pytest.mark.parametrize("name", MODELS)
def test_config_is_a_frozen_dataclass_with_buildable_defaults(name):
    cls = get_model_class(name)
    config = build_config(cls.Config, {})
    assert dataclasses.is_dataclass(config)
    if dataclasses.fields(config):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, dataclasses.fields(config)[0].name, None)
    if cls.learned:
        names = {f.name for f in dataclasses.fields(cls.Config)}
        assert {"lr", "batch_size"} <= names, "learned models need lr and batch_size"


@pytest.mark.parametrize("name", MODELS)
def test_factors_give_every_score_and_are_finite(name):
    model, ds = small(name)
    model.eval()
    with torch.no_grad():
        user, item = model.factors()
    assert user.shape[0] == ds.n_users and item.shape[0] == ds.n_items
    assert user.shape[1] == item.shape[1]
    scores = model.scorer()(torch.arange(ds.n_users))
    assert scores.shape == (ds.n_users, ds.n_items) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores, user @ item.T)


@pytest.mark.parametrize("name", [m for m in MODELS if get_model_class(m).learned])
def test_training_steps_report_finite_losses_and_move_parameters(name):
    model, ds = small(name)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps = one_epoch(model, ds)
    for losses in steps:
        assert next(iter(losses)) == "loss"
        assert all(isinstance(v, float) and np.isfinite(v) for v in losses.values())
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("name", [m for m in MODELS if get_model_class(m).learned])
def test_checkpoint_round_trip_restores_the_scores_with_weights_only(name):
    model, ds = small(name)
    one_epoch(model, ds)
    model.eval()
    expected = model.scorer()(torch.arange(ds.n_users))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "extra": model.extra_state()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # tensors and numbers only
    fresh, _ = small(name)
    fresh.load_state_dict(saved["model"])
    fresh.load_extra_state(saved["extra"])
    fresh.eval()
    torch.testing.assert_close(fresh.scorer()(torch.arange(ds.n_users)), expected)


@pytest.mark.parametrize("name", MODELS)
def test_needs_features_is_checked_for_every_model(name):
    cls = get_model_class(name)
    ds = planted_dataset(n_users=20, n_items=30, n_interactions=200, modalities={})
    if cls.needs_features:
        with pytest.raises(DataError, match=f"{name} needs at least one item modality"):
            create_model(name, ds, build_config(cls.Config, {}))
    else:
        create_model(name, ds, build_config(cls.Config, {}))


@pytest.mark.parametrize("name", MODELS)
def test_model_follows_to_device_and_reports_it(name):
    model, _ = small(name)
    assert model.to(torch.device("cpu")).device == torch.device("cpu")
    if model.learned:
        batch = Batch(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
        assert batch.to(model.device).users.device == model.device
