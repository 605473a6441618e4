"""Atomic writes: a temporary file in the target's folder, flushed, fsynced, then renamed.

``os.replace`` is atomic on POSIX within one file system, so a reader (or an interrupted run)
sees either the old file or the whole new one, never half of it (DESIGN.md, Conventions).
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _file_mode() -> int:
    """The mode a plain ``open()`` would give (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    For writers that want a file name rather than a stream (e.g. ``matplotlib.savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | Path, obj: Any, **dumps_kwargs: Any) -> None:
    """Write ``obj`` as indented JSON (NaN and infinity rejected: JSON has neither) atomically."""
    dumps_kwargs.setdefault("indent", 2)
    write_atomic(path, json.dumps(obj, allow_nan=False, **dumps_kwargs) + "\n")


def unwritable_reason(folder: str | Path) -> str | None:
    """Why files cannot be written into ``folder``, or None when they can.

    The folder need not exist yet (writers create it): the nearest existing folder above it is
    probed instead. The probe creates a temporary file and removes it at once, so a read-only
    file system or a permission problem is caught even for root, for whom ``os.access`` says yes.
    """
    path = Path(folder).expanduser().absolute()
    base = path
    while not base.exists() and not base.is_symlink() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return f"{base} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        return f"{base} is not writable ({exc.strerror or exc})"
    return None
