"""Content-based item k-NN: a user's score for an item is the mean cosine similarity, in the
concatenated modality features, between that item and the user's training items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mmssl.data.dataset import Dataset
from mmssl.models.base import Model
from mmssl.models.registry import register


@dataclass(frozen=True)
class ItemKnnCbfConfig:
    """Settings of the content-based item k-NN."""

    normalize_modalities: bool = True  # l2-normalise each modality before concatenating, so no modality dominates by scale


@register("itemknn-cbf")
class ItemKnnCbf(Model):
    """Mean cosine similarity of an item to the user's training items, in feature space."""

    Config = ItemKnnCbfConfig
    learned = False
    needs_features = True

    def __init__(self, dataset: Dataset, config: ItemKnnCbfConfig):
        super().__init__(dataset, config)
        parts = []
        for name in sorted(dataset.features):
            f = torch.from_numpy(np.array(dataset.features[name], dtype=np.float32))
            parts.append(F.normalize(f, dim=1) if config.normalize_modalities else f)
        # Unit rows; an all-zero row stays zero (F.normalize guards the division), so items
        # without content get similarity 0, never NaN.
        self.register_buffer("item_vectors", F.normalize(torch.cat(parts, dim=1), dim=1))
        train = dataset.matrix("train")
        coo = train.tocoo()
        degree = np.asarray(train.sum(axis=1)).ravel()
        values = 1.0 / np.maximum(degree[coo.row], 1.0)  # mean over the user's items
        profiles = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), values.astype(np.float32),
                                           coo.shape, check_invariants=True).coalesce()
        self.register_buffer("user_profiles", profiles, persistent=False)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users' mean item vectors and the unit item vectors."""
        # profile_u = mean of the user's item vectors; score = profile_u . v_i equals the mean
        # cosine similarity because item vectors are unit length.
        return torch.sparse.mm(self.user_profiles, self.item_vectors), self.item_vectors
