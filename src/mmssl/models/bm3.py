"""BM3: bootstrapped multimodal representations, without negative samples.

Zhou, Zhou, Zhang, Liu, Gao, Zhang, Huang, Miao. "Bootstrap Latent Representations for
Multi-modal Recommendation." WWW 2023 (arXiv 2207.05969). As implemented in MMRec
(``src/models/bm3.py``):

* Online embeddings: LightGCN propagation (mean of ``n_layers`` + 1 layers) on the symmetric
  normalised bipartite adjacency; item embedding = propagated + ID embedding. Per modality, a
  linear encoder (Xavier-normal weight) of the trainable (as in MMRec) features.
* Targets: the online embeddings, detached, through dropout ``dropout`` (always on, as
  ``F.dropout`` defaults in MMRec). A shared linear predictor (Xavier-normal weight) maps online
  embeddings into the target space.
* Loss on a batch of training (user, item) pairs (negatives unused):
  (1 - cos(pred(u), target(i))) + (1 - cos(pred(i), target(u)))
  + ``reg_weight`` * (||U||_F + ||I||_F) / I over all online embeddings
  + ``cl_weight`` * sum over modalities m of (1 - cos(pred(f_m(i)), target(i)))
  + (1 - cos(pred(f_m(i)), target(f_m(i)))), each term a mean over the batch.
* Score <pred(u), pred(i)>.

Modalities: MMRec's two modality terms (text, image) generalise to one encoder and one pair of
terms per modality, summed, for any M >= 1, with the predictor shared as in MMRec. BM3 builds no
item-item graph; an all-zero feature row encodes to the encoder's bias, and cosine similarity
keeps an epsilon, so it needs no special case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.config import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from mmssl.data.dataset import Dataset
from mmssl.models.base import Batch, Model, module_key
from mmssl.models.graph import SparseGraph, bipartite_adjacency, propagate_mean
from mmssl.models.losses import embedding_norm_loss
from mmssl.models.registry import register


@dataclass(frozen=True)
class BM3Config:
    """BM3 settings; defaults are MMRec's (``configs/overall.yaml``, ``configs/model/BM3.yaml``,
    first value of each grid)."""

    embed_dim: PositiveInt = 64  # d, width of the ID embeddings and encoded features (MMRec embedding_size)
    n_layers: NonNegativeInt = 1  # LightGCN layers on the user-item graph (first value of MMRec's grid)
    dropout: Fraction = 0.3  # dropout on the targets (first value of MMRec's grid)
    reg_weight: NonNegativeFloat = 0.1  # weight of the embedding-norm loss (first value of MMRec's grid)
    cl_weight: NonNegativeFloat = 2.0  # weight of the modality alignment terms (MMRec cl_weight)
    lr: PositiveFloat = 1e-3  # Adam learning rate (MMRec learning_rate)
    batch_size: PositiveInt = 2048  # training interactions per step (MMRec train_batch_size)


def _misalignment(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity between rows, (B, d) each."""
    return 1 - F.cosine_similarity(online, target, dim=-1).mean()


@register("bm3")
class BM3(Model):
    """Bootstrapped latent representations: online/target views, no negative samples."""

    Config = BM3Config
    needs_features = True
    run_defaults = {"patience": 20}  # MMRec stopping_step
    search_space = {"n_layers": [1, 2], "dropout": [0.3, 0.5], "reg_weight": [0.1, 0.01]}  # MMRec BM3.yaml

    def __init__(self, dataset: Dataset, config: BM3Config):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.modalities = list(dataset.features)
        self.adjacency = SparseGraph(bipartite_adjacency(dataset.matrix("train"), "sym"))
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)
        self.features = nn.ParameterDict({
            module_key(m): nn.Parameter(torch.from_numpy(np.array(dataset.features[m], dtype=np.float32)))
            for m in self.modalities})
        self.encoders = nn.ModuleDict({module_key(m): nn.Linear(self.features[module_key(m)].shape[1], d) for m in self.modalities})
        for enc in self.encoders.values():
            nn.init.xavier_normal_(enc.weight)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online embeddings before the predictor: users (U, d) and items (I, d)."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        final = propagate_mean(self.adjacency, ego, self.config.n_layers)
        return final[: self.n_users], final[self.n_users :] + self.item_embedding

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Alignment of predicted and target views, modality terms and the embedding norms."""
        cfg = self.config
        users, items = batch.users, batch.pos_items
        user, item = self.forward()
        u_online, i_online = user[users], item[items]
        with torch.no_grad():
            u_target = F.dropout(u_online, cfg.dropout, training=True)
            i_target = F.dropout(i_online, cfg.dropout, training=True)
        u_pred, i_pred = self.predictor(u_online), self.predictor(i_online)
        align = _misalignment(u_pred, i_target) + _misalignment(i_pred, u_target)
        modal = u_pred.new_zeros(())
        for m in self.modalities:
            f_online = self.encoders[module_key(m)](self.features[module_key(m)][items])
            with torch.no_grad():
                f_target = F.dropout(f_online, cfg.dropout, training=True)
            f_pred = self.predictor(f_online)
            modal = modal + _misalignment(f_pred, i_target) + _misalignment(f_pred, f_target)
        reg = embedding_norm_loss(user, item, batch=False)  # whole tables, not batch rows
        loss = align + cfg.reg_weight * reg + cfg.cl_weight * modal
        return {"loss": loss, "align": align, "modal": modal, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Online embeddings through the predictor."""
        user, item = self.forward()
        return self.predictor(user), self.predictor(item)


__all__ = ["BM3", "BM3Config"]
