"""The exact critic's rows in bfloat16 (``precision: bf16``).

Where the exact critic is affordable its rows are (B, I) blocks anyway, so in bfloat16 they are
formed densely: their products with the critic's first layer, (B, I) x (I, I/4), run on the
bfloat16 units (AMX, AVX512-BF16, tensor cores), faster than the factored form of
:func:`~mmssl.models.mmssl.discriminator.fake_hidden`, whose sparse part CPUs run in float32
only. The float32 path does not come here and stays bit for bit the authors' arithmetic.

With the sketched critic (large catalogues) the training forward's graph products run in
bfloat16 too (:meth:`mmssl.models.graph.SparseGraph.bf16_matmul`, chosen by
``MMSSL._propagate``): there they are most of a step, and they wait on memory.
"""

from __future__ import annotations

import torch
from torch.nn.functional import linear

from mmssl.models.mmssl.discriminator import uniform16


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """Rows of x scaled to unit length (norms clamped at 1e-12, as ``F.normalize``), by a
    product with the reciprocal norms: a quarter faster, forwards and backwards, than
    ``F.normalize``'s division by expanded norms on (1024, 1682) bfloat16 blocks."""
    return x * x.norm(dim=1, keepdim=True).clamp_min(1e-12).reciprocal()


def unobserved_scores(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                      cols: torch.Tensor) -> torch.Tensor:
    """(p @ q.T) * (1 - R) in bfloat16, (B, I): the observed entries (rows, cols) are zeroed in
    place, not multiplied by a (B, I) mask (a pass less forwards and backwards).
    Differentiable in p and q."""
    scores = p.to(torch.bfloat16) @ q.to(torch.bfloat16).T
    return scores.index_put_((rows, cols), scores.new_zeros(()))


def fake_hidden(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
    """``l2norm((p @ q.T) * (1 - R)) @ weight.T``: a modality's fake rows, R's ones at (rows,
    cols), times the critic's first layer (k, I) in bfloat16; (B, k). Differentiable in p, q
    and weight."""
    return linear(l2norm(unobserved_scores(p, q, rows, cols)), weight.to(torch.bfloat16))


def gumbel16(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise -log(-log(u)), float32, from 16 random bits an entry.

    u = (k + 1/2) / 2^16 for k uniform on 0..65535 (:func:`uniform16`, a quarter of the
    generator's work of float32 uniforms): at least 7.6e-6 and at most 1 - 7.6e-6, so the
    float32 path's guards in -log(-log(u + 1e-8) + 1e-8) would change nothing and are left
    out, and every step after the draw is in place.
    """
    noise = uniform16(shape, device).float().add_(32768.5).mul_(2.0**-16)
    return noise.log_().neg_().log_().neg_()


def real_rows(observed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, user: torch.Tensor,
              item: torch.Tensor, noise_scale: float, pref_scale: float) -> torch.Tensor:
    """l2norm(softmax(R + noise_scale * Gumbel) + pref_scale * l2norm((u i^T) * (1 - R))).

    observed: R[users] (B, I) float32, its ones at (rows, cols); user (B, d), item (I, d).
    The noise (:func:`gumbel16`) and the softmax in float32, the rest in bfloat16; returns
    (B, I) bfloat16.
    """
    real = torch.softmax(torch.add(observed, gumbel16(observed.shape, observed.device),
                                   alpha=noise_scale), dim=1)
    prefs = l2norm(unobserved_scores(user, item, rows, cols))
    return l2norm(real.to(torch.bfloat16).add_(prefs, alpha=pref_scale))


__all__ = ["fake_hidden", "gumbel16", "l2norm", "real_rows", "unobserved_scores"]
