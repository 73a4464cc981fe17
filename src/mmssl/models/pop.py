"""Most popular: every user gets the items with the most training interactions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmssl.data.dataset import Dataset
from mmssl.models.base import Model, TrainingConfig


@dataclass(frozen=True)
class PopConfig(TrainingConfig):
    pass


class Popularity(Model):
    name = "pop"
    Config = PopConfig
    learned = False

    def __init__(self, dataset: Dataset, config: PopConfig, device: torch.device):
        super().__init__(dataset, config, device)
        counts = np.asarray(dataset.matrix("train").sum(axis=0), dtype=np.float32).ravel()
        self.register_buffer("popularity", torch.from_numpy(counts).to(device))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        # rank one: every user weighs the items' training counts alike
        return self.popularity.new_ones(self.n_users, 1), self.popularity[:, None]
