"""Configuration as data: frozen dataclasses filled from YAML files and ``--set key=value``.

A run has two configs: the :class:`RunConfig` (seed, device, threads, epochs, patience and the
evaluation settings, the same for every model) and the model's own hyper-parameters, a frozen
dataclass beside each model whose defaults are the published ones. Both are addressed by flat
names (``--set epochs=3``, ``--set lr=0.01``, ``--set protocol=mmssl``); no name is in both.

Every numeric field carries its valid range in its type (``PositiveFloat``, ``Fraction``, ...),
checked when the config is built, before anything is written. :func:`resolve` is the one place
where defaults, a config file and ``--set`` overrides meet.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml

from mmssl.errors import ConfigError

C = TypeVar("C")

CONFIG_VERSION = 2  # config.yaml of a run: 1 flat (before 0.2), 2 with run: and params: sections


# ------------------------------------------------------------------ ranges
@dataclass(frozen=True)
class Range:
    """The valid values of a number (``None``: unbounded); applied to each element of a tuple."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float, where: str) -> None:
        """Raise ConfigError unless ``value`` is finite and inside the range."""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value}")
        if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                or (self.le is not None and value > self.le)
                or (self.lt is not None and value >= self.lt)):
            raise ConfigError(f"{where}: {value} is out of range (must be {self.describe()})")

    def describe(self) -> str:
        """``>= 0``, ``> 0 and < 1`` ..."""
        parts = [f"{op} {_num(v)}" for op, v in ((">=", self.ge), (">", self.gt),
                                                  ("<=", self.le), ("<", self.lt)) if v is not None]
        return " and ".join(parts) or "any number"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # dropout rates, shares: 0 <= x < 1
UnitInterval = Annotated[float, Range(ge=0, le=1)]  # weights and probabilities
AnyFloat = Annotated[float, Range()]  # finite, otherwise unbounded

PROTOCOLS = ("standard", "mmssl", "mmrec")
METRICS = ("recall", "precision", "ndcg", "hit", "map")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class RunConfig:
    """Settings of a run that every model shares: the trainer, evaluation and the device.

    A model may change the defaults of these through its ``run_defaults`` (MMRec's models stop
    after 20 bad validations, MMSSL after 7), never their meaning.
    """

    seed: NonNegativeInt = 2022  # fixes every random draw on CPU (the MMSSL authors' default)
    device: str = "auto"  # auto (CUDA if available, else MPS, else CPU), cpu, cuda, cuda:1, mps
    threads: NonNegativeInt = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    malloc: Literal["tuned", "system"] = "tuned"  # tuned: glibc's malloc keeps freed blocks for the next step (mmssl.runtime.tune_malloc; Linux); system: left as the process started
    epochs: PositiveInt = 1000  # upper bound; early stopping usually ends sooner (authors: 1000)
    eval_every: PositiveInt = 1  # validate every this many epochs
    patience: NonNegativeInt = 7  # stop after this many validations without a better select metric, plus one (authors' rule)
    protocol: Literal["standard", "mmssl", "mmrec"] = "standard"  # evaluation protocol, the same default for every model
    ks: tuple[PositiveInt, ...] = (10, 20, 50)  # cut-offs of every ranking metric
    select: str = "recall@20"  # validation metric that picks the best epoch (and the search's choice)
    eval_batch_size: PositiveInt = 1024  # users scored at once during evaluation (fewer on huge catalogues)
    dist_timeout: PositiveFloat = 1800.0  # distributed runs: seconds a process waits for the others (rank 0 evaluating, a dead or hung process) before it stops with an error (torch's gloo default)

    def __post_init__(self) -> None:
        if not _DEVICE_RE.fullmatch(self.device):
            raise ConfigError(f"device: unknown device {self.device!r} "
                              "(auto, cpu, cuda, cuda:N or mps)")
        if not self.ks:
            raise ConfigError("ks: give at least one cut-off, e.g. ks=10,20,50")
        if len(set(self.ks)) != len(self.ks):
            raise ConfigError(f"ks: {list(self.ks)} repeats a cut-off")
        metric, sep, k = self.select.partition("@")
        if not sep or metric not in METRICS or not k.isdigit():
            raise ConfigError(f"select: {self.select!r} is not METRIC@K with METRIC one of "
                              f"{', '.join(METRICS)} (e.g. recall@20)")
        if int(k) not in self.ks:
            raise ConfigError(f"select: {self.select} needs {k} among ks {list(self.ks)} "
                              f"(e.g. --set ks={','.join(map(str, sorted({*self.ks, int(k)})))})")


# Keys that may change when a run is resumed (the rest would make the run another run).
RESUMABLE_KEYS = ("epochs", "patience", "eval_every", "threads", "malloc", "device")
# How long distributed processes wait for each other: changes nothing computed, so a resume may
# change it too.
WAITING_KEYS = ("dist_timeout",)


# --------------------------------------------------------------- building
def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    """Name -> field of the dataclass ``cls``."""
    return {f.name: f for f in dataclasses.fields(cls)}


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def build_config(cls: type[C], values: dict[str, Any] | None = None, where: str = "config") -> C:
    """Instantiate the dataclass ``cls`` from ``values``, checking names, types and ranges."""
    values = dict(values or {})
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} for {cls.__name__} "
                          f"(known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in values.items()}
    for name, field in fields.items():  # the defaults obey the same ranges
        if name not in kwargs and field.default is not dataclasses.MISSING:
            _coerce(field.default, hints[name], f"{cls.__name__}.{name} (default)")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def parse_overrides(pairs: list[str] | None, where: str = "--set") -> dict[str, Any]:
    """``["lr=0.001", "variant=paper"]`` -> ``{"lr": 0.001, "variant": "paper"}`` (YAML values)."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML mapping from ``path``; ConfigError naming the file (and line) when it is not one."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}malformed YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    return data


@dataclass(frozen=True)
class Settings:
    """Everything that defines a run: the model's name, the data, and both configs."""

    model: str
    data: str | None
    run: RunConfig
    params: Any  # the model's config dataclass

    def to_yaml_dict(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What ``config.yaml`` holds: version, model, data, then the run and params sections."""
        out: dict[str, Any] = {"config_version": CONFIG_VERSION, "model": self.model,
                               "data": self.data}
        out.update(extra or {})
        out["run"] = config_to_dict(self.run)
        out["params"] = config_to_dict(self.params)
        return out


def split_values(values: dict[str, Any], params_cls: type, where: str
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat or sectioned values -> (run values, model values), by field name.

    Accepts ``run:`` and ``params:`` sections (config.yaml since 0.2) and flat keys (a
    hand-written file, ``--set``, config.yaml before 0.2), in any mix.
    """
    run_names, param_names = set(config_fields(RunConfig)), set(config_fields(params_cls))
    run_values: dict[str, Any] = {}
    param_values: dict[str, Any] = {}
    for section, target in (("run", run_values), ("params", param_values)):
        block = values.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: {section}: expected a mapping of key: value")
        target.update(block)
    for key, value in values.items():
        if key in ("run", "params"):
            continue
        if key in run_names:
            run_values[key] = value
        elif key in param_names:
            param_values[key] = value
        else:
            known = ", ".join(sorted(run_names | param_names))
            raise ConfigError(f"{where}: unknown key {key!r} for {params_cls.__name__} "
                              f"(known: {known})")
    return run_values, param_values


def resolve(model: str, params_cls: type, *, run_defaults: dict[str, Any] | None = None,
            file_values: dict[str, Any] | None = None, file_where: str = "config",
            overrides: list[str] | dict[str, Any] | None = None, override_where: str = "--set",
            data: str | None = None, finish: Any = None) -> Settings:
    """Defaults, then a config file's values, then overrides -> :class:`Settings`.

    ``file_values`` may hold ``model``, ``data`` and ``config_version`` entries (ignored here:
    the caller reads them); ``finish`` maps the built params to their final form (MMSSL fills
    the settings its variant presets).
    """
    file_values = {k: v for k, v in (file_values or {}).items()
                   if k not in ("model", "data", "config_version", "dataset", "mmssl_version")}
    run_f, params_f = split_values(file_values, params_cls, file_where)
    if isinstance(overrides, dict):
        over = dict(overrides)
    else:
        over = parse_overrides(overrides, override_where)
    run_o, params_o = split_values(over, params_cls, override_where)
    run_values = {**(run_defaults or {}), **run_f}
    run = _build_in_layers(RunConfig, run_values, file_where, run_o, override_where)
    params = _build_in_layers(params_cls, params_f, file_where, params_o, override_where)
    if finish is not None:
        params = finish(params)
    return Settings(model=model, data=data, run=run, params=params)


def _build_in_layers(cls: type, base: dict, base_where: str, top: dict, top_where: str):
    """Check the file layer alone (so its errors name the file), then build with the overrides
    on top (so theirs name ``--set``)."""
    build_config(cls, base, where=base_where)
    try:
        return build_config(cls, {**base, **top}, where=top_where)
    except ConfigError:
        if not top:
            raise
        # Name the override that breaks it, if one alone does.
        for key, value in top.items():
            build_config(cls, {**base, key: value}, where=top_where)
        raise


# ---------------------------------------------------------------- coercion
def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Annotated:
        inner, *extras = args
        out = _coerce(value, inner, where)
        for extra in extras:
            if isinstance(extra, Range):
                for v in (out if isinstance(out, tuple) else (out,)):
                    extra.check(v, where)
        return out
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):  # "10,20" from --set: each part is a YAML value of its own
            value = [_yaml_scalar(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length, e.g. (0.5, 0.9)
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, where) for v, a in zip(value, args)]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text.strip())
    except yaml.YAMLError:
        return text.strip()


def unchecked_numeric_fields(cls: type) -> list[str]:
    """Fields of ``cls`` whose type is a number without a Range (a test keeps this empty)."""
    out = []
    for name, hint in typing.get_type_hints(cls, include_extras=True).items():
        if _is_numeric(hint) and not _has_range(hint):
            out.append(name)
    return out


def _is_numeric(hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _is_numeric(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        return any(_is_numeric(a) for a in args if a not in (type(None), Ellipsis))
    return hint in (int, float)


def _has_range(hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return any(isinstance(a, Range) for a in args[1:]) or _has_range(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        inner = [a for a in args if a not in (type(None), Ellipsis)]
        return all(_has_range(a) for a in inner if _is_numeric(a))
    return False


__all__ = [
    "CONFIG_VERSION", "PROTOCOLS", "RESUMABLE_KEYS", "WAITING_KEYS", "AnyFloat", "Fraction", "NonNegativeFloat",
    "NonNegativeInt", "PositiveFloat", "PositiveInt", "Range", "RunConfig", "Settings",
    "UnitInterval", "build_config", "config_fields", "config_to_dict", "parse_overrides",
    "read_yaml", "resolve", "split_values", "unchecked_numeric_fields",
]
