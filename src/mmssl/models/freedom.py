"""FREEDOM: a frozen item-item kNN graph and a denoised (pruned) user-item graph.

Zhou, Shen. "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation." ACM MM 2023 (arXiv 2211.06924). As implemented in MMRec
(``src/models/freedom.py``):

* Item-item graph, built once from the raw features and frozen: per modality, each item's
  ``knn_k`` most cosine-similar items (itself included) as 0/1 edges, normalised
  D^{-1/2} S D^{-1/2} (D the row sums + 1e-7); the modality graphs summed with fixed weights.
  h = S^n_mm_layers E_item.
* User-item graph: LightGCN propagation (mean of ``n_ui_layers`` + 1 layers) on the symmetric
  normalised bipartite adjacency. For training, at the start of every epoch a fraction
  ``dropout`` of the training edges is pruned: the kept ones are drawn without replacement with
  probability proportional to 1/sqrt(d_u d_i) (degree-sensitive pruning), then renormalised.
  Evaluation uses the full graph.
* Item embedding = propagated + h; BPR loss -mean log sigmoid(s_pos - s_neg) plus
  ``reg_weight`` times, per modality, the same BPR loss with the items replaced by their
  linearly encoded (trainable, as in MMRec) features. At ``reg_weight = 0`` (the default) the
  encoders take no part in the scores.

Modalities: MMRec fixes the weights of its two graphs at ``mm_image_weight`` = 0.1 for image
and 0.9 for text. Generalised to M >= 1 modalities: ``modality_weights`` in the dataset's
modality order when given; otherwise a modality named ``text`` gets ``text_weight`` (0.9) and
the others share the rest equally (so an image-or-kg + text dataset matches MMRec), and without
a ``text`` modality, or with it alone, all weigh equally. Items whose raw features are all zero
in a modality get no edges in that modality's graph, neither as a source nor as a neighbour
(see ``mmssl.models.graph``); stock MMRec makes them 0/0 rows that pollute the top-k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from mmssl.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
)
from mmssl.data.dataset import Dataset
from mmssl.errors import ConfigError
from mmssl.models.base import Batch, Model, module_key
from mmssl.models.graph import (
    SparseGraph,
    bipartite_adjacency,
    knn_edges,
    nonzero_rows,
    propagate_mean,
)
from mmssl.models.losses import log_sigmoid_bpr
from mmssl.models.registry import register


@dataclass(frozen=True)
class FREEDOMConfig:
    """FREEDOM settings; defaults are MMRec's (``configs/overall.yaml``,
    ``configs/model/FREEDOM.yaml``, first value of each grid)."""

    embed_dim: PositiveInt = 64  # d, user and item ID embedding width (MMRec embedding_size)
    feat_embed_dim: PositiveInt = 64  # width of the encoded features in the modality BPR losses (MMRec feat_embed_dim)
    knn_k: PositiveInt = 10  # neighbours per item in the item-item graph (MMRec knn_k)
    n_mm_layers: NonNegativeInt = 1  # propagation steps on the item-item graph (MMRec n_mm_layers)
    n_ui_layers: NonNegativeInt = 2  # LightGCN layers on the user-item graph (MMRec n_ui_layers)
    dropout: Fraction = 0.8  # fraction of training edges pruned each epoch (first value of MMRec's grid)
    text_weight: UnitInterval = 0.9  # weight of the "text" graph beside other modalities (MMRec 1 - mm_image_weight)
    modality_weights: tuple[NonNegativeFloat, ...] = ()  # explicit graph weights in the dataset's modality order; empty: the text_weight rule
    reg_weight: NonNegativeFloat = 0.0  # weight of the modality BPR losses (first value of MMRec's grid)
    lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


def modality_graph_weights(modalities: list[str], text_weight: float,
                           explicit: tuple[float, ...] = ()) -> list[float]:
    """Fixed weight of each modality's item-item graph (see the module docstring)."""
    if explicit:
        if len(explicit) != len(modalities):
            raise ConfigError(f"modality_weights: {len(explicit)} values for {len(modalities)} "
                              f"modalities ({', '.join(modalities)})")
        return [float(w) for w in explicit]
    if "text" in modalities and len(modalities) > 1:
        rest = (1.0 - text_weight) / (len(modalities) - 1)
        return [text_weight if m == "text" else rest for m in modalities]
    return [1.0 / len(modalities)] * len(modalities)


@register("freedom")
class FREEDOM(Model):
    """A frozen item-item kNN graph and a degree-pruned user-item graph."""

    Config = FREEDOMConfig
    needs_features = True
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"dropout": [0.8, 0.9], "reg_weight": [0.0, 1e-5, 1e-4, 1e-3]}  # MMRec FREEDOM.yaml

    def __init__(self, dataset: Dataset, config: FREEDOMConfig):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.modalities = list(dataset.features)
        train = sp.csr_matrix(dataset.matrix("train"))
        self.adjacency = SparseGraph(bipartite_adjacency(train, "sym"))
        # Training edges and their pruning weights 1/sqrt(d_u d_i).
        coo = train.tocoo()
        self.edge_users = torch.from_numpy(coo.row.astype(np.int64))
        self.edge_items = torch.from_numpy(coo.col.astype(np.int64))
        user_degree = np.asarray(train.sum(axis=1)).ravel() + 1e-7
        item_degree = np.asarray(train.sum(axis=0)).ravel() + 1e-7
        self.edge_weights = torch.from_numpy(
            (user_degree[coo.row] ** -0.5 * item_degree[coo.col] ** -0.5).astype(np.float32))
        self.train_adjacency: SparseGraph | None = None

        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        raw = {m: torch.from_numpy(np.array(dataset.features[m], dtype=np.float32)) for m in self.modalities}
        self.features = nn.ParameterDict({module_key(m): nn.Parameter(f.clone()) for m, f in raw.items()})
        self.encoders = nn.ModuleDict({module_key(m): nn.Linear(f.shape[1], config.feat_embed_dim)
                                       for m, f in raw.items()})
        weights = modality_graph_weights(self.modalities, config.text_weight, config.modality_weights)
        rows, cols, values = [], [], []
        for m, w in zip(self.modalities, weights):
            r, c, _ = knn_edges(raw[m], config.knn_k, nonzero_rows(raw[m]))
            ones = torch.ones(len(r))
            degree = torch.zeros(self.n_items).index_add(0, r, ones) + 1e-7
            rows.append(r)
            cols.append(c)
            values.append(w * degree[r].rsqrt() * degree[c].rsqrt())
        self.item_graph = SparseGraph.from_edges(torch.cat(rows), torch.cat(cols), torch.cat(values),
                                                 (self.n_items, self.n_items))

    def prune_edges(self) -> SparseGraph:
        """The training graph of one epoch: degree-sensitive pruning of the training edges."""
        if self.config.dropout <= 0:
            return self.adjacency
        keep = int(len(self.edge_weights) * (1.0 - self.config.dropout))
        kept = torch.multinomial(self.edge_weights, keep, replacement=False)
        r = sp.csr_matrix((np.ones(keep, dtype=np.float32),
                           (self.edge_users[kept].numpy(), self.edge_items[kept].numpy())),
                          shape=(self.n_users, self.n_items))
        return SparseGraph(bipartite_adjacency(r, "sym"), self.device)

    def forward(self, adjacency: SparseGraph | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings: users (U, d) and items (I, d), propagated on ``adjacency``
        (default: the full training graph)."""
        if adjacency is None:
            adjacency = self.adjacency
        h = self.item_embedding
        for _ in range(self.config.n_mm_layers):
            h = self.item_graph @ h
        ego = torch.cat([self.user_embedding, self.item_embedding])
        final = propagate_mean(adjacency, ego, self.config.n_ui_layers)
        return final[: self.n_users], final[self.n_users :] + h

    def loss(self, batch: Batch, adjacency: SparseGraph | None = None) -> dict[str, torch.Tensor]:
        """Loss components of one batch (``loss`` first, the one to minimise), propagating on
        ``adjacency`` (default: this epoch's pruned graph)."""
        if adjacency is None:
            if self.train_adjacency is None:
                self.train_adjacency = self.prune_edges()
            adjacency = self.train_adjacency
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        user, item = self.forward(adjacency)
        u = user[users]
        bpr = log_sigmoid_bpr((u * item[pos]).sum(1), (u * item[neg]).sum(1))
        modal = u.new_zeros(())
        for m in self.modalities:
            encode, feats = self.encoders[module_key(m)], self.features[module_key(m)]
            p, n = encode(feats[pos]), encode(feats[neg])
            modal = modal + log_sigmoid_bpr((u * p).sum(1), (u * n).sum(1))
        return {"loss": bpr + self.config.reg_weight * modal, "bpr": bpr, "modal_bpr": modal}

    def on_epoch_start(self, epoch: int) -> None:
        """Each epoch trains on a freshly pruned user-item graph."""
        self.train_adjacency = self.prune_edges()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings propagated on the full (unpruned) training graph."""
        return self.forward(self.adjacency)



__all__ = ["FREEDOM", "FREEDOMConfig", "modality_graph_weights"]
