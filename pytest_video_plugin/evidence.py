"""Where evidence lives, so that no run deletes another run's: run folders, the "latest" view, pruning.

Layout (``video_dir`` defaults to ``output/videos``, ``metrics_dir`` is ``video_dir/../metrics``)::

    output/videos/runs/<run id>/<stem>.mp4      this run's videos; never touched by a later run
    output/metrics/runs/<run id>/<stem>.json    this run's metrics JSON (and run.json, the run's index)
    output/videos/<name>.mp4                    "latest" view: a hard link to the newest run's file
    output/metrics/<name>.json                  "latest" view of the metrics

* A run id is ``<UTC start time>-<pid>``, e.g. ``20261207T103155.123456Z-4242``: it sorts by start
  time, and two sessions started at once (even of the same tests) get different folders.
* The latest view is updated atomically (a hard link, or a copy where the filesystem has none,
  made under a temporary name in the same folder and then ``os.replace``-d), so a reader sees the
  old file or the new one, never a half-written one, and replacing it never changes a run's file.
* Old runs are deleted only by :func:`prune_runs` (the ``--video-prune-keep`` option), never
  silently; a run whose session is still going (its lock file is held, see :class:`RunLock`) is
  never pruned.

This module does not import pytest: it is usable as a library.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LOCK_NAME",
    "RUNS_DIRNAME",
    "RUN_INDEX_NAME",
    "RunFolders",
    "RunLock",
    "atomic_write_json",
    "new_run_id",
    "prune_runs",
    "publish_latest",
    "validate_stem",
]

log = logging.getLogger(__name__)

#: Sub-folder of the video and metrics folders that holds one folder per run.
RUNS_DIRNAME = "runs"
#: Lock file in a run's metrics folder, held (``flock``) by every process writing into the run.
LOCK_NAME = ".lock"
#: A run folder without a lock file is pruned only when older than this, seconds (it may be being created).
UNLOCKED_GRACE_S = 600.0
#: Index of a finished run, in its metrics folder: run id, start and end time, exit status, files.
RUN_INDEX_NAME = "run.json"
#: Longest stem accepted by :func:`validate_stem` (file systems allow 255 bytes per name).
MAX_STEM_CHARS = 200


def new_run_id(now: _dt.datetime | None = None, pid: int | None = None) -> str:
    """A run id ``"<UTC time>-<pid>"``: sorts by start time, unique per process.

    E.g. ``"20261207T103155.123456Z-4242"``.

    Args:
        now: the start time (default: now); naive times are taken as UTC.
        pid: the process id (default: this process's).
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=_dt.timezone.utc)
    stamp = now.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{stamp}-{os.getpid() if pid is None else int(pid)}"


def validate_stem(stem: object, what: str = "file name") -> str:
    """Return ``stem`` if it is a plain file stem, else raise.

    A plain stem is non-empty, at most 200 characters of ASCII letters, digits, ``_``, ``.`` and
    ``-``, does not start with ``.`` (hidden files, ``..``) and does not end with ``.mp4`` or
    ``.json`` (the extension is added).

    Raises:
        ValueError: naming ``what``, the value and the rule; TypeError for a non-str.
    """
    if not isinstance(stem, str):
        raise TypeError(
            f"{what} must be a str file stem such as 'render_skip_validation', "
            f"got {type(stem).__name__}: {stem!r}"
        )
    rule = (
        "use 1 to 200 ASCII letters, digits, '_', '.' or '-', not starting with '.', without a folder or "
        "extension (e.g. 'render_skip_validation')"
    )
    if not stem or len(stem) > MAX_STEM_CHARS or stem.startswith("."):
        raise ValueError(f"{what} {stem!r} is not a plain file stem: {rule}")
    bad = sorted({c for c in stem if not (c.isascii() and (c.isalnum() or c in "_.-"))})
    if bad:
        raise ValueError(f"{what} {stem!r} is not a plain file stem (has {''.join(bad)!r}): {rule}")
    if stem.lower().endswith((".mp4", ".json")):
        raise ValueError(
            f"{what} {stem!r} ends with an extension: pass the stem only ({stem.rsplit('.', 1)[0]!r}); {rule}"
        )
    return stem


@dataclass(frozen=True)
class RunFolders:
    """The folders of one run and of the latest view.

    Attributes:
        run_id: see :func:`new_run_id`.
        video_dir: the latest view of the videos (``output/videos``).
        metrics_dir: the latest view of the metrics JSON (``output/metrics``).
    """

    run_id: str
    video_dir: Path
    metrics_dir: Path

    @property
    def run_video_dir(self) -> Path:
        """``<video_dir>/runs/<run_id>``: this run's videos."""
        return self.video_dir / RUNS_DIRNAME / self.run_id

    @property
    def run_metrics_dir(self) -> Path:
        """``<metrics_dir>/runs/<run_id>``: this run's metrics JSON, lock and index."""
        return self.metrics_dir / RUNS_DIRNAME / self.run_id


def atomic_write_json(path: Path, data: Mapping[str, Any], *, fsync: bool = False) -> Path:
    """Write ``data`` as strict, indented JSON to ``path`` atomically (folder created).

    The text goes to a hidden temporary file in the same folder, then ``os.replace`` puts it in
    place: a reader, or a process killed at any instant (SIGKILL included), sees the previous file
    or the new one, never a part. ``fsync=True`` also survives a power cut (slower: use it for the
    final write only). On any failure the temporary file is removed and the previous file is intact.

    Raises:
        OSError: naming the path and the OS error (``errno`` kept, e.g. ENOSPC for a full disk).
        ValueError: ``data`` holds NaN or infinity, or is not JSON-serialisable.
    """
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            _write_all(fh, text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _write_all(fh: IO[str], text: str) -> None:
    """``fh.write(text)``; a seam for tests that simulate a full disk."""
    fh.write(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_latest(source: Path, target: Path) -> Path:
    """Make ``target`` show ``source`` (a finished file of a run), atomically.

    A hard link where the filesystem allows one (no copy, and the run's file is never changed through
    it: every later update replaces the link, it does not write into it), else a copy. Either is made
    under a temporary name next to ``target`` and ``os.replace``-d onto it.

    Raises:
        OSError: naming both paths; ``target`` is then as it was and no temporary file remains.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{id(source):x}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot update {target} from {source}: {exc.strerror or exc}") from exc
        raise
    return target


class RunLock:
    """A shared lock held by each process that writes into a run folder, for as long as it runs.

    :func:`prune_runs` skips a run whose lock is held. The lock is a shared ``fcntl.flock`` on
    ``<run metrics folder>/.lock`` (every xdist worker of the run holds one), so the kernel drops it
    when the process ends, however it ends: the run of a killed session is prunable, a running one
    never is. The file itself stays (removing it while another process of the run still holds it
    would make the run look finished). Where ``fcntl`` does not exist (Windows) no lock is taken and
    only the age rule of :func:`prune_runs` protects a running session.
    """

    def __init__(self, folders: RunFolders) -> None:
        self.path = folders.run_metrics_dir / LOCK_NAME
        self._fh: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        """True between :meth:`acquire` and :meth:`release`."""
        return self._fh is not None

    def acquire(self) -> None:
        """Create the run's metrics folder and hold the lock (shared: xdist workers hold it too). Idempotent.

        Raises:
            OSError: the folder cannot be created or written.
        """
        if self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # held open for the session
        try:
            import fcntl
        except ImportError:  # Windows
            pass
        else:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        self._fh = fh

    def release(self) -> None:
        """Drop the lock (the file stays). Idempotent."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()


def _in_progress(run_dirs: tuple[Path, ...], now: float) -> bool:
    """True when a run may still be writing: its lock is held by a live process, or it has no lock
    file and a folder changed within :data:`UNLOCKED_GRACE_S` (being created, or no fcntl)."""
    lock = run_dirs[-1] / LOCK_NAME
    try:
        fh = open(lock, "rb")
    except FileNotFoundError:
        mtimes = [d.stat().st_mtime for d in run_dirs if d.is_dir()]
        return any(now - t < UNLOCKED_GRACE_S for t in mtimes)
    except OSError:
        return True  # cannot tell: keep it
    with fh:
        try:
            import fcntl
        except ImportError:
            mtimes = [d.stat().st_mtime for d in run_dirs if d.is_dir()]
            return any(now - t < UNLOCKED_GRACE_S for t in mtimes)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


def prune_runs(video_dir: Path, metrics_dir: Path, keep: int, *, current: str | None = None) -> list[str]:
    """Delete all but the ``keep`` newest earlier runs (their video and metrics folders).

    The current run and runs still in progress (their :class:`RunLock` is held; a run without a lock
    file counts as in progress for :data:`UNLOCKED_GRACE_S` after its folders last changed) are never
    deleted and do not count towards ``keep``. Only folders under ``<video_dir>/runs`` and
    ``<metrics_dir>/runs`` are touched; the latest view keeps its files (hard links or copies survive
    their run's folder).

    Args:
        video_dir, metrics_dir: the latest-view folders, as in :class:`RunFolders`.
        keep: number of earlier finished runs to keep, >= 0.
        current: this session's run id (never deleted).

    Returns:
        The deleted run ids, oldest first.

    Raises:
        ValueError: ``keep`` is not an int >= 0.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be an int >= 0 (earlier runs to keep), got {keep!r}")
    ids: set[str] = set()
    for root in (video_dir / RUNS_DIRNAME, metrics_dir / RUNS_DIRNAME):
        if root.is_dir():
            ids.update(p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    ids.discard(current or "")
    now = time.time()
    candidates = sorted(
        i
        for i in ids
        if not _in_progress((video_dir / RUNS_DIRNAME / i, metrics_dir / RUNS_DIRNAME / i), now)
    )
    doomed = candidates[: max(0, len(candidates) - keep)]
    for run_id in doomed:
        for root in (video_dir / RUNS_DIRNAME, metrics_dir / RUNS_DIRNAME):
            folder = root / run_id
            if folder.is_dir():
                shutil.rmtree(folder)
        log.info("pruned video run %s", run_id)
    return doomed
