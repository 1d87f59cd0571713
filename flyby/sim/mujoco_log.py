"""MuJoCo's own warnings go to ``output/logs/mujoco.log`` and Python logging, not ``MUJOCO_LOG.TXT``.

MuJoCo's C library reports warnings (``mjWARN_BADQACC``: "Nan, Inf or huge value in QACC ...",
contact and constraint buffers full, ...) through its default log handler, which appends them to
``MUJOCO_LOG.TXT`` in the current working directory and prints them to stderr (MuJoCo's
programming guide, "Errors and warnings"; ``mjLogConfig.logfile``). flyby installs a warning
callback with the bindings' ``mujoco.set_mju_user_warning`` (MuJoCo >= 2; in MuJoCo 4 the
default handler calls such a legacy callback instead of writing its file), so each warning is:

- logged on the ``flyby.sim.mujoco`` logger at WARNING, and
- appended, with a UTC timestamp, to ``output/logs/mujoco.log`` (relative to the working
  directory, like PX4's logs; the folder is made on the first warning).

MuJoCo *errors* never reach that file from Python: the bindings turn them into exceptions
(``mujoco.FatalError`` / ``ValueError``). A callback someone else installed first is kept.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

__all__ = ["MUJOCO_LOG_DIR", "MUJOCO_LOG_NAME", "mujoco_log_path", "route_mujoco_warnings"]

logger = logging.getLogger("flyby.sim.mujoco")

MUJOCO_LOG_DIR = Path("output/logs")  # relative to the working directory at the time of the warning
MUJOCO_LOG_NAME = "mujoco.log"


def mujoco_log_path() -> Path:
    """``output/logs/mujoco.log``, the file MuJoCo's warnings are appended to."""
    return MUJOCO_LOG_DIR / MUJOCO_LOG_NAME


def _on_mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: log it and append it to :func:`mujoco_log_path`. Never raises
    (it runs inside MuJoCo's C code, between physics steps)."""
    try:
        text = " ".join(str(message).split())
        logger.warning("MuJoCo: %s", text)
        path = mujoco_log_path()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:  # an append-only log: a line is whole or absent
            fh.write(f"{stamp} WARNING {text}\n")
    except Exception:  # a full disk must not turn a MuJoCo warning into a crash
        logger.debug("could not append a MuJoCo warning to %s", mujoco_log_path(), exc_info=True)


def route_mujoco_warnings() -> bool:
    """Install :func:`_on_mujoco_warning` as MuJoCo's warning callback (idempotent).

    Returns:
        True when flyby's callback is installed now; False when another callback was installed
        first (it is kept) or these bindings have no ``set_mju_user_warning``.
    """
    import mujoco

    getter = getattr(mujoco, "get_mju_user_warning", None)
    setter = getattr(mujoco, "set_mju_user_warning", None)
    if getter is None or setter is None:
        logger.debug(
            "mujoco %s has no set_mju_user_warning: its warnings go to MUJOCO_LOG.TXT",
            getattr(mujoco, "__version__", "?"),
        )
        return False
    current = getter()
    if current is _on_mujoco_warning:
        return True
    if current is not None:
        return False
    setter(_on_mujoco_warning)
    return True
