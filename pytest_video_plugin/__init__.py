"""pytest_video_plugin: record overlaid H.264 videos and metrics from tests and attach them to pytest-html.

The plugin is generic: it knows frames, overlays, metrics and reports; what a video's header names
(``video_recorder.set_header(**fields)``) and what its install hints say (ini ``video_install_hint``,
``video_browser_install_hint``) come from the host project. A test requests the
``video_recorder`` fixture (see :class:`~pytest_video_plugin.recorder.VideoRecorder`) and may declare
thresholds with the ``min_fps``, ``max_vram`` and ``max_rss`` markers and per-test settings with
``video(...)`` (:mod:`.markers`), and same-run floor checks with ``video_recorder.check_floor`` (a
floor above the ceiling measured in the same run reads "not reachable here", :mod:`.floors`).
Options (each also an ini key): ``--video-dir``, ``--video-mode``, ``--video-fps``,
``--video-every-n``, ``--video-embed``, ``--video-embed-max-mb``, ``--video-prune-keep`` (:mod:`.plugin`).
Every session writes into its own run folder and no run deletes another's; ``<video-dir>/<name>.mp4``
shows the newest video of each test (``video_recorder.set_latest_name`` picks ``name``), see
:mod:`.evidence`. Videos play at every moment of recording (fragmented MP4, :mod:`videokit.encode`).
See ``README.md`` in this folder.

The drawing (:mod:`videokit.overlay`) and encoding (:mod:`videokit.encode`) live in the ``videokit``
package, which this plugin builds on and re-exports (``Box``, ``Text``, ``H264Writer``, ...). They,
and the telemetry (:mod:`.metrics`), floor-check (:mod:`.floors`) and recorder (:mod:`.recorder`)
modules, do not import pytest and work as a library.
"""

from __future__ import annotations

from videokit.encode import H264Writer
from videokit.overlay import Box, Text, compose_grid, side_by_side

from .errors import DependencyNotInstalled, VideoDirError, VideoEncodeError, VideoPluginError
from .floors import NOT_REACHABLE_HERE, FloorCheck, judge_floor
from .recorder import FrameAnnotations, RecorderResult, VideoRecorder

__all__ = [
    "Box",
    "DependencyNotInstalled",
    "FloorCheck",
    "FrameAnnotations",
    "H264Writer",
    "NOT_REACHABLE_HERE",
    "RecorderResult",
    "Text",
    "VideoDirError",
    "VideoEncodeError",
    "VideoPluginError",
    "VideoRecorder",
    "compose_grid",
    "judge_floor",
    "side_by_side",
]
