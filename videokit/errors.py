"""Exceptions of ``videokit`` and the lazy importer for its optional dependencies.

The drawing and encoding modules import OpenCV and PyAV only when first needed, through
:func:`import_optional`, so that a missing package fails with a message that says what to install
instead of a bare ``ModuleNotFoundError``. What to install is ``pip install <package>`` unless the
host project names its own command (an extra that pins the versions it was tested with) with
:func:`set_install_hints`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType

__all__ = [
    "DependencyNotInstalled",
    "VideoEncodeError",
    "VideoError",
    "import_optional",
    "install_hint",
    "set_install_hints",
]

#: Import name -> distribution name on PyPI, for error messages.
_DISTRIBUTIONS = {
    "av": "av",
    "cv2": "opencv-python-headless",
    "psutil": "psutil",
    "pynvml": "nvidia-ml-py",
    "playwright": "playwright",
}

#: Import name -> install command set by the host project (:func:`set_install_hints`).
_install_hints: dict[str, str] = {}


class VideoError(Exception):
    """Base class of every error raised by ``videokit``."""


class DependencyNotInstalled(VideoError, ImportError):
    """An optional package that a feature needs is not importable."""


class VideoEncodeError(VideoError, OSError):
    """Writing or finalizing an MP4 failed; the message names the file."""


def install_hint(name: str) -> str:
    """The command that installs the package imported as ``name``.

    Args:
        name: import name, e.g. ``"av"``.

    Returns:
        The host project's command for ``name`` (:func:`set_install_hints`), else
        ``"pip install <distribution>"``, e.g. ``"pip install opencv-python-headless"`` for ``"cv2"``.
    """
    return _install_hints.get(name) or f"pip install {_DISTRIBUTIONS.get(name, name)}"


def set_install_hints(hints: Mapping[str, str | None]) -> dict[str, str]:
    """Replace every configured install command; returns the previous ones (to restore them).

    Args:
        hints: import name -> command shown by :func:`install_hint`, e.g.
            ``{"av": 'pip install "myproject[video]"'}``; an empty or None command means the default
            ``pip install <distribution>``.

    Raises:
        TypeError: a name or command is not a str (the message names it).
    """
    new: dict[str, str] = {}
    for name, hint in hints.items():
        if not isinstance(name, str) or not (hint is None or isinstance(hint, str)):
            raise TypeError(
                f"install hints map import names (str) to commands (str or None), got {name!r}: {hint!r}"
            )
        if hint and hint.strip():
            new[name] = hint.strip()
    previous = dict(_install_hints)
    _install_hints.clear()
    _install_hints.update(new)
    return previous


def import_optional(name: str, purpose: str) -> ModuleType:
    """Import module ``name`` or raise :class:`DependencyNotInstalled` naming the fix.

    Args:
        name: import name, e.g. ``"cv2"``.
        purpose: what the caller was about to do, e.g. ``"drawing video overlays"``.

    Raises:
        DependencyNotInstalled: the module (or one of its shared libraries) cannot be imported; the
            message ends with :func:`install_hint`.
    """
    module = sys.modules.get(name)  # fast path: called per frame by the drawing code
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        dist = _DISTRIBUTIONS.get(name, name)
        raise DependencyNotInstalled(
            f"{purpose} needs the '{dist}' package (import name '{name}'), which failed to import: "
            f"{exc}. Install it with: {install_hint(name)}"
        ) from exc
