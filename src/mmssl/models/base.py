"""The model contract every recommender follows, and the settings every model shares.

A model is built from a ``Dataset`` and its config. A learned model performs one optimisation
step on a batch (``train_step``). For ranking it hands out ``factors``: a user matrix and an item
matrix whose product is every score, from which come the ``scorer`` (a function from a batch of
user indices to their scores over all items) and the saved recommender. The trainer, the
evaluator and the recommender know nothing else about it.
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


@dataclass(frozen=True)
class TrainingConfig:
    """Settings shared by every model (the trainer, evaluation and device)."""

    seed: int = 2022  # fixes every random draw on CPU (the authors' default)
    device: str = "auto"  # "auto" (CUDA if available, else MPS, else CPU), "cpu", "cuda", "cuda:1", "mps"
    threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    epochs: int = 1000  # upper bound; early stopping usually ends sooner (authors: 1000)
    batch_size: int = 1024  # training batch (users or interactions, see `sampling`)
    eval_every: int = 1  # validate every this many epochs
    patience: int = 7  # stop after this many validations without a better Recall@20, plus one (authors' rule)
    protocol: Literal["standard", "mmssl", "mmrec"] = "standard"  # evaluation protocol
    ks: tuple[int, ...] = (10, 20, 50)  # cut-offs of every ranking metric
    eval_batch_size: int = 1024  # users scored at once during evaluation


@dataclass(frozen=True)
class Batch:
    """One training batch of (user, positive item, negative item) triples, each (B,) int64."""

    users: torch.Tensor
    pos_items: torch.Tensor
    neg_items: torch.Tensor


class Model(nn.Module):
    """Base class of every recommender.

    Subclasses set ``name`` and ``Config`` and implement ``factors``; learned models also
    implement ``train_step`` and set ``learned = True``.
    """

    name: ClassVar[str]
    Config: ClassVar[type[TrainingConfig]]
    learned: ClassVar[bool] = True
    # "user": each step draws batch_size users, then one positive and one negative per user
    # (the authors' MMSSL sampler); "interaction": each epoch walks all training interactions
    # in shuffled batches, one negative each (MMRec's sampler).
    sampling: ClassVar[Literal["user", "interaction"]] = "interaction"

    def __init__(self, dataset: Dataset, config: TrainingConfig, device: torch.device):
        super().__init__()
        self.config = config
        self.device = device
        self.n_users = dataset.n_users
        self.n_items = dataset.n_items

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss components of a batch, the total under ``"loss"`` (single-optimiser models)."""
        raise NotImplementedError(f"{self.name} is not a learned model")

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        """One optimisation step; returns the loss components as floats (``loss`` first).

        The default minimises ``loss(batch)`` with ``self.optimizer``; models with several
        players (MMSSL) or per-epoch work override it.
        """
        return self.optimizer_step(self.loss(batch))

    def optimizer_step(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """Back-propagate ``losses["loss"]`` and step ``self.optimizer``; the components as floats."""
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    def end_epoch(self, epoch: int) -> None:
        """Called after each training epoch (learning-rate schedules, graph refreshes)."""

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(user, item)``, (n_users, d) and (n_items, d): the score of user u for item i is
        ``user[u] @ item[i]``. Called under ``torch.no_grad`` in eval mode."""
        raise NotImplementedError

    def scorer(self) -> Scorer:
        """A function scoring batches of users against all items (from :meth:`factors`)."""
        with torch.no_grad():
            user, item = self.factors()
        return lambda users: user[users] @ item.T

    # ---------------------------------------------------------------- checkpoints
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimisers whose state goes into checkpoints (default: ``self.optimizer``)."""
        return {"adam": self.optimizer} if hasattr(self, "optimizer") else {}

    def extra_state(self) -> dict[str, Any]:
        """Training state outside ``state_dict`` (plain tensors and numbers only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
