"""Training: the shared trainer, sampling, and saved runs."""

from mmssl.training.run import Run, load_run
from mmssl.training.trainer import Trainer, train

__all__ = ["Run", "Trainer", "load_run", "train"]
