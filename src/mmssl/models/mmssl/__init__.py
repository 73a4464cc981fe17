"""MMSSL (WWW 2023): the model, its config and variants, the critic and structure learning."""

from mmssl.models.mmssl.config import VARIANTS, MMSSLConfig, resolve_config
from mmssl.models.mmssl.model import MMSSL

__all__ = ["MMSSL", "VARIANTS", "MMSSLConfig", "resolve_config"]
