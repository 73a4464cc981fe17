"""mmssl: multimodal recommendation (MMSSL, WWW 2023) with baselines and honest evaluation."""

from mmssl.errors import ConfigError, DataError, MmsslError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "MmsslError", "__version__"]
