"""The sketched discriminator's inputs: preference rows over I items seen through a fixed random
projection P (I x p), computed without ever forming a (B, I) row.

The critic of MMSSL reads one row per user over all items. In sketch mode it reads x P instead,
and every row it sees is linear in something small:

* a preference row sim(u; P_u, Q) = l2norm((p Q^T) * (1 - r)) (the fake rows, and the model's
  own preferences inside the real rows) is p (Q^T P) minus the observed items' part, divided by
  a norm that needs only Q^T Q (d x d) and the observed items (:func:`project_preferences`);
* a real row l2norm(softmax(r + c g) + lambda sim) is a constant, a sparse part and the same
  low-rank part (:func:`sketched_real_rows`). The Gumbel noise is drawn in sketch space with the
  first two moments of the dense noise's projection (see that function).

Cost per step O((I + B) s d + nnz s) for the sparse sign sketch (s non-zeros per item row), or
O((I + B) d p + nnz p) for a Gaussian one; memory O(I s) or O(I p). Every function here is
tested against ``dense_rows @ P``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mmssl.models.graph import SparseGraph, sampled_dot, sparse_product


class Projection(nn.Module):
    """A linear map of item rows, R^I -> R^k, applied to rows given in factored form."""

    dim: int

    def items(self, q: torch.Tensor) -> torch.Tensor:
        """Q^T P for item vectors q (I, d): (d, k)."""
        raise NotImplementedError

    def sparse(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
               n_rows: int) -> torch.Tensor:
        """S P for the sparse (n_rows, I) matrix S with ``values`` at (rows, cols): (n_rows, k)."""
        raise NotImplementedError

    def dense(self) -> torch.Tensor:
        """P itself, (I, k) (for tests and small catalogues)."""
        raise NotImplementedError


class DenseProjection(Projection):
    """P given as a dense (I, k) matrix: the exact critic's first layer (W^T), or a Gaussian
    sketch. Differentiable in P as well."""

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.matrix = matrix
        self.dim = matrix.shape[1]

    def items(self, q: torch.Tensor) -> torch.Tensor:
        """Q^T P, (d, k)."""
        return q.T @ self.matrix

    def sparse(self, rows, cols, values, n_rows):
        """S P through CSR kernels, (n_rows, k)."""
        return sparse_product(rows, cols, values, self.matrix, n_rows)

    def dense(self) -> torch.Tensor:
        """The matrix, (I, k)."""
        return self.matrix


class GaussianSketch(DenseProjection):
    """P with i.i.d. N(0, 1/p) entries, seeded; a persistent buffer (saved with the run)."""

    def __init__(self, n_items: int, dim: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        super().__init__(torch.randn(n_items, dim, generator=gen) / math.sqrt(dim))
        matrix = self.matrix
        del self.matrix
        self.register_buffer("matrix", matrix)


class SignSketch(Projection):
    """A sparse sign sketch (OSNAP in block form): item i adds +-1/sqrt(nnz) to one bucket in
    each of ``nnz`` blocks of the p outputs. Seeded; the buckets and signs are persistent
    buffers (saved with the run), I x nnz each."""

    def __init__(self, n_items: int, dim: int, nnz: int, seed: int):
        super().__init__()
        self.dim = dim
        nnz = min(nnz, dim)
        gen = torch.Generator().manual_seed(seed)
        # hash j picks a bucket in the j-th block of dim // nnz outputs, so an item's buckets
        # are distinct (the block form of OSNAP)
        block = dim // nnz
        offsets = torch.arange(nnz) * block
        buckets = offsets + torch.randint(block, (n_items, nnz), generator=gen)
        signs = torch.randint(2, (n_items, nnz), generator=gen).float().mul_(2).sub_(1)
        self.register_buffer("buckets", buckets.long())
        self.register_buffer("signs", signs / math.sqrt(nnz))
        self._graph: SparseGraph | None = None
        # the scatter pattern of the last observed pairs: one training step projects several
        # rows over the same pairs (held by reference, so `is` identifies them)
        self._pattern: tuple | None = None

    def _transpose_graph(self) -> SparseGraph:
        """P^T as a fixed sparse graph (k, I) on the sketch's device (built once)."""
        if self._graph is None or self._graph.csr.device != self.buckets.device:
            n_items, nnz = self.buckets.shape
            items = np.repeat(np.arange(n_items), nnz)
            p_t = sp.csr_matrix((self.signs.cpu().numpy().ravel(),
                                 (self.buckets.cpu().numpy().ravel(), items)),
                                shape=(self.dim, n_items))
            self._graph = SparseGraph(p_t, self.buckets.device)
        return self._graph

    def items(self, q: torch.Tensor) -> torch.Tensor:
        """Q^T P = (P^T Q)^T, (d, k), by one sparse product (differentiable in q)."""
        return (self._transpose_graph() @ q).T

    def sparse(self, rows, cols, values, n_rows):
        """S P by scattering each stored value into its item's buckets, (n_rows, k)."""
        cached = self._pattern
        if cached is not None and cached[0] is rows and cached[1] is cols and cached[2] == n_rows:
            target, signs = cached[3], cached[4]
        else:
            target = (rows[:, None] * self.dim + self.buckets[cols]).reshape(-1)
            signs = self.signs[cols]
            self._pattern = (rows, cols, n_rows, target, signs)
        source = (values[:, None] * signs.to(values.dtype)).reshape(-1)
        out = torch.zeros(n_rows * self.dim, dtype=values.dtype, device=values.device)
        return out.index_add(0, target, source).view(n_rows, self.dim)

    def dense(self) -> torch.Tensor:
        """P as a dense (I, k) matrix (for tests)."""
        n_items, nnz = self.buckets.shape
        out = torch.zeros(n_items, self.dim, dtype=self.signs.dtype, device=self.signs.device)
        return out.scatter_add_(1, self.buckets, self.signs)


def make_sketch(kind: str, n_items: int, dim: int, nnz: int, seed: int) -> Projection:
    """The sketch a config asks for: ``sparse`` (sign sketch) or ``gaussian``."""
    if kind == "gaussian":
        return GaussianSketch(n_items, dim, seed)
    return SignSketch(n_items, dim, nnz, seed)


# ------------------------------------------------------------ projected rows
def observed_scores(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                    cols: torch.Tensor) -> torch.Tensor:
    """<p[row], q[col]> at each observed (batch row, item) pair (sorted by row, then item),
    (nnz,)."""
    return sampled_dot(p, q, rows, cols)


def preference_norms(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                     scores: torch.Tensor) -> torch.Tensor:
    """||(p Q^T) * (1 - r)||^2 per row from Q^T Q and the observed scores, (B,)."""
    squared = ((p @ (q.T @ q)) * p).sum(1)
    return (squared - torch.zeros_like(squared).index_add(0, rows, scores.square())).clamp_min(0)


def project_preferences(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        projection: Projection, scores: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """l2norm((p Q^T) * (1 - R)) @ P without forming the (B, I) rows.

    Args: p (B, d) users' vectors; q (I, d) items'; rows, cols: the observed (batch row, item)
    pairs; projection: P (I, k); scores: the observed scores if already computed.
    Returns (B, k). Differentiable in p and q.
    """
    if scores is None:
        scores = observed_scores(p, q, rows, cols)
    inv_norm = 1.0 / preference_norms(p, q, rows, scores).sqrt().clamp_min(1e-12)  # as F.normalize
    low_rank = p @ projection.items(q)
    return inv_norm[:, None] * (low_rank - projection.sparse(rows, cols, scores, len(p)))


class RealRowSketcher:
    """Sketches of the real rows l2norm(softmax(R_u + c g) + lambda sim(u; u*, i*)), see
    :func:`sketched_real_rows`; holds what depends only on P: its column sums and the Cholesky
    factor of P^T P (for the noise)."""

    def __init__(self, projection: Projection):
        self.projection = projection
        self._colsum: torch.Tensor | None = None
        self._chol: torch.Tensor | None = None

    def constants(self, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(1^T P (k,), L with L L^T = P^T P (k, k)), computed once per device and dtype."""
        if self._colsum is None or self._colsum.device != device or self._colsum.dtype != dtype:
            proj = self.projection
            n_items = _n_items(proj)
            with torch.no_grad():
                ones = torch.ones(n_items, 1, device=device, dtype=dtype)
                self._colsum = proj.items(ones).reshape(-1)
                gram = _gram(proj).to(dtype)
                eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
                self._chol = torch.linalg.cholesky(gram + 1e-6 * gram.diagonal().mean() * eye)
        return self._colsum, self._chol


def sketched_real_rows(users_p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                       cols: torch.Tensor, n_items: int, sketcher: RealRowSketcher,
                       noise_scale: float, pref_scale: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Sketch of the real rows l2norm(softmax(R_u + c g) + lambda * sim(u; u*, i*)) @ P, (B, k).

    Args:
        users_p: (B, d) the batch users' final embeddings u*; q: (I, d) the items' i*.
        rows, cols: the observed (batch row, item) pairs of R[users].
        noise_scale: c = gumbel_scale / real_tau, the weight of the Gumbel noise g; pref_scale:
            lambda (real_pref_scale).

    Without noise, softmax(R_u) = (1 + (e - 1) R_u) / Z with Z = (I - n_u) + e n_u, so its
    sketch is (1^T P + (e - 1) sum_obs P_i) / Z, and the row norm needs only Z, n_u and
    <softmax, sim> = (p sum_i Q_i - sum_obs s_ui) / (Z ||...||). With noise, each item's weight
    w_i = e^{R_ui} is multiplied by e^{c g_i} (g standard Gumbel): the sketch then has the mean
    above and, to first order, covariance s^2 (P^T P + (e^2 - 1) sum_obs P_i P_i^T) /
    (Z (1 + m))^2, where m = Gamma(1 - c) - 1 and s^2 = Gamma(1 - 2c) - Gamma(1 - c)^2 are the
    mean and variance of e^{c g} - 1. That Gaussian is drawn in sketch space: z L^T (L L^T =
    P^T P) plus sqrt(e^2 - 1) sum_obs xi_i P_i, with z and xi standard normal. Left out: the
    normaliser's own fluctuation and the noise's share of the row norm (both of relative size
    1 / I). At the authors' values (c = 2e-3, lambda = 100) the noise is below 1e-6 of the
    row's norm.
    """
    colsum, chol = sketcher.constants(q.device, q.dtype)
    proj = sketcher.projection
    n = len(users_p)
    n_obs = torch.zeros(n, dtype=q.dtype, device=q.device).index_add(
        0, rows, torch.ones(len(rows), dtype=q.dtype, device=q.device))
    e = math.e
    z = (n_items - n_obs) + e * n_obs  # softmax's normaliser without noise
    observed_sum = proj.sparse(rows, cols, torch.ones(len(rows), dtype=q.dtype, device=q.device), n)
    soft = (colsum[None, :].to(q.dtype) + (e - 1) * observed_sum) / z[:, None]
    if noise_scale > 0:
        mean = math.gamma(1 - noise_scale) - 1
        spread = math.sqrt(max(math.gamma(1 - 2 * noise_scale) - math.gamma(1 - noise_scale) ** 2, 0.0))
        draws = torch.randn(n, proj.dim, dtype=q.dtype, device=q.device, generator=generator)
        per_item = torch.randn(len(rows), dtype=q.dtype, device=q.device, generator=generator)
        noise = draws @ chol.T.to(q.dtype) + math.sqrt(e * e - 1) * proj.sparse(rows, cols, per_item, n)
        soft = soft + (spread / (1 + mean)) * noise / z[:, None]
    scores = observed_scores(users_p, q, rows, cols)
    norm = preference_norms(users_p, q, rows, scores).sqrt()
    inv = 1.0 / norm.clamp_min(1e-12)
    sim = inv[:, None] * (users_p @ proj.items(q) - proj.sparse(rows, cols, scores, n))
    sim_sq = (norm * inv).square()  # 1, or 0 for an all-zero row (F.normalize's eps)
    unobserved_sum = users_p @ q.sum(0) - torch.zeros_like(z).index_add(0, rows, scores)
    soft_sim = unobserved_sum * inv / z  # <softmax, sim>: sim is zero on observed items
    soft_sq = ((n_items - n_obs) + e * e * n_obs) / z.square()
    total = soft_sq + pref_scale ** 2 * sim_sq + 2 * pref_scale * soft_sim
    return (soft + pref_scale * sim) / total.clamp_min(0).sqrt().clamp_min(1e-12)[:, None]


def _n_items(proj: Projection) -> int:
    if isinstance(proj, SignSketch):
        return proj.buckets.shape[0]
    return proj.dense().shape[0]


def _gram(proj: Projection) -> torch.Tensor:
    """P^T P (k, k), dense."""
    if isinstance(proj, SignSketch):
        p_t = proj._transpose_graph()
        dense_pt = p_t.csr.to_dense() if p_t.shape[1] <= 4096 else None
        if dense_pt is not None:
            return dense_pt @ dense_pt.T
        # large catalogues: P^T P by scipy on the CPU (sparse times sparse)
        n_items, nnz = proj.buckets.shape
        items = np.repeat(np.arange(n_items), nnz)
        m = sp.csr_matrix((proj.signs.cpu().numpy().ravel(), (proj.buckets.cpu().numpy().ravel(), items)),
                          shape=(proj.dim, n_items))
        return torch.from_numpy((m @ m.T).toarray().astype(np.float32)).to(proj.buckets.device)
    matrix = proj.dense()
    return matrix.T @ matrix


__all__ = ["DenseProjection", "GaussianSketch", "Projection", "RealRowSketcher", "SignSketch",
           "make_sketch", "observed_scores", "preference_norms", "project_preferences",
           "sketched_real_rows"]
