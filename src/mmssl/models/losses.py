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


def info_nce(view: torch.Tensor, anchor: torch.Tensor, tau: float) -> torch.Tensor:
    """MMSSL's InfoNCE between two views of the same users, (B, d) each: positives are the same
    user, negatives every other user of the batch in both views (cosine similarity / tau)."""
    z1, z2 = F.normalize(view, dim=1), F.normalize(anchor, dim=1)
    refl = torch.exp(z1 @ z1.T / tau)
    between = torch.exp(z1 @ z2.T / tau)
    denom = refl.sum(1) + between.sum(1) - refl.diagonal()
    return -torch.log(between.diagonal() / denom + 1e-8).mean()


def info_nce_of_zeros(n: int, like: torch.Tensor) -> torch.Tensor:
    """info_nce(zeros, anchor) for n users: every similarity is exp(0) = 1, so each term is
    -log(1 / (2n - 1) + 1e-8); computed with the same float operations, to the bit."""
    one = like.new_ones(n)
    denom = one * n + one * n - one
    return -torch.log(one / denom + 1e-8).mean()


__all__ = ["bpr_loss", "embedding_norm_loss", "info_nce", "info_nce_of_zeros", "log_sigmoid_bpr",
           "squared_norm_loss"]
