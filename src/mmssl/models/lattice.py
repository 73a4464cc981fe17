"""LATTICE: item-item structures learned from modality features, on top of LightGCN.

Zhang, Zhu, Liu, Wu, Wang, Wang. "Mining Latent Structures for Multimedia Recommendation."
ACM MM 2021 (arXiv 2104.09036). As implemented in MMRec (``src/models/lattice.py``, with its
default ``cf_model: lightgcn``):

* Per modality m, a fixed graph S_m from the raw features: each item's ``knn_k`` most
  cosine-similar items (itself included), similarities as weights, normalised
  D^{-1/2} S D^{-1/2} (D the row sums).
* A learned graph from trainable features (``nn.Embedding.from_pretrained(freeze=False)`` in
  MMRec) through a linear encoder per modality: the same kNN construction per modality, summed
  with weights softmax(alpha), then normalised; mixed with the fixed graphs as
  A = (1 - lambda) * learned + lambda * sum_m softmax(alpha)_m S_m.
* h = A^n_item_layers E_item (ID embeddings); users and items propagated LightGCN-style
  (mean of layers) on D^{-1}(A_ui + I), the row-normalised bipartite adjacency with self-loops;
  item embedding = propagated + l2norm(h).
* BPR loss -mean log sigmoid(s_pos - s_neg) plus ``reg_weight`` * (sum of squared batch
  embeddings) / (2 * batch size).
* As in MMRec, the learned graph is rebuilt with gradients on the first batch of each epoch and
  reused (detached) on the others, and rebuilt for every evaluation; the learning rate decays as
  lr * 0.96 ** (epoch / 50).

Modalities: MMRec's two (image, text) with weights softmax(alpha), alpha initialised equal,
generalise to M >= 1 modalities with one alpha per modality (initialised 1/M; with one modality
the weight is 1). Items whose raw features are all zero in a modality get no edges in that
modality's fixed or learned graph, neither as a source nor as a neighbour (see
``mmssl.models.graph``); stock MMRec divides by their zero norm and spreads NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    UnitInterval,
)
from mmssl.data.dataset import Dataset
from mmssl.models.base import Batch, Model, Optimizers, module_key
from mmssl.models.graph import (
    SparseGraph,
    bipartite_adjacency,
    coalesce,
    knn_edges,
    nonzero_rows,
    propagate_mean,
    sparse_product,
    sym_normalise,
)
from mmssl.models.losses import log_sigmoid_bpr, squared_norm_loss
from mmssl.models.registry import register

Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # rows, cols, values; sorted, coalesced


@dataclass(frozen=True)
class LATTICEConfig:
    """LATTICE settings; defaults are MMRec's (``configs/overall.yaml``,
    ``configs/model/LATTICE.yaml``, first value of each grid)."""

    embed_dim: PositiveInt = 64  # d, user and item ID embedding width (MMRec embedding_size)
    feat_embed_dim: PositiveInt = 64  # width of the encoded features the learned graph is built from (MMRec feat_embed_dim)
    n_ui_layers: NonNegativeInt = 2  # LightGCN layers on the user-item graph (MMRec len(weight_size))
    n_item_layers: NonNegativeInt = 1  # propagation steps on the item-item graph (MMRec n_layers)
    knn_k: PositiveInt = 10  # neighbours per item in every item-item graph (MMRec knn_k)
    lambda_coeff: UnitInterval = 0.9  # lambda, weight of the fixed graphs against the learned one (MMRec lambda_coeff)
    lr: PositiveFloat = 1e-4  # Adam learning rate (first value of MMRec's grid)
    lr_decay: Annotated[float, Range(gt=0, le=1)] = 0.96  # the learning rate is lr * lr_decay ** (epoch / lr_decay_epochs) (MMRec learning_rate_scheduler)
    lr_decay_epochs: PositiveFloat = 50.0  # epochs per factor lr_decay (MMRec learning_rate_scheduler)
    reg_weight: NonNegativeFloat = 0.0  # weight of the squared-embedding regulariser (first value of MMRec's grid)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


@register("lattice")
class LATTICE(Model):
    """Item-item graphs learned from the modalities on top of LightGCN."""

    Config = LATTICEConfig
    needs_features = True
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"reg_weight": [0.0, 1e-5, 1e-4, 1e-3], "lr": [1e-4, 5e-4, 1e-3, 5e-3]}  # MMRec LATTICE.yaml

    def __init__(self, dataset: Dataset, config: LATTICEConfig):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.modalities = list(dataset.features)
        self.adjacency = SparseGraph(bipartite_adjacency(dataset.matrix("train"), "left_self_loops"))
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        raw = {m: torch.from_numpy(np.array(dataset.features[m], dtype=np.float32)) for m in self.modalities}
        # Trained, as in MMRec; they seed the learned graph only.
        self.features = nn.ParameterDict({module_key(m): nn.Parameter(f.clone()) for m, f in raw.items()})
        self.encoders = nn.ModuleDict({module_key(m): nn.Linear(f.shape[1], config.feat_embed_dim)
                                       for m, f in raw.items()})
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 1.0 / len(self.modalities)))
        # Buffers, not saved: they follow the model's device and come from the dataset.
        for j, m in enumerate(self.modalities):
            valid = nonzero_rows(raw[m])
            self.register_buffer(f"valid_{j}", valid, persistent=False)
            # Fixed graph S_m, normalised per modality.
            rows, cols, sims = knn_edges(raw[m], config.knn_k, valid)
            for part, value in zip(("rows", "cols", "values"),
                                   (rows, cols, sym_normalise(rows, cols, sims, self.n_items))):
                self.register_buffer(f"fixed_{j}_{part}", value, persistent=False)
        self._epoch_graph: Edges | None = None  # the detached graph of the current epoch

    @property
    def fixed_edges(self) -> list[Edges]:
        """Per modality the fixed normalised kNN graph S_m as (rows, cols, values)."""
        return [tuple(getattr(self, f"fixed_{j}_{p}") for p in ("rows", "cols", "values"))
                for j in range(len(self.modalities))]

    def configure_schedulers(self, optimizers: Optimizers) -> dict[str, Any]:
        """lr * lr_decay ** (epoch / lr_decay_epochs), stepped after every epoch (MMRec)."""
        cfg = self.config
        (optimizer,) = optimizers.values()
        return {"lr": torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: cfg.lr_decay ** (epoch / cfg.lr_decay_epochs))}

    # ------------------------------------------------------------------ graphs
    def item_graph(self) -> Edges:
        """A = (1 - lambda) * learned + lambda * fixed, differentiable in the features, the
        encoders and the modality weights; entries sorted and coalesced."""
        cfg, n = self.config, self.n_items
        weight = torch.softmax(self.modal_weight, dim=0)
        learned = []
        for j, m in enumerate(self.modalities):
            rows, cols, sims = knn_edges(self.encoders[module_key(m)](self.features[module_key(m)]), cfg.knn_k,
                                         getattr(self, f"valid_{j}"))
            learned.append((rows, cols, weight[j] * sims))
        rows, cols, values = coalesce(*(torch.cat(x) for x in zip(*learned)), n)
        values = sym_normalise(rows, cols, values, n)
        parts = [(rows, cols, (1 - cfg.lambda_coeff) * values)]
        parts += [(r, c, cfg.lambda_coeff * weight[j] * v) for j, (r, c, v) in enumerate(self.fixed_edges)]
        return coalesce(*(torch.cat(x) for x in zip(*parts)), n)

    def forward(self, graph: Edges | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings: users (U, d) and items (I, d); ``graph`` defaults to a fresh one."""
        rows, cols, values = self.item_graph() if graph is None else graph
        h = self.item_embedding
        for _ in range(self.config.n_item_layers):
            h = sparse_product(rows, cols, values, h, self.n_items)
        ego = torch.cat([self.user_embedding, self.item_embedding])
        final = propagate_mean(self.adjacency, ego, self.config.n_ui_layers)
        return final[: self.n_users], final[self.n_users :] + F.normalize(h, dim=1)

    # ---------------------------------------------------------------- training
    def on_epoch_start(self, epoch: int) -> None:
        """The first batch of each epoch rebuilds the item graph with gradients (MMRec)."""
        self._epoch_graph = None

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BPR (plus the squared-norm regulariser) on this epoch's item graph.

        The first call of an epoch builds the item graph with gradients and keeps it, detached,
        for the epoch's other batches.
        """
        if self._epoch_graph is None:
            graph = self.item_graph()
            self._epoch_graph = tuple(x.detach() for x in graph)
        else:
            graph = self._epoch_graph
        user, item = self.forward(graph)
        u, p, n = user[batch.users], item[batch.pos_items], item[batch.neg_items]
        bpr = log_sigmoid_bpr((u * p).sum(1), (u * n).sum(1))
        reg = squared_norm_loss(u, p, n, batch_size=self.config.batch_size)
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings on a freshly built item graph."""
        return self.forward()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """A restored model rebuilds its epoch graph on the next batch."""
        self._epoch_graph = None


__all__ = ["LATTICE", "LATTICEConfig"]
