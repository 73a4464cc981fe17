"""VBPR: BPR with a visual (here: any modality) factor per item.

He, McAuley. "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback." AAAI 2016.
As implemented in MMRec (``src/models/vbpr.py``): a user has one (2d) embedding; an item's
embedding is its (d) ID embedding concatenated with a linear projection (d) of its content
features; score <u, i>; BPR loss plus ``reg_weight`` times the L2 norms (not squared) of the
batch's user, positive and negative embeddings (content part included) divided by the batch
size. ID embeddings are Xavier-uniform, the projection Xavier-normal with a zero bias.

Modalities: MMRec concatenates its text and image features before the projection; here the
features of all M >= 1 modalities are concatenated (in the dataset's modality order) and
projected by one linear layer. The features are fixed inputs (not trained), as in MMRec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmssl.config import NonNegativeFloat, PositiveFloat, PositiveInt
from mmssl.data.dataset import Dataset
from mmssl.models.base import Batch, ContentPath, Model
from mmssl.models.losses import bpr_loss, embedding_norm_loss
from mmssl.models.registry import register


@dataclass(frozen=True)
class VBPRConfig:
    """VBPR settings; defaults are MMRec's (``configs/overall.yaml``, ``configs/model/VBPR.yaml``)."""

    embed_dim: PositiveInt = 64  # d, width of the ID part and of the content part (user: 2d) (MMRec embedding_size)
    lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)
    reg_weight: NonNegativeFloat = 1.0  # weight of the embedding-norm loss (MMRec grid value chosen on ml100k-mm validation, 0.3632 against 0.3347 for 0.1; 2.0 does not learn); kept: unlike BPR it learns on 0.1%-dense data (benchmarks/defaults.py)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


@register("vbpr")
class VBPR(Model):
    """BPR whose item vectors are [ID embedding, linear projection of the content features]."""

    Config = VBPRConfig
    needs_features = True
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"reg_weight": [2.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5]}  # MMRec VBPR.yaml

    def __init__(self, dataset: Dataset, config: VBPRConfig):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.modalities = list(dataset.features)
        features = np.concatenate([np.array(dataset.features[m], dtype=np.float32)
                                   for m in self.modalities], axis=1)
        # Not saved in checkpoints: the features come from the dataset.
        self.register_buffer("item_features", torch.from_numpy(features), persistent=False)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.projection = nn.Linear(features.shape[1], d)  # E, content features -> d
        nn.init.xavier_normal_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def item_representation(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[ID embedding, projected features] of ``items`` (n,), or of every item: (n, 2d)."""
        if items is None:
            return torch.cat([self.item_embedding, self.projection(self.item_features)], dim=1)
        return torch.cat([self.item_embedding[items], self.projection(self.item_features[items])], dim=1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BPR plus the weighted norms of the batch's user and item vectors."""
        u = self.user_embedding[batch.users]
        p = self.item_representation(batch.pos_items)
        n = self.item_representation(batch.neg_items)
        bpr = bpr_loss((u * p).sum(1), (u * n).sum(1))
        reg = embedding_norm_loss(u, p, n)
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User embeddings and the items' [ID, content] vectors."""
        return self.user_embedding.detach(), self.item_representation()

    def content_path(self) -> ContentPath:
        """A new item's vector: a zero ID part and the projection of its features."""
        return ContentPath.of_linear("concat", self.modalities, [self.projection],
                                     id_dim=self.config.embed_dim)
