"""The Python API: fit a model, evaluate it, recommend with it, save it, load it back.

::

    import mmssl
    ds = mmssl.Dataset.from_frame(interactions, features={"text": vectors}, split="random:8:1:1")
    model = mmssl.fit("lightgcn", ds, epochs=50, lr=0.01)
    model.evaluate(split="test", protocol="standard")
    model.recommend(["u1", "u2"], k=10)
    model.save("runs/lightgcn")
    again = mmssl.load("runs/lightgcn")

``fit`` takes any setting by its flat name as a keyword (``epochs=``, ``protocol=``, ``lr=``,
``variant=``); they are checked as the command line's ``--set`` are. The command line is a thin
layer over this module.

Under ``torchrun`` (``WORLD_SIZE`` > 1), ``fit`` and ``resume`` train as one process of a
distributed run (:mod:`mmssl.training.distributed`); rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmssl import io
from mmssl.config import (
    RESUMABLE_KEYS,
    WAITING_KEYS,
    RunConfig,
    Settings,
    build_config,
    config_fields,
    config_to_dict,
    parse_overrides,
    read_yaml,
    resolve,
)
from mmssl.data.dataset import Dataset, load_dataset
from mmssl.errors import ConfigError, DataError
from mmssl.serving.coldstart import export_for_serving  # serving: coldstart.npz, items.tsv
from mmssl.serving.recommender import FILE_NAME, Recommendation, Recommender
from mmssl.training import rundir as files
from mmssl.training.curves import plot_run
from mmssl.training.rundir import RunDirectory

OnEpoch = Callable[[dict[str, Any]], None]  # gets each epoch's record (losses, valid_* metrics)


class TrainedModel:
    """A trained model with its dataset and settings: evaluate it, recommend, save it.

    Attributes:
        settings: model name, data path, the :class:`RunConfig` and the model's config.
        model: the torch module (eval mode, best validation epoch).
        dataset: the dataset it was trained on.
        metrics: validation and test metrics at the best epoch (``metrics.json``).
        history: one record per epoch (``log.jsonl``).
        path: the run directory, or None for a model held only in memory.
    """

    def __init__(self, settings: Settings, model, dataset: Dataset,
                 metrics: dict[str, Any] | None = None, history: list[dict] | None = None,
                 path: Path | None = None, last_checkpoint: dict | None = None):
        self.settings = settings
        self.model = model
        self.dataset = dataset
        self.metrics = metrics
        self.history = list(history or [])
        self.path = path
        self._last_checkpoint = last_checkpoint
        self._recommender: Recommender | None = None

    @property
    def name(self) -> str:
        """The registered model name."""
        return self.settings.model

    @property
    def run(self) -> RunConfig:
        """The run settings."""
        return self.settings.run

    @property
    def params(self) -> Any:
        """The model's hyper-parameters."""
        return self.settings.params

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        best = ""
        if self.metrics:
            best = (f", best epoch {self.metrics['best_epoch']}, valid {self.run.select} "
                    f"{self.metrics['valid'][self.run.select]:.4f}")
        return f"TrainedModel({self.name}{best}{where})"

    # ------------------------------------------------------------- queries
    def scorer(self):
        """``scorer(users: LongTensor) -> (b, n_items)`` scores of the model."""
        self.model.eval()
        return self.model.scorer()

    def evaluate(self, split: str = "test", protocol: str | None = None,
                 ks: tuple[int, ...] | list[int] | None = None) -> dict[str, Any]:
        """Full-ranking metrics on ``split`` (``valid`` or ``test``); protocol and cut-offs
        default to the run's."""
        import torch

        from mmssl.evaluation import evaluate

        run = self.run
        if protocol is not None or ks is not None:
            values = config_to_dict(run)
            values.update({k: v for k, v in (("protocol", protocol), ("ks", ks)) if v is not None})
            if ks is not None:  # the selection metric need not be among other cut-offs here
                values["select"] = f"recall@{list(ks)[0]}"
            run = build_config(RunConfig, values, where="evaluate")
        self.model.eval()
        with torch.no_grad():
            return evaluate(self.model.scorer(), self.dataset, split=split, protocol=run.protocol,
                            ks=run.ks, batch_size=run.eval_batch_size, device=self.model.device)

    def recommender(self) -> Recommender:
        """The NumPy recommender (``RUN/recommender.npz`` when saved)."""
        if self._recommender is None:
            saved = self.path / FILE_NAME if self.path else None
            if saved is not None and saved.exists():
                self._recommender = Recommender.load(saved)
            else:
                self._recommender = Recommender.from_model(self.model, self.dataset,
                                                           source=str(self.path or self.name))
        return self._recommender

    def recommend(self, users, k: int = 20, exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``k`` items for each original user id (training items excluded by default)."""
        return self.recommender().recommend(users, k=k, exclude_seen=exclude_seen)

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the run to the folder ``path``: config, log, metrics, curves, best weights,
        the recommender (and the dataset itself when it lives only in memory)."""
        path = Path(path)
        if self.path is not None and path.resolve() == self.path.resolve():
            return path
        target = RunDirectory(path)
        target.check_new(overwrite)
        if self.path is not None:  # a run on disk: copy it whole (last.pt included)
            with io.atomic_directory(path, overwrite=overwrite) as tmp:
                shutil.copytree(self.path, tmp, dirs_exist_ok=True)
            return path
        with io.atomic_directory(path, overwrite=overwrite) as tmp:
            out = RunDirectory(tmp)
            data = self.settings.data
            if data is None:
                _save_copy(self.dataset, tmp / "dataset")
                data = "dataset"  # relative to the run folder
            out.write_config(_config_values(replace(self.settings, data=data), self.dataset))
            for record in self.history:
                out.append_log(record)
            io.torch_save(tmp / files.BEST, {"model": self.model.state_dict(),
                                             "extra": self.model.extra_state(),
                                             "epoch": (self.metrics or {}).get("best_epoch", -1)})
            if self._last_checkpoint is not None:
                io.torch_save(tmp / files.LAST, self._last_checkpoint)
            if self.metrics is not None:
                out.write_metrics(self.metrics)
            self.recommender().save(tmp / FILE_NAME)
            export_for_serving(self.model, self.dataset, tmp)  # serving: new items, titles
            plot_run(out.path, self.history, self.run.select, self.metrics)
        return path


def fit(model: str, dataset: Dataset | str | os.PathLike, out: str | os.PathLike | None = None,
        *, config: str | os.PathLike | None = None, overrides: list[str] | None = None,
        overwrite: bool = False, progress: bool = True, echo=None,
        on_epoch: OnEpoch | None = None, **settings: Any) -> TrainedModel:
    """Train ``model`` on ``dataset`` and return it, best validation epoch loaded.

    Args:
        model: a registered name (``mmssl.models.available_models()``).
        dataset: a :class:`Dataset`, or the folder of one.
        out: run directory to write as training goes (config, log, checkpoints, metrics, curves,
            recommender); None keeps everything in memory (``save()`` it later).
        config: a YAML file of settings (a run's ``config.yaml`` works).
        overrides: ``["key=value", ...]`` as on the command line (``--set``).
        overwrite: replace an existing run at ``out``.
        progress: progress bars and one line per epoch.
        on_epoch: called with each epoch's record (see :class:`~mmssl.training.trainer.Trainer`).
        **settings: any setting by its flat name, e.g. ``epochs=50, lr=0.01, protocol="mmssl"``.

    Raises:
        ConfigError: before anything is written, for a bad setting.
        DataError: before anything is written, for bad data.
    """
    from mmssl.models import create_model, get_model_class
    from mmssl.training.distributed import from_run, on_main

    ds, data = _dataset(dataset)
    cls = get_model_class(model)
    file_values = read_yaml(config) if config else {}
    saved_model = file_values.get("model")
    if saved_model and saved_model != model:
        raise ConfigError(f"{config}: written for model {saved_model!r}, not {model!r}")
    layers = parse_overrides(overrides)
    layers.update(settings)
    where = "--set" if overrides else "fit()"
    resolved = resolve(model, cls.Config, run_defaults=cls.run_defaults, file_values=file_values,
                       file_where=str(config or "config"), overrides=layers,
                       override_where=where, data=data)
    dist = from_run(resolved.run)  # None unless started by torchrun or --nproc
    run_dir = RunDirectory(out) if out is not None else None
    if run_dir is not None:
        on_main(dist, lambda: run_dir.check_new(overwrite))
    net = _build(resolved, ds, create_model)
    if run_dir is not None:
        kept = resolved.data is None  # a dataset only in memory: the run keeps a copy of it
        resolved = replace(resolved, data="dataset") if kept else resolved  # in the run folder

        def create() -> None:
            run_dir.create(overwrite)
            if kept:
                _save_copy(ds, run_dir / "dataset")
            run_dir.write_config(_config_values(resolved, ds))

        on_main(dist, create)
    return _train(resolved, net, ds, run_dir, resume=False, progress=progress, echo=echo, dist=dist,
                  on_epoch=on_epoch)


def resume(path: str | os.PathLike, overrides: list[str] | dict[str, Any] | None = None,
           progress: bool = True, echo=None, on_epoch: OnEpoch | None = None) -> TrainedModel:
    """Continue the run at ``path`` where it stopped (bit for bit on CPU).

    Only ``epochs``, ``patience``, ``eval_every``, ``threads``, ``device`` and ``dist_timeout``
    may change (``overrides``); a change is logged and kept in config.yaml, another key refused.
    """
    from mmssl.models import create_model
    from mmssl.training.distributed import from_run, on_main

    run_dir = RunDirectory(path)
    values = run_dir.read_config()
    resolved = _settings_from(values, run_dir)
    changes = _resume_changes(resolved, overrides)
    if changes:
        resolved = replace(resolved, run=build_config(
            RunConfig, {**config_to_dict(resolved.run), **changes}, where="--set"))
    dist = from_run(resolved.run)  # None unless started by torchrun or --nproc
    on_main(dist, lambda: io.remove_stale_temporaries_in(run_dir.path))  # a killed write's leftovers
    ds = _load_data(resolved, run_dir, values)
    net = _build(resolved, ds, create_model)

    def record_changes(state: dict[str, Any]) -> None:  # once the checkpoint has loaded
        if changes:
            old = config_to_dict(_settings_from(values, run_dir).run)
            run_dir.append_log({"event": "resume", "after_epoch": state["epoch"],
                                "changed": {k: [old[k], v] for k, v in changes.items()}})
            run_dir.write_config(_config_values(resolved, ds, keep=values))

    return _train(resolved, net, ds, run_dir, resume=True, progress=progress, echo=echo,
                  after_restore=record_changes, dist=dist, on_epoch=on_epoch)


def train(model_name: str | None, data_dir: str | os.PathLike | None, out: str | os.PathLike,
          config_file: str | None = None, overrides: list[str] | None = None,
          resume: bool = False, progress: bool = True, overwrite: bool = False,
          echo=None, on_epoch: OnEpoch | None = None) -> dict[str, Any]:
    """``mmssl train``: fit or resume into the run directory ``out``; returns metrics.json.

    ``config_file`` may be a run's saved ``config.yaml``: its ``model`` and ``data`` entries
    fill in ``model_name`` and ``data_dir`` when those are not given.
    """
    if resume:
        return globals()["resume"](out, overrides, progress=progress, echo=echo,
                                   on_epoch=on_epoch).metrics
    values = read_yaml(config_file) if config_file else {}
    model_name = model_name or values.get("model")
    data_dir = data_dir or values.get("data")
    if not model_name or not data_dir:
        raise ConfigError("train needs a model and a data directory (--model, --data)")
    return fit(model_name, data_dir, out, config=config_file, overrides=overrides,
               overwrite=overwrite, progress=progress, echo=echo, on_epoch=on_epoch).metrics


def load(path: str | os.PathLike, device: str | None = None,
         data: str | os.PathLike | None = None) -> TrainedModel:
    """Load a run directory written by ``fit``/``mmssl train``/``save``, best weights loaded.

    ``device`` overrides the saved device; ``data`` the saved dataset folder (which must hold
    the same users, items and modalities).
    """
    from mmssl.models import create_model

    run_dir = RunDirectory(path)
    values = run_dir.read_config()
    resolved = _settings_from(values, run_dir)
    if device:
        resolved = replace(resolved, run=build_config(
            RunConfig, {**config_to_dict(resolved.run), "device": device}, where="--device"))
    ds = _load_data(resolved, run_dir, values, override=data)
    net = _build(resolved, ds, create_model)
    from mmssl.runtime import resolve_device

    net.to(resolve_device(resolved.run.device))
    if net.learned:
        best = run_dir.load_checkpoint(files.BEST, net.device)
        try:
            net.load_state_dict(best["model"])
            net.load_extra_state(best.get("extra", {}))
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0][:200]
            raise DataError(f"{run_dir / files.BEST}: does not fit the dataset "
                            f"{ds.path or resolved.data} ({first})") from None
    net.eval()
    history = [r for r in run_dir.read_log() if "epoch" in r]
    return TrainedModel(resolved, net, ds, run_dir.read_metrics(), history, run_dir.path)


# ------------------------------------------------------------------ internals
def _dataset(dataset: Dataset | str | os.PathLike) -> tuple[Dataset, str | None]:
    if isinstance(dataset, Dataset):
        path = getattr(dataset, "path", None)
        return dataset, str(Path(path).resolve()) if path else None
    ds = load_dataset(dataset)
    return ds, str(Path(dataset).resolve())


def _save_copy(ds: Dataset, folder: Path) -> None:
    """Save ``ds`` into a run's folder without making that the caller's dataset's home."""
    from mmssl.data.dataset import save_dataset

    home = ds.path
    try:
        save_dataset(ds, folder)
    finally:
        ds.path = home


def _settings_from(values: dict[str, Any], run_dir: RunDirectory) -> Settings:
    from mmssl.models import get_model_class

    where = str(run_dir / files.CONFIG)
    model = values.get("model")
    if not model or "data" not in values:
        raise ConfigError(f"{where}: 'model' and 'data' are required")
    cls = get_model_class(model)
    if "config_version" not in values:  # written before 0.2: settings added since keep 0.1's meaning
        values = {**cls.legacy_defaults, **values}
    return resolve(model, cls.Config, run_defaults=cls.run_defaults, file_values=values,
                   file_where=where, data=values.get("data"))


def _resume_changes(resolved: Settings, overrides) -> dict[str, Any]:
    over = dict(overrides) if isinstance(overrides, dict) else parse_overrides(overrides)
    run_names = set(config_fields(RunConfig))
    param_names = set(config_fields(type(resolved.params)))
    current = {**config_to_dict(resolved.params), **config_to_dict(resolved.run)}
    changes = {}
    for key, value in over.items():
        if key not in run_names | param_names:
            raise ConfigError(f"--set: unknown key {key!r} for {type(resolved.params).__name__}")
        if key in RESUMABLE_KEYS + WAITING_KEYS:
            if value != current[key]:
                changes[key] = value
            continue
        probe = build_config(type(resolved.params) if key in param_names else RunConfig,
                             {key: value}, where="--set")
        if config_to_dict(probe)[key] != current[key]:
            raise ConfigError(f"--set {key}: cannot change when resuming (only "
                              f"{', '.join(RESUMABLE_KEYS + WAITING_KEYS)} can); start a new "
                              "run with --out")
    return changes


def _load_data(resolved: Settings, run_dir: RunDirectory, values: dict[str, Any],
               override: str | os.PathLike | None = None) -> Dataset:
    data = override or resolved.data
    if data is None:
        raise ConfigError(f"{run_dir / files.CONFIG}: no data folder recorded; give --data")
    path = Path(data)
    if not path.is_absolute() and not override:
        path = run_dir.path / path  # a saved run that carries its dataset
    ds = load_dataset(path)
    saved = values.get("dataset")
    if saved:
        have = {"users": ds.n_users, "items": ds.n_items, "modalities": ds.modalities}
        if {k: saved.get(k) for k in have} != have:
            raise DataError(f"{path}: does not match the run's dataset ({saved['users']} users x "
                            f"{saved['items']} items, modalities {saved.get('modalities')}); "
                            f"it has {ds.n_users} users x {ds.n_items} items, modalities "
                            f"{ds.modalities}")
    return ds


def _build(resolved: Settings, ds: Dataset, create_model):
    from mmssl.models import get_model_class
    from mmssl.runtime import resolve_device, seed_everything, set_threads, tune_malloc
    from mmssl.training.sampler import check_sampling

    resolve_device(resolved.run.device)  # fail before anything is written
    if get_model_class(resolved.model).learned:
        check_sampling(ds)
    set_threads(resolved.run.threads)
    tune_malloc(resolved.run.malloc)
    seed_everything(resolved.run.seed)
    return create_model(resolved.model, ds, resolved.params)


def _config_values(resolved: Settings, ds: Dataset, keep: dict | None = None) -> dict[str, Any]:
    from mmssl import __version__

    summary = {"users": ds.n_users, "items": ds.n_items, "modalities": ds.modalities}
    values = resolved.to_yaml_dict(extra={"dataset": summary, "mmssl_version": __version__})
    if keep and "config_version" not in keep:  # a run from before 0.2 stays readable by it
        values["config_version"] = 2
    return values


def _train(resolved: Settings, net, ds: Dataset, run_dir: RunDirectory | None, resume: bool,
           progress: bool, echo, after_restore=None, dist=None, on_epoch=None) -> TrainedModel:
    from mmssl.training.distributed import LostContact, on_main
    from mmssl.training.trainer import Trainer

    trainer = Trainer(resolved.run, run_dir, progress=progress, echo=echo, dist=dist, on_epoch=on_epoch)
    try:
        metrics = trainer.fit(net, ds, resume=resume, after_restore=after_restore)
    except LostContact as e:
        raise e if run_dir is None else LostContact(
            f"{e}; continue from the last epoch with: mmssl train --resume {run_dir.path} "
            f"--nproc {dist.world_size}") from None
    trained = TrainedModel(resolved, net, ds, metrics, trainer.history,
                           run_dir.path if run_dir else None, trainer.last_checkpoint)
    if run_dir is not None:
        def write() -> None:
            (run_dir / FILE_NAME).unlink(missing_ok=True)
            Recommender.from_model(net, ds, source=str(run_dir.path)).save(run_dir / FILE_NAME)
            export_for_serving(net, ds, run_dir.path)  # serving: new items, titles
            run_dir.write_metrics(metrics)
            plot_run(run_dir.path, trainer.history, resolved.run.select, metrics)

        on_main(dist, write)
    if dist is not None:
        dist.close()
    return trained


__all__ = ["TrainedModel", "fit", "load", "resume", "train"]
