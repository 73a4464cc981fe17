"""The trainer shared by every model: device, optimisers, epochs, validation, early stopping,
checkpoints and exact resume.

It knows a model only through the contract of :class:`mmssl.models.base.Model`. With a
:class:`~mmssl.training.rundir.RunDirectory` it writes the log, ``best.pt`` and ``last.pt`` as it
goes (so a killed run resumes where it stopped, bit for bit on CPU); without one it keeps the
best weights and the history in memory. With a
:class:`~mmssl.training.distributed.Distributed` context it trains one slice of every batch in
each of several processes; rank 0 alone writes files and evaluates.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmssl import runtime
from mmssl.config import RunConfig
from mmssl.data.dataset import Dataset
from mmssl.data.order import order_hint
from mmssl.errors import DataError, MmsslError
from mmssl.evaluation import evaluate
from mmssl.models.base import Model, Optimizers
from mmssl.runtime import malloc_hint, peak_memory_mb, resolve_device
from mmssl.training.rundir import BEST, LAST, RunDirectory
from mmssl.training.sampler import BprSampler

if TYPE_CHECKING:
    from mmssl.training.distributed import Distributed


def initial_state() -> dict[str, Any]:
    """Training progress before the first epoch."""
    return {"epoch": -1, "best_score": -1.0, "best_epoch": -1, "bad_evals": 0,
            "stopped": False, "train_seconds": []}


def finished(state: dict[str, Any], run: RunConfig) -> bool:
    """Whether training is over: every epoch done, or patience exhausted."""
    return state["epoch"] + 1 >= run.epochs or state["bad_evals"] > run.patience


class Trainer:
    """Trains one model on one dataset under one :class:`RunConfig`.

    Args:
        run: the run settings (epochs, patience, evaluation, device).
        run_dir: where to write the log and checkpoints; None keeps everything in memory.
        progress: show progress bars and one line per epoch.
        echo: where epoch lines go (default: ``tqdm.write``).
        dist: this process's place in a distributed run (None: a single process). Only rank 0
            writes into ``run_dir`` and shows progress.
        on_epoch: called on rank 0 with each epoch's record (losses, seconds and, when it
            validated, ``valid_*`` metrics) once it is logged and checkpointed; what it raises
            stops training (a search pruning a trial, for instance).
    """

    def __init__(self, run: RunConfig, run_dir: RunDirectory | None = None,
                 progress: bool = True, echo: Callable[[str], None] | None = None,
                 dist: Distributed | None = None,
                 on_epoch: Callable[[dict[str, Any]], None] | None = None):
        self.run = run
        self.on_epoch = on_epoch
        self.run_dir = run_dir
        self.dist = dist
        self.main = dist is None or dist.is_main  # the process that writes and evaluates
        self.progress = progress and self.main
        self.echo = echo or tqdm.write
        self.history: list[dict[str, Any]] = []
        self.state = initial_state()
        self.last_checkpoint: dict[str, Any] | None = None  # in-memory runs only
        self.warnings: list[str] = []  # the guard's (see _guard)
        self._best: dict[str, Any] | None = None

    # ---------------------------------------------------------------- public
    def fit(self, model: Model, dataset: Dataset, resume: bool = False,
            after_restore: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train (or resume) ``model``, load its best epoch, evaluate it on valid and test.

        ``after_restore(state)`` is called once a resumed checkpoint has loaded (or found none).
        Returns the metrics (what ``metrics.json`` holds). The model is left on its device, in
        eval mode, with the best epoch's weights.
        """
        run, dist = self.run, self.dist
        device = resolve_device(run.device) if dist is None else dist.device
        model.to(device)
        model.on_device(device)
        large = runtime.LARGE_CATALOGUE_ITEMS
        hints = ([order_hint(dataset, large), malloc_hint(dataset.n_items, device, large)]
                 if model.learned else [])
        for note in [*model.notes, *filter(None, hints)]:  # in the log, and shown
            if self.run_dir is not None and not resume and self.main:
                self.run_dir.append_log({"event": "note", "text": note})
            if self.progress:
                self.echo(f"{model.name}: {note}")
        if model.learned:
            if dist is not None:
                dist.prepare(model)
                if self.run_dir is not None and self.main:
                    self.run_dir.append_log(dist.describe())
            optimizers = _as_dict(model.configure_optimizers())
            schedulers = model.configure_schedulers(optimizers)
            generator = torch.Generator().manual_seed(run.seed)
            if dist is not None:
                dist.seed_own_stream(run.seed)
            if resume:
                self._restore(model, optimizers, schedulers, generator)
                if after_restore is not None and self.main:
                    after_restore(self.state)
            if not finished(self.state, run):
                self._train(model, dataset, optimizers, schedulers, generator)
            self._load_best(model)
        metrics = self._final_metrics(model, dataset)
        model.eval()
        return metrics

    def evaluate(self, model: Model, dataset: Dataset, split: str) -> dict[str, Any]:
        """Full-ranking metrics of ``model`` on ``split`` under the run's protocol."""
        model.eval()
        with torch.no_grad():
            return evaluate(model.scorer(), dataset, split=split, protocol=self.run.protocol,
                            ks=self.run.ks, batch_size=self.run.eval_batch_size,
                            device=model.device)

    # ------------------------------------------------------------- the loop
    def _train(self, model: Model, dataset: Dataset, optimizers: Optimizers,
               schedulers: dict[str, Any], generator: torch.Generator) -> None:
        run, state = self.run, self.state
        where = str(dataset.path) if getattr(dataset, "path", None) else "the dataset"
        try:
            sampler = BprSampler(dataset.matrix("train"), model.config.batch_size, model.sampling,
                                 generator, replace_when_short=getattr(model, "users_with_replacement", True))
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        dist = self.dist
        if dist is None:
            def step_fn(batch):
                return model.training_step(batch.to(model.device), optimizers)
        else:  # each process trains its slice; the losses are the whole batch's
            sampler, step_fn = dist.shard(sampler), dist.stepper(model, optimizers)
        # the guard looks once, at the first validation after `patience` epochs (not again on resume)
        guarded = any(f"valid_{run.select}" in r and r["epoch"] + 1 >= run.patience
                      for r in self.history)
        for epoch in range(state["epoch"] + 1, run.epochs):
            t0 = time.perf_counter()
            model.train()
            self._hook(model.on_epoch_start, epoch, 0)
            sums: dict[str, float] = {}
            bar = tqdm(sampler.epoch(), total=sampler.steps_per_epoch(), disable=not self.progress,
                       desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
            shown = 1 if dist is None else dist.world_size  # the bar: rank 0's slices, scaled
            for step, batch in enumerate(bar):
                losses = step_fn(batch)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{shown * v / (step + 1):.4g}" for k, v in sums.items()},
                                refresh=False)
            bar.close()
            if dist is not None:  # each process summed its slices' shares: now the batches'
                sums = dist.sum_floats(sums)
            losses = {k: v / sampler.steps_per_epoch() for k, v in sums.items()}
            if not all(math.isfinite(v) for v in losses.values()):
                shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
                raise MmsslError(f"epoch {epoch}: the loss is not finite ({shown}); "
                                 "lower the learning rate (--set lr=...)")
            self._hook(model.on_epoch_end, epoch, 1)
            for scheduler in schedulers.values():
                scheduler.step()
            record: dict[str, Any] = {"epoch": epoch, "train_seconds": time.perf_counter() - t0, **losses}
            improved = False
            validate = (epoch + 1) % run.eval_every == 0 or epoch == run.epochs - 1
            if dist is not None:  # rank 0 validates; every process takes its record and decides alike
                record = dist.on_main(lambda r=record, v=validate: {
                    **r, **self._validate(model, dataset)} if v else r)
            elif validate:
                record.update(self._validate(model, dataset))
            if validate and self.main and not guarded and epoch + 1 >= run.patience:
                guarded = True
                self._guard(model, dataset, max(state["best_score"], record[f"valid_{run.select}"]), epoch)
            if validate:
                score = record[f"valid_{run.select}"]
                if score > state["best_score"]:
                    improved = True
                    state.update(best_score=score, best_epoch=epoch, bad_evals=0)
                    self._save_best(model, epoch)
                else:
                    state["bad_evals"] += 1
            state["epoch"] = epoch
            state["train_seconds"].append(record["train_seconds"])
            state["stopped"] = finished(state, run)
            self.history.append(record)
            if self.run_dir is not None:
                last = self._checkpoint(model, optimizers, schedulers, generator)
                if self.main:
                    self.run_dir.append_log(record)
                    self.run_dir.save_checkpoint(LAST, last)
            if self.progress:
                self.echo(epoch_line(record, run.select, improved))
            if self.on_epoch is not None and self.main:
                self.on_epoch(record)
            if state["stopped"]:
                break
        if self.run_dir is None:  # in memory: what a later save() writes as last.pt
            self.last_checkpoint = copy.deepcopy(
                self._checkpoint(model, optimizers, schedulers, generator))

    def _validate(self, model: Model, dataset: Dataset) -> dict[str, Any]:
        """Validation's fields of an epoch's record: seconds, then every metric."""
        t1 = time.perf_counter()
        valid = self.evaluate(model, dataset, "valid")
        fields: dict[str, Any] = {"valid_seconds": time.perf_counter() - t1}
        fields.update({f"valid_{k}": v for k, v in valid.items() if "@" in k})
        return fields

    def _guard(self, model: Model, dataset: Dataset, best: float, epoch: int) -> None:
        """Warn (one line on stderr, and in the log) when the best validation score after the
        first ``patience`` epochs is below the popularity ranking's: a model that is not
        learning, which early stopping would otherwise end in silence."""
        counts = torch.from_numpy(np.asarray(dataset.matrix("train").sum(axis=0),
                                             dtype=np.float32).ravel())
        with torch.no_grad():
            pop = evaluate(lambda users: counts.repeat(len(users), 1), dataset, split="valid",
                           protocol=self.run.protocol, ks=self.run.ks,
                           batch_size=self.run.eval_batch_size, device="cpu")[self.run.select]
        if best >= pop:
            return
        text = (f"{model.name}: valid {self.run.select} {best:.4f} after {epoch + 1} epochs is "
                f"still below the popularity ranking's {pop:.4f}; a model that stays there is not "
                f"learning: try other values of {likely_culprits(model.config)} (--set KEY=VALUE)")
        self.warnings.append(text)
        print(f"mmssl: warning: {text}", file=sys.stderr, flush=True)
        if self.run_dir is not None:
            self.run_dir.append_log({"event": "warning", "text": text})

    def _hook(self, hook: Callable[[int], None], epoch: int, which: int) -> None:
        """An epoch hook; in a distributed run its random draws are the same on every process."""
        if self.dist is None:
            hook(epoch)
        else:
            with self.dist.shared_random(self.run.seed, epoch, which):
                hook(epoch)

    # ------------------------------------------------------- best and final
    def _save_best(self, model: Model, epoch: int) -> None:
        best = {"model": model.state_dict(), "extra": model.extra_state(), "epoch": epoch}
        if self.run_dir is not None:
            if self.main:
                self.run_dir.save_checkpoint(BEST, best)
        else:
            self._best = copy.deepcopy(best)

    def _load_best(self, model: Model) -> None:
        if self.run_dir is not None and self.dist is not None:  # rank 0 reads, all load
            best = self.dist.on_main(lambda: self.run_dir.load_checkpoint(BEST, "cpu"))
        elif self.run_dir is not None:
            best = self.run_dir.load_checkpoint(BEST, model.device)
        elif self._best is not None:
            best = self._best
        else:
            raise MmsslError("no validation happened, so there is no best epoch")
        model.load_state_dict(best["model"])
        model.load_extra_state(best.get("extra", {}))

    def _final_metrics(self, model: Model, dataset: Dataset) -> dict[str, Any]:
        if self.dist is not None:  # computed once, on rank 0
            return self.dist.on_main(lambda: self._metrics(model, dataset))
        return self._metrics(model, dataset)

    def _metrics(self, model: Model, dataset: Dataset) -> dict[str, Any]:
        valid = self.evaluate(model, dataset, "valid")
        test = self.evaluate(model, dataset, "test")
        seconds = self.state["train_seconds"]
        return {
            "model": model.name,
            "protocol": self.run.protocol,
            "select": self.run.select,
            "valid": _metrics_only(valid),
            "test": _metrics_only(test),
            "valid_users": valid["users"],
            "test_users": test["users"],
            "best_epoch": self.state["best_epoch"],
            "epochs": self.state["epoch"] + 1,
            "seconds_per_epoch": float(np.median(seconds)) if seconds else 0.0,
            "seed": self.run.seed,
            "peak_memory_mb": peak_memory_mb(),
        }

    # ---------------------------------------------------------- checkpoints
    def _checkpoint(self, model: Model, optimizers: Optimizers, schedulers: dict[str, Any],
                    generator: torch.Generator) -> dict[str, Any]:
        """Everything needed to continue training exactly (what ``last.pt`` holds)."""
        ckpt = {
            "format": 2,
            "model": model.state_dict(),
            "extra": model.extra_state(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": generator.get_state(),
            "state": self.state,
        }
        if torch.cuda.is_available() and model.device.type == "cuda":
            ckpt["cuda_rng"] = torch.cuda.get_rng_state_all()
        if self.dist is not None:  # every process's random state (collective)
            ckpt.update(self.dist.rng_checkpoint())
        return ckpt

    def _restore(self, model: Model, optimizers: Optimizers, schedulers: dict[str, Any],
                 generator: torch.Generator) -> None:
        if self.run_dir is None:
            raise MmsslError("resume needs a run directory")
        path = self.run_dir / LAST
        if self.dist is not None:  # rank 0 reads, every process loads the same
            ckpt = self.dist.on_main(lambda: self.run_dir.load_checkpoint(LAST, "cpu")
                                     if path.exists() else None)
        else:
            ckpt = self.run_dir.load_checkpoint(LAST, model.device) if path.exists() else None
        if ckpt is None:
            return  # killed before its first epoch ended: start afresh
        try:
            model.load_state_dict(ckpt["model"])
            model.load_extra_state(ckpt.get("extra", {}))
            for name, opt in optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
            # pre-0.2 checkpoints kept a model's one schedule in its extra state
            saved = ckpt.get("schedulers") or ({"lr": ckpt["extra"]["scheduler"]}
                                               if "scheduler" in ckpt.get("extra", {}) else {})
            for name, scheduler in schedulers.items():
                if name in saved:
                    scheduler.load_state_dict(saved[name])
            if self.dist is not None:
                self.dist.restore_rng(ckpt, self.run.seed)
            else:
                torch.set_rng_state(ckpt["torch_rng"])
                if "cuda_rng" in ckpt and model.device.type == "cuda":
                    torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            generator.set_state(ckpt["sampler_rng"])
            state = dict(ckpt["state"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{path}: does not fit this model and dataset ({first[:200]})") from None
        self.state = state
        if self.main:
            self.run_dir.keep_log_until(state["epoch"])
            self.history = [r for r in self.run_dir.read_log() if "epoch" in r]


def likely_culprits(config: Any) -> str:
    """The settings that most often stop a model from learning (learning rates and
    regularisation weights) with their values: ``lr (now 0.001), reg_weight (now 1.0)``."""
    names = [f.name for f in dataclasses.fields(config)
             if f.name == "lr" or f.name.endswith("_lr") or "reg" in f.name
             or f.name == "weight_decay"]
    return ", ".join(f"{n} (now {getattr(config, n)!r})" for n in names) or "the learning settings"


def epoch_line(record: dict[str, Any], select: str = "recall@20", improved: bool = False) -> str:
    """One compact line per epoch: losses, validation R@20 / N@20, seconds; * marks a new best."""
    losses = [k for k in record if k not in ("epoch", "train_seconds", "valid_seconds")
              and not k.startswith("valid_")]
    parts = [f"epoch {record['epoch']:>3}", "  ".join(f"{k} {record[k]:.4g}" for k in losses)]
    if f"valid_{select}" in record:
        cut = select.split("@")[1]
        shown = [f"valid {_short(select)} {record[f'valid_{select}']:.4f}"]
        if f"valid_ndcg@{cut}" in record and select != f"ndcg@{cut}":
            shown.append(f"N@{cut} {record[f'valid_ndcg@{cut}']:.4f}")
        parts.append(" ".join(shown) + (" *" if improved else "  "))
    seconds = record["train_seconds"] + record.get("valid_seconds", 0.0)
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


def _short(metric: str) -> str:
    name, k = metric.split("@")
    return {"recall": "R", "ndcg": "N", "precision": "P", "hit": "HR", "map": "MAP"}[name] + "@" + k


def _as_dict(optimizers: torch.optim.Optimizer | Optimizers) -> Optimizers:
    # "adam": the name checkpoints of one-optimiser models used before 0.2
    return {"adam": optimizers} if isinstance(optimizers, torch.optim.Optimizer) else dict(optimizers)


def _metrics_only(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if "@" in k}


__all__ = ["Trainer", "epoch_line", "finished", "initial_state", "likely_culprits"]
