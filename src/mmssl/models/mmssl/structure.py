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
import torch.nn.functional as F

from mmssl.models import shards
from mmssl.models.graph import SparseGraph

# Dense blocks (rows x items) are cut into row chunks of at most this many scores: at 1M items a
# block of 16 users, never a (B, I) block where B is the batch.
BLOCK_ELEMENTS = 1 << 24

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


class StructureLearning:
    """MMSSL's preference rows and the rebuilds of its modality graphs (a mixin of the model:
    it uses ``train_csr``, ``structure``, ``k``, ``modalities``, ``forward`` and ``_autocast``)."""

    def _observed(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R[users]: dense 0/1 rows (B, I) and the (batch row, item) index pairs of their ones."""
        rows, cols = self._observed_pairs(users)
        dense = torch.zeros(len(users), self.n_items, device=self.device)
        dense[rows, cols] = 1.0
        return dense, rows, cols

    def _observed_pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (batch row, item) pairs of R[users]'s ones, int64 on the model's device."""
        sub = self.train_csr[users.cpu().numpy()].tocoo()
        return (torch.from_numpy(sub.row).long().to(self.device),
                torch.from_numpy(sub.col).long().to(self.device))

    def preference_rows(self, users: torch.Tensor, user: torch.Tensor, item: torch.Tensor,
                        observed: torch.Tensor) -> torch.Tensor:
        """sim(users; P, Q) = l2norm((P[users] Q^T) * (1 - R[users])), (B, I)."""
        with self._autocast():
            scores = user[users] @ item.T
        return F.normalize(scores.float() * (1.0 - observed), dim=1)

    def _topk_items(self, users: torch.Tensor, user: torch.Tensor, item: torch.Tensor,
                    observed: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each user's k best items under sim(users; user, item), in row chunks of at most
        BLOCK_ELEMENTS scores (``observed``: the dense rows, when the caller has them)."""
        if observed is not None and len(users) * self.n_items <= BLOCK_ELEMENTS:
            return topk_edges(users, self.preference_rows(users, user, item, observed), self.k)
        rows_at_once = max(1, BLOCK_ELEMENTS // self.n_items)
        parts = []
        for start in range(0, len(users), rows_at_once):
            chunk = users[start:start + rows_at_once]
            parts.append(topk_edges(chunk, self.preference_rows(chunk, user, item,
                                                                 self._observed(chunk)[0]), self.k))
        return np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts])

    def _official_graph_step(self, step: int, users: torch.Tensor, out: dict[str, Any],
                             observed: torch.Tensor | None, obs_rows=None, obs_cols=None) -> None:
        """The code's rule: every T steps rebuild G_m from the edges gathered since the last
        rebuild; on the other steps gather each batch user's top-k items (departure 4)."""
        if step % self.config.graph_refresh_steps == 0 and step != 0:
            self.structure.rebuild_from_pending()
        elif self.k > 0:
            with torch.no_grad():
                for j, m in enumerate(self.modalities):
                    self.structure.pending[m].append(shards.concat(*self._topk_items(
                        users, out["user_modal"][j].detach(), out["item_modal"][j].detach(), observed)))

    def refresh_graphs(self, batch_size: int = 1024) -> None:
        """Rebuild every G_m from all users' top-k items under sim(u_m, i_m) (refresh mode)."""
        was_training = self.training
        self.eval()
        batch_size = max(1, min(batch_size, BLOCK_ELEMENTS // self.n_items))
        with torch.no_grad():
            out = self.forward()
            for j, m in enumerate(self.modalities):
                rows, cols = [], []
                for start in range(0, self.n_users, batch_size):
                    users = torch.arange(start, min(start + batch_size, self.n_users), device=self.device)
                    block = self.preference_rows(users, out["user_modal"][j], out["item_modal"][j],
                                                 self._observed(users)[0])
                    r, c = topk_edges(users, block, self.k)
                    rows.append(r)
                    cols.append(c)
                self.structure.set(m, np.concatenate(rows), np.concatenate(cols))
        self.train(was_training)



__all__ = ["BLOCK_ELEMENTS", "ModalityGraphs", "StructureLearning", "row_normalised", "topk_edges"]
