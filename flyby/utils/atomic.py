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

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "check_writable",
]


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
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc} (the previous file, if any, is intact); "
            "free space or choose another folder"
        ) from exc
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
        _write_probe(folder)
    except OSError as exc:
        raise OutputError(
            f"output folder {folder} is not writable ({exc.strerror or exc}); pass a folder you can write to"
        ) from exc
    return folder


def _write_probe(folder: Path) -> None:
    """Write and remove a small temporary file in ``folder``; raise the OSError if that fails."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check.", delete=True) as fh:
        fh.write(b"ok")
        fh.flush()


def _what(option: str | None) -> str:
    return f"{option} " if option else ""


def _probe_folder(target: Path, folder: Path, option: str | None, fix: str) -> None:
    """Prove ``target`` (a folder to be made, or a file's folder) can be created and written.

    Walks up to the nearest existing ancestor of ``folder`` and writes and removes a small
    temporary file there. Creates nothing that stays.
    """
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(
            f"{_what(option)}{target}: cannot create the folder {folder}: {ancestor} is a file, not a "
            f"folder; {fix}"
        )
    try:
        _write_probe(ancestor)
    except OSError as exc:
        raise OutputError(
            f"{_what(option)}{target}: the folder {ancestor} is not writable ({exc.strerror or exc}); {fix}"
        ) from exc


def check_output_file(path: str | Path, *, option: str | None = None) -> Path:
    """Check, before any long work, that a file can be written at ``path``; nothing is created.

    ``path`` must not be an existing folder, every existing ancestor must be a folder, and the
    nearest existing one must take a file (a temporary file is written and removed there).

    Args:
        path: the output file.
        option: the command-line option that named it (``"--out"``), for the message.

    Raises:
        OutputError: one line naming the option, the path, what is wrong and the fix.
    """
    path = Path(path)
    fix = "pass a file path in a folder you can write to"
    if path.is_dir():
        raise OutputError(
            f"{_what(option)}{path} is a folder, not a file; pass a file path (e.g. {path / 'NAME'})"
        )
    _probe_folder(path, path.parent if str(path.parent) else Path("."), option, fix)
    return path


def check_output_dir(path: str | Path, *, option: str | None = None) -> Path:
    """Check, before any long work, that ``path`` is or can become a writable folder; nothing is created.

    Args:
        path: the output folder.
        option: the command-line option that named it (``"--out"``), for the message.

    Raises:
        OutputError: one line naming the option, the path, what is wrong (a file where the folder
            should be, an unwritable parent) and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{_what(option)}{path} is a file, not a folder; pass a folder path (the file is left as it is)"
        )
    _probe_folder(path, path, option, "pass a folder you can write to")
    return path
