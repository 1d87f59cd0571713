"""Exceptions raised by flyby.

Every error flyby raises on purpose derives from :class:`FlybyError`, so callers
can catch the whole family with one ``except``. Messages say what failed, the
value received and the fix.
"""

from __future__ import annotations


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
        super().__init__(
            f"{package} is not installed; install it with: pip install \"flyby[{extra}]\""
        )


class BackendUnavailable(FlybyError, RuntimeError):
    """The requested simulator backend cannot run on this machine."""


class PX4Unavailable(FlybyError, RuntimeError):
    """PX4 SITL was requested but cannot be found or started."""


class InvalidAction(FlybyError, ValueError):
    """An action has the wrong shape, dtype, or contains NaN/inf."""


class PhysicsUnstable(FlybyError, RuntimeError):
    """The physics engine diverged (NaN or huge accelerations); the message names the drone."""


class TuningDataError(FlybyError, ValueError):
    """Trajectory logs unfit for tuning: too little flight, unreadable, or from a different config.

    The message says how much data is needed (and how much was given), or names
    the differing value in the log and in the current config.
    """
