"""MMSSL: Multi-Modal Self-Supervised Learning for Recommendation.

Wei, Huang, Xia, Zhang. WWW 2023 (arXiv 2302.10632). The method as the method page specifies it
(the authors' public code, step by step), in two variants:

* ``official`` reproduces the public code, quirks included: keys built from the queries and an
  attention block that is a no-op (it reduces to a linear map of each modality's view), a
  discriminator whose LeakyReLU has slope 1, structure-learning graphs rebuilt from an empty
  buffer (empty from the third step on; k = floor(I * 1e-4)), an unstepped learning-rate
  schedule, and users drawn with replacement when the batch exceeds them. Its figures are
  the authors' under their evaluation, ``--set protocol=mmssl``.
* ``paper`` runs the method as the paper describes it. Each fix is its own setting, so any one
  can be switched alone (``--set attention_mixing=false`` etc.).

Symbols in comments follow the method page: U users, I items, M modalities, d embedding size,
R the training matrix, A_ui = D_u^{-1/2} R, A_iu = D_i^{-1/2} R^T, G_m the modality graphs.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmssl.data.dataset import Dataset
from mmssl.models import shards
from mmssl.models.base import Batch, ContentPath, Model, Optimizers, module_key
from mmssl.models.graph import SparseGraph
from mmssl.models.losses import info_nce, info_nce_of_zeros, log_sigmoid_bpr, sum_of_squares
from mmssl.models.mmssl import bf16
from mmssl.models.mmssl.config import MMSSLConfig, resolve_config
from mmssl.models.mmssl.discriminator import Discriminator, fake_hidden
from mmssl.models.mmssl.sketch import (
    RealRowSketcher,
    make_sketch,
    project_preferences,
    sketched_real_rows,
)
from mmssl.models.mmssl.structure import ModalityGraphs, StructureLearning, row_normalised
from mmssl.models.registry import register

# Above this many elements of the attention's (2, M, N, d) intermediates, it runs in checkpointed
# chunks of users (at 2M users and 2 modalities: 62 chunks of 32,768).
ATTENTION_BLOCK = 1 << 24


@register("mmssl")
class MMSSL(StructureLearning, Model):
    """Modality-aware user preferences from adversarial structure learning and cross-modal
    contrastive learning, on top of a graph recommender."""

    Config = MMSSLConfig
    needs_features = True
    sampling = "user"
    legacy_defaults: ClassVar[dict[str, Any]] = {"discriminator": "exact"}  # runs before 0.2
    # the authors' parser defaults (lr, cl_rate, G_rate, drop_rate, len(weight_size)) with a value
    # on either side; adv_weight 0 switches the adversarial term off
    search_space: ClassVar[dict[str, Any]] = {
        "lr": [1e-4, 5.5e-4, 1e-3], "cl_weight": [0.01, 0.03, 0.1], "adv_weight": [0.0, 1e-4, 1e-3],
        "feature_dropout": [0.0, 0.2, 0.5], "n_layers": [1, 2, 3]}

    def __init__(self, dataset: Dataset, config: MMSSLConfig):
        config = resolve_config(config)
        super().__init__(dataset, config)
        d, n_users, n_items = config.embed_dim, dataset.n_users, dataset.n_items
        self.modalities = list(dataset.features)
        self.bf16 = config.precision == "bf16"
        self.notes: list[str] = []
        mode = config.discriminator
        if mode == "auto":
            mode = "sketch" if n_items > config.sketch_above_items else "exact"
            self.notes.append(f"discriminator: auto chose {mode} ({n_items} items, sketch above "
                              f"{config.sketch_above_items})" + (
                                  f"; sketch_dim {config.sketch_dim}, {config.sketch_kind}"
                                  if mode == "sketch" else ""))
        self.sketched = mode == "sketch"

        train = dataset.matrix("train").tocoo()
        self.train_csr = dataset.matrix("train")
        self.train_csr.sort_indices()  # observed pairs come out sorted by (row, item)
        self.A_ui = row_normalised(train.row, train.col, (n_users, n_items))
        self.A_iu = row_normalised(train.col, train.row, (n_items, n_users))
        for j, m in enumerate(self.modalities):  # not saved in checkpoints: from the dataset
            f = np.asarray(dataset.features[m], dtype=np.float32)
            if not (f.flags.writeable and f.flags.c_contiguous):  # memory-mapped: read it in
                f = np.array(f, dtype=np.float32)
            self.register_buffer(f"features_{j}", torch.from_numpy(f), persistent=False)

        self.encoders = nn.ModuleDict({module_key(m): nn.Linear(dataset.features[m].shape[1], d)
                                       for m in self.modalities})
        for enc in self.encoders.values():
            nn.init.xavier_uniform_(enc.weight)
        self.dropout = nn.Dropout(config.feature_dropout)
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_users, d)))
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_items, d)))
        self.w_q = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.w_k = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d)))
        self.w_cat = nn.Parameter(nn.init.xavier_uniform_(torch.empty(config.n_heads * d, d)))
        if self.sketched:  # the critic reads rows projected onto sketch_dim (sketch.py)
            self.sketch = make_sketch(config.sketch_kind, n_items, config.sketch_dim,
                                      config.sketch_nnz, config.sketch_seed)
            self._real_rows = RealRowSketcher(self.sketch)
        critic_inputs = config.sketch_dim if self.sketched else n_items
        self.discriminator = Discriminator(critic_inputs, config.leaky_slope, config.d_dropout1,
                                           config.d_dropout2, config.d_output_scale)
        self.structure = ModalityGraphs(self.modalities, n_users, n_items)
        # each user's top-k items in G_m: floor(I * rate), within [graph_topk_min, graph_topk_max]
        self.k = min(max(config.graph_topk_min, math.floor(n_items * config.topk_rate)),
                     config.graph_topk_max)
        self._step = 0  # steps into the current epoch (the official graph rule counts them)

    @property
    def users_with_replacement(self) -> bool:
        """Draw users with replacement when the batch exceeds them (the public code)."""
        return bool(self.config.sample_users_with_replacement)

    # ----------------------------------------------------------------- forward
    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-modal multi-head self-attention over modality views.

        Args:
            x: (M, N, d), one view per modality.

        Returns:
            (M, N, d), the attended views.
        """
        return self._attention(x)

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """l2norm(mean over modalities of attention(x)): the (N, d) fused view of (M, N, d) views.

        Each of the N rows is independent, so a large N is done in chunks whose intermediates
        ((H, M, chunk, d) attention, its (M, chunk, d) output and mean) are recomputed in the
        backward pass instead of kept (activation checkpointing): memory O(N d) beside x.
        """
        n_mod, n, d = x.shape
        rows = max(1, ATTENTION_BLOCK // (2 * n_mod * self.config.n_heads * d))
        if n <= rows:
            return self._fused(x)
        from torch.utils.checkpoint import checkpoint

        return torch.cat([checkpoint(self._fused, chunk, use_reentrant=False)
                          for chunk in x.split(rows, dim=1)])

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self._attention(x).mean(0), dim=1)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
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

    def modality_graph(self, m: str):
        """(G_m user side, item side), or None when G_m has no edges."""
        return self.structure.graph(m, (self.A_ui, self.A_iu), self.device)

    def forward(self, users: torch.Tensor | None = None) -> dict[str, Any]:
        """Full propagation.

        Returns a dict with ``user`` (U, d) and ``item`` (I, d): the final ``u*``, ``i*``;
        ``user_modal``/``item_modal``: lists of (U, d)/(I, d) modality views u_m, i_m;
        ``user_graph``: list of (U, d) modality-aware ID views s_m. With ``users`` (B,), ``user``
        is ``u*[users]`` (B, d) and ``user_graph`` holds s_m[users] (B, d), the only rows a step
        needs (at 2M users the full final sum is GBs); rows are taken once per distinct user,
        then repeated. With the sketched critic (large catalogues) the user side is of those
        rows from the start (s_m from those rows of G_m, their fusion, the normalised views):
        GBs less at 1M items, the same values, gradients equal to rounding (they add up in
        another order). In exact mode values and gradients are bit for bit those of 0.1.
        """
        cfg = self.config
        user_modal, item_modal, s_views, t_views = [], [], [], []
        empty = self.structure.all_empty()
        rows, repeat = (None, None) if users is None else torch.unique(users, return_inverse=True)
        lean = rows is not None and self.sketched  # the user side of the batch's rows only
        n_rows = len(rows) if lean else self.n_users

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x if rows is None else x[rows]

        def early(x: torch.Tensor) -> torch.Tensor:
            return pick(x) if lean else x
        for j, m in enumerate(self.modalities):
            h = self.dropout(self.encoders[module_key(m)](getattr(self, f"features_{j}")))
            u_m = self._propagate(self.A_ui, h)
            user_modal.append(u_m)
            item_modal.append(self._propagate(self.A_iu, u_m))
            graph = None if empty else self.modality_graph(m)
            if empty:  # every G_m is empty: views of zeros, without their memory
                s_views.append(self.user_embedding.new_zeros(1, cfg.embed_dim).expand(n_rows, -1))
            elif graph is None:  # an empty G_m propagates nothing
                s_views.append(self.user_embedding.new_zeros(n_rows, cfg.embed_dim))
                t_views.append(torch.zeros_like(self.item_embedding))
            else:
                s_views.append(graph[0].rows_product(rows, self.item_embedding) if lean
                               else self._propagate(graph[0], self.item_embedding))
                t_views.append(self._propagate(graph[1], self.user_embedding))
        zero = None
        if empty:
            # The attention of zero views is zero and adds nothing (E + 0.36 * l2norm(0) = E);
            # its weights still get their exact zero gradients (through out["zero"], added to
            # the loss), so the optimiser (weight decay, moments) moves them exactly as the full
            # computation would.
            used = [self.w_q, self.w_cat] + ([] if cfg.attention_keys == "queries" else [self.w_k])
            zero = 0.0 * sum(w.sum() for w in used)  # w_k is unused when keys are the queries
            u, i = early(self.user_embedding), self.item_embedding
        else:
            s_stack, t_stack = torch.stack(s_views), torch.stack(t_views)
            s_views = list(s_stack.unbind())  # views of the stack: no second copy kept
            u = early(self.user_embedding) + cfg.id_fusion_rate * self.fused(s_stack)
            i = self.item_embedding + cfg.id_fusion_rate * self.fused(t_stack)
            del s_stack, t_stack, t_views
        user_layers, item_layers = [u], [i]  # lean: user_layers[0] of the batch's rows only
        for layer in range(cfg.n_layers):
            u = self._propagate(self.A_ui, i)
            if layer == cfg.n_layers - 1:
                u = torch.softmax(u, dim=1)
            i = self._propagate(self.A_iu, u)
            if layer == cfg.n_layers - 1:
                i = torch.softmax(i, dim=1)
            user_layers.append(u)
            item_layers.append(i)
        # the mean of the layers as a running sum: no (L + 1, N, d) stack at large N
        if lean:
            u = (sum(x if n == 0 else pick(x) for n, x in enumerate(user_layers)) / len(user_layers)
                 + cfg.modality_rate * sum(F.normalize(pick(x), dim=1) for x in user_modal))
            u, s_views = u[repeat], [s[repeat] for s in s_views]
        else:
            u = (sum(pick(x) for x in user_layers) / len(user_layers)
                 + cfg.modality_rate * sum(pick(F.normalize(x, dim=1)) for x in user_modal))
            if users is not None:
                u, s_views = u[repeat], [s[users] for s in s_views]
        i = sum(item_layers) / len(item_layers) + cfg.modality_rate * sum(F.normalize(x, dim=1) for x in item_modal)
        return {"user": u, "item": i, "user_modal": user_modal, "item_modal": item_modal,
                "user_graph": s_views, "graphs_empty": empty, "zero": zero}

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The final u* and i*."""
        out = self.forward()
        return out["user"], out["item"]

    def content_path(self) -> ContentPath:
        """A new item's i*: h_m = encoder_m(f_m) for i_m, plus what the layers give an item without interactions (softmax of zeros); docs/serving.md."""
        cfg, d, encoders = self.config, self.config.embed_dim, [self.encoders[module_key(m)] for m in self.modalities]
        offset = np.full(d, 1.0 / (d * (cfg.n_layers + 1)), dtype=np.float32) if cfg.n_layers else None
        return ContentPath.of_linear("sum_l2norm", self.modalities, encoders, scale=cfg.modality_rate, offset=offset)

    # ---------------------------------------------------------------- training
    def configure_optimizers(self) -> Optimizers:
        """AdamW for the recommender, Adam for the critic (the authors' settings)."""
        cfg = self.config
        recommender = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        return {
            "recommender": torch.optim.AdamW(recommender, lr=cfg.lr, weight_decay=cfg.weight_decay),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=cfg.d_lr,
                                              betas=tuple(cfg.d_betas)),
        }

    def configure_schedulers(self, optimizers: Optimizers) -> dict[str, Any]:
        """lr * decay ** (epoch / decay_epochs), stepped only where ``step_lr_schedule`` (the
        public code builds it and never steps it, departure 9)."""
        cfg = self.config
        if not cfg.step_lr_schedule:
            return {}
        return {"lr": torch.optim.lr_scheduler.LambdaLR(
            optimizers["recommender"], lambda epoch: cfg.lr_decay ** (epoch / cfg.lr_decay_epochs))}

    def _propagate(self, graph: SparseGraph, x: torch.Tensor) -> torch.Tensor:
        """``graph @ x``: in bfloat16 when training a sketched critic with bf16
        (``SparseGraph.bf16_matmul``; there these products are most of a step), else float32."""
        return graph.bf16_matmul(x) if self.bf16 and self.sketched and self.training else graph @ x

    def _autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def fake_hidden(self, p, q, rows, cols, weight) -> torch.Tensor:
        """First-layer products of fake rows (see :func:`discriminator.fake_hidden`)."""
        return fake_hidden(p, q, rows, cols, weight)

    def discriminator_loss(self, real: torch.Tensor, fake_hidden: torch.Tensor,
                           alpha: torch.Tensor | None = None) -> torch.Tensor:
        """WGAN-GP critic loss -mean D(real) + mean D(fake) + w * GP.

        Args:
            real: (B, I) real rows; the critic sees them once per modality.
            fake_hidden: (M * B, I/4) first-layer products of the fake rows (``fake_hidden``).
            alpha: (M * B, 1) interpolation weights; drawn uniformly when None.
        """
        cfg, critic = self.config, self.discriminator
        weight = critic.input.weight
        if self.bf16:  # the critic's products and layers in bfloat16, its weights kept in float32
            w16 = weight.to(torch.bfloat16)
            h_real = F.linear(real.to(torch.bfloat16), w16).repeat(len(self.modalities), 1)
            with self._autocast():
                return critic.wgan_gp_loss(h_real, fake_hidden.to(torch.bfloat16), w16 @ w16.T,
                                           cfg.gp_lambda, cfg.gp_weight, alpha).float()
        h_real = F.linear(real, weight).repeat(len(self.modalities), 1)
        return critic.wgan_gp_loss(h_real, fake_hidden, weight @ weight.T, cfg.gp_lambda,
                                   cfg.gp_weight, alpha)

    def contrastive_loss(self, view: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """InfoNCE between a modality view and the final embedding of the same users, (B, d) each."""
        return info_nce(view, anchor, self.config.cl_temperature)

    def on_device(self, device: torch.device) -> None:
        """precision: auto picks bf16 where its products run fast on ``device``, and says so."""
        if self.config.precision == "auto":
            from mmssl.runtime import fast_bf16

            self.bf16, why = fast_bf16(device)
            if self.sketched:  # what bf16 speeds up is the exact critic's (B, I) x (I, I/4) products
                self.bf16, why = False, "the sketched critic has no large dense products to speed up"
            self.notes.append(f"precision: auto chose {'bf16' if self.bf16 else 'fp32'} ({why})")

    def on_epoch_start(self, epoch: int) -> None:
        """Steps are counted per epoch (the official graph rule)."""
        self._step = 0

    def training_step(self, batch: Batch, optimizers: Optimizers) -> dict[str, float]:
        """One critic update (WGAN-GP) and one recommender update, from one forward pass."""
        cfg = self.config
        users, pos, neg = batch.users, batch.pos_items, batch.neg_items
        out = self.forward(users)  # one forward serves both players: D's update changes no model weight
        if self.sketched:
            observed = None
            obs_rows, obs_cols = self._observed_pairs(users)
        else:
            observed, obs_rows, obs_cols = self._observed(users)
        views = [(u_m[users], i_m) for u_m, i_m in zip(out["user_modal"], out["item_modal"])]

        # Discriminator step (WGAN-GP): real rows against each modality's (detached) preferences.
        if self.sketched:
            d_loss = self._critic_loss_sketched(users, out, views, obs_rows, obs_cols)
        else:
            d_loss = self._critic_loss_exact(users, out, views, observed, obs_rows, obs_cols)
        d_optimizer = optimizers["discriminator"]
        d_optimizer.zero_grad(set_to_none=True)
        shards.backward(d_loss)  # loss.backward(), weighted by this process's rows when distributed
        d_optimizer.step()
        d_optimizer.zero_grad(set_to_none=True)  # no gradients kept through the next pass

        # Recommender (generator) step.
        u_b, i = out["user"], out["item"]  # u* of the batch's users, i* of every item
        p_b, n_b = i[pos], i[neg]
        bpr = log_sigmoid_bpr((u_b * p_b).sum(1), (u_b * n_b).sum(1))
        emb_reg = cfg.emb_reg * shards.batch_sum(u_b.square().sum() + p_b.square().sum() + n_b.square().sum()) / (2 * cfg.batch_size)
        feat_reg = cfg.feat_reg * sum(sum_of_squares(x) for x in out["item_modal"] + out["user_modal"]) / (2 * self.n_items)
        if out["graphs_empty"]:  # zero views: the loss is a constant, its value computed cheaply
            cl = sum(info_nce_of_zeros(len(users), u_b) for _ in self.modalities)
        else:
            cl = sum(self.contrastive_loss(s, u_b) for s in out["user_graph"])  # s_m[users]
        self.discriminator.requires_grad_(False)  # gradients flow to the rows, not to D
        critic = self.discriminator
        if self.sketched:
            fake = torch.cat([project_preferences(p, q, obs_rows, obs_cols, self.sketch) for p, q in views])
            adv = -critic(fake).mean()
        else:
            hidden = self._fake_rows_hidden(views, obs_rows, obs_cols, critic.input.weight.detach())
            with self._autocast():
                adv = -critic.from_hidden(hidden + critic.input.bias.to(hidden.dtype)).mean()
        self.discriminator.requires_grad_(True)
        loss = bpr + emb_reg + feat_reg + cfg.cl_weight * cl + cfg.adv_weight * adv
        if out["zero"] is not None:
            loss = loss + out["zero"]  # +0: the attention weights' zero gradients (see forward)
        optimizer = optimizers["recommender"]
        optimizer.zero_grad(set_to_none=True)
        shards.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # at 2M users, E_u's gradient alone is 0.5 GB

        if cfg.graph_mode == "official":
            self._official_graph_step(self._step, users, out, observed, obs_rows, obs_cols)
        self._step += 1
        return {"loss": loss.item(), "bpr": bpr.item(), "cl": float(cl.detach()), "adv": adv.item(),
                "d_loss": d_loss.item()}

    def _critic_loss_exact(self, users, out, views, observed, obs_rows, obs_cols) -> torch.Tensor:
        """The authors' critic loss over dense (B, I) real rows; in float32 the fake rows stay factored."""
        cfg = self.config
        with torch.no_grad():  # real rows: noisy observed rows plus the model's own preferences
            if self.bf16:
                real = bf16.real_rows(observed, obs_rows, obs_cols, out["user"], out["item"],
                                      cfg.gumbel_scale / cfg.real_tau, cfg.real_pref_scale)
            else:
                gumbel = -torch.log(-torch.log(torch.rand_like(observed) + 1e-8) + 1e-8)
                real = torch.softmax(observed + (cfg.gumbel_scale / cfg.real_tau) * gumbel, dim=1)
                batch = torch.arange(len(users), device=users.device)  # out["user"] is u*[users]
                real = real + cfg.real_pref_scale * self.preference_rows(
                    batch, out["user"].detach(), out["item"].detach(), observed)
                real = F.normalize(real, dim=1)
        views = [(p.detach(), q.detach()) for p, q in views]
        return self.discriminator_loss(real, self._fake_rows_hidden(
            views, obs_rows, obs_cols, self.discriminator.input.weight))

    def _fake_rows_hidden(self, views, obs_rows, obs_cols, weight) -> torch.Tensor:
        """Every modality's fake rows times ``weight.T``: factored in float32, dense in bfloat16."""
        product = bf16.fake_hidden if self.bf16 else fake_hidden
        return torch.cat([product(p, q, obs_rows, obs_cols, weight) for p, q in views])

    def _critic_loss_sketched(self, users, out, views, obs_rows, obs_cols) -> torch.Tensor:
        """The critic loss on sketched rows: nothing of size (B, I) is formed."""
        cfg, critic = self.config, self.discriminator
        with torch.no_grad():
            real = sketched_real_rows(out["user"].detach(), out["item"].detach(), obs_rows,
                                      obs_cols, self.n_items, self._real_rows,
                                      cfg.gumbel_scale / cfg.real_tau, cfg.real_pref_scale)
            fake = torch.cat([project_preferences(p.detach(), q.detach(), obs_rows, obs_cols,
                                                  self.sketch) for p, q in views])
        weight = critic.input.weight
        h_real = F.linear(real, weight).repeat(len(self.modalities), 1)
        h_fake = F.linear(fake, weight)
        return critic.wgan_gp_loss(h_real, h_fake, weight @ weight.T, cfg.gp_lambda, cfg.gp_weight)

    def on_epoch_end(self, epoch: int) -> None:
        """Refresh mode rebuilds every user's G_m every ``graph_refresh_epochs`` epochs."""
        cfg = self.config
        if cfg.graph_mode == "refresh" and (epoch + 1) % cfg.graph_refresh_epochs == 0:
            self.refresh_graphs()

    # ------------------------------------------------------------- checkpoints
    def extra_state(self) -> dict[str, Any]:
        """The modality graphs and the edges gathered for the next official rebuild."""
        return self.structure.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the modality graphs (a pre-0.2 checkpoint's ``scheduler`` entry is read by
        the trainer)."""
        self.structure.load(state)


__all__ = ["MMSSL"]
