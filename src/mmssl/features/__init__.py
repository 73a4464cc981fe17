"""Item features from raw content: text, image, audio, categorical attributes, knowledge graph.

Each extractor returns a :class:`FeatureMatrix` (float32 ``(n_items, dim)`` in the order of an
item-id list, zero rows for items without content, and metadata), which
:func:`write_features` saves as ``NAME.npy`` plus a ``NAME.json`` sidecar and
:func:`add_to_dataset` attaches to a dataset directory. Heavy optional dependencies
(sentence-transformers, Pillow) are imported only by the extractor that needs them.
"""

from __future__ import annotations

import importlib

# public name -> module that defines it; imported on first use so that ``mmssl --help`` and
# the data commands do not pay for torch
_EXPORTS = {
    "FeatureMatrix": "io",
    "add_to_dataset": "io",
    "read_item_ids": "io",
    "read_table": "io",
    "write_features": "io",
    "default_model_dir": "text",
    "render_texts": "text",
    "text_features": "text",
    "MobileNetV2Bottleneck": "image",
    "image_features": "image",
    "load_image_model": "image",
    "audio_features": "audio",
    "log_mel_statistics": "audio",
    "categorical_features": "categorical",
    "kg_features": "categorical",
    "multi_hot": "categorical",
    "randomized_svd": "categorical",
    "reduce_dimension": "categorical",
    "tfidf": "categorical",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mmssl.features.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mmssl.features' has no attribute {name!r}")
