"""Sparse graphs shared by the graph-based models.

* ``bipartite_adjacency``: the normalised (U + I, U + I) user-item adjacency of LightGCN-style
  propagation, built once with scipy.
* ``SparseGraph``: a fixed sparse matrix G with ``G @ X`` differentiable in X (CSR kernels both
  ways; ``bf16_matmul``: in bfloat16 on a CPU); a module, so that it follows ``model.to(device)``.
* ``propagate_mean``: LightGCN's mean of the layers E^(0..L) on a graph.
* ``sparse_product``: ``S @ X`` for a sparse S whose values carry gradients (learned graphs).
* ``knn_edges``, ``coalesce``, ``sym_normalise``: item-item kNN graphs from modality features,
  kept sparse (top-k per row, computed in chunks of rows).

All-zero feature rows (an item with nothing in a modality, e.g. a film with no knowledge-graph
link) have no direction, so their cosine similarity to anything is meaningless: ``knn_edges``
gives such items no edges at all, neither as a source nor as anybody's neighbour. Without this
the similarity is 0/0 (NaN, stock LATTICE) or, with an epsilon, 0 to every item, which makes
zero rows everybody's tie-broken neighbour.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def quiet_csr():
    """Silence torch's "Sparse CSR tensor support is in beta" notice where we build CSR tensors
    (the kernels used here are covered by tests); other warnings pass through."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        yield

# ---------------------------------------------------------------- user-item graphs


def bipartite_adjacency(train: sp.spmatrix, norm: str = "sym") -> sp.csr_matrix:
    """The (U + I, U + I) adjacency A = [[0, R], [R^T, 0]] of the training matrix R (U, I), normalised.

    Args:
        train: (n_users, n_items) training interactions; any positive entry is an edge.
        norm: ``"sym"``: D^{-1/2} A D^{-1/2}, D the node degrees + 1e-7 (LightGCN, FREEDOM and
            BM3 in MMRec); ``"left_self_loops"``: D^{-1} (A + I), D the degrees of A + I
            (LATTICE in MMRec).

    Returns:
        float32 CSR (n_users + n_items, n_users + n_items); users first, then items.
    """
    r = sp.csr_matrix(train, dtype=np.float32)
    r.data[:] = 1.0
    r.sum_duplicates()
    r.data[:] = 1.0
    adj = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if norm == "sym":
        degree = np.asarray(adj.sum(axis=1)).ravel() + 1e-7
        d = sp.diags(np.power(degree, -0.5).astype(np.float32))
        return (d @ adj @ d).tocsr().astype(np.float32)
    if norm == "left_self_loops":
        adj = adj + sp.eye(adj.shape[0], dtype=np.float32, format="csr")
        degree = np.asarray(adj.sum(axis=1)).ravel()
        return (sp.diags((1.0 / degree).astype(np.float32)) @ adj).tocsr().astype(np.float32)
    raise ValueError(f"unknown normalisation {norm!r}")


class SparseGraph(nn.Module):
    """A fixed sparse matrix G (n, m) for products ``G @ X`` with gradients for X; CSR kernels,
    with G^T stored too so the backward pass is also a CSR product. Its tensors are
    non-persistent buffers: they move with the model and stay out of checkpoints."""

    def __init__(self, matrix: sp.spmatrix, device: torch.device | str | None = None):
        super().__init__()
        self.shape = matrix.shape
        self.nnz = matrix.nnz
        self.register_buffer("csr", _to_torch_csr(sp.csr_matrix(matrix), device), persistent=False)
        self.register_buffer("csr_t", _to_torch_csr(sp.csr_matrix(matrix.T), device),
                             persistent=False)
        self._bf16: dict[bool, torch.Tensor] = {}  # bf16_values, made on first use

    @classmethod
    def from_edges(cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                   shape: tuple[int, int], device: torch.device | str | None = None) -> SparseGraph:
        """The graph with entries ``values`` at (rows, cols); duplicates are summed."""
        m = sp.coo_matrix((values.detach().cpu().numpy().astype(np.float32),
                           (rows.cpu().numpy(), cols.cpu().numpy())), shape=shape)
        return cls(m.tocsr(), device)

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        """``G @ X``, differentiable in X: float32 CSR products both ways (a half-precision X is
        upcast first, also under autocast: CPU sparse kernels have no bfloat16)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return _GraphProduct.apply(x.float() if x.dtype in _HALF else x, self, False)

    def bf16_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``G @ X`` with the product in bfloat16 on a CPU, for products that wait on memory (half
        the bytes gathered per edge): X and G's values rounded to bfloat16, the sums in float32,
        the result rounded once to bfloat16 and returned as float32; the backward the same with
        G^T. So everything around the product stays float32. Elsewhere (CUDA, MPS) ``G @ X``."""
        if x.device.type != "cpu":
            return self @ x
        with torch.autocast(device_type="cpu", enabled=False):
            return _GraphProduct.apply(x.float(), self, True)

    def bf16_values(self, transposed: bool) -> torch.Tensor:
        """G's (or G^T's) values in bfloat16, made once per device (one copy per graph)."""
        csr = self.csr_t if transposed else self.csr
        cached = self._bf16.get(transposed)
        if cached is None or cached.device != csr.device:
            cached = self._bf16[transposed] = csr.values().to(torch.bfloat16)
        return cached

    def rows_product(self, rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(G @ X)[rows]`` (len(rows), d) from those rows of G only, differentiable in X;
        ``rows`` distinct and sorted (``torch.unique``). The same sums in the same order as
        ``G @ X``, so the values and X's gradient are bit-identical to taking the rows after."""
        crow, col = self.csr.crow_indices().long(), self.csr.col_indices()
        starts = crow[rows]
        counts = crow[rows + 1] - starts
        local = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
        shift = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        entry = shift + torch.arange(len(local), device=rows.device)
        return sparse_product(local, col[entry].long(), self.csr.values()[entry], x, len(rows))

    def extra_repr(self) -> str:
        """Shape and stored entries, for ``print(model)``."""
        return f"shape={tuple(self.shape)}, nnz={self.nnz}"


def propagate_mean(graph: SparseGraph, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's mean of E^(0..L), E^(l+1) = graph @ E^(l); ego (n, d) -> (n, d)."""
    total, e = ego, ego
    for _ in range(n_layers):
        e = graph @ e
        total = total + e
    return total / (n_layers + 1)


_HALF = (torch.bfloat16, torch.float16)


class _GraphProduct(torch.autograd.Function):
    """G @ X, its backward G^T @ grad; ``low``: both in bfloat16 (:func:`_graph_product`),
    float32 in and out."""

    @staticmethod
    def forward(ctx, x, graph, low):
        ctx.graph, ctx.low = graph, low
        return _graph_product(graph, x, transposed=False, low=low)

    @staticmethod
    def backward(ctx, grad):
        return _graph_product(ctx.graph, grad.contiguous(), transposed=True, low=ctx.low), None, None


def _graph_product(graph: SparseGraph, x: torch.Tensor, transposed: bool, low: bool) -> torch.Tensor:
    """G @ X (or G^T @ X): the CSR product in X's dtype; ``low``: X rounded to bfloat16 and read
    through ``embedding_bag`` with G's rows as bags (CPU sparse kernels have no bfloat16), which
    sums in float32 and rounds the result to bfloat16 once; returned as float32."""
    csr = graph.csr_t if transposed else graph.csr
    if not low:
        return csr_product(csr.to(x.dtype), x)
    x = x.to(torch.bfloat16)
    with torch.profiler.record_function("mmssl::csr_product"):  # the product alone, not the casts
        y = F.embedding_bag(csr.col_indices(), x, csr.crow_indices()[:-1], mode="sum",
                            per_sample_weights=graph.bf16_values(transposed))
    return y.float()


def csr_product(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``s @ x`` for a CSR ``s`` without zeroing the output first: ``addmm`` with beta=0 ignores
    its (uninitialised) input and writes every row, empty rows as zeros; with the input as its
    own ``out`` nothing is copied either. The same values bit for bit; at 1M items the zero
    fill and the copy were a fifth of each product's time."""
    out = x.new_empty(s.shape[0], x.shape[1])
    with torch.profiler.record_function("mmssl::csr_product"):  # a label for profiles
        return torch.addmm(out, s, x, beta=0, out=out)


def _to_torch_csr(m: sp.csr_matrix, device: torch.device | str | None) -> torch.Tensor:
    m = m.copy()
    m.sum_duplicates()
    m.sort_indices()
    # int32 indices where they fit: a third less memory than int64, the same products
    index = np.int32 if max(m.nnz, *m.shape) < 2**31 - 1 else np.int64
    with quiet_csr():
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(index)),
            torch.from_numpy(m.indices.astype(index)),
            torch.from_numpy(m.data.astype(np.float32)), m.shape, device=device,
            check_invariants=False)


# ------------------------------------------------------- graphs with learned values


def sparse_product(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                   dense: torch.Tensor, n_rows: int) -> torch.Tensor:
    """S @ X, S (n_rows, m) sparse with entries ``values`` at (rows, cols), X (m, d) dense.

    Differentiable in ``values`` and ``dense``. The entries must be coalesced and sorted by
    (row, col), as ``coalesce`` returns them. Returns (n_rows, d). Runs in float32 (or
    float64) even under autocast: CPU sparse kernels have no bfloat16.
    """
    with torch.autocast(device_type=dense.device.type, enabled=False):
        if dense.dtype in (torch.bfloat16, torch.float16):
            dense = dense.float()
        return _SparseValuesProduct.apply(values.to(dense.dtype), rows, cols, dense, n_rows)


class _SparseValuesProduct(torch.autograd.Function):
    """CSR kernels both ways: PyTorch's COO product is several times slower on CPUs, and its
    CSR product has no gradient for the values."""

    @staticmethod
    def forward(ctx, values, rows, cols, dense, n_rows):
        crow = torch.ops.aten._convert_indices_from_coo_to_csr(rows, n_rows)
        with quiet_csr():
            s = torch.sparse_csr_tensor(crow, cols, values.to(dense.dtype),
                                        (n_rows, dense.shape[0]), check_invariants=False)
        ctx.save_for_backward(values, rows, cols, crow, dense)
        return csr_product(s, dense)

    @staticmethod
    def backward(ctx, grad):
        with quiet_csr():
            return _SparseValuesProduct._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        values, rows, cols, crow, dense = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_dense = None
        if ctx.needs_input_grad[0]:  # <grad[row], dense[col]> at each stored entry
            pattern = torch.sparse_csr_tensor(crow, cols, torch.zeros_like(values, dtype=grad.dtype),
                                              (grad.shape[0], dense.shape[0]), check_invariants=False)
            grad_values = torch.sparse.sampled_addmm(pattern, grad, dense.T).values().to(values.dtype)
        if ctx.needs_input_grad[3]:  # S^T @ grad
            order = torch.argsort(cols * grad.shape[0] + rows)
            crow_t = torch.ops.aten._convert_indices_from_coo_to_csr(cols[order], dense.shape[0])
            s_t = torch.sparse_csr_tensor(crow_t, rows[order], values[order].to(grad.dtype),
                                          (dense.shape[0], grad.shape[0]), check_invariants=False)
            grad_dense = csr_product(s_t, grad)
        return grad_values, None, None, grad_dense, None


def sampled_dot(p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor,
                cols: torch.Tensor) -> torch.Tensor:
    """<p[row], q[col]> at each (row, col) pair, (nnz,): the entries of P Q^T on a sparsity
    pattern, without a (nnz, d) gather. Differentiable in p and q.

    The pairs must be sorted by (row, col) (as a CSR matrix stores them); p (n, d), q (m, d).
    Runs in float32 (or float64) even under autocast. Above 2^22 entries of P Q^T the kernel's
    cost grows with m, so rows of p and q are gathered instead (O(nnz d)).
    """
    with torch.autocast(device_type=p.device.type, enabled=False):
        if p.dtype in (torch.bfloat16, torch.float16):
            p, q = p.float(), q.float()
        if p.shape[0] * q.shape[0] > 1 << 22:
            return (p[rows] * q[cols]).sum(1)
        return _SampledDot.apply(p, q, rows, cols)


class _SampledDot(torch.autograd.Function):
    """Forward: sampled_addmm on the pattern; backward: two CSR products, S q and S^T p."""

    @staticmethod
    def forward(ctx, p, q, rows, cols):
        crow = torch.ops.aten._convert_indices_from_coo_to_csr(rows, p.shape[0])
        with quiet_csr():
            pattern = torch.sparse_csr_tensor(crow, cols, torch.zeros(len(cols), dtype=p.dtype,
                                                                      device=p.device),
                                              (p.shape[0], q.shape[0]), check_invariants=False)
            out = torch.sparse.sampled_addmm(pattern, p.contiguous(), q.T.contiguous()).values()
        ctx.save_for_backward(p, q, rows, cols)
        return out

    @staticmethod
    def backward(ctx, grad):
        p, q, rows, cols = ctx.saved_tensors
        grad_p = grad_q = None
        if ctx.needs_input_grad[0]:
            grad_p = sparse_product(rows, cols, grad, q, p.shape[0])
        if ctx.needs_input_grad[1]:
            order = torch.argsort(cols * p.shape[0] + rows)
            grad_q = sparse_product(cols[order], rows[order], grad[order], p, q.shape[0])
        return grad_p, grad_q, None, None


def coalesce(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
             n_cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort entries by (row, col) and sum duplicates (differentiable in ``values``)."""
    keys = rows * n_cols + cols
    unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    summed = torch.zeros(len(unique), dtype=values.dtype, device=values.device).index_add(0, inverse, values)
    return unique // n_cols, unique % n_cols, summed


def sym_normalise(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                  n: int) -> torch.Tensor:
    """Values of D^{-1/2} S D^{-1/2}, D the row sums of the (n, n) matrix S.

    Rows whose sum is not positive (no edges, or similarities summing below zero) get
    D^{-1/2} = 0 instead of inf or NaN, so they propagate nothing.
    """
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)
    positive = degree > 0
    inv_sqrt = torch.where(positive, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))
    return values * inv_sqrt[rows] * inv_sqrt[cols]


# ------------------------------------------------------------------- kNN graphs


def nonzero_rows(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Bool (n,): True where a feature row has at least one non-zero entry."""
    if isinstance(features, torch.Tensor):
        return (features != 0).any(dim=1)
    return torch.from_numpy(np.asarray((np.asarray(features) != 0).any(axis=1)))


def knn_edges(features: torch.Tensor, k: int, valid: torch.Tensor | None = None,
              chunk_rows: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each item's k most cosine-similar items (itself included, as in MMRec), kept sparse.

    Args:
        features: (n, dim) item features; gradients flow into the returned similarities.
        k: neighbours per item (fewer when fewer than k items are valid).
        valid: bool (n,) items allowed in the graph; default: the non-zero feature rows.
            Invalid items get no edges, neither as a source nor as a neighbour.
        chunk_rows: rows of the (chunk, n) similarity block computed at once.

    Returns:
        rows, cols: int64 (E,), sorted by row, E = k * (valid items); sims: (E,) cosine
        similarities (differentiable).
    """
    device = features.device
    if valid is None:
        valid = nonzero_rows(features.detach())
    valid = valid.to(device)
    sources = torch.nonzero(valid).flatten()
    k = min(k, len(sources))
    if k == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, features.new_zeros(0)
    unit = F.normalize(features, dim=1)  # eps: a zero row stays zero instead of 0/0
    excluded = ~valid
    rows, cols, sims = [], [], []
    for start in range(0, len(sources), chunk_rows):
        src = sources[start:start + chunk_rows]
        block = (unit[src] @ unit.T).masked_fill(excluded, float("-inf"))
        top = torch.topk(block, k, dim=1)
        rows.append(src.repeat_interleave(k))
        cols.append(top.indices.reshape(-1))
        sims.append(top.values.reshape(-1))
    return torch.cat(rows), torch.cat(cols), torch.cat(sims)


__all__ = [
    "SparseGraph",
    "bipartite_adjacency",
    "coalesce",
    "knn_edges",
    "nonzero_rows",
    "propagate_mean",
    "quiet_csr",
    "sampled_dot",
    "sparse_product",
    "sym_normalise",
]
