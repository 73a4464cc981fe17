"""MMSSL's structure learning: the modality-aware user-item graphs G_m and their rebuilds.

Each G_m (U x I) starts as the training graph A_ui and is replaced by generated graphs: each
user's top-k items under the modality's preference sim(u_m, i_m). ``official`` mode follows the
public code's rule, which empties every G_m from the third step on (method page, departure 4);
``refresh`` mode rebuilds every user's top-k on a schedule of epochs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mmssl.models.graph import SparseGraph

Edges = tuple[np.ndarray, np.ndarray]  # (user rows, item cols), int64


def row_normalised(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                   device: torch.device | str | None = None) -> SparseGraph:
    """D^{-1/2} X, X the 0/1 matrix of the edges (duplicates summed, as scipy does in the
    code), D its row degrees (+1e-8)."""
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    degree = np.asarray(x.sum(axis=1)).ravel()
    return SparseGraph(sp.diags(np.power(degree + 1e-8, -0.5).astype(np.float32)) @ x, device)


def topk_edges(users: torch.Tensor, rows: torch.Tensor, k: int) -> Edges:
    """Each row's k highest items as (user, item) edges; ``rows`` (B, I) scores of ``users``."""
    k = min(k, rows.shape[1])
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = torch.topk(rows, k, dim=1).indices
    return users.repeat_interleave(k).cpu().numpy(), top.reshape(-1).cpu().numpy()


class ModalityGraphs:
    """The edges of every G_m (None: still the training graph), the edges gathered for the next
    official rebuild, and the normalised graphs built from them (cached)."""

    def __init__(self, modalities: list[str], n_users: int, n_items: int):
        self.n_users, self.n_items = n_users, n_items
        self.edges: dict[str, Edges | None] = dict.fromkeys(modalities)
        self.pending: dict[str, list[Edges]] = {m: [] for m in modalities}
        self._built: dict[str, tuple[SparseGraph, SparseGraph] | None] = {}

    def graph(self, m: str, base: tuple[SparseGraph, SparseGraph], device: torch.device
              ) -> tuple[SparseGraph, SparseGraph] | None:
        """(G_m user side (U, I), item side (I, U)), ``base`` while untouched, None if empty."""
        edges = self.edges[m]
        if edges is None:
            return base
        if m not in self._built:
            rows, cols = edges
            self._built[m] = None if len(rows) == 0 else (
                row_normalised(rows, cols, (self.n_users, self.n_items), device),
                row_normalised(cols, rows, (self.n_items, self.n_users), device))
        return self._built[m]

    def all_empty(self) -> bool:
        """True when every G_m has been emptied (the official code from its third step on)."""
        return all(e is not None and len(e[0]) == 0 for e in self.edges.values())

    def set(self, m: str, rows: np.ndarray, cols: np.ndarray) -> None:
        """Replace G_m by the given edges."""
        self.edges[m] = (rows.astype(np.int64), cols.astype(np.int64))
        self._built.pop(m, None)

    def rebuild_from_pending(self) -> None:
        """The official rebuild: every G_m from the edges gathered since the last one."""
        for m, parts in self.pending.items():
            rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
            cols = np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.int64)
            self.set(m, rows, cols)
            self.pending[m] = []

    def state(self) -> dict[str, Any]:
        """Checkpointable form (tensors only)."""
        graphs = {}
        for m, edges in self.edges.items():
            graphs[m] = {"base": edges is None,
                         "rows": torch.from_numpy(edges[0]) if edges else torch.zeros(0, dtype=torch.long),
                         "cols": torch.from_numpy(edges[1]) if edges else torch.zeros(0, dtype=torch.long)}
        pending = {m: [(torch.from_numpy(r), torch.from_numpy(c)) for r, c in parts]
                   for m, parts in self.pending.items()}
        return {"graphs": graphs, "pending": pending}

    def load(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        for m, g in state.get("graphs", {}).items():
            if g["base"]:
                self.edges[m] = None
                self._built.pop(m, None)
            else:
                self.set(m, g["rows"].cpu().numpy(), g["cols"].cpu().numpy())
        for m, parts in state.get("pending", {}).items():
            self.pending[m] = [(r.cpu().numpy(), c.cpu().numpy()) for r, c in parts]


__all__ = ["ModalityGraphs", "row_normalised", "topk_edges"]
