"""Training: the shared trainer, sampling, and the run directory."""

from __future__ import annotations

import importlib

# public name -> module that defines it, imported on first use so that the command line does not
# pay for torch before a command needs it
_EXPORTS = {"Trainer": "trainer", "RunDirectory": "rundir", "BprSampler": "sampler"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
