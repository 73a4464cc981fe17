"""mmssl: multimodal recommendation (MMSSL, WWW 2023) with baselines and honest evaluation.

The Python API in a few names (imported on first use, so ``import mmssl`` stays light)::

    mmssl.Dataset.from_frame(...)   # a dataset in memory; mmssl.load_dataset(DIR) from disk
    mmssl.fit("lightgcn", dataset, epochs=50)  # -> TrainedModel: evaluate, recommend, save
    mmssl.load("runs/x")            # a saved run back
"""

from __future__ import annotations

import importlib

from mmssl.errors import ConfigError, DataError, MmsslError, WriteError

__version__ = "0.2.0"

_LAZY = {
    "fit": "mmssl.api", "load": "mmssl.api", "resume": "mmssl.api", "train": "mmssl.api",
    "TrainedModel": "mmssl.api", "Dataset": "mmssl.data.dataset",
    "load_dataset": "mmssl.data.dataset", "save_dataset": "mmssl.data.dataset",
    "available_models": "mmssl.models.registry", "Recommender": "mmssl.serving.recommender",
}

__all__ = ["ConfigError", "DataError", "MmsslError", "WriteError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mmssl' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
