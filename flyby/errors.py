"""Exceptions raised by flyby.

Every error flyby raises on purpose derives from :class:`FlybyError`, so callers
can catch the whole family with one ``except``. Messages say what failed, the
value received and the fix.
"""

from __future__ import annotations

import gymnasium.error


class FlybyError(Exception):
    """Base class of every error flyby raises on purpose."""


class ConfigError(FlybyError, ValueError):
    """A configuration (YAML or dataclass) is invalid.

    Attributes:
        problems: one ``"dotted.path: message"`` string per bad field, all of
            them at once rather than the first only.
    """

    def __init__(self, problems: list[str] | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} invalid config value(s){where}:\n{lines}")


class DependencyNotInstalled(FlybyError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f'{package} is not installed; install it with: pip install "flyby[{extra}]"')


class BackendUnavailable(FlybyError, RuntimeError):
    """The requested simulator backend cannot run on this machine."""


class PX4Unavailable(FlybyError, RuntimeError):
    """PX4 SITL was requested but cannot be found, started or kept running.

    The subclasses below say which fault it was; every message from a running PX4 names
    its log (``output/logs/px4_<i>_<stamp>.log``).
    """


class PX4Died(PX4Unavailable):
    """PX4's process exited, or closed its simulator connection, while flyby was running it.

    The message gives the exit state (a signal for a negative exit code, e.g. SIGKILL) and
    PX4's log path. Transient: a ``reset`` of the drone starts a fresh PX4.
    """


class PX4Timeout(PX4Unavailable):
    """PX4 is there but did not answer within a bound: frozen (SIGSTOP, a debugger), starved of CPU,
    or stuck in start-up.

    The message names the bound in seconds, what flyby was waiting for (for a start-up stuck
    on parameters, the parameters never confirmed) and PX4's log path.
    """


class PX4ParamRejected(PX4Unavailable):
    """PX4 refused a parameter flyby sets at start-up: no such parameter in this build, or the
    value sent as the wrong type (an ``int`` for a FLOAT parameter or a ``float`` for an INT32 one).

    Not transient: fix the ``params`` given to :class:`flyby.px4.flight_stack.PX4FlightStack`.

    Attributes:
        names: the rejected parameter names, in the order they were given.
    """

    def __init__(self, message: str, names: list[str] | tuple[str, ...] = ()) -> None:
        self.names = list(names)
        super().__init__(message)

    def __reduce__(self):  # picklable across processes (vector envs, xdist) with its attributes
        return type(self), (str(self), self.names)


class PX4PortInUse(PX4Unavailable):
    """A port flyby listens on for PX4 is taken: TCP ``4560 + i`` (simulator link) or UDP
    ``14540 + i`` (offboard link), usually by another flyby run or simulator on the same instance.

    Attributes:
        protocol: ``"TCP"`` or ``"UDP"``.
        port: the port number.
    """

    def __init__(self, message: str, protocol: str, port: int) -> None:
        self.protocol = protocol
        self.port = int(port)
        super().__init__(message)

    def __reduce__(self):  # picklable across processes (vector envs, xdist) with its attributes
        return type(self), (str(self), self.protocol, self.port)


class InvalidAction(FlybyError, ValueError):
    """An action has the wrong shape, dtype (complex, non-numeric), or contains NaN/inf."""


class ResetNeeded(FlybyError, gymnasium.error.ResetNeeded):
    """An env was stepped before its first ``reset()``, after ``close()``, or after a reset that failed.

    Also a ``gymnasium.error.ResetNeeded``, which is what ``gymnasium.make``'s order-enforcing
    wrapper raises: one ``except`` catches both, however the env was built.
    """


class PhysicsUnstable(FlybyError, RuntimeError):
    """The physics engine diverged (NaN or huge accelerations); the message names the drone."""


class TuningDataError(FlybyError, ValueError):
    """Trajectory logs unfit for tuning: too little flight, unreadable, or from a different config.

    The message says how much data is needed (and how much was given), or names
    the differing value in the log and in the current config.
    """


class ULogError(FlybyError, ValueError):
    """A PX4 ULog cannot be read: the file is missing, is not a ULog (or is cut short before its
    definitions), or lacks a topic flyby needs.

    Attributes:
        path: the ULog file.
        topic: the missing topic (None when the file itself is the problem).
    """

    def __init__(self, message: str, path: object = None, topic: str | None = None) -> None:
        self.path = path
        self.topic = topic
        super().__init__(message)

    def __reduce__(self):  # picklable across processes with its attributes
        return type(self), (str(self), self.path, self.topic)


class ModelLoadError(FlybyError, ValueError):
    """A trained policy cannot be loaded: the file is missing, is not a stable-baselines3 model zip
    (corrupt, truncated, not a zip), its observation normaliser is missing or does not fit, or it
    was trained on observation/action spaces other than the evaluation env's.

    The message names the file, what failed (both spaces, for a space mismatch) and the fix.

    Attributes:
        path: the file that failed (the model zip, its normaliser or its ``model.json``).
    """

    def __init__(self, message: str, path: object = None) -> None:
        self.path = path
        super().__init__(message)

    def __reduce__(self):  # picklable across processes (parallel evaluation workers) with its attribute
        return type(self), (str(self), self.path)


class OutputError(FlybyError, OSError):
    """An output file or folder cannot be written (permissions, disk full, a file where a folder should be).

    Raised before long work starts where possible (:func:`flyby.utils.atomic.check_writable`), so no
    training or evaluation is lost to an unwritable destination.
    """


class TrainingError(FlybyError, RuntimeError):
    """A training run cannot start or continue as asked.

    For example an existing model, a changed config, a bad checkpoint.
    """
