"""Most popular: every user gets the items with the most training interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmssl.data.dataset import Dataset
from mmssl.models.base import Model
from mmssl.models.registry import register


@dataclass(frozen=True)
class PopConfig:
    """The popularity ranking has no hyper-parameters."""


@register("pop")
class Popularity(Model):
    """Scores each item by its number of training interactions, the same for every user."""

    Config = PopConfig
    learned = False

    def __init__(self, dataset: Dataset, config: PopConfig):
        super().__init__(dataset, config)
        counts = np.asarray(dataset.matrix("train").sum(axis=0), dtype=np.float32).ravel()
        self.register_buffer("popularity", torch.from_numpy(counts))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ones (U, 1) and the training counts (I, 1)."""
        # rank one: every user weighs the items' training counts alike
        return self.popularity.new_ones(self.n_users, 1), self.popularity[:, None]
