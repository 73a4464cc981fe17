"""Content-based item k-NN: a user's score for an item is the mean cosine similarity, in the
concatenated modality features, between that item and the user's training items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mmssl.data.dataset import Dataset
from mmssl.errors import DataError
from mmssl.models.base import Model, TrainingConfig


@dataclass(frozen=True)
class ItemKnnCbfConfig(TrainingConfig):
    normalize_modalities: bool = True  # l2-normalise each modality before concatenating, so no modality dominates by scale


class ItemKnnCbf(Model):
    name = "itemknn-cbf"
    Config = ItemKnnCbfConfig
    learned = False

    def __init__(self, dataset: Dataset, config: ItemKnnCbfConfig, device: torch.device):
        super().__init__(dataset, config, device)
        if not dataset.features:
            raise DataError("itemknn-cbf needs at least one item modality; the dataset has none")
        parts = []
        for name in sorted(dataset.features):
            f = torch.from_numpy(np.array(dataset.features[name], dtype=np.float32))
            parts.append(F.normalize(f, dim=1) if config.normalize_modalities else f)
        # Unit rows; an all-zero row stays zero (F.normalize guards the division), so items
        # without content get similarity 0, never NaN.
        self.register_buffer("item_vectors", F.normalize(torch.cat(parts, dim=1), dim=1).to(device))
        train = dataset.matrix("train").tocoo()
        degree = np.asarray(dataset.matrix("train").sum(axis=1)).ravel()
        values = 1.0 / np.maximum(degree[train.row], 1.0)  # mean over the user's items
        self.user_profiles = torch.sparse_coo_tensor(
            np.vstack([train.row, train.col]), values.astype(np.float32), train.shape,
            check_invariants=True,
        ).coalesce().to(device)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        # profile_u = mean of the user's item vectors; score = profile_u . v_i equals the mean
        # cosine similarity because item vectors are unit length.
        return torch.sparse.mm(self.user_profiles, self.item_vectors), self.item_vectors
