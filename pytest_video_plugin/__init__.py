"""pytest_video_plugin: record overlaid H.264 videos and metrics from tests and attach them to pytest-html.

The plugin is generic: it knows frames, overlays, metrics and reports. A test requests the
``video_recorder`` fixture (see :class:`~pytest_video_plugin.recorder.VideoRecorder`); options are
``--video-dir`` / ini ``video_dir`` and ``--video-fps`` / ini ``video_fps``.

The drawing (:mod:`.overlay`), encoding (:mod:`.encode`) and telemetry (:mod:`.metrics`) modules do
not import pytest and work as a library.
"""

from __future__ import annotations

from .encode import H264Writer
from .errors import DependencyNotInstalled, VideoDirError, VideoEncodeError, VideoPluginError
from .overlay import Box, Text, compose_grid, side_by_side
from .recorder import FrameAnnotations, RecorderResult, VideoRecorder

__all__ = [
    "Box",
    "DependencyNotInstalled",
    "FrameAnnotations",
    "H264Writer",
    "RecorderResult",
    "Text",
    "VideoDirError",
    "VideoEncodeError",
    "VideoPluginError",
    "VideoRecorder",
    "compose_grid",
    "side_by_side",
]
