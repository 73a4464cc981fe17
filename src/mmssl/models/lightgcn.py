"""LightGCN: linear propagation of ID embeddings on the user-item graph.

He, Deng, Wang, Li, Zhang, Wang. "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation." SIGIR 2020. As implemented in MMRec (``src/models/lightgcn.py``):
Xavier-uniform ID embeddings E^(0); E^(l+1) = A_hat E^(l) with A_hat = D^{-1/2} A D^{-1/2} the
symmetrically normalised bipartite adjacency of the training matrix; final embeddings the mean
of E^(0..L); BPR loss plus ``reg_weight`` times the L2 norms (not squared) of the batch's
*ego* (layer-0) embeddings divided by the batch size. Uses no item modality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmssl.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from mmssl.data.dataset import Dataset
from mmssl.models.base import Batch, Model
from mmssl.models.graph import SparseGraph, bipartite_adjacency, propagate_mean
from mmssl.models.losses import bpr_loss, embedding_norm_loss
from mmssl.models.registry import register


@dataclass(frozen=True)
class LightGCNConfig:
    """LightGCN settings; defaults are MMRec's (``configs/overall.yaml``,
    ``configs/model/LightGCNTorch.yaml``) unless noted."""

    embed_dim: PositiveInt = 64  # d, user and item embedding width (MMRec embedding_size)
    n_layers: NonNegativeInt = 3  # L, propagation layers (3 as our issue fixes; MMRec grid [1, 2, 3, 4])
    lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)
    reg_weight: NonNegativeFloat = 1e-2  # weight of the ego-embedding norm loss (first value of MMRec's grid)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


@register("lightgcn")
class LightGCN(Model):
    """ID embeddings averaged over L propagation layers of the normalised user-item graph."""

    Config = LightGCNConfig
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"n_layers": [1, 2, 3, 4], "reg_weight": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]}  # MMRec LightGCN.yaml

    def __init__(self, dataset: Dataset, config: LightGCNConfig):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.adjacency = SparseGraph(bipartite_adjacency(dataset.matrix("train"), "sym"))
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings: users (U, d) and items (I, d)."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        final = propagate_mean(self.adjacency, ego, self.config.n_layers)
        return final[: self.n_users], final[self.n_users :]

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BPR on the propagated embeddings plus the norms of the batch's ego embeddings."""
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        user, item = self.forward()
        u = user[users]
        bpr = bpr_loss((u * item[pos]).sum(1), (u * item[neg]).sum(1))
        reg = embedding_norm_loss(self.user_embedding[users], self.item_embedding[pos],
                                  self.item_embedding[neg])
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The propagated embeddings."""
        return self.forward()
