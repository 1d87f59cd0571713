"""Atomic file writes: a reader (or a crash) never sees half a file.

Every write goes to a hidden temporary file in the target's folder, is flushed and
fsynced, then ``os.replace``-d onto the target (atomic within one filesystem, POSIX).
If anything fails, the temporary file is removed and the old target, if any, is intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from flyby.errors import OutputError

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_writable"]


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created).

    Raises:
        OutputError: the folder cannot be created or written (disk full, permissions); the message
            names the path and the OS error, and any previous file at ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose a writable folder") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} (the previous file, if any, is intact)") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """:func:`atomic_write_bytes` of ``obj`` as indented, strict JSON (NaN refused: write None instead)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it can take a file, before any long work starts.

    Raises:
        OutputError: naming the folder and the OS error, with the fix.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check.", delete=True) as fh:
            fh.write(b"ok")
            fh.flush()
    except OSError as exc:
        raise OutputError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); pass a folder you can write to"
        ) from exc
    return folder
