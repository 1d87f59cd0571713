"""Exceptions of ``pytest_video_plugin`` and the lazy importer for its optional dependencies.

The drawing, encoding and telemetry modules are usable without pytest; they import OpenCV, PyAV,
psutil and nvidia-ml-py only when first needed, through :func:`import_optional`, so that a missing
package fails with a message that says what to install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = [
    "DependencyNotInstalled",
    "VideoDirError",
    "VideoEncodeError",
    "VideoPluginError",
    "import_optional",
]

#: Extra of the host project that installs every optional dependency of the plugin.
INSTALL_HINT = 'pip install "flyby[video]"'

#: Import name -> distribution name on PyPI, for error messages.
_DISTRIBUTIONS = {
    "av": "av",
    "cv2": "opencv-python-headless",
    "psutil": "psutil",
    "pynvml": "nvidia-ml-py",
}


class VideoPluginError(Exception):
    """Base class of every error raised by ``pytest_video_plugin``."""


class DependencyNotInstalled(VideoPluginError, ImportError):
    """An optional package that a feature needs is not importable."""


class VideoEncodeError(VideoPluginError, OSError):
    """Writing or finalizing an MP4 failed; the message names the file."""


class VideoDirError(VideoPluginError, OSError):
    """The output folder for videos or metrics cannot be created or written."""


def import_optional(name: str, purpose: str) -> ModuleType:
    """Import module ``name`` or raise :class:`DependencyNotInstalled` naming the fix.

    Args:
        name: import name, e.g. ``"cv2"``.
        purpose: what the caller was about to do, e.g. ``"drawing video overlays"``.

    Raises:
        DependencyNotInstalled: the module (or one of its shared libraries) cannot be imported.
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
            f"{exc}. Install it with: {INSTALL_HINT}"
        ) from exc
