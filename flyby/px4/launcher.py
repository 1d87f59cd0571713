"""Start and stop one PX4 SITL instance, with its log in ``output/logs/``.

The command is the one PX4's own multi-instance scripts use for external simulators
(DESIGN.md, "PX4 SITL facts the bridge must respect")::

    PX4_SYS_AUTOSTART=10016 PX4_SIM_MODEL=none_iris \\
        <px4>/build/px4_sitl_default/bin/px4 -i <i> -d <px4>/build/px4_sitl_default/etc

run in a fresh working directory per instance (PX4 keeps its parameters there), so
no parameter survives from an earlier run. ``-d`` is daemon mode (no interactive
shell); the last argument is PX4's ROMFS (``etc``). Instance ``i`` connects to the
simulator on TCP ``4560 + i`` and talks MAVLink offboard on UDP ``14540 + i``.

Stopping sends SIGINT to the process group (PX4 shuts down cleanly), then SIGKILL
after ``stop_timeout_s``. Every started launcher is also stopped at interpreter
exit (``atexit``) and by the context manager on exceptions and Ctrl-C. PX4 runs in
its own session (a Ctrl-C in the terminal reaches flyby, which stops PX4), and on
Linux it is killed if the flyby process dies without cleaning up (``PR_SET_PDEATHSIG``).

PX4's own flight log: PX4 SITL v1.16.2 writes a ULog from boot until disarm under its working
directory (``log/<date>/<time>.ulg``; its ``rcS`` sets ``SDLOG_MODE`` 1, ``SDLOG_PROFILE`` 131,
see :mod:`flyby.px4.params`), about 0.35 MB per second of PX4 time, complete up to the last
lockstep step after SIGINT (measured). Before the working directory is removed, every ULog
is moved next to the text log and named after it (:attr:`PX4Launcher.ulog_paths`); read it
with :mod:`flyby.px4.ulog`.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from flyby.errors import PX4Unavailable

log = logging.getLogger(__name__)

AIRFRAME_ID = 10016  # PX4 airframe 10016 none_iris: generic quad for external simulators
SIM_MODEL = "none_iris"  # PX4_SIM_MODEL: "none_" = PX4 starts no simulator itself
SITL_BUILD = Path("build") / "px4_sitl_default"  # PX4's default SITL build folder, relative to PX4_DIR

_live: weakref.WeakSet[PX4Launcher] = weakref.WeakSet()
_live_lock = threading.Lock()


def px4_instruction() -> str:
    """How to make PX4 SITL available to flyby (used in every PX4Unavailable message and test skip)."""
    return (
        "build PX4 SITL (git clone https://github.com/PX4/PX4-Autopilot --recursive && cd PX4-Autopilot && "
        "make px4_sitl_default) and set PX4_DIR=/path/to/PX4-Autopilot, or put its px4 binary on PATH"
    )


def find_px4(px4_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path | None]:
    """Locate the PX4 SITL binary and its ROMFS ``etc`` folder.

    Order: ``px4_dir`` argument, then ``$PX4_DIR`` (both: ``<dir>/build/px4_sitl_default/bin/px4``),
    then ``px4`` on PATH (its ``etc`` is ``<bin>/../etc`` when that exists).

    Returns:
        (binary path, etc folder or None).

    Raises:
        PX4Unavailable: no binary; the message names PX4_DIR and how to build PX4.
    """
    explicit = px4_dir if px4_dir not in (None, "") else os.environ.get("PX4_DIR") or None
    if explicit is not None:
        root = Path(explicit).expanduser()
        binary = root / SITL_BUILD / "bin" / "px4"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary.resolve(), (root / SITL_BUILD / "etc").resolve()
        source = "px4_dir argument" if px4_dir not in (None, "") else "PX4_DIR"
        raise PX4Unavailable(
            f"PX4 SITL binary not found: {source}={str(explicit)!r} has no executable {binary}; "
            f"{px4_instruction()}"
        )
    on_path = shutil.which("px4")
    if on_path is None:
        raise PX4Unavailable(
            f"PX4 SITL not found: PX4_DIR is not set and there is no px4 on PATH; {px4_instruction()}"
        )
    binary = Path(on_path).resolve()
    etc = binary.parent.parent / "etc"
    return binary, (etc if etc.is_dir() else None)


class PX4Launcher:
    """One PX4 SITL process: instance ``i``, fresh working directory, log under ``log_dir``.

    Args:
        instance: PX4 instance ``i`` (``px4 -i i``): simulator TCP 4560+i, offboard UDP 14540+i.
        px4_dir: PX4-Autopilot checkout; None: ``$PX4_DIR``, then ``px4`` on PATH.
        log_dir: where ``px4_<i>_<timestamp>.log`` goes (created on demand).
        stop_timeout_s: s, how long SIGINT may take before SIGKILL.
        extra_env: more environment variables for PX4 (on top of the inherited ones).
        keep_ulogs: keep PX4's ULogs next to the text log when it stops (False: they go with the
            working directory; training runs that restart PX4 every episode would fill the disk).
        pin_cpu: run all of PX4's threads on one CPU (:func:`px4_cpu`; 15-20 % faster lockstep on
            2 cores); False: wherever the kernel puts them.
        cpus: the CPUs to pick that one from (default: the calling thread's affinity set).
            :class:`flyby.px4.flight_stack.PX4FlightStack` passes the set its thread had before
            any open flight stack moved it off its PX4s' CPUs, so a second stack in the same
            thread pins its PX4s as the first did.

    Raises:
        PX4Unavailable: from :meth:`start` when the binary is missing or fails to start.

    Usage::

        with PX4Launcher(0) as px4:        # starts; stops on exit, exceptions and Ctrl-C
            ...
            px4.poll()                    # None while running, else the exit code
    """

    def __init__(
        self,
        instance: int,
        px4_dir: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] = Path("output/logs"),
        *,
        stop_timeout_s: float = 5.0,
        extra_env: dict[str, str] | None = None,
        keep_ulogs: bool = True,
        pin_cpu: bool = True,
        cpus: set[int] | None = None,
    ) -> None:
        if not 0 <= int(instance) <= 255:
            raise ValueError(f"instance {instance} must be in 0..255 (MAV_SYS_ID is 1 + instance)")
        self.instance = int(instance)
        self.px4_dir = px4_dir
        self.log_dir = Path(log_dir)
        self.stop_timeout_s = float(stop_timeout_s)
        self.extra_env = dict(extra_env or {})
        self.keep_ulogs = bool(keep_ulogs)
        self.cpu = px4_cpu(self.instance, cpus) if pin_cpu else None  # CPU PX4's threads run on (None: any)
        self.log_path: Path | None = None
        self.workdir: Path | None = None
        self.kept_ulogs: dict[Path, list[Path]] = {}  # text log of a run -> the ULogs kept from it, in order
        self.command: list[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> PX4Launcher:
        """Start PX4 (no-op when already running). Returns self.

        Raises:
            PX4Unavailable: binary missing (message names PX4_DIR) or not executable.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.stop()
        binary, etc = find_px4(self.px4_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._new_log_path()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"flyby_px4_{self.instance}_"))
        self.command = [str(binary), "-i", str(self.instance), "-d"] + ([str(etc)] if etc is not None else [])
        env = dict(os.environ)
        env.update(PX4_SYS_AUTOSTART=str(AIRFRAME_ID), PX4_SIM_MODEL=SIM_MODEL)
        env.update(self.extra_env)
        self._log_file = open(self.log_path, "wb")
        self._log_file.write(f"# flyby: {' '.join(self.command)}\n# cwd: {self.workdir}\n".encode())
        self._log_file.flush()
        try:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches us, we stop PX4 ourselves
                preexec_fn=_child_preexec(self.cpu),
            )
        except OSError as exc:
            self._close_log()
            raise PX4Unavailable(
                f"could not start PX4 ({' '.join(self.command)}): {exc}; {px4_instruction()}"
            ) from exc
        with _live_lock:
            _live.add(self)
        log.info("PX4 instance %d started (pid %d), log %s", self.instance, self._proc.pid, self.log_path)
        return self

    def poll(self) -> int | None:
        """None while PX4 runs; its exit code once it has exited (also None before start)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and the process exiting."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PX4's process id (None before start)."""
        return None if self._proc is None else self._proc.pid

    def stop(self) -> int | None:
        """Stop PX4: SIGINT to its process group, SIGKILL after ``stop_timeout_s``. Idempotent.

        PX4's ULogs are kept (:meth:`_keep_ulogs`) before its working directory is removed;
        if one cannot be kept, the directory stays where it is (logged as an error).

        Returns:
            The exit code (None when it was never started).
        """
        proc = self._proc
        code = None
        if proc is not None:
            code = proc.poll()
            if code is None:
                code = self._terminate(proc)
            self._proc = None
            log.info("PX4 instance %d stopped (exit code %s), log %s", self.instance, code, self.log_path)
        self._close_log()
        if self.workdir is not None:
            if not self.keep_ulogs or self._keep_ulogs(self.workdir):
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        with _live_lock:
            _live.discard(self)
        return code

    def _terminate(self, proc: subprocess.Popen[bytes]) -> int | None:
        for sig, wait_s in ((signal.SIGINT, self.stop_timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
                if sig == signal.SIGINT:
                    os.killpg(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) PX4 acts on SIGINT once resumed
            except ProcessLookupError:
                pass
            except PermissionError:  # pragma: no cover - the group leader exited and the id was reused
                proc.send_signal(sig)
            try:
                return proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                if sig == signal.SIGINT:
                    log.warning(
                        "PX4 instance %d ignored SIGINT for %.1f s; killing it", self.instance, wait_s
                    )
        return proc.poll()

    @property
    def ulog_paths(self) -> list[Path]:
        """Every ULog kept from this launcher's runs so far (oldest first); see :attr:`kept_ulogs`."""
        return [path for paths in self.kept_ulogs.values() for path in paths]

    def _keep_ulogs(self, workdir: Path) -> bool:
        """Move the ``*.ulg`` files under ``workdir`` next to the text log; True when all were kept.

        Names: ``<text log stem>.ulg`` for a run's only ULog, ``<stem>.<n>.ulg`` (n = 1, 2, ...,
        PX4's own order: date and time folders) for several (PX4 starts a new file when it is
        re-armed after a disarm). Each move is atomic: ``os.replace`` within a filesystem, else a
        copy to a temporary file in ``log_dir`` and ``os.replace`` onto the final name, so a
        reader never sees half a ULog. Kept paths go to :attr:`kept_ulogs` under the text log.
        """
        sources = sorted(workdir.rglob("*.ulg"), key=lambda p: p.relative_to(workdir).parts)
        if not sources:
            return True
        text_log = self.log_path if self.log_path is not None else self._new_log_path()
        stem = text_log.stem
        kept = self.kept_ulogs.setdefault(text_log, [])
        ok = True
        for n, source in enumerate(sources, start=1):
            target = self.log_dir / (f"{stem}.ulg" if len(sources) == 1 else f"{stem}.{n}.ulg")
            try:
                _move_atomic(source, target)
            except OSError as exc:
                ok = False
                log.error("could not keep PX4's ULog %s as %s (%s); left in %s", source, target, exc, workdir)
                continue
            kept.append(target)
            log.info("PX4 instance %d: ULog kept as %s", self.instance, target)
        return ok

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _new_log_path(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.log_dir / f"px4_{self.instance}_{stamp}.log"
        n = 1
        while path.exists():
            path = self.log_dir / f"px4_{self.instance}_{stamp}_{n}.log"
            n += 1
        return path

    # -- diagnostics ------------------------------------------------------------------------------

    def log_tail(self, max_lines: int = 20) -> str:
        """The last ``max_lines`` lines of PX4's log ('' when there is none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-max_lines:])

    def describe(self) -> str:
        """One line for error messages: instance, process state and log path.

        The state is ``running, pid N``; ``frozen: stopped by a signal ..., pid N`` when the
        process is stopped (SIGSTOP/SIGTSTP or a debugger; Linux ``/proc/N/stat`` state T/t);
        ``killed by SIGKILL, exit code -9`` for a negative exit code; ``exited with code N``;
        or ``not running`` before :meth:`start` and after :meth:`stop`.
        """
        proc = self._proc
        code = self.poll()
        if proc is None:
            state = "not running"
        elif code is None:
            state = f"running, pid {proc.pid}"
            if _process_state(proc.pid) in ("T", "t"):
                state = (
                    f"frozen: stopped by a signal (SIGSTOP/SIGTSTP) or a debugger, pid {proc.pid}; "
                    f"`kill -CONT {proc.pid}` resumes it"
                )
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            state = f"killed by {name}, exit code {code}"
        else:
            state = f"exited with code {code}"
        return f"PX4 instance {self.instance} ({state}); log: {self.log_path}"

    # -- context manager --------------------------------------------------------------------------

    def __enter__(self) -> PX4Launcher:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort; atexit and the context manager are the real guarantees
        try:
            if self._proc is not None and self._proc.poll() is None:
                self.stop()
        except Exception:
            pass


def _move_atomic(source: Path, target: Path) -> None:
    """Move ``source`` to ``target`` so that ``target`` appears whole or not at all.

    ``os.replace`` when both are on one filesystem; otherwise a copy to a hidden temporary
    file beside ``target``, then ``os.replace`` onto it, then ``source`` is removed.

    Raises:
        OSError: the copy or the rename failed (the temporary file is removed).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, length=1 << 20)
        shutil.copymode(source, tmp)  # mkstemp makes it 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    source.unlink(missing_ok=True)


def _process_state(pid: int) -> str | None:
    """Linux state letter of ``pid`` (``R``, ``S``, ``T`` stopped, ``t`` traced, ...); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name in "(...)" may hold spaces
    return fields[0] if fields else None


# The last PX4 SITL instance flyby runs: above 9, PX4 sends the offboard link of every instance
# to one shared UDP port (14549), so PX4FlightStack refuses them.
MAX_PX4_INSTANCE = 9


def shared_cpu_instances(count: int, first: int = 0, cpus: int | None = None) -> list[int]:
    """``count`` PX4 instance numbers that :func:`px4_cpu` pins to one CPU.

    ``px4_cpu`` pins instance ``i`` to the ``i % cpus``-th CPU from the end, so instances ``cpus``
    apart share a CPU: PX4s of envs stepped in turn in one thread then take turns on one core,
    as one PX4 does alone, and flyby's lockstep loop keeps the other cores (the Phase 1 gate,
    ``benchmarks/bench_px4_envs_in_turn.py``). Where that would pass :data:`MAX_PX4_INSTANCE` the
    instances are consecutive: a machine with that many cores has one for each.

    Args:
        count: instances wanted (>= 1).
        first: the first instance number.
        cpus: CPUs to spread over (default: this thread's affinity set).
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    spacing = max(int(cpus), 1)
    if first + spacing * (count - 1) > MAX_PX4_INSTANCE:
        spacing = 1
    return [first + spacing * i for i in range(count)]


def px4_cpu(instance: int, cpus: set[int] | None = None) -> int | None:
    """The CPU PX4 instance ``instance`` is pinned to: the last allowed CPU for instance 0, the one
    before it for instance 1, and so on round the allowed set; None with fewer than 2 CPUs.

    Why: in lockstep, PX4's ~30 threads hand each tick on to each other; left free, they wander
    between cores and wake across them. All on one core, and flyby's process free on the others,
    PX4ISR-v0 ran 15-20 % more env steps/s with PX4 SITL v1.16.2 on a 2-core machine (render off:
    272-286 -> 300-335 steps/s, three paired runs).
    """
    allowed = (
        sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else []
    )
    if len(allowed) < 2:
        return None
    return allowed[-1 - (int(instance) % len(allowed))]


def _child_preexec(cpu: int | None):
    """A ``preexec_fn``: SIGKILL the child when flyby dies (Linux PR_SET_PDEATHSIG), and pin it to ``cpu``.

    Everything is resolved here, in the parent: the function run in the forked child only makes
    foreign calls (no import, no lock), which is safe with other threads running.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not glibc; atexit and stop() still apply
        prctl = None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    pin = {cpu} if cpu is not None else None
    setaffinity = os.sched_setaffinity

    def preexec() -> None:
        if prctl is not None:
            prctl(pr_set_pdeathsig, sigkill)
        if pin is not None:
            setaffinity(0, pin)  # inherited by every thread PX4 starts

    return preexec


@atexit.register
def stop_all() -> None:
    """Stop every PX4 instance this interpreter started and has not stopped yet."""
    with _live_lock:
        live = list(_live)
    for launcher in live:
        launcher.stop()
