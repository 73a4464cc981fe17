"""The run directory: what a training run leaves behind, read back and written whole.

Layout::

    config.yaml     model, data, and the resolved settings (run: and params: sections)
    log.jsonl       one line per epoch (losses, validation metrics, seconds) and resume events
    metrics.json    validation and test metrics at the best validation epoch
    curves.png      training loss and the validation metric per epoch, the best epoch marked
    best.pt         the model's weights at the best validation epoch
    last.pt         everything needed to resume (weights, optimisers, random states)
    recommender.npz the best epoch's user and item factors with the ids, for torch-free top-k

Every file is written atomically (:mod:`mmssl.io`); checkpoints are read with
``weights_only=True`` and a file that is not one of ours gets a one-line error.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

from mmssl import io
from mmssl.config import read_yaml
from mmssl.errors import ConfigError, DataError, WriteError

CONFIG, LOG, METRICS, CURVES = "config.yaml", "log.jsonl", "metrics.json", "curves.png"
BEST, LAST, RECOMMENDER = "best.pt", "last.pt", "recommender.npz"


class RunDirectory:
    """A folder holding one run (see the module docstring for its files)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def is_run(self) -> bool:
        """True when the folder holds a run's config.yaml."""
        return (self.path / CONFIG).is_file()

    # ------------------------------------------------------------- creating
    def check_new(self, overwrite: bool = False) -> None:
        """Raise unless a new run may be written here: the folder is absent or empty, or
        ``overwrite`` and it holds a run (it is then removed by :meth:`create`). Writes nothing."""
        path = self.path
        io.ensure_parent(path, "run folder")
        if path.exists() and not path.is_dir():
            raise WriteError(f"{path}: is a file, not a run folder (choose another --out)")
        if not path.exists() or not any(path.iterdir()):
            return
        if not overwrite:
            what = "a previous run" if self.is_run() else "files"
            raise ConfigError(f"{path}: not empty ({what}); continue it with --resume {path}, "
                              "replace it with --overwrite, or choose another --out")
        if not self.is_run():
            raise ConfigError(f"{path}: not empty and not a run folder (no {CONFIG}); "
                              "refusing to delete it with --overwrite")

    def create(self, overwrite: bool = False) -> None:
        """Make the folder for a new run (after :meth:`check_new`), removing an old run first."""
        self.check_new(overwrite)
        if self.path.exists() and any(self.path.iterdir()):
            shutil.rmtree(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"{self.path}: cannot create the run folder: {e.strerror}") from None

    # --------------------------------------------------------------- config
    def read_config(self) -> dict[str, Any]:
        """config.yaml as a mapping; MmsslError when the folder is not a run."""
        if not self.path.is_dir():
            raise ConfigError(f"{self.path}: no such run folder")
        if not self.is_run():
            raise ConfigError(f"{self.path / CONFIG}: missing; is {self.path} a run folder?")
        return read_yaml(self.path / CONFIG)

    def write_config(self, values: dict[str, Any]) -> None:
        """Write config.yaml (atomically)."""
        import yaml

        io.write_text(self.path / CONFIG, yaml.safe_dump(values, sort_keys=False))

    # ------------------------------------------------------------------ log
    def append_log(self, record: dict[str, Any]) -> None:
        """Append one record to log.jsonl."""
        io.append_line(self.path / LOG, json.dumps(record))

    def read_log(self) -> list[dict[str, Any]]:
        """Every record of log.jsonl (epochs and events); a broken last line (a crash while
        writing it) is dropped."""
        path = self.path / LOG
        if not path.exists():
            return []
        records = []
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if n == len(lines):
                    break
                raise DataError(f"{path}: line {n}: malformed JSON") from None
        return records

    def keep_log_until(self, epoch: int) -> None:
        """Drop the log records of epochs after ``epoch`` (those a checkpoint does not cover)."""
        kept = [r for r in self.read_log()
                if r.get("epoch", r.get("after_epoch", -1)) <= epoch]  # notes (no epoch) stay
        io.write_text(self.path / LOG, "".join(json.dumps(r) + "\n" for r in kept))

    # -------------------------------------------------------------- metrics
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write metrics.json (atomically)."""
        io.write_text(self.path / METRICS, json.dumps(metrics, indent=2) + "\n")

    def read_metrics(self) -> dict[str, Any] | None:
        """metrics.json, or None before the run finished."""
        path = self.path / METRICS
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{path}: malformed JSON") from None

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self, name: str, obj: dict[str, Any]) -> None:
        """torch.save ``obj`` as ``name`` (atomically)."""
        io.torch_save(self.path / name, obj)

    def load_checkpoint(self, name: str, device=None) -> dict[str, Any]:
        """A checkpoint written by :meth:`save_checkpoint`, tensors only (``weights_only``)."""
        return load_checkpoint(self.path / name, device)


def load_checkpoint(path: Path, device=None) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors for missing, truncated or
    foreign files (a pickle that would run code is refused, never executed)."""
    import torch

    if not path.exists():
        raise DataError(f"{path}: missing")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(f"{path}: refused: it holds objects other than tensors and numbers, so "
                        "it was not written by mmssl (torch.load weights_only)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a readable checkpoint (truncated or corrupt: {first})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise DataError(f"{path}: not an mmssl checkpoint (no model weights)")
    return ckpt


__all__ = ["BEST", "CONFIG", "CURVES", "LAST", "LOG", "METRICS", "RECOMMENDER", "RunDirectory",
           "load_checkpoint"]
