"""Losses that several models share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPRLoss: mean of -log(1e-10 + sigmoid(pos - neg)) over the batch, (B,) each."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def log_sigmoid_bpr(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """BPR as -mean log sigmoid(pos - neg), (B,) each (LATTICE, FREEDOM, MMSSL)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: the sum of the Frobenius norms (not squared) of the given (n, d)
    matrices, divided by the rows of the last one."""
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


def squared_norm_loss(*embeddings: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sum of the squared entries of the given matrices, / (2 * batch_size)."""
    return sum(e.square().sum() for e in embeddings) / (2 * batch_size)


__all__ = ["bpr_loss", "embedding_norm_loss", "log_sigmoid_bpr", "squared_norm_loss"]
