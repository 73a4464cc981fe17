"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking.

Rendle, Freudenthaler, Gantner, Schmidt-Thieme. "BPR: Bayesian Personalized Ranking from
Implicit Feedback." UAI 2009. As implemented in MMRec (``src/models/bpr.py``): Xavier-normal
embeddings, score <u, i>, loss -log(1e-10 + sigmoid(s_pos - s_neg)) plus ``reg_weight`` times
the L2 norms (not squared) of the batch's user, positive and negative embeddings divided by the
batch size. Uses no item modality.

This module also holds the two losses the MMRec-style models share (``bpr_loss``,
``embedding_norm_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmssl.data.dataset import Dataset
from mmssl.models.base import Batch, Model, TrainingConfig


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPRLoss: mean of -log(1e-10 + sigmoid(pos - neg)) over the batch, (B,) each."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def embedding_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: the sum of the Frobenius norms (not squared) of the given (n, d)
    matrices, divided by the rows of the last one."""
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


@dataclass(frozen=True)
class BPRConfig(TrainingConfig):
    """BPR-MF settings; defaults are MMRec's (``configs/overall.yaml``, ``configs/model/BPR.yaml``)."""

    embed_dim: int = 64  # d, user and item embedding width (MMRec embedding_size)
    lr: float = 1e-3  # Adam learning rate (MMRec learning_rate)
    reg_weight: float = 1.0  # weight of the embedding-norm loss (MMRec grid value best on validation; the first, 2.0, shrinks all embeddings to zero)
    batch_size: int = 2048  # training interactions per step (MMRec train_batch_size)
    patience: int = 20  # validations without a better Recall@20 before stopping, plus one (MMRec stopping_step)


class BPRMF(Model):
    name = "bpr"
    Config = BPRConfig
    sampling = "interaction"

    def __init__(self, dataset: Dataset, config: BPRConfig, device: torch.device):
        super().__init__(dataset, config, device)
        d = config.embed_dim
        self.user_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_items, d)))
        self.to(device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.lr)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss components of one batch (``loss`` first, the one to minimise)."""
        u = self.user_embedding[batch.users.to(self.device)]
        p = self.item_embedding[batch.pos_items.to(self.device)]
        n = self.item_embedding[batch.neg_items.to(self.device)]
        bpr = bpr_loss((u * p).sum(1), (u * n).sum(1))
        reg = embedding_norm_loss(u, p, n)
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.detach(), self.item_embedding.detach()



__all__ = ["BPRMF", "BPRConfig", "bpr_loss", "embedding_norm_loss"]
