"""MMSSL's adversarial part: the WGAN critic over preference rows, and its fast products.

The critic reads one row per user over all I items. Its first layer is linear, which the
functions here exploit so that no (B, I) fake row and no (B, I) x (I, I/4) product is formed
where a low-rank or sparse form exists: see :func:`fake_hidden` and
:meth:`Discriminator.wgan_gp_loss`. Each is tested against the plain formula.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmssl.models.graph import sampled_dot, sparse_product


class FastDropout(nn.Dropout):
    """nn.Dropout drawn from uniform numbers: the same distribution, several times faster on
    CPUs, where bernoulli_ is slow.

    The kept entries are multiplied by a mask of x's own dtype, made once: a product with the
    boolean mask would convert it again in the forward pass, the backward pass and the gradient
    penalty's second backward (CPUs convert bool slowly, uint8 fast). In float32 the products
    are bit for bit those of ``x * keep * scale``; in bfloat16 the scale 1 / (1 - p) is itself
    rounded to bfloat16: for the first dropout (default p = 0.31: 1.4531 for 1.4493) the next
    batch norm takes that constant factor out again; the second's default p = 0.5 gives 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x with each entry zeroed with probability p, the rest scaled by 1 / (1 - p)."""
        if not self.training or self.p == 0:
            return x
        if x.dtype == torch.bfloat16:  # 16 random bits per entry: 4 entries per 64-bit draw
            keep = uniform16(x.shape, x.device) >= round(self.p * 65536) - 32768
        else:
            keep = torch.rand(x.shape, dtype=torch.float32, device=x.device) >= self.p
        return x * keep.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - self.p))


def _leaky(slope: float) -> nn.Module:
    """LeakyReLU(slope); the identity for slope 1 (the official variant's), which it is bit for
    bit, forwards and backwards, without the three passes over each layer's output."""
    return nn.Identity() if slope == 1.0 else nn.LeakyReLU(slope)


def uniform16(shape, device) -> torch.Tensor:
    """int16 uniform on [-32768, 32767], four per 64-bit draw: a quarter of the generator's
    work of float32 uniforms (the bfloat16 path's dropout masks and noise)."""
    n = math.prod(shape)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)
    return bits.view(torch.int16)[:n].view(shape)


class Discriminator(nn.Module):
    """WGAN critic over ``n_inputs``-dimensional preference rows: (n, n_inputs) -> (n,), in
    [0, scale].

    Linear(n, n/4), LeakyReLU, BatchNorm, Dropout, Linear(n/4, n/8), LeakyReLU, BatchNorm,
    Dropout, Linear(n/8, 1), Sigmoid, times ``scale``; Kaiming-normal weights, zero biases.
    Split into the first linear layer (``input``, which holds almost all of the work) and the
    rest (``head``), so that callers can share first-layer products.
    """

    def __init__(self, n_inputs: int, slope: float, drop1: float, drop2: float, scale: float):
        super().__init__()
        h1, h2 = max(1, n_inputs // 4), max(1, n_inputs // 8)
        self.input = nn.Linear(n_inputs, h1)
        self.head = nn.Sequential(
            _leaky(slope), nn.BatchNorm1d(h1), FastDropout(drop1),
            nn.Linear(h1, h2), _leaky(slope), nn.BatchNorm1d(h2), FastDropout(drop2),
            nn.Linear(h2, 1), nn.Sigmoid(),
        )
        self.scale = scale
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Critic values of rows x (n, n_inputs) -> (n,)."""
        return self.from_hidden(self.input(x))

    def from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The critic from the first layer's output h = x W^T + b, (n, n_inputs/4) -> (n,)."""
        out = self.scale * self.head(h).view(-1)
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out

    def wgan_gp_loss(self, h_real: torch.Tensor, h_fake: torch.Tensor, gram: torch.Tensor,
                     gp_lambda: float, gp_weight: float, alpha: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """WGAN-GP critic loss -mean D(real) + mean D(fake) + w * GP from first-layer products.

        Args:
            h_real, h_fake: (n, n_inputs/4) first-layer products x W^T (no bias) of the real and
                fake rows.
            gram: W W^T, (n_inputs/4, n_inputs/4).
            alpha: (n, 1) interpolation weights of the penalty's interpolates; drawn
                uniformly (after the critic's own dropout draws, as the public code does) when
                None.

        Equal to three critic calls on the real, fake and interpolated rows (each keeping its
        own batch-norm statistics), with less work: the first layer is linear, so the
        interpolates' first-layer product is the same mix of the other two; and the gradient
        norm with respect to an interpolate x is ||delta W|| = sqrt(delta (W W^T) delta^T),
        delta the gradient with respect to the first layer's output.
        """
        bias = self.input.bias.to(h_real.dtype)
        d_real = self.from_hidden(h_real + bias).mean()
        d_fake = self.from_hidden(h_fake + bias).mean()
        if alpha is None:
            alpha = torch.rand(len(h_fake), 1, device=h_fake.device).to(h_fake.dtype)
        h_mixed = alpha * h_real + (1 - alpha) * h_fake + bias
        (delta,) = torch.autograd.grad(self.from_hidden(h_mixed).sum(), h_mixed, create_graph=True)
        squared_norm = ((delta @ gram) * delta).sum(1)
        grad_norm = squared_norm.clamp_min(1e-12).sqrt()
        penalty = gp_lambda * ((grad_norm - 1) ** 2).mean()
        return -d_real + d_fake + gp_weight * penalty


def fake_hidden(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
    """The product of fake rows with ``weight.T``, without forming the rows.

    A fake row is l2norm((p Q^T) * (1 - r)) with p (d,) a user's modality view, Q (I, d) the
    items', r the user's observed items. Since (p Q^T) * (1 - r) = p Q^T - S with S the scores
    restricted to the observed items, its product with W^T is p (Q^T W^T) - S W^T: rank d plus
    a sparse part, not a (B, I) by (I, k) product. The same holds for any linear map of the
    rows, so ``weight`` may be the critic's first layer (k = I/4) or a sketch P^T (k = p).

    Args: p (B, d); q (I, d); rows, cols: observed (batch row, item) pairs, sorted; weight
    (k, I). The observed scores are gathered from p Q^T up to ``_GATHER_LIMIT`` scores, and
    sampled dot products above (never a (B, I) block). Returns (B, k), equal to
    ``l2norm((p @ q.T) * (1 - R)) @ weight.T``. The float32 path's form; the bfloat16 exact
    path forms the rows densely (:func:`mmssl.models.mmssl.bf16.fake_hidden`).
    """
    if len(p) * len(q) > _GATHER_LIMIT:
        observed_scores = sampled_dot(p, q, rows, cols)
    else:
        observed_scores = _wide((p @ q.T)[rows, cols])  # a gather beats B x nnz dot products
    squared = (_wide(p @ (q.T @ q)) * p).sum(1)  # ||p Q^T||^2
    squared = squared - torch.zeros_like(squared).index_add(0, rows, observed_scores.square())
    inv_norm = 1.0 / squared.clamp_min(0).sqrt().clamp_min(1e-12)  # as F.normalize
    # Two fresh transposes, as the public code's products take them: one shared view would sum
    # the two gradients before the transpose, which rounds differently (float32 exact path).
    sparse_part = sparse_product(rows, cols, observed_scores, weight.T, len(p))
    return inv_norm[:, None] * (p @ (q.T @ weight.T) - sparse_part)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision results of autocast products; other dtypes as they are."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


# Above this many scores (B x I), the observed scores are dot products, not a gather from a
# dense block: that block is what the low-rank form avoids at large catalogues.
_GATHER_LIMIT = 4_000_000


__all__ = ["Discriminator", "FastDropout", "fake_hidden", "uniform16"]
