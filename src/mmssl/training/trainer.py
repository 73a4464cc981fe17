"""The trainer shared by every model: epochs, validation, early stopping, checkpoints, resume.

A run directory holds::

    config.yaml     the model name, the data directory and the whole resolved config
    log.jsonl       one line per epoch: losses, validation metrics, seconds
    metrics.json    validation and test metrics at the best validation epoch
    curves.png      training loss and validation Recall@20 per epoch
    best.pt         the model's weights at the best validation epoch
    recommender.npz the best epoch's user and item factors with the ids, for torch-free top-k
    last.pt         everything needed to resume (weights, optimisers, random states)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mmssl.config import build_config, parse_overrides, read_yaml, save_config
from mmssl.data.dataset import Dataset, load_dataset
from mmssl.errors import ConfigError, MmsslError
from mmssl.evaluation import evaluate
from mmssl.models import get_model_class
from mmssl.models.base import Model, TrainingConfig
from mmssl.recommender import FILE_NAME as RECOMMENDER_FILE
from mmssl.recommender import Recommender
from mmssl.training.sampler import BprSampler

try:
    import resource
except ImportError:  # not on Windows
    resource = None

log = logging.getLogger("mmssl")

SELECT_METRIC = "recall@20"  # early stopping and model selection, on validation data only


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def export_recommender(model: Model, dataset: Dataset, source: str = "model") -> Recommender:
    """The model's factors, the dataset's ids and its training items, as a :class:`Recommender`."""
    model.eval()
    with torch.no_grad():
        user, item = model.factors()
    return Recommender(dataset.user_ids, dataset.item_ids, user.float().cpu().numpy(),
                       item.float().cpu().numpy(), dataset.matrix("train"), source=source)


def build_model(name: str, dataset: Dataset, config: TrainingConfig) -> Model:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    return get_model_class(name)(dataset, config, device)


class Trainer:
    """Trains one model on one dataset into a run directory."""

    def __init__(self, model_name: str, dataset: Dataset, config: TrainingConfig, out: Path,
                 data_dir: str | None = None, progress: bool = True):
        self.model_name = model_name
        self.dataset = dataset
        self.config = config
        self.out = Path(out)
        self.data_dir = data_dir
        self.progress = progress

    # ---------------------------------------------------------------- public
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (or resume), then evaluate the best epoch on test; returns metrics.json."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.out / "config.yaml",
                    extra={"model": self.model_name, "data": self.data_dir})
        model = build_model(self.model_name, self.dataset, cfg)
        state = _initial_state()
        generator = torch.Generator().manual_seed(cfg.seed)
        if resume:
            state = self._restore(model, generator)
        elif (self.out / "log.jsonl").exists():
            (self.out / "log.jsonl").unlink()
        (self.out / RECOMMENDER_FILE).unlink(missing_ok=True)  # rewritten once the run is done

        if model.learned and state["stopped"] is False:
            self._train(model, generator, state)
        if model.learned:
            best = torch.load(self.out / "best.pt", map_location=model.device, weights_only=True)
            model.load_state_dict(best["model"])
            model.load_extra_state(best.get("extra", {}))
        metrics = self._final_metrics(model, state)
        export_recommender(model, self.dataset, source=str(self.out)).save(self.out / RECOMMENDER_FILE)
        atomic_write_text(self.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if model.learned:
            plot_curves(self.out / "log.jsonl", self.out / "curves.png")
        return metrics

    # --------------------------------------------------------------- internals
    def _train(self, model: Model, generator: torch.Generator, state: dict) -> None:
        cfg = self.config
        sampler = BprSampler(
            self.dataset.matrix("train"), cfg.batch_size, model.sampling, generator,
            replace_when_short=getattr(cfg, "sample_users_with_replacement", True),
        )
        for epoch in range(state["epoch"] + 1, cfg.epochs):
            t0 = time.perf_counter()
            model.train()
            sums: dict[str, float] = {}
            bar = tqdm(sampler.epoch(), total=sampler.steps_per_epoch(), disable=not self.progress,
                       desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
            for step, batch in enumerate(bar):
                losses = model.train_step(batch, step)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v / (step + 1):.4g}" for k, v in sums.items()}, refresh=False)
            bar.close()
            n_steps = sampler.steps_per_epoch()
            losses = {k: v / n_steps for k, v in sums.items()}
            if not all(math.isfinite(v) for v in losses.values()):
                raise MmsslError(f"epoch {epoch}: loss is not finite ({losses}); lower the learning rate")
            model.end_epoch(epoch)
            train_seconds = time.perf_counter() - t0
            record: dict[str, Any] = {"epoch": epoch, "train_seconds": train_seconds, **losses}
            if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
                t1 = time.perf_counter()
                valid = self._evaluate(model, "valid")
                record["valid_seconds"] = time.perf_counter() - t1
                record.update({f"valid_{k}": v for k, v in valid.items() if "@" in k})
                score = valid[SELECT_METRIC]
                if score > state["best_score"]:
                    state.update(best_score=score, best_epoch=epoch, bad_evals=0)
                    atomic_torch_save({"model": model.state_dict(), "extra": model.extra_state(),
                                       "epoch": epoch}, self.out / "best.pt")
                else:
                    state["bad_evals"] += 1
                    if state["bad_evals"] > cfg.patience:
                        state["stopped"] = True
            state["epoch"] = epoch
            state["train_seconds"].append(train_seconds)
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self._checkpoint(model, generator, state)
            if self.progress:
                shown = {k: round(v, 5) for k, v in record.items() if k != "epoch"}
                tqdm.write(f"epoch {epoch}: {shown}")
            if state["stopped"]:
                break
        state["stopped"] = True
        self._checkpoint(model, generator, state)

    def _evaluate(self, model: Model, split: str) -> dict[str, Any]:
        model.eval()
        with torch.no_grad():
            scorer = model.scorer()
            return evaluate(scorer, self.dataset, split=split, protocol=self.config.protocol,
                            ks=self.config.ks, batch_size=self.config.eval_batch_size,
                            device=model.device)

    def _final_metrics(self, model: Model, state: dict) -> dict[str, Any]:
        valid = self._evaluate(model, "valid")
        test = self._evaluate(model, "test")
        seconds = state["train_seconds"]
        return {
            "model": self.model_name,
            "protocol": self.config.protocol,
            "valid": _metrics_only(valid),
            "test": _metrics_only(test),
            "valid_users": valid["users"],
            "test_users": test["users"],
            "best_epoch": state["best_epoch"],
            "epochs": state["epoch"] + 1,
            "seconds_per_epoch": float(np.median(seconds)) if seconds else 0.0,
            "seed": self.config.seed,
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            if resource else None,
        }

    def _checkpoint(self, model: Model, generator: torch.Generator, state: dict) -> None:
        atomic_torch_save({
            "model": model.state_dict(),
            "extra": model.extra_state(),
            "optimizers": {k: o.state_dict() for k, o in model.optimizers().items()},
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": generator.get_state(),
            "state": state,
        }, self.out / "last.pt")

    def _restore(self, model: Model, generator: torch.Generator) -> dict:
        path = self.out / "last.pt"
        if not path.exists():
            raise MmsslError(f"{path}: no checkpoint to resume from")
        ckpt = torch.load(path, map_location=model.device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        model.load_extra_state(ckpt["extra"])
        for name, opt in model.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][name])
        torch.set_rng_state(ckpt["torch_rng"])
        generator.set_state(ckpt["sampler_rng"])
        # Keep only the log lines of epochs the checkpoint covers.
        log_path = self.out / "log.jsonl"
        if log_path.exists():
            lines = [ln for ln in log_path.read_text().splitlines()
                     if ln and json.loads(ln)["epoch"] <= ckpt["state"]["epoch"]]
            atomic_write_text(log_path, "".join(ln + "\n" for ln in lines))
        return ckpt["state"]


def _initial_state() -> dict:
    return {"epoch": -1, "best_score": -1.0, "best_epoch": -1, "bad_evals": 0,
            "stopped": False, "train_seconds": []}


def _metrics_only(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if "@" in k}


def plot_curves(log_path: Path, out: Path) -> None:
    """Training loss and validation Recall@20 per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln]
    if not records:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot([r["epoch"] for r in records], [r.get("loss", float("nan")) for r in records])
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    ev = [r for r in records if f"valid_{SELECT_METRIC}" in r]
    ax2.plot([r["epoch"] for r in ev], [r[f"valid_{SELECT_METRIC}"] for r in ev], marker=".")
    ax2.set(xlabel="epoch", ylabel="Recall@20", title="validation Recall@20")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)


def make_config(model_name: str, values: dict[str, Any], where: str = "config") -> TrainingConfig:
    """The model's typed config from plain values, with its presets applied (MMSSL's variant)."""
    cls = get_model_class(model_name)
    config = build_config(cls.Config, values, where=where)
    if hasattr(cls, "resolve_config"):
        config = cls.resolve_config(config)
    return config


def train(model_name: str | None, data_dir: str | os.PathLike | None, out: str | os.PathLike,
          config_file: str | None = None, overrides: list[str] | None = None,
          resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``model_name`` on the dataset directory ``data_dir`` into the run directory ``out``.

    ``config_file`` may be a run's saved ``config.yaml``: its ``model`` and ``data`` entries
    fill in ``model_name`` and ``data_dir`` when those are not given. With ``resume``, the
    run's own ``config.yaml`` and checkpoint are used and training continues where it stopped.
    """
    out = Path(out)
    values = read_yaml(out / "config.yaml" if resume else config_file) if (resume or config_file) else {}
    if resume and not (out / "config.yaml").exists():
        raise MmsslError(f"{out / 'config.yaml'}: missing; nothing to resume")
    saved_model, saved_data = values.pop("model", None), values.pop("data", None)
    model_name = (saved_model if resume else model_name or saved_model)
    data_dir = (saved_data if resume else data_dir or saved_data)
    if not model_name or not data_dir:
        raise ConfigError("train needs a model and a data directory (--model, --data)")
    if saved_model and model_name != saved_model:
        raise ConfigError(f"{config_file}: written for model {saved_model!r}, not {model_name!r}")
    if not resume:
        values.update(parse_overrides(overrides))
    config = make_config(model_name, values, where=str(config_file or out / "config.yaml"))
    dataset = load_dataset(data_dir)
    return Trainer(model_name, dataset, config, out, data_dir=str(Path(data_dir).resolve()),
                   progress=progress).fit(resume=resume)
