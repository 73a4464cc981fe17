"""Recommenders: the contract (``base``), the registry, shared graph and loss helpers, and one
module per model."""

from mmssl.models.registry import available_models, create_model, get_model_class, register

__all__ = ["available_models", "create_model", "get_model_class", "register"]
