"""MMSSL's hyper-parameters: the authors' defaults and the two variants' presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from mmssl.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
)
from mmssl.errors import ConfigError

# Values the two variants give to the settings left at None.
VARIANTS: dict[str, dict[str, Any]] = {
    "official": {
        "attention_keys": "queries", "attention_mixing": False, "leaky_slope": 1.0,
        "graph_mode": "official", "graph_topk_min": 0, "step_lr_schedule": False,
        "sample_users_with_replacement": True,
    },
    "paper": {
        "attention_keys": "w_k", "attention_mixing": True, "leaky_slope": 0.01,
        "graph_mode": "refresh", "graph_topk_min": 10, "step_lr_schedule": True,
        "sample_users_with_replacement": False,
    },
}

Beta = Annotated[float, Range(ge=0, lt=1)]


@dataclass(frozen=True)
class MMSSLConfig:
    """MMSSL settings; defaults are the authors' (``utility/parser.py``) unless noted.

    The evaluation protocol is a run setting (``--set protocol=mmssl`` reproduces the authors'
    evaluation); the variant does not touch it.
    """

    variant: Literal["paper", "official"] = "official"  # preset of the settings left empty; official won on validation (README)
    embed_dim: PositiveInt = 64  # d, ID and modality embedding width (embed_size)
    n_layers: PositiveInt = 2  # L, collaborative propagation layers (len(weight_size))
    feature_dropout: Fraction = 0.2  # p, dropout on the modality encoders' output (drop_rate)
    id_fusion_rate: NonNegativeFloat = 0.36  # weight of the fused modality view added to ID embeddings (id_cat_rate)
    modality_rate: NonNegativeFloat = 0.55  # weight of each modality view added to the final embeddings (model_cat_rate)
    n_heads: PositiveInt = 4  # H, heads of the cross-modal attention (head_num)
    lr: PositiveFloat = 5.5e-4  # AdamW learning rate of the recommender
    weight_decay: NonNegativeFloat = 0.01  # AdamW weight decay (PyTorch's default, which the code keeps)
    batch_size: PositiveInt = 1024  # B, users per training step (batch_size)
    emb_reg: NonNegativeFloat = 1e-5  # L2 on the batch's final embeddings, / (2B) (regs[0])
    feat_reg: NonNegativeFloat = 1e-5  # L2 on the modality views, / (2I) (feat_reg_decay)
    cl_weight: NonNegativeFloat = 0.03  # weight of the cross-modal contrastive loss (cl_rate)
    cl_temperature: PositiveFloat = 0.5  # InfoNCE temperature tau
    adv_weight: NonNegativeFloat = 1e-4  # weight of the generator's adversarial term (G_rate)
    d_lr: PositiveFloat = 3e-4  # discriminator Adam learning rate (D_lr)
    d_betas: tuple[Beta, Beta] = (0.5, 0.9)  # discriminator Adam betas
    d_dropout1: Fraction = 0.31  # discriminator dropout after layer 1 (G_drop1)
    d_dropout2: Fraction = 0.5  # discriminator dropout after layer 2 (G_drop2)
    d_output_scale: PositiveFloat = 100.0  # the discriminator's sigmoid is multiplied by this
    gp_weight: NonNegativeFloat = 1.0  # weight of the gradient penalty in the WGAN-GP loss (gp_rate)
    gp_lambda: NonNegativeFloat = 0.3  # the penalty's own factor (LAMBDA in gradient_penalty)
    gumbel_scale: NonNegativeFloat = 1e-5  # Gumbel noise scale of the real rows (log_log_scale)
    real_tau: PositiveFloat = 0.005  # divides only the noise term, as the code's precedence does (real_data_tau)
    real_pref_scale: NonNegativeFloat = 100.0  # weight of the model's own preferences in the real rows (ui_pre_scale)
    topk_rate: Annotated[float, Range(ge=0, le=1)] = 1e-4  # structure learning keeps floor(I * rate) items per user (m_topk_rate)
    graph_topk_max: PositiveInt = 10  # upper bound on k: floor(I * rate) grows with I, so U x k edges grew as U x I (1M items, 2M users: 200M a modality); 10, the paper variant's bound below, leaves k as it was up to 109,999 items
    graph_refresh_steps: PositiveInt = 1  # official mode: T, steps between graph rebuilds
    graph_refresh_epochs: PositiveInt = 1  # refresh mode: epochs between rebuilding every user's graph
    lr_decay: Annotated[float, Range(gt=0, le=1)] = 0.96  # schedule factor lr * decay ** (epoch / lr_decay_epochs)
    lr_decay_epochs: PositiveFloat = 50.0  # epochs per factor lr_decay
    precision: Literal["fp32", "bf16", "auto"] = "fp32"  # bf16: the critic's products and layers in bfloat16 (docs/mmssl.md); auto: bf16 for the exact critic on CUDA and CPUs with AMX or AVX512-BF16, else fp32 (the sketched critic has no large products)
    # The discriminator at catalogue scale (docs/scale.md; design in docs/mmssl.md):
    discriminator: Literal["exact", "sketch", "auto"] = "auto"  # exact: the critic reads (B, I) rows (the authors'); sketch: their projection onto sketch_dim; auto: sketch above sketch_above_items
    sketch_dim: PositiveInt = 256  # p, width of the sketched rows the critic reads (its layers: p/4, p/8)
    sketch_kind: Literal["sparse", "gaussian"] = "sparse"  # sparse: a sign sketch, sketch_nnz entries per item (O(I nnz)); gaussian: dense N(0, 1/p) (O(I p))
    sketch_nnz: PositiveInt = 4  # non-zeros per item row of the sparse sketch
    sketch_seed: NonNegativeInt = 0  # seed of the projection (independent of the run's seed; saved with the run)
    sketch_above_items: PositiveInt = 10_000  # auto: exact up to this many items, sketch above
    # Fixes: None takes the variant's value (VARIANTS above); set one to ablate it alone.
    attention_keys: Literal["w_k", "queries"] | None = None  # official: K built from the reshaped Q
    attention_mixing: bool | None = None  # official: False, each modality attends only to itself
    leaky_slope: Annotated[float, Range(ge=0, le=1)] | None = None  # official: 1.0 (nn.LeakyReLU(True)); paper: 0.01
    graph_mode: Literal["official", "refresh"] | None = None  # official: empty after step 2; refresh: all users' top-k
    graph_topk_min: NonNegativeInt | None = None  # lower bound on k (official 0; paper 10, since floor(I*1e-4) is 0 below 10k items)
    step_lr_schedule: bool | None = None  # official: the schedule is built but never stepped
    sample_users_with_replacement: bool | None = None  # official: when B exceeds the users

    def __post_init__(self) -> None:
        if self.embed_dim % self.n_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} must be divisible by n_heads "
                              f"{self.n_heads}")
        # The variant fills the fixes left at None, so a built config says what runs.
        for key, value in VARIANTS.get(self.variant, {}).items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if (self.graph_topk_min or 0) > self.graph_topk_max:
            raise ConfigError(f"graph_topk_min {self.graph_topk_min} is above graph_topk_max "
                              f"{self.graph_topk_max}: give graph_topk_max at least "
                              f"{self.graph_topk_min}")


def resolve_config(config: MMSSLConfig) -> MMSSLConfig:
    """Fill the settings left at None from the variant's preset (a built config already is)."""
    preset = VARIANTS[config.variant]
    return replace(config, **{k: v for k, v in preset.items() if getattr(config, k) is None})


__all__ = ["VARIANTS", "MMSSLConfig", "resolve_config"]
