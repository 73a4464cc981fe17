"""Datasets: the in-memory ``Dataset``, its on-disk layout, importers, exporters and splits."""

from mmssl.data.dataset import Dataset, load_dataset, save_dataset

__all__ = ["Dataset", "load_dataset", "save_dataset"]
