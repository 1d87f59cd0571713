"""Streaming H.264 MP4 writer (PyAV / libx264) that browsers can play.

OpenCV's ``VideoWriter`` cannot write H.264 and its ``mp4v`` output does not play in browsers, so
frames go through PyAV's bundled libx264: pixel format yuv420p, ``movflags=+faststart`` (the index
is moved to the front so playback starts before the whole file is downloaded). Frames are encoded
as they arrive; the writer never holds more than the encoder's own look-ahead.

This module does not import pytest: it is usable as a library::

    with H264Writer("out.mp4", fps=15) as writer:
        for frame in frames:          # (H, W, 3) uint8 RGB
            writer.write(frame)
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VideoEncodeError, import_optional
from .overlay import BACKGROUND, validate_frame

__all__ = ["H264Writer", "even_size", "fit_frame", "thumbnail_png"]

log = logging.getLogger(__name__)


def _av() -> Any:
    return import_optional("av", "encoding H.264 video")


def _cv2() -> Any:
    return import_optional("cv2", "preparing video frames")


def even_size(width: int, height: int) -> tuple[int, int]:
    """Round ``(width, height)`` up to even numbers, as yuv420p's half-resolution chroma needs."""
    return width + width % 2, height + height % 2


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return ``frame`` fitted into ``size`` = (width, height) pixels without distortion.

    A frame that already fits inside ``size`` unscaled in one dimension-pair (the common case: an
    odd-sized first frame padded to even) is padded at the right/bottom; any other frame is resized
    to the largest size that keeps its aspect ratio (area interpolation when shrinking, linear when
    growing) and letterboxed, centred, on :data:`~pytest_video_plugin.overlay.BACKGROUND`.

    Args:
        frame: (H, W, 3) uint8 RGB.
        size: target (width, height), pixels.

    Returns:
        (height, width, 3) uint8 RGB; ``frame`` itself when it already has that size.
    """
    width, height = size
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    cv2 = _cv2()
    if w <= width and h <= height and (width - w <= 1 and height - h <= 1):
        return cv2.copyMakeBorder(frame, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT, value=BACKGROUND)
    ratio = min(width / w, height / h)
    new_w, new_h = max(1, min(width, round(w * ratio))), max(1, min(height, round(h * ratio)))
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    return cv2.copyMakeBorder(
        resized, y0, height - new_h - y0, x0, width - new_w - x0, cv2.BORDER_CONSTANT, value=BACKGROUND
    )


class H264Writer:
    """Write RGB frames to an H.264 MP4 as they arrive.

    The output size is fixed by the first frame, rounded up to even width and height (padding at the
    right/bottom); later frames of another size are letterboxed into it (:func:`fit_frame`). Frame
    ``i`` is shown at ``i / fps`` seconds, so the duration is ``frames_written / fps``.

    Args:
        path: output file; its folder must exist. Nothing is created until the first frame.
        fps: frame rate of the video, frames/s (> 0; fractional rates such as 29.97 work).
        crf: x264 constant rate factor, 0 (lossless) .. 51; 23 is x264's default, small text stays sharp.
        preset: x264 speed/size preset (``"ultrafast"`` .. ``"veryslow"``); ``"superfast"`` encodes
            about twice as fast as ``"veryfast"`` at 640x480 with the same CRF, at a larger file.
        gop_seconds: maximum distance between keyframes, seconds (seeking granularity in browsers).

    Raises:
        ValueError: ``fps`` not > 0.
        VideoEncodeError: from :meth:`write`/:meth:`close` when PyAV/FFmpeg fails; names the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 15.0,
        *,
        crf: int = 23,
        preset: str = "superfast",
        gop_seconds: float = 2.0,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0 frames/s, got {fps!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self._crf = int(crf)
        self._preset = preset
        self._gop = max(1, round(gop_seconds * fps))
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._frames = 0
        self._closed = False

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the video in pixels, or None before the first frame."""
        return self._size

    @property
    def frames_written(self) -> int:
        """Number of frames handed to the encoder."""
        return self._frames

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def _open(self, width: int, height: int) -> None:
        av = _av()
        self._size = even_size(width, height)
        try:
            self._container = av.open(
                str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = self._size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.gop_size = self._gop
            stream.options = {"crf": str(self._crf), "preset": self._preset}
            self._stream = stream
            self._container.start_encoding()  # opens the file now, so a bad path fails on frame 0
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoEncodeError(f"cannot open {self.path} for H.264 encoding: {exc}") from exc
        log.debug("encoding %s at %dx%d, %g fps", self.path, *self._size, self.fps)

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame.

        Args:
            frame: (H, W, 3) uint8 RGB.

        Raises:
            ValueError: wrong shape or dtype (message names them).
            RuntimeError: the writer is closed.
            VideoEncodeError: the encoder or the file failed; the writer is closed afterwards.
        """
        frame = validate_frame(frame)
        if self._closed:
            raise RuntimeError(f"H264Writer for {self.path} is closed; no more frames can be written")
        if self._container is None:
            self._open(frame.shape[1], frame.shape[0])
        assert self._size is not None
        av = _av()
        image = np.ascontiguousarray(fit_frame(frame, self._size))
        # OpenCV's RGB -> I420 uses the same BT.601 limited-range matrix as FFmpeg's swscale default,
        # at about 1.5x the speed of letting PyAV convert.
        yuv = _cv2().cvtColor(image, _cv2().COLOR_RGB2YUV_I420)
        try:
            video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            video_frame.pts = self._frames
            self._container.mux(self._stream.encode(video_frame))
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoEncodeError(f"encoding frame {self._frames} into {self.path} failed: {exc}") from exc
        self._frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the MP4 (writes the index). Idempotent.

        A writer that never got a frame creates no file.

        Raises:
            VideoEncodeError: flushing or writing the trailer failed; names the file.
        """
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        av = _av()
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoEncodeError(
                f"finishing {self.path} failed after {self._frames} frames: {exc}"
            ) from exc
        finally:
            self._container = None
        log.debug("wrote %s: %d frames", self.path, self._frames)

    def _abort(self) -> None:
        """Close the container after an error without raising again."""
        self._closed = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # broad on purpose: already reporting the original error
                log.debug("closing %s after an error failed too", self.path, exc_info=True)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def thumbnail_png(path: str | os.PathLike[str], width: int = 240) -> bytes:
    """A PNG still of the video's middle frame, scaled to ``width`` pixels wide (aspect kept).

    Used for the phase-gate summary of the HTML report. Seeks to the keyframe before the middle and
    decodes forward to the middle, so the cost is bounded by the keyframe interval, not the length.

    Args:
        path: an MP4 written by :class:`H264Writer` (any video PyAV can decode works).
        width: thumbnail width, pixels (>= 16).

    Returns:
        PNG bytes.

    Raises:
        VideoEncodeError: the file cannot be opened or holds no decodable frame (names the file).
    """
    av, cv2 = _av(), _cv2()
    frame = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            middle_s = (container.duration or 0) / 2e6  # container.duration is in microseconds
            if middle_s > 0:
                container.seek(int(middle_s * 1e6))  # lands on the keyframe at or before the middle
            for candidate in container.decode(stream):
                frame = candidate
                if candidate.time is None or candidate.time >= middle_s - 1e-6:
                    break
            if frame is None:  # nothing after the seek point: start over from the first frame
                container.seek(0)
                frame = next(container.decode(stream), None)
            image = None if frame is None else frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, IndexError, ValueError) as exc:
        raise VideoEncodeError(f"cannot read a thumbnail frame from {path}: {exc}") from exc
    if image is None:
        raise VideoEncodeError(f"cannot read a thumbnail frame from {path}: no decodable video frame")
    width = max(16, int(width))
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VideoEncodeError(f"cannot encode a PNG thumbnail of {path}")
    return png.tobytes()
