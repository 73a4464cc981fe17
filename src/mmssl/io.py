"""Files and folders written whole or not at all.

Every file mmssl writes goes through :func:`atomic_path` (or the helpers built on it): the content
goes to a temporary file in the same folder, is flushed to disk (``fsync``), and only then
renamed over the target, so a reader never sees half a file and a killed process leaves the old
file in place. Temporary names start with ``.NAME.tmp-PID-`` so that a user who finds one knows
what it is; :func:`remove_stale_temporaries` deletes those whose process is gone.

A failed write (disk full, no permission, a path under a file) raises :class:`WriteError` with
one line naming the path, after the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mmssl.errors import WriteError

_TMP_RE = re.compile(r"\.tmp-(\d+)-")


def temporary_name(path: Path) -> Path:
    """A fresh sibling of ``path`` named ``.NAME.tmp-PID-RANDOM`` plus NAME's suffix.

    The suffix is kept because some writers choose the format by it (``np.savez`` appends
    ``.npz`` to a name without it, ``savefig`` picks PNG from ``.png``).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file gets open()'s mode
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_parent(path: str | os.PathLike, what: str = "output") -> Path:
    """Create the folders above ``path``; WriteError in one line if one of them is a file."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise WriteError(f"{path}: cannot write the {what}: {parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"{path.parent}: cannot create the folder: {e.strerror}") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is synced and renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` (disk full, permission) becomes a one-line :class:`WriteError`.
    """
    path = ensure_parent(path, "file")
    if path.is_dir():
        raise WriteError(f"{path}: is a folder, expected a file path")
    try:
        tmp = temporary_name(path)
    except OSError as e:
        raise WriteError(f"{path}: cannot write: {e.strerror}") from None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise WriteError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        _unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` to fill a temporary file, then move it to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def torch_save(path: str | os.PathLike, obj: object) -> Path:
    """``torch.save(obj)`` to ``path`` atomically. torch reports a failed write (disk full) as
    a bare RuntimeError; the OSError underneath is kept, so the message says what went wrong."""
    import torch

    class _Recording:
        def __init__(self, fh):
            self.fh, self.error = fh, None

        def write(self, data):
            try:
                return self.fh.write(data)
            except OSError as e:
                self.error = e
                raise

        def flush(self):
            return self.fh.flush()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            sink = _Recording(fh)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise

    return atomic_write(path, write)


def json_default(o):
    """``json.dumps(default=...)`` for NumPy scalars and paths."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log file and flush it to disk (a crash loses at most that line)."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise WriteError(f"{path}: cannot write: {e.strerror or e}") from None


@contextlib.contextmanager
def atomic_directory(dest: str | os.PathLike, overwrite: bool = False,
                     exists_error: Callable[[Path], Exception] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``dest`` to fill; on success it becomes ``dest``.

    ``dest`` must not exist unless ``overwrite`` (then the old one is replaced only once the new
    one is complete). On any error the temporary folder is removed and ``dest`` is left as it
    was. Stale temporaries of ``dest`` left by killed processes are removed first.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise (exists_error(dest) if exists_error else
               WriteError(f"{dest}: destination exists (use --overwrite to replace it)"))
    if dest.exists() and not dest.is_dir():
        raise WriteError(f"{dest}: is a file, expected a folder")
    ensure_parent(dest, "folder")
    remove_stale_temporaries(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    except OSError as e:
        raise WriteError(f"{dest.parent}: cannot write: {e.strerror}") from None
    try:
        _chmod_like_mkdir(tmp)
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            try:
                tmp.rename(dest)
            except BaseException:
                old.rename(dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(f"{dest}: cannot write: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.tmp-PID-*`` siblings of ``path`` whose process no longer runs.

    Returns what was removed. Temporaries of a live process (another import running now) stay.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{path.name}.tmp-*"):
        match = _TMP_RE.search(candidate.name[len(path.name) + 1:])
        if not match or _alive(int(match.group(1))):
            continue
        if candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            _unlink(candidate)
        removed.append(candidate)
    return removed


def remove_stale_temporaries_in(folder: str | os.PathLike) -> list[Path]:
    """Delete every ``.NAME.tmp-PID-*`` entry of ``folder`` whose process no longer runs."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for candidate in folder.glob(".*.tmp-*"):
            name = candidate.name[1:candidate.name.index(".tmp-")]
            removed += remove_stale_temporaries(folder / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _chmod_like_mkdir(path: Path) -> None:
    """mkdtemp makes a private (0700) folder; give it the mode a plain mkdir would."""
    os.chmod(path, 0o777 & ~_umask())


__all__ = [
    "append_line",
    "atomic_directory",
    "atomic_path",
    "atomic_write",
    "ensure_parent",
    "json_default",
    "remove_stale_temporaries",
    "remove_stale_temporaries_in",
    "temporary_name",
    "torch_save",
    "write_bytes",
    "write_text",
]
