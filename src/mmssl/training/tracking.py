"""Experiment tracking: the per-epoch records of ``log.jsonl`` (losses, seconds, validation
metrics) and the final metrics, also written to TensorBoard or MLflow (``--log``).

Both are optional (``pip install 'mmssl[track]'``):

- ``tensorboard``: event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN``); scalars
  ``loss/NAME``, ``valid/METRIC``, ``seconds/train`` and ``seconds/valid`` per epoch, and
  ``test/METRIC`` and ``final_valid/METRIC`` at the best epoch.
- ``mlflow``: one MLflow run named after the run directory, in ``$MLFLOW_TRACKING_URI`` if set,
  else in ``sqlite:///STORE/mlflow.db`` (``mlflow ui --backend-store-uri ...``); the settings as
  parameters, the same values as metrics (``@`` becomes ``_``: ``valid_recall_20``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmssl.errors import ConfigError

KINDS = ("tensorboard", "mlflow")


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    """An epoch record's values by tag: loss/..., valid/..., seconds/..."""
    out = {}
    for key, value in record.items():
        if key == "epoch" or not isinstance(value, (int, float)):
            continue
        if key.startswith("valid_") and "@" in key:
            out[f"valid/{key[6:]}"] = float(value)
        elif key.endswith("_seconds"):
            out[f"seconds/{key[:-8]}"] = float(value)
        else:
            out[f"loss/{key}"] = float(value)
    return out


class TensorBoard:
    """Scalars into ``run_dir/tensorboard`` through ``torch.utils.tensorboard``."""

    def __init__(self, run_dir: Path, name: str, store: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--log tensorboard needs TensorBoard: pip install 'mmssl[track]'") from None
        self._open = lambda: SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.writer = None  # opened with the first epoch, once the run directory exists

    def on_epoch(self, record: dict[str, Any]) -> None:
        """Write one epoch's scalars, at step = epoch."""
        self.writer = self.writer or self._open()
        for tag, value in _scalars(record).items():
            self.writer.add_scalar(tag, value, record["epoch"])
        self.writer.flush()

    def finish(self, metrics: dict[str, Any]) -> None:
        """Write the final metrics at the best epoch, then close."""
        self.writer = self.writer or self._open()
        step = max(int(metrics.get("best_epoch", 0)), 0)
        for split, prefix in (("test", "test"), ("valid", "final_valid")):
            for metric, value in metrics.get(split, {}).items():
                self.writer.add_scalar(f"{prefix}/{metric}", float(value), step)
        self.close()

    def close(self, failed: bool = False) -> None:
        """Flush and close the event file (nothing to mark for a failed run)."""
        if self.writer is not None:
            self.writer.close()


class MLflow:
    """One MLflow run per training run: settings as parameters, records as metrics."""

    def __init__(self, run_dir: Path, name: str, store: Path):
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError("--log mlflow needs MLflow: pip install 'mmssl[track]'") from None
        self.run_dir, self.name, self.store = Path(run_dir), name, Path(store)
        self.client = self.run_id = None  # started with the first epoch (the store may be the run)

    def _start(self) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        from mmssl.config import read_yaml

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its database set-up notes
        uri = (os.environ.get("MLFLOW_TRACKING_URI")
               or f"sqlite:///{self.store.resolve() / 'mlflow.db'}")
        self.client = MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "mmssl")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=self.name).info.run_id
        if (self.run_dir / "config.yaml").exists():
            from mlflow.entities import Param

            flat = {}
            for key, value in read_yaml(self.run_dir / "config.yaml").items():
                items = value.items() if isinstance(value, dict) else [(key, value)]
                flat.update({k: str(v)[:500] for k, v in items})
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])

    def _log(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        if self.client is None:
            self._start()
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k.replace("/", "_").replace("@", "_"), v, now, step) for k, v in values.items()])

    def on_epoch(self, record: dict[str, Any]) -> None:
        """Log one epoch's values, at step = epoch (the first one starts the MLflow run)."""
        self._log(_scalars(record), record["epoch"])

    def finish(self, metrics: dict[str, Any]) -> None:
        """Log the final metrics at the best epoch, then end the MLflow run as finished."""
        values = {f"test/{k}": float(v) for k, v in metrics.get("test", {}).items()}
        values.update({f"final_valid/{k}": float(v) for k, v in metrics.get("valid", {}).items()})
        self._log(values, max(int(metrics.get("best_epoch", 0)), 0))
        self.close()

    def close(self, failed: bool = False) -> None:
        """End the MLflow run, as failed or finished."""
        if self.client is not None:
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """The trackers asked for (``kinds``), fed together; an empty list does nothing."""

    def __init__(self, kinds: list[str], run_dir: str | os.PathLike, name: str | None = None,
                 store: str | os.PathLike | None = None):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ConfigError(f"--log {unknown[0]}: unknown tracker (known: {', '.join(KINDS)})")
        run_dir = Path(run_dir)
        classes = {"tensorboard": TensorBoard, "mlflow": MLflow}
        self.trackers = [classes[k](run_dir, name or run_dir.name, Path(store or run_dir))
                         for k in dict.fromkeys(kinds)]

    def on_epoch(self, record: dict[str, Any]) -> None:
        """Give every tracker one epoch's record."""
        for tracker in self.trackers:
            tracker.on_epoch(record)

    def finish(self, metrics: dict[str, Any]) -> None:
        """Give every tracker the final metrics and close it."""
        for tracker in self.trackers:
            tracker.finish(metrics)

    def close(self, failed: bool = True) -> None:
        """Close every tracker without final metrics (a run that failed or was stopped)."""
        for tracker in self.trackers:
            tracker.close(failed)


__all__ = ["KINDS", "MLflow", "TensorBoard", "Trackers"]
