"""MMSSL: Multi-Modal Self-Supervised Learning for Recommendation.

Wei, Huang, Xia, Zhang. WWW 2023 (arXiv 2302.10632). The method as specified in
``docs/mmssl-method.md`` (the authors' public code, step by step), in two variants:

* ``official`` reproduces the public code, quirks included: keys built from the queries and an
  attention block that is a no-op (it reduces to a linear map of each modality's view), a
  discriminator whose LeakyReLU has slope 1, structure-learning graphs rebuilt from an empty
  buffer (empty from the third step on; k = floor(I * 1e-4)), an unstepped learning-rate
  schedule, users drawn with replacement when the batch exceeds them, and the authors'
  evaluation protocol.
* ``paper`` runs the method as the paper describes it. Each fix is its own setting, so any one
  can be switched alone (``--set attention_mixing=false`` etc.).

Symbols in comments follow the method page: U users, I items, M modalities, d embedding size,
R the training matrix, A_ui = D_u^{-1/2} R, A_iu = D_i^{-1/2} R^T, G_m the modality graphs.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.data.dataset import Dataset
from mmssl.errors import ConfigError, DataError
from mmssl.models.base import Batch, Model, TrainingConfig
from mmssl.models.graph import SparseGraph, sparse_product

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

# Values the two variants give to the settings left at None.
VARIANTS: dict[str, dict[str, Any]] = {
    "official": {
        "attention_keys": "queries", "attention_mixing": False, "leaky_slope": 1.0,
        "graph_mode": "official", "graph_topk_min": 0, "step_lr_schedule": False,
        "sample_users_with_replacement": True, "protocol": "mmssl",
    },
    "paper": {
        "attention_keys": "w_k", "attention_mixing": True, "leaky_slope": 0.01,
        "graph_mode": "refresh", "graph_topk_min": 10, "step_lr_schedule": True,
        "sample_users_with_replacement": False, "protocol": "standard",
    },
}


@dataclass(frozen=True)
class MMSSLConfig(TrainingConfig):
    """MMSSL settings; defaults are the authors' (``utility/parser.py``) unless noted."""

    variant: Literal["paper", "official"] = "official"  # preset of the settings left empty; official won on validation (README)
    embed_dim: int = 64  # d, ID and modality embedding width (embed_size)
    n_layers: int = 2  # L, collaborative propagation layers (len(weight_size))
    feature_dropout: float = 0.2  # p, dropout on the modality encoders' output (drop_rate)
    id_fusion_rate: float = 0.36  # weight of the fused modality view added to ID embeddings (id_cat_rate)
    modality_rate: float = 0.55  # weight of each modality view added to the final embeddings (model_cat_rate)
    n_heads: int = 4  # H, heads of the cross-modal attention (head_num)
    lr: float = 5.5e-4  # AdamW learning rate of the recommender
    weight_decay: float = 0.01  # AdamW weight decay (PyTorch's default, which the code keeps)
    emb_reg: float = 1e-5  # L2 on the batch's final embeddings, / (2B) (regs[0])
    feat_reg: float = 1e-5  # L2 on the modality views, / (2I) (feat_reg_decay)
    cl_weight: float = 0.03  # weight of the cross-modal contrastive loss (cl_rate)
    cl_temperature: float = 0.5  # InfoNCE temperature tau
    adv_weight: float = 1e-4  # weight of the generator's adversarial term (G_rate)
    d_lr: float = 3e-4  # discriminator Adam learning rate (D_lr)
    d_betas: tuple[float, float] = (0.5, 0.9)  # discriminator Adam betas
    d_dropout1: float = 0.31  # discriminator dropout after layer 1 (G_drop1)
    d_dropout2: float = 0.5  # discriminator dropout after layer 2 (G_drop2)
    d_output_scale: float = 100.0  # the discriminator's sigmoid is multiplied by this
    gp_weight: float = 1.0  # weight of the gradient penalty in the WGAN-GP loss (gp_rate)
    gp_lambda: float = 0.3  # the penalty's own factor (LAMBDA in gradient_penalty)
    gumbel_scale: float = 1e-5  # Gumbel noise scale of the real rows (log_log_scale)
    real_tau: float = 0.005  # divides only the noise term, as the code's precedence does (real_data_tau)
    real_pref_scale: float = 100.0  # weight of the model's own preferences in the real rows (ui_pre_scale)
    topk_rate: float = 1e-4  # structure learning keeps floor(I * rate) items per user (m_topk_rate)
    graph_refresh_steps: int = 1  # official mode: T, steps between graph rebuilds
    graph_refresh_epochs: int = 1  # refresh mode: epochs between rebuilding every user's graph
    lr_decay: float = 0.96  # schedule factor lr * decay ** (epoch / lr_decay_epochs)
    lr_decay_epochs: float = 50.0
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocasts the discriminator and similarity products
    # Fixes: None takes the variant's value (VARIANTS above); set one to ablate it alone.
    attention_keys: Literal["w_k", "queries"] | None = None  # official: K built from the reshaped Q
    attention_mixing: bool | None = None  # official: False, each modality attends only to itself
    leaky_slope: float | None = None  # official: 1.0 (nn.LeakyReLU(True)); paper: 0.01
    graph_mode: Literal["official", "refresh"] | None = None  # official: empty after step 2; refresh: all users' top-k
    graph_topk_min: int | None = None  # lower bound on k (official 0; paper 10, since floor(I*1e-4) is 0 below 10k items)
    step_lr_schedule: bool | None = None  # official: the schedule is built but never stepped
    sample_users_with_replacement: bool | None = None  # official: when B exceeds the users
    protocol: Literal["standard", "mmssl", "mmrec"] | None = None  # official: mmssl; paper: standard


def resolve_config(config: MMSSLConfig) -> MMSSLConfig:
    """Fill the settings left at None from the variant's preset."""
    preset = VARIANTS[config.variant]
    return replace(config, **{k: v for k, v in preset.items() if getattr(config, k) is None})


def _row_normalised(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int],
                    device: torch.device) -> SparseGraph:
    """D^{-1/2} X, X the 0/1 matrix of the edges (duplicates summed, as scipy does in the
    code), D its row degrees (+1e-8)."""
    x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    degree = np.asarray(x.sum(axis=1)).ravel()
    return SparseGraph(sp.diags(np.power(degree + 1e-8, -0.5).astype(np.float32)) @ x, device)


class FastDropout(nn.Dropout):
    """nn.Dropout drawn from uniform numbers: the same distribution, several times faster on
    CPUs, where bernoulli_ is slow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))


class Discriminator(nn.Module):
    """WGAN critic over I-dimensional preference rows: (n, I) -> (n,), in [0, scale].

    Split into the first linear layer (``input``, which holds almost all of the work) and the
    rest (``head``), so that the trainer can share first-layer products between calls.
    """

    def __init__(self, n_items: int, slope: float, drop1: float, drop2: float, scale: float):
        super().__init__()
        h1, h2 = max(1, n_items // 4), max(1, n_items // 8)
        self.input = nn.Linear(n_items, h1)
        self.head = nn.Sequential(
            nn.LeakyReLU(slope), nn.BatchNorm1d(h1), FastDropout(drop1),
            nn.Linear(h1, h2), nn.LeakyReLU(slope), nn.BatchNorm1d(h2), FastDropout(drop2),
            nn.Linear(h2, 1), nn.Sigmoid(),
        )
        self.scale = scale
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_hidden(self.input(x))

    def from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The critic from the first layer's output h = x W^T + b, (n, I/4) -> (n,)."""
        out = self.scale * self.head(h).view(-1)
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out


class MMSSL(Model):
    name = "mmssl"
    Config = MMSSLConfig
    sampling = "user"

    @staticmethod
    def resolve_config(config: MMSSLConfig) -> MMSSLConfig:
        return resolve_config(config)

    def __init__(self, dataset: Dataset, config: MMSSLConfig, device: torch.device):
        config = resolve_config(config)
        super().__init__(dataset, config, device)
        if not dataset.features:
            raise DataError("mmssl needs at least one item modality; the dataset has none")
        if config.embed_dim % config.n_heads:
            raise ConfigError(f"embed_dim {config.embed_dim} must be divisible by n_heads {config.n_heads}")
        d, n_users, n_items = config.embed_dim, dataset.n_users, dataset.n_items
        self.modalities = list(dataset.features)
        self.bf16 = config.precision == "bf16"

        train = dataset.matrix("train").tocoo()
        self.train_csr = dataset.matrix("train")
        self.A_ui = _row_normalised(train.row, train.col, (n_users, n_items), device)
        self.A_iu = _row_normalised(train.col, train.row, (n_items, n_users), device)
        for m in self.modalities:  # not saved in checkpoints: they come from the dataset
            f = torch.from_numpy(np.array(dataset.features[m], dtype=np.float32))
            self.register_buffer(f"features_{m}", f.to(device), persistent=False)

        self.encoders = nn.ModuleDict({m: nn.Linear(dataset.features[m].shape[1], d)
                                       for m in self.modalities})
        for enc in self.encoders.values():
            nn.init.xavier_uniform_(enc.weight)
        self.dropout = nn.Dropout(config.feature_dropout)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_items, d)))
        self.w_q = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.w_k = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.w_cat = nn.Parameter(nn.init.xavier_uniform_(torch.empty(config.n_heads * d, d)))
        self.discriminator = Discriminator(n_items, config.leaky_slope, config.d_dropout1,
                                           config.d_dropout2, config.d_output_scale)
        self.to(device)

        self._optimizers: dict[str, Any] | None = None  # built on first use: inference needs none
        self._scheduler_state: dict[str, Any] | None = None

        # Structure learning state: per modality the edges of G_m (None = the training graph).
        self.graph_edges: dict[str, tuple[np.ndarray, np.ndarray] | None] = dict.fromkeys(self.modalities)
        self.pending_edges: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in self.modalities}
        self._graphs: dict[str, tuple[SparseGraph, SparseGraph] | None] = {}
        self.k = max(config.graph_topk_min, math.floor(n_items * config.topk_rate))

    # ------------------------------------------------------------------ graphs
    def modality_graph(self, m: str) -> tuple[SparseGraph, SparseGraph] | None:
        """(G_m user side (U, I), item side (I, U)), or None when G_m has no edges."""
        edges = self.graph_edges[m]
        if edges is None:
            return self.A_ui, self.A_iu
        if m not in self._graphs:
            rows, cols = edges
            self._graphs[m] = None if len(rows) == 0 else (
                _row_normalised(rows, cols, (self.n_users, self.n_items), self.device),
                _row_normalised(cols, rows, (self.n_items, self.n_users), self.device))
        return self._graphs[m]

    def set_graph(self, m: str, rows: np.ndarray, cols: np.ndarray) -> None:
        self.graph_edges[m] = (rows.astype(np.int64), cols.astype(np.int64))
        self._graphs.pop(m, None)

    # ----------------------------------------------------------------- forward
    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-modal multi-head self-attention over modality views.

        Args: x: (M, N, d) one view per modality. Returns (M, N, d).
        """
        cfg, (n_mod, n, d) = self.config, x.shape
        h, dh = cfg.n_heads, d // cfg.n_heads
        q = (x @ self.w_q).reshape(n_mod, n, h, dh).permute(2, 0, 1, 3)  # (H, M, N, dh)
        k = q if cfg.attention_keys == "queries" else (x @ self.w_k).reshape(n_mod, n, h, dh).permute(2, 0, 1, 3)
        # att[h, m, m', n]: modality m attending to m', normalised over m'.
        att = torch.softmax(torch.einsum("hmnd,hknd->hmkn", q, k) / math.sqrt(dh), dim=2)
        if cfg.attention_mixing:
            z = torch.einsum("hmkn,knd->hmnd", att, x)  # values of every modality m', weighted
        else:
            # The code broadcasts V along the query axis: each modality keeps its own value,
            # scaled by a softmax that sums to one (departure 8).
            z = att.sum(dim=2).unsqueeze(-1) * x.unsqueeze(0)
        z = z.permute(1, 2, 0, 3).reshape(n_mod, n, h * d)  # heads concatenated
        return z @ self.w_cat

    def forward(self) -> dict[str, Any]:
        """Full propagation.

        Returns a dict with ``user`` (U, d) and ``item`` (I, d): the final u*, i*;
        ``user_modal``/``item_modal``: lists of (U, d)/(I, d) modality views u_m, i_m;
        ``user_graph``: list of (U, d) modality-aware ID views s_m.
        """
        cfg = self.config
        user_modal, item_modal, s_views, t_views = [], [], [], []
        for m in self.modalities:
            h = self.dropout(self.encoders[m](getattr(self, f"features_{m}")))
            u_m = self.A_ui @ h
            user_modal.append(u_m)
            item_modal.append(self.A_iu @ u_m)
            graph = self.modality_graph(m)
            if graph is None:  # an empty G_m propagates nothing
                s_views.append(torch.zeros_like(self.user_embedding))
                t_views.append(torch.zeros_like(self.item_embedding))
            else:
                s_views.append(graph[0] @ self.item_embedding)
                t_views.append(graph[1] @ self.user_embedding)
        fused_user = self.attention(torch.stack(s_views)).mean(0)
        fused_item = self.attention(torch.stack(t_views)).mean(0)
        u = self.user_embedding + cfg.id_fusion_rate * F.normalize(fused_user, dim=1)
        i = self.item_embedding + cfg.id_fusion_rate * F.normalize(fused_item, dim=1)
        users, items = [u], [i]
        for layer in range(cfg.n_layers):
            u = self.A_ui @ i
            if layer == cfg.n_layers - 1:
                u = torch.softmax(u, dim=1)
            i = self.A_iu @ u
            if layer == cfg.n_layers - 1:
                i = torch.softmax(i, dim=1)
            users.append(u)
            items.append(i)
        u = torch.stack(users).mean(0) + cfg.modality_rate * sum(F.normalize(x, dim=1) for x in user_modal)
        i = torch.stack(items).mean(0) + cfg.modality_rate * sum(F.normalize(x, dim=1) for x in item_modal)
        return {"user": u, "item": i, "user_modal": user_modal, "item_modal": item_modal,
                "user_graph": s_views}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward()
        return out["user"], out["item"]

    # ---------------------------------------------------------------- training
    def _autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _observed(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R[users]: dense 0/1 rows (B, I) and the (batch row, item) index pairs of their ones."""
        sub = self.train_csr[users.cpu().numpy()].tocoo()
        rows = torch.from_numpy(sub.row).long().to(self.device)
        cols = torch.from_numpy(sub.col).long().to(self.device)
        dense = torch.zeros(len(users), self.n_items, device=self.device)
        dense[rows, cols] = 1.0
        return dense, rows, cols

    def preference_rows(self, users: torch.Tensor, user: torch.Tensor, item: torch.Tensor,
                        observed: torch.Tensor) -> torch.Tensor:
        """sim(users; P, Q) = l2norm((P[users] Q^T) * (1 - R[users])), (B, I)."""
        with self._autocast():
            scores = user[users] @ item.T
        return F.normalize(scores.float() * (1.0 - observed), dim=1)

    def fake_hidden(self, p: torch.Tensor, q: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
        """The critic's first-layer product of fake rows, without forming them.

        A fake row is l2norm((p Q^T) * (1 - r)) with p (d,) a user's modality view, Q (I, d)
        the items', r the user's observed items. Since (p Q^T) * (1 - r) = p Q^T - S with S
        the scores restricted to the observed items, its product with W^T is
        p (Q^T W^T) - S W^T: rank d plus a sparse part, not a (B, I) by (I, I/4) product.

        Args: p (B, d); q (I, d); rows, cols: observed (batch row, item) pairs; weight (I/4, I).
        Returns (B, I/4), equal to ``preference_rows(...) @ weight.T``.
        """
        observed_scores = (p @ q.T)[rows, cols]  # S's values (a gather beats B x nnz dot products)
        squared = ((p @ (q.T @ q)) * p).sum(1)  # ||p Q^T||^2
        squared = squared - torch.zeros_like(squared).index_add(0, rows, observed_scores.square())
        inv_norm = 1.0 / squared.clamp_min(0).sqrt().clamp_min(1e-12)  # as F.normalize
        sparse_part = sparse_product(rows, cols, observed_scores, weight.T, len(p))
        return inv_norm[:, None] * (p @ (q.T @ weight.T) - sparse_part)

    def discriminator_loss(self, real: torch.Tensor, fake_hidden: torch.Tensor,
                           alpha: torch.Tensor | None = None) -> torch.Tensor:
        """WGAN-GP critic loss -mean D(real) + mean D(fake) + w * GP.

        Args:
            real: (B, I) real rows; the critic sees them once per modality.
            fake_hidden: (M * B, I/4) first-layer products of the fake rows (``fake_hidden``).
            alpha: (M * B, 1) interpolation weights; drawn uniformly when None.

        Equal to three critic calls on the real, fake and interpolated rows (each keeping its own
        batch-norm statistics), with less work: the first layer is linear, so the interpolates'
        first-layer product is the same mix of the other two; and the gradient norm with respect
        to an interpolate x is ||delta W|| = sqrt(delta (W W^T) delta^T), delta the gradient
        with respect to the first layer's output.
        """
        cfg, critic = self.config, self.discriminator
        weight, bias = critic.input.weight, critic.input.bias
        with self._autocast():
            h_real = F.linear(real, weight)
        h_real = h_real.to(fake_hidden.dtype).repeat(len(self.modalities), 1)
        d_real = critic.from_hidden(h_real + bias).mean()
        d_fake = critic.from_hidden(fake_hidden + bias).mean()
        if alpha is None:
            alpha = torch.rand(len(fake_hidden), 1, device=self.device)
        h_mixed = alpha * h_real + (1 - alpha) * fake_hidden + bias
        (delta,) = torch.autograd.grad(critic.from_hidden(h_mixed).sum(), h_mixed, create_graph=True)
        squared_norm = ((delta @ (weight @ weight.T)) * delta).sum(1)
        grad_norm = squared_norm.clamp_min(1e-12).sqrt()
        penalty = cfg.gp_lambda * ((grad_norm - 1) ** 2).mean()
        return -d_real + d_fake + cfg.gp_weight * penalty

    def contrastive_loss(self, view: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """InfoNCE between a modality view and the final embedding of the same users, (B, d) each."""
        z1, z2 = F.normalize(view, dim=1), F.normalize(anchor, dim=1)
        tau = self.config.cl_temperature
        refl = torch.exp(z1 @ z1.T / tau)
        between = torch.exp(z1 @ z2.T / tau)
        denom = refl.sum(1) + between.sum(1) - refl.diagonal()
        return -torch.log(between.diagonal() / denom + 1e-8).mean()

    def train_step(self, batch: Batch, step: int) -> dict[str, float]:
        cfg = self.config
        users = batch.users.to(self.device)
        pos, neg = batch.pos_items.to(self.device), batch.neg_items.to(self.device)
        out = self.forward()  # one forward serves both players: D's update changes no model weight
        observed, obs_rows, obs_cols = self._observed(users)
        views = [(u_m[users], i_m) for u_m, i_m in zip(out["user_modal"], out["item_modal"])]

        # Real rows: noisy observed rows plus the model's own preferences.
        with torch.no_grad():
            gumbel = -torch.log(-torch.log(torch.rand_like(observed) + 1e-8) + 1e-8)
            real = torch.softmax(observed + (cfg.gumbel_scale / cfg.real_tau) * gumbel, dim=1)
            real = real + cfg.real_pref_scale * self.preference_rows(users, out["user"].detach(),
                                                                     out["item"].detach(), observed)
            real = F.normalize(real, dim=1)

        # Discriminator step (WGAN-GP); fake rows are each modality's preferences, detached.
        weight = self.discriminator.input.weight
        fake_hidden = torch.cat([self.fake_hidden(p.detach(), q.detach(), obs_rows, obs_cols, weight)
                                 for p, q in views])
        d_loss = self.discriminator_loss(real, fake_hidden)
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()

        # Recommender (generator) step.
        u, i = out["user"], out["item"]
        u_b, p_b, n_b = u[users], i[pos], i[neg]
        bpr = -F.logsigmoid((u_b * p_b).sum(1) - (u_b * n_b).sum(1)).mean()
        emb_reg = cfg.emb_reg * (u_b.square().sum() + p_b.square().sum() + n_b.square().sum()) / (2 * cfg.batch_size)
        feat_reg = cfg.feat_reg * sum(x.square().sum() for x in out["item_modal"] + out["user_modal"]) / (2 * self.n_items)
        cl = sum(self.contrastive_loss(s[users], u_b) for s in out["user_graph"])
        self.discriminator.requires_grad_(False)  # gradients flow to the rows, not to D
        weight = weight.detach()
        hidden = torch.cat([self.fake_hidden(p, q, obs_rows, obs_cols, weight) for p, q in views])
        adv = -self.discriminator.from_hidden(hidden + self.discriminator.input.bias).mean()
        self.discriminator.requires_grad_(True)
        loss = bpr + emb_reg + feat_reg + cfg.cl_weight * cl + cfg.adv_weight * adv
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

        if cfg.graph_mode == "official":
            self._official_graph_step(step, users, out, observed)
        return {"loss": loss.item(), "bpr": bpr.item(), "cl": float(cl.detach()), "adv": adv.item(),
                "d_loss": d_loss.item()}

    def _official_graph_step(self, step: int, users: torch.Tensor, out: dict[str, Any],
                             observed: torch.Tensor) -> None:
        """The code's rule: every T steps rebuild G_m from the edges gathered since the last
        rebuild; on the other steps gather each batch user's top-k items (departure 4)."""
        if step % self.config.graph_refresh_steps == 0 and step != 0:
            for m in self.modalities:
                parts = self.pending_edges[m]
                rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, np.int64)
                cols = np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.int64)
                self.set_graph(m, rows, cols)
                self.pending_edges[m] = []
        elif self.k > 0:
            with torch.no_grad():
                for j, m in enumerate(self.modalities):
                    block = self.preference_rows(users, out["user_modal"][j].detach(),
                                                 out["item_modal"][j].detach(), observed)
                    self.pending_edges[m].append(self._topk_edges(users, block))

    def _topk_edges(self, users: torch.Tensor, rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        k = min(self.k, self.n_items)
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        top = torch.topk(rows, k, dim=1).indices
        return (users.repeat_interleave(k).cpu().numpy(), top.reshape(-1).cpu().numpy())

    def refresh_graphs(self, batch_size: int = 1024) -> None:
        """Rebuild every G_m from all users' top-k items under sim(u_m, i_m) (refresh mode)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            out = self.forward()
            for j, m in enumerate(self.modalities):
                rows, cols = [], []
                for start in range(0, self.n_users, batch_size):
                    users = torch.arange(start, min(start + batch_size, self.n_users), device=self.device)
                    block = self.preference_rows(users, out["user_modal"][j], out["item_modal"][j],
                                                 self._observed(users)[0])
                    r, c = self._topk_edges(users, block)
                    rows.append(r)
                    cols.append(c)
                self.set_graph(m, np.concatenate(rows), np.concatenate(cols))
        self.train(was_training)

    def end_epoch(self, epoch: int) -> None:
        cfg = self.config
        if cfg.step_lr_schedule:
            self.scheduler.step()
        if cfg.graph_mode == "refresh" and (epoch + 1) % cfg.graph_refresh_epochs == 0:
            self.refresh_graphs()

    # ------------------------------------------------------------- checkpoints
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in self._training_state().items() if k != "scheduler"}

    def _training_state(self) -> dict[str, Any]:
        """AdamW for the recommender, Adam for the critic, and the learning-rate schedule."""
        if self._optimizers is None:
            cfg = self.config
            recommender = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
            optimizer = torch.optim.AdamW(recommender, lr=cfg.lr, weight_decay=cfg.weight_decay)
            self._optimizers = {
                "recommender": optimizer,
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=cfg.d_lr,
                                                  betas=tuple(cfg.d_betas)),
                "scheduler": torch.optim.lr_scheduler.LambdaLR(
                    optimizer, lambda epoch: cfg.lr_decay ** (epoch / cfg.lr_decay_epochs)),
            }
            if self._scheduler_state is not None:
                self._optimizers["scheduler"].load_state_dict(self._scheduler_state)
        return self._optimizers

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._training_state()["recommender"]

    @property
    def d_optimizer(self) -> torch.optim.Optimizer:
        return self._training_state()["discriminator"]

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        return self._training_state()["scheduler"]

    def extra_state(self) -> dict[str, Any]:
        graphs = {}
        for m, edges in self.graph_edges.items():
            graphs[m] = {"base": edges is None,
                         "rows": torch.from_numpy(edges[0]) if edges else torch.zeros(0, dtype=torch.long),
                         "cols": torch.from_numpy(edges[1]) if edges else torch.zeros(0, dtype=torch.long)}
        pending = {m: [(torch.from_numpy(r), torch.from_numpy(c)) for r, c in parts]
                   for m, parts in self.pending_edges.items()}
        return {"graphs": graphs, "pending": pending, "scheduler": self.scheduler.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for m, g in state.get("graphs", {}).items():
            if g["base"]:
                self.graph_edges[m] = None
                self._graphs.pop(m, None)
            else:
                self.set_graph(m, g["rows"].cpu().numpy(), g["cols"].cpu().numpy())
        for m, parts in state.get("pending", {}).items():
            self.pending_edges[m] = [(r.cpu().numpy(), c.cpu().numpy()) for r, c in parts]
        if "scheduler" in state:
            self._scheduler_state = state["scheduler"]  # applied when training resumes
            if self._optimizers is not None:
                self.scheduler.load_state_dict(self._scheduler_state)


__all__ = ["MMSSL", "MMSSLConfig", "VARIANTS", "resolve_config"]
