"""Where flyby keeps a tool's cache: one writable folder per tool, chosen the same way for each.

Used for ultralytics' settings (:func:`flyby.perception.yolo.yolo_config_dir`) and numba's
compiled kernels (:func:`flyby.kernels.numba_cache_dir`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flyby.errors import FlybyError

__all__ = ["writable_cache_dir"]

# The checkout flyby runs from, when it runs from one (a pyproject.toml beside the package).
_ROOT = Path(__file__).resolve().parents[2]


def writable_cache_dir(name: str, override_env: str) -> Path:
    """The first writable folder for tool ``name``'s cache, created.

    Order: ``$<override_env>``; ``<checkout>/.cache/<name>`` when flyby runs from a source
    checkout (``.cache/`` is git-ignored); ``$XDG_CACHE_HOME/flyby/<name>`` (default
    ``~/.cache/flyby/<name>``); a folder under the system temp dir.

    Raises:
        FlybyError: none of them can be written; the message lists them and names ``override_env``.
    """
    candidates = []
    if env := os.environ.get(override_env, "").strip():
        candidates.append(Path(env).expanduser())
    if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "flyby").is_dir():
        candidates.append(_ROOT / ".cache" / name)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    candidates.append((Path(xdg) if xdg else Path.home() / ".cache") / "flyby" / name)
    candidates.append(
        Path(tempfile.gettempdir()) / f"flyby-{name}-{os.getuid() if hasattr(os, 'getuid') else 0}"
    )
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise FlybyError(
        f"no writable folder for {name}'s cache among {[str(p) for p in candidates]}; "
        f"set {override_env} to a writable folder"
    )
