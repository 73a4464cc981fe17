"""Process settings a run fixes before it builds a model: threads, random seeds, the device, malloc."""

from __future__ import annotations

import os
import random

import numpy as np

from mmssl.errors import ConfigError


def set_threads(threads: int) -> None:
    """torch intra-op threads on CPU; 0 keeps torch's default."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str):
    """``auto`` -> CUDA if available, else MPS, else CPU; other names checked for availability."""
    import torch

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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device: {name!r} requested but only {torch.cuda.device_count()} "
                          "CUDA devices are visible")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise ConfigError(f"device: {name!r} requested but MPS is not available")
    return device


def fast_bf16(device) -> tuple[bool, str]:
    """Whether bfloat16 products run fast on ``device``, and why: CUDA, and CPUs with AMX or
    AVX512-BF16 do; other CPUs and MPS do not (their bfloat16 is emulated or partial)."""
    import torch

    if device.type == "cuda":
        return True, f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
        avx = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
        if amx or avx:
            return True, "CPU with " + " and ".join(n for n, ok in (("AMX", amx), ("AVX512-BF16", avx)) if ok)
        return False, "CPU without AMX or AVX512-BF16"
    return False, f"{device.type} device"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for speed reports."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def peak_memory_mb() -> int | None:
    """Peak resident memory of this process so far, in MB (None where unknown)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024)


# the mallocs a process may run with instead of the system's, and their library names
ALLOCATORS = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}

# Above this many items a step's tables leave a CPU's cache (docs/scale.md, "1M items"), and training
# logs what makes such a catalogue faster: :func:`malloc_hint`, :func:`mmssl.data.order.order_hint`
# (both take it from the trainer).
LARGE_CATALOGUE_ITEMS = 100_000


def malloc_name() -> str:
    """The malloc this process runs with: a name of :data:`ALLOCATORS` where its library is
    mapped (Linux: ``/proc/self/maps``, i.e. it was preloaded), else ``"system"``."""
    from pathlib import Path

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name in ALLOCATORS if f"lib{name}" in maps), "system")


def malloc_hint(n_items: int, device, above_items: int) -> str | None:
    """A note for training logs: a catalogue above ``above_items`` items (the trainer's
    :data:`LARGE_CATALOGUE_ITEMS`) trained on a Linux CPU with glibc's malloc, which returns each
    large block of a step to the system and pays page faults for it again in the next, would run
    faster with tcmalloc preloaded; None otherwise."""
    import sys

    if (n_items <= above_items or device.type != "cpu"
            or not sys.platform.startswith("linux") or malloc_name() != "system"):
        return None
    return (f"{n_items} items on CPU with the system malloc: preloading tcmalloc "
            f"(LD_PRELOAD=libtcmalloc_minimal.so.4, Debian's libtcmalloc-minimal4) gives the "
            f"same results and made a 1M-item step 2.1x faster than the tuned system malloc "
            f"(docs/scale.md, \"bf16 graph products\")")


# glibc's mallopt parameters (malloc.h) and the values ``malloc: tuned`` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_MB = 256  # freed memory at the top of the heap kept for the next allocation
MMAP_ABOVE_MB = 32  # blocks above this still get their own mapping (the ceiling of glibc's own adaptive threshold)
# what a user sets to tune glibc's malloc themselves; tune_malloc then leaves it alone
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def tune_malloc(mode: str = "tuned") -> bool:
    """``malloc: tuned`` (a run's default): on Linux with glibc's malloc, keep up to
    :data:`KEEP_FREED_MB` of freed memory for reuse and serve blocks up to :data:`MMAP_ABOVE_MB`
    from the heap (``mallopt``). By default glibc gives a step's freed blocks back to the system
    and pays page faults for them again in the next step: tuned, an exact bf16 epoch on
    ml100k-mm took 7% less time, a 100k-item sketched step 15% (docs/scale.md, "bf16"). Blocks above
    32 MB are mapped and unmapped as before, so a large catalogue's peak grows by at most the
    memory kept. Nothing computed changes. Any other ``mode`` (``system``), another malloc
    preloaded, or glibc's malloc already tuned through the environment (``GLIBC_TUNABLES``,
    ``MALLOC_*_``): nothing is changed. Returns whether it tuned."""
    import ctypes
    import platform
    import sys

    if (mode != "tuned" or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc"
            or malloc_name() != "system" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
            or any(name in os.environ for name in _MALLOC_ENV)):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_MB << 20)
                and mallopt(_M_MMAP_THRESHOLD, MMAP_ABOVE_MB << 20))


def say(line: str) -> None:
    """One line to stderr in one write. print() writes the text and its newline apart, so the
    lines of processes sharing one stderr (a distributed run's ranks and its launcher) could
    interleave."""
    import sys

    sys.stderr.write(line + "\n")
    sys.stderr.flush()


__all__ = ["ALLOCATORS", "KEEP_FREED_MB", "LARGE_CATALOGUE_ITEMS", "MMAP_ABOVE_MB", "cpu_name",
           "fast_bf16", "malloc_hint", "malloc_name", "peak_memory_mb", "resolve_device", "say",
           "seed_everything", "set_threads", "tune_malloc"]
