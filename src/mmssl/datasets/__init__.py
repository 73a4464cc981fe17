"""Well-known datasets built ready to train: download, import and feature extraction.

This package sits above :mod:`mmssl.data` and :mod:`mmssl.features` and uses both; neither
knows it. ``prepare(name, dest)`` builds a dataset directory (:mod:`mmssl.datasets.registry`);
each recipe lives in its own module (:mod:`mmssl.datasets.movielens`).
"""

from mmssl.datasets.registry import available, cache_dir, prepare

__all__ = ["available", "cache_dir", "prepare"]
