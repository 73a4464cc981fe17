"""The model contract every recommender follows.

A model is built from a :class:`~mmssl.data.Dataset` and its hyper-parameters (a frozen
dataclass, its ``Config``). For ranking it hands out :meth:`Model.factors`: a user matrix and an
item matrix whose product is every score. A learned model also computes a training loss for a
batch (:meth:`Model.loss`). That is all a model must say; the trainer owns the rest (device,
optimisers, epochs, early stopping, checkpoints), calling the hooks below where a model needs
more: its own optimisers or schedules, work at epoch boundaries, or a step of several players.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.data.dataset import Dataset

Scorer = Callable[[torch.Tensor], torch.Tensor]
"""``scorer(users: LongTensor (b,)) -> FloatTensor (b, n_items)``."""

Optimizers = dict[str, torch.optim.Optimizer]


@dataclass(frozen=True)
class Batch:
    """One training batch of (user, positive item, negative item) triples, each (B,) int64."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        return Batch(self.users.to(device), self.pos_items.to(device), self.neg_items.to(device))


@dataclass(frozen=True)
class ContentPath:
    """How a model turns content features into an item vector, as plain arrays.

    It is what a model says about items known only by their content (cold start); serving
    computes it with NumPy alone (``RUN/coldstart.npz``). With ``f_m`` the (n, dim_m) features
    of modality m and ``A_m(f) = f @ weights[m].T + biases[m]``, the (n, d) item vectors are

    - ``combine="concat"``: ``[zeros(id_dim), A(concat_m f_m)] + offset`` (one map over the
      features of every modality, concatenated in ``modalities`` order; VBPR);
    - ``combine="sum_l2norm"``: ``scale * sum_m l2norm(A_m(f_m)) + offset`` (MMSSL).

    Attributes:
        combine: ``"concat"`` or ``"sum_l2norm"``.
        modalities: the modality names the maps read, in order.
        weights: float32 (d_out, d_in) per map: one for concat, one per modality otherwise.
        biases: float32 (d_out,) per map.
        scale: the factor in front of the sum (sum_l2norm).
        id_dim: zeros put before the content part (concat: the ID part of a new item).
        offset: float32 (d,) added to every vector (what the rest of the model gives an item
            without interactions), or None.
    """

    combine: Literal["concat", "sum_l2norm"]
    modalities: tuple[str, ...]
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    scale: float = 1.0
    id_dim: int = 0
    offset: np.ndarray | None = None

    @classmethod
    def of_linear(cls, combine: Literal["concat", "sum_l2norm"], modalities: Sequence[str],
                  layers: Sequence[nn.Linear], **kwargs: Any) -> ContentPath:
        """The path of ``nn.Linear`` layers (weights copied to float32 NumPy arrays)."""
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy().copy()

        return cls(combine, tuple(modalities), tuple(array(x.weight) for x in layers),
                   tuple(array(x.bias) for x in layers), **kwargs)

    def apply(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(n, d) item vectors of ``features`` (modality name -> (n, dim_m)), in torch."""
        def affine(f: torch.Tensor, j: int) -> torch.Tensor:
            w, b = (torch.from_numpy(a).to(f.device) for a in (self.weights[j], self.biases[j]))
            return f.float() @ w.T + b

        if self.combine == "concat":
            x = torch.cat([features[m].float() for m in self.modalities], dim=1)
            out = affine(x, 0)
            out = torch.cat([out.new_zeros(len(out), self.id_dim), out], dim=1)
        else:
            out = self.scale * sum(F.normalize(affine(features[m], j), dim=1)
                                   for j, m in enumerate(self.modalities))
        if self.offset is not None:
            out = out + torch.from_numpy(self.offset).to(out.device)
        return out


class Model(nn.Module):
    """Base class of every recommender; subclasses register with ``@register("name")``.

    Class attributes a subclass sets:
        Config: its hyper-parameter dataclass (learned models have ``lr`` and ``batch_size``).
        learned: False for models fitted in ``__init__`` (popularity, content k-NN).
        needs_features: True when it needs at least one item modality.
        sampling: ``"interaction"`` (each epoch walks all training pairs, MMRec) or ``"user"``
            (each step draws ``batch_size`` users, the MMSSL authors' sampler).
        run_defaults: its published values of run settings (e.g. ``{"patience": 20}``).
        legacy_defaults: values of settings added since 0.1 that reproduce an 0.1 run, used
            when loading a config.yaml written before 0.2.
        search_space: what ``mmssl tune`` and ``mmssl bench --search`` try, per setting: a list
            of values, or ``{"low": a, "high": b, "log": True}`` for a range (Optuna only).
    """

    name: ClassVar[str] = "model"  # set by @register
    Config: ClassVar[type]
    learned: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    sampling: ClassVar[Literal["user", "interaction"]] = "interaction"
    run_defaults: ClassVar[dict[str, Any]] = {}
    legacy_defaults: ClassVar[dict[str, Any]] = {}
    search_space: ClassVar[dict[str, Any]] = {}

    def __init__(self, dataset: Dataset, config: Any):
        super().__init__()
        self.config = config
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items
        self.notes: list[str] = []  # choices made while building (e.g. an automatic mode), logged
        # Follows .to(device), so a model can ask where it lives even without parameters.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are."""
        return self._device_anchor.device

    # ------------------------------------------------------------ training
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss components of a batch on the model's device; the one to minimise first, as
        ``"loss"``."""
        raise NotImplementedError(f"{self.name} is not a learned model")

    def configure_optimizers(self) -> torch.optim.Optimizer | Optimizers:
        """The optimiser(s) the trainer steps and checkpoints (default: Adam at ``config.lr``)."""
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def configure_schedulers(self, optimizers: Optimizers) -> dict[str, Any]:
        """Learning-rate schedules, stepped by the trainer after each epoch (default: none)."""
        return {}

    def training_step(self, batch: Batch, optimizers: Optimizers) -> dict[str, float]:
        """One optimisation step; returns the loss components as floats (``loss`` first).

        The default minimises ``loss(batch)["loss"]`` with the only optimiser; a model with
        several players (MMSSL) overrides it.
        """
        (optimizer,) = optimizers.values()
        losses = self.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    def on_device(self, device: torch.device) -> None:
        """Called by the trainer once the model is on its device (choices that depend on it)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each training epoch (per-epoch graphs, counters)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each training epoch, before validation (graph refreshes)."""

    # ------------------------------------------------------------- ranking
    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user, item)``, (n_users, d) and (n_items, d): the score of user u for item i is
        ``user[u] @ item[i]``. Called under ``torch.no_grad`` in eval mode."""
        raise NotImplementedError

    def scorer(self) -> Scorer:
        """A function scoring batches of users against all items (from :meth:`factors`)."""
        with torch.no_grad():
            user, item = self.factors()
        return lambda users: user[users] @ item.T

    # ---------------------------------------------------------- cold start
    def content_path(self) -> ContentPath | None:
        """How content features become an item vector, for items without interactions; None
        (the default) when the model has no content path. Serving then falls back to the mean
        vector of the new item's nearest warm items in feature space."""
        return None

    def content_item_factors(self, features: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(n, d) vectors, comparable with :meth:`factors`' items, of n new items given only
        their features (modality name -> (n, dim)); None when the model has no content path."""
        path = self.content_path()
        return None if path is None else path.apply(features)

    # --------------------------------------------------------- checkpoints
    def extra_state(self) -> dict[str, Any]:
        """Training state outside ``state_dict`` (plain tensors and numbers only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""


def module_key(modality: str) -> str:
    """A modality name as a key of ``nn.ModuleDict``/``nn.ParameterDict`` (which refuse ".")."""
    return modality.replace(".", "_dot_")


__all__ = ["Batch", "ContentPath", "Model", "Optimizers", "Scorer", "module_key"]
