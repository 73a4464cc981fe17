"""Model names -> classes. A model file registers its class with ``@register("name")``.

The built-in model modules are imported on the first lookup, so that ``import mmssl`` stays
light; other packages can add models through the ``mmssl.models`` entry-point group.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

from mmssl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mmssl.data.dataset import Dataset
    from mmssl.models.base import Model

# In the order `--help` lists them.
BUILTIN_MODULES = ("pop", "itemknn", "bpr", "lightgcn", "vbpr", "lattice", "freedom", "bm3", "mmssl")

_MODELS: dict[str, type[Model]] = {}
_loaded = False


def register(name: str):
    """Class decorator: make the model available as ``name`` (``--model name``)."""

    def decorate(cls: type[Model]) -> type[Model]:
        known = _MODELS.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"model name {name!r} is taken by {known.__module__}.{known.__name__}")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"mmssl.models.{module}")
    for entry in importlib.metadata.entry_points(group="mmssl.models"):
        entry.load()


def available_models() -> list[str]:
    """Names of every registered model: the built-in ones in their order, then the others."""
    _load()

    def order(name: str) -> tuple[int, str]:
        parts = _MODELS[name].__module__.split(".")
        module = parts[2] if parts[:2] == ["mmssl", "models"] and len(parts) > 2 else ""
        return (BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else len(BUILTIN_MODULES), name)

    return sorted(_MODELS, key=order)


def get_model_class(name: str) -> type[Model]:
    """The class registered as ``name``; ConfigError listing the known names otherwise."""
    _load()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(available_models())})") from None


def create_model(name: str, dataset: Dataset, params: Any) -> Model:
    """Build the model ``name`` on ``dataset`` with its hyper-parameters ``params`` (on CPU)."""
    cls = get_model_class(name)
    if cls.needs_features and not dataset.features:
        raise DataError(f"{name} needs at least one item modality; the dataset has none")
    return cls(dataset, params)


__all__ = ["BUILTIN_MODULES", "available_models", "create_model", "get_model_class", "register"]
