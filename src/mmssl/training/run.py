"""A trained run, loaded back: re-evaluate it, or recommend items to its users."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mmssl.config import build_config, read_yaml
from mmssl.data.dataset import Dataset, load_dataset
from mmssl.errors import MmsslError
from mmssl.evaluation import evaluate
from mmssl.models import get_model_class
from mmssl.models.base import Model
from mmssl.recommender import Recommendation, Recommender
from mmssl.training.trainer import build_model, export_recommender


class Run:
    """A run directory with its model rebuilt and the best weights loaded."""

    def __init__(self, path: Path, model_name: str, model: Model, dataset: Dataset, config: Any):
        self.path = path
        self.model_name = model_name
        self.model = model
        self.dataset = dataset
        self.config = config
        self._scorer = None
        self._recommender = None

    def scorer(self):
        if self._scorer is None:
            self.model.eval()
            self._scorer = self.model.scorer()
        return self._scorer

    def recommender(self) -> Recommender:
        """The model as a NumPy :class:`Recommender` (what ``RUN/recommender.npz`` holds)."""
        if self._recommender is None:
            self._recommender = export_recommender(self.model, self.dataset, source=str(self.path))
        return self._recommender

    def recommend(self, users: list[str | int], k: int = 20, exclude_seen: bool = True
                  ) -> list[Recommendation]:
        """Top-``k`` items for each original user id (training items excluded by default)."""
        return self.recommender().recommend(users, k=k, exclude_seen=exclude_seen)

    def evaluate(self, split: str = "test", protocol: str | None = None,
                 ks: tuple[int, ...] | None = None) -> dict[str, Any]:
        cfg = self.config
        self.model.eval()
        with torch.no_grad():
            return evaluate(self.scorer(), self.dataset, split=split,
                            protocol=protocol or cfg.protocol, ks=ks or cfg.ks,
                            batch_size=cfg.eval_batch_size, device=self.model.device)


def load_run(path: str | os.PathLike, device: str | None = None,
             data: str | os.PathLike | None = None) -> Run:
    """Load a run directory written by ``mmssl train``; ``data`` overrides the saved data path."""
    path = Path(path)
    values = read_yaml(path / "config.yaml") if (path / "config.yaml").exists() else None
    if values is None:
        raise MmsslError(f"{path / 'config.yaml'}: missing; is {path} a run directory?")
    model_name = values.pop("model", None)
    data_dir = data or values.pop("data", None)
    values.pop("data", None)
    if not model_name or not data_dir:
        raise MmsslError(f"{path / 'config.yaml'}: 'model' and 'data' are required")
    cls = get_model_class(model_name)
    config = build_config(cls.Config, values, where=str(path / "config.yaml"))
    if device:
        config = replace(config, device=device)
    dataset = load_dataset(data_dir)
    model = build_model(model_name, dataset, config)
    if model.learned:
        best = path / "best.pt"
        if not best.exists():
            raise MmsslError(f"{best}: missing; the run has no finished epoch")
        ckpt = torch.load(best, map_location=model.device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        model.load_extra_state(ckpt.get("extra", {}))
    return Run(path, model_name, model, dataset, config)


__all__ = ["Recommendation", "Run", "load_run"]
