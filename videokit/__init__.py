"""videokit: frame annotation and browser-playable H.264 MP4 writing. No pytest, no host project.

Two modules, usable by any program that produces RGB frames:

* :mod:`.overlay`: pure drawing on ``(H, W, 3)`` uint8 RGB frames: boxes (:class:`Box`), free text
  (:class:`Text`), header/footer bars and a metrics sidebar (:func:`compose_panels` with a
  :class:`PanelLayout`), grids of views (:func:`compose_grid`, :func:`side_by_side`).
* :mod:`.encode`: :class:`H264Writer`, a streaming H.264 writer (PyAV / libx264, yuv420p) whose file
  plays at every moment of recording (fragmented MP4) and becomes a ``+faststart`` MP4 on close.

OpenCV and PyAV are imported when first needed; a missing one raises
:class:`~videokit.errors.DependencyNotInstalled` naming the install command, which a host project
may set to its own with :func:`~videokit.errors.set_install_hints`. Example::

    from videokit import Box, H264Writer, compose_grid

    with H264Writer("out.mp4", fps=15) as writer:
        for frame in frames:  # (H, W, 3) uint8 RGB
            writer.write(frame)
"""

from __future__ import annotations

from .encode import H264Writer, require_encoder
from .errors import DependencyNotInstalled, VideoEncodeError, VideoError, set_install_hints
from .overlay import Box, PanelLayout, Text, compose_grid, compose_panels, side_by_side

__all__ = [
    "Box",
    "DependencyNotInstalled",
    "H264Writer",
    "PanelLayout",
    "Text",
    "VideoEncodeError",
    "VideoError",
    "compose_grid",
    "compose_panels",
    "require_encoder",
    "set_install_hints",
    "side_by_side",
]
