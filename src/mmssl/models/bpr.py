"""BPR-MF (Rendle et al., UAI 2009) as MMRec implements it (``src/models/bpr.py``):
Xavier-normal embeddings, score <u, i>, MMRec's BPR loss plus ``reg_weight`` times the norms
(not squared) of the batch's embeddings divided by the batch size. Uses no item modality."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmssl.config import NonNegativeFloat, PositiveFloat, PositiveInt
from mmssl.models.base import Batch, Model
from mmssl.models.losses import bpr_loss, embedding_norm_loss
from mmssl.models.registry import register


@dataclass(frozen=True)
class BPRConfig:
    """BPR-MF settings; defaults are MMRec's (``configs/overall.yaml``, ``model/BPR.yaml``)."""

    embed_dim: PositiveInt = 64  # d, user and item embedding width (MMRec embedding_size)
    lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)
    reg_weight: NonNegativeFloat = 0.1  # embedding-norm weight; was 1.0 (best of MMRec's grid on ml100k-mm validation, 0.3610 against 0.3552) until it did not learn on 0.1%-dense data (benchmarks/defaults.py; issue 14)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


@register("bpr")
class BPRMF(Model):
    """Matrix factorisation trained with Bayesian Personalised Ranking."""

    Config = BPRConfig
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"reg_weight": [2.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5]}  # MMRec BPR.yaml

    def __init__(self, dataset, config: BPRConfig):
        super().__init__(dataset, config)
        shape = (config.embed_dim,)
        self.user_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, *shape)))
        self.item_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_items, *shape)))

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BPR plus the weighted embedding norms of the batch."""
        u = self.user_embedding[batch.users]
        p, n = self.item_embedding[batch.pos_items], self.item_embedding[batch.neg_items]
        bpr = bpr_loss((u * p).sum(1), (u * n).sum(1))
        reg = embedding_norm_loss(u, p, n)
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings themselves."""
        return self.user_embedding.detach(), self.item_embedding.detach()
