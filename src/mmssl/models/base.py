"""The model contract every recommender follows.

A model is built from a :class:`~mmssl.data.Dataset` and its hyper-parameters (a frozen
dataclass, its ``Config``). For ranking it hands out :meth:`Model.factors`: a user matrix and an
item matrix whose product is every score. A learned model also computes a training loss for a
batch (:meth:`Model.loss`). That is all a model must say; the trainer owns the rest (device,
optimisers, epochs, early stopping, checkpoints), calling the hooks below where a model needs
more: its own optimisers or schedules, work at epoch boundaries, or a step of several players.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
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
    """

    name: ClassVar[str] = "model"  # set by @register
    Config: ClassVar[type]
    learned: ClassVar[bool] = True
    needs_features: ClassVar[bool] = False
    sampling: ClassVar[Literal["user", "interaction"]] = "interaction"
    run_defaults: ClassVar[dict[str, Any]] = {}
    legacy_defaults: ClassVar[dict[str, Any]] = {}

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

    # --------------------------------------------------------- checkpoints
    def extra_state(self) -> dict[str, Any]:
        """Training state outside ``state_dict`` (plain tensors and numbers only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""


def module_key(modality: str) -> str:
    """A modality name as a key of ``nn.ModuleDict``/``nn.ParameterDict`` (which refuse ".")."""
    return modality.replace(".", "_dot_")


__all__ = ["Batch", "Model", "Optimizers", "Scorer", "module_key"]
