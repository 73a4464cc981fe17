"""ContentMF: BPR matrix factorisation whose item vectors add a linear map of the item content."""

from dataclasses import dataclass

import torch
from torch import nn

from mmssl.config import NonNegativeFloat, PositiveFloat, PositiveInt, UnitInterval
from mmssl.models.base import Batch, Model, module_key
from mmssl.models.losses import log_sigmoid_bpr, squared_norm_loss
from mmssl.models.registry import register


@dataclass(frozen=True)
class ContentMFConfig:
    """ContentMF settings (each range is checked when the config is built)."""

    embed_dim: PositiveInt = 32  # d, width of user and item vectors
    lr: PositiveFloat = 0.01  # Adam learning rate
    reg_weight: NonNegativeFloat = 1e-4  # L2 on the batch's vectors, / (2B)
    content_weight: UnitInterval = 0.5  # share of the content part in an item's vector
    batch_size: PositiveInt = 256  # training interactions per step


@register("content-mf")
class ContentMF(Model):
    """BPR matrix factorisation with item content added to the item vectors."""

    Config = ContentMFConfig
    needs_features = True  # refuse a dataset without modalities, before training

    def __init__(self, dataset, config: ContentMFConfig):
        super().__init__(dataset, config)
        d = config.embed_dim
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.projections = nn.ModuleDict()
        for j, (name, f) in enumerate(dataset.features.items()):
            self.register_buffer(f"features_{j}", torch.as_tensor(f), persistent=False)
            self.projections[module_key(name)] = nn.Linear(f.shape[1], d)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, d): ID embedding plus the weighted content projections."""
        content = sum(p(getattr(self, f"features_{j}"))
                      for j, p in enumerate(self.projections.values()))
        return self.item_embedding + self.config.content_weight * content

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """BPR on (user, positive, negative) plus the weighted L2 of their vectors."""
        items = self.item_vectors()
        u, p, n = self.user_embedding[batch.users], items[batch.pos_items], items[batch.neg_items]
        bpr = log_sigmoid_bpr((u * p).sum(1), (u * n).sum(1))
        reg = squared_norm_loss(u, p, n, batch_size=len(batch.users))
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, d) user and (n_items, d) item vectors: score = user @ item."""
        return self.user_embedding.detach(), self.item_vectors().detach()
