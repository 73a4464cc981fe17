"""Losses that several models share.

Means over the batch's rows need nothing for distributed training (the trainer weighs each
process's loss by its share of the rows). The other batch terms here, norms of the batch's rows,
sums divided by a fixed number and InfoNCE's in-batch negatives, take the whole batch through
:mod:`mmssl.models.shards`; a single process computes exactly what it did before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmssl.models import shards


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """MMRec's BPRLoss: mean of -log(1e-10 + sigmoid(pos - neg)) over the batch, (B,) each."""
    return -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores)).mean()


def log_sigmoid_bpr(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """BPR as -mean log sigmoid(pos - neg), (B,) each (LATTICE, FREEDOM, MMSSL)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def embedding_norm_loss(*embeddings: torch.Tensor, batch: bool = True) -> torch.Tensor:
    """MMRec's EmbLoss: the sum of the Frobenius norms (not squared) of the given (n, d)
    matrices, divided by the rows of the last one.

    ``batch``: the matrices are rows of the training batch, so in distributed training the norms
    and the row count are the whole batch's; False for whole tables (BM3's), the same on every
    process."""
    if batch and shards.current() is not None:  # one all-reduce for every squared norm
        squares = shards.batch_sum(torch.stack([e.square().sum() for e in embeddings]))
        tiny = torch.finfo(squares.dtype).tiny  # sqrt has no gradient at 0; norm's is 0
        return squares.clamp_min(tiny).sqrt().sum() / shards.batch_rows(embeddings[-1].shape[0])
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


def squared_norm_loss(*embeddings: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sum of the squared entries of the given batch rows (over the whole batch in distributed
    training), / (2 * batch_size)."""
    return shards.batch_sum(sum(e.square().sum() for e in embeddings)) / (2 * batch_size)


def sum_of_squares(x: torch.Tensor) -> torch.Tensor:
    """``x.square().sum()``, whose backward allocates only the gradient 2 g x: autograd's own
    formula for ``square()`` makes two more temporaries of x's size (GBs for 2M users x d).
    Values and gradients are bit-identical (scaling by 2 is exact)."""
    return _SumOfSquares.apply(x)


class _SumOfSquares(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.square().sum()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x * (2 * grad)


def info_nce(view: torch.Tensor, anchor: torch.Tensor, tau: float) -> torch.Tensor:
    """MMSSL's InfoNCE between two views of the same users, (B, d) each: positives are the same
    user, negatives every other user of the batch in both views (cosine similarity / tau).

    In distributed training the negatives are every other user of the whole batch, and the mean
    is over this process's users."""
    z1, z2 = F.normalize(view, dim=1), F.normalize(anchor, dim=1)
    shard = shards.current()
    if shard is not None:
        own = torch.arange(len(z1), device=z1.device)
        at = own + shard.offset  # this process's users among the whole batch's
        every = shards.gather_rows(torch.cat([z1, z2], dim=1))  # (B, 2d): one all-reduce
        refl = torch.exp(z1 @ every[:, : z1.shape[1]].T / tau)  # (b, B)
        between = torch.exp(z1 @ every[:, z1.shape[1]:].T / tau)
        denom = refl.sum(1) + between.sum(1) - refl[own, at]
        return -torch.log(between[own, at] / denom + 1e-8).mean()
    refl = torch.exp(z1 @ z1.T / tau)
    between = torch.exp(z1 @ z2.T / tau)
    denom = refl.sum(1) + between.sum(1) - refl.diagonal()
    return -torch.log(between.diagonal() / denom + 1e-8).mean()


def info_nce_of_zeros(n: int, like: torch.Tensor) -> torch.Tensor:
    """info_nce(zeros, anchor) for n users: every similarity is exp(0) = 1, so each term is
    -log(1 / (2n - 1) + 1e-8); computed with the same float operations, to the bit. In
    distributed training n is the whole batch's users (``n`` is this process's)."""
    n = shards.batch_rows(n)
    one = like.new_ones(n)
    denom = one * n + one * n - one
    return -torch.log(one / denom + 1e-8).mean()


__all__ = ["bpr_loss", "embedding_norm_loss", "info_nce", "info_nce_of_zeros", "log_sigmoid_bpr",
           "squared_norm_loss"]
