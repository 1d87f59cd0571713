"""Exceptions of ``pytest_video_plugin``; the lazy importer of optional packages comes from videokit.

The drawing and encoding (:mod:`videokit`) and telemetry modules are usable without pytest; they
import OpenCV, PyAV, psutil and nvidia-ml-py only when first needed, through
:func:`videokit.errors.import_optional`, so that a missing package fails with a message that says
what to install: ``pip install <package>``, or the command the host project sets with the ini keys
``video_install_hint`` and ``video_browser_install_hint`` (:mod:`.plugin`).
"""

from __future__ import annotations

from videokit.errors import (
    DependencyNotInstalled,
    VideoEncodeError,
    VideoError,
    import_optional,
    install_hint,
)

__all__ = [
    "DependencyNotInstalled",
    "VideoDirError",
    "VideoEncodeError",
    "VideoPluginError",
    "import_optional",
    "install_hint",
]

#: Base class of every error raised by ``pytest_video_plugin``. It is videokit's base class, so
#: ``except VideoPluginError`` also catches the encoder's and the lazy importer's errors
#: (:class:`VideoEncodeError`, :class:`DependencyNotInstalled`), which the plugin raises through them.
VideoPluginError = VideoError


class VideoDirError(VideoPluginError, OSError):
    """The output folder for videos or metrics cannot be created or written."""
