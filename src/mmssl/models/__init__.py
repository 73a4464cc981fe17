"""Model registry: CLI names -> classes, imported on first use so the core stays light."""

from __future__ import annotations

import importlib

from mmssl.errors import ConfigError

# name -> "module:Class"
MODELS: dict[str, str] = {
    "pop": "mmssl.models.pop:Popularity",
    "itemknn-cbf": "mmssl.models.itemknn:ItemKnnCbf",
    "mmssl": "mmssl.models.mmssl:MMSSL",
    "bpr": "mmssl.models.bpr:BPRMF",
    "lightgcn": "mmssl.models.lightgcn:LightGCN",
    "vbpr": "mmssl.models.vbpr:VBPR",
    "lattice": "mmssl.models.lattice:LATTICE",
    "freedom": "mmssl.models.freedom:FREEDOM",
    "bm3": "mmssl.models.bm3:BM3",
}


def available_models() -> list[str]:
    """Names whose module is present in this installation."""
    return [n for n, t in MODELS.items() if importlib.util.find_spec(t.split(":")[0])]


def get_model_class(name: str):
    try:
        target = MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r} (known: {', '.join(available_models())})"
        ) from None
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ConfigError(f"model {name!r} is not available in this version") from None
        raise
