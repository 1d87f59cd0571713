"""Hook specifications added by ``pytest_video_plugin`` (registered through ``pytest_addhooks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .recorder import FrameAnnotations, VideoRecorder


def pytest_video_draw_overlays(
    frame: np.ndarray, annotations: FrameAnnotations, recorder: VideoRecorder
) -> None:
    """Draw a custom overlay layer on a composed video frame, after the built-in overlays.

    Implement it in a ``conftest.py`` (or a plugin) to add project-specific drawings. Every
    implementation is called for every frame added through the ``video_recorder`` fixture.

    Args:
        frame: the composed output frame - header, caller frame, sidebar, footer - as a writable
            (H, W, 3) uint8 RGB array. Draw on it in place (e.g. with OpenCV or
            :func:`videokit.overlay.draw_text`); do not change its shape.
        annotations: what the test passed to ``add_frame`` plus ``annotations.origin``, the (x, y)
            of the caller frame inside ``frame``: add it to caller-frame pixel coordinates.
        recorder: the test's :class:`~pytest_video_plugin.recorder.VideoRecorder` (read-only use:
            ``recorder.fps``, ``recorder.frames``, ``recorder.metrics``).

    The return value is ignored.
    """
