"""Streaming H.264 MP4 writer (PyAV / libx264) that browsers can play, at every moment of recording.

OpenCV's ``VideoWriter`` cannot write H.264 and its ``mp4v`` output does not play in browsers, so
frames go through PyAV's bundled libx264, pixel format yuv420p. Frames are encoded as they arrive;
the writer never holds more than the encoder's own look-ahead.

While recording, the file is a *fragmented* MP4 (``movflags=frag_keyframe+empty_moov+default_base_moof``,
a fragment at least every ``fragment_seconds`` of video, a keyframe at least every ``gop_seconds``,
each fragment flushed to the file): whatever kills the process (SIGKILL, an OOM kill, a CI cancel),
the file on disk plays and holds every frame but those of the last fragment and the encoder's
delay. On :meth:`H264Writer.close` it is remuxed (stream copy, no re-encode) into a ``+faststart``
MP4 (the index before the media data, so playback starts before the whole file is downloaded),
written under a temporary name in the same folder and ``os.replace``-d onto the path.

This module does not import pytest: it is usable as a library::

    with H264Writer("out.mp4", fps=15) as writer:
        for frame in frames:          # (H, W, 3) uint8 RGB
            writer.write(frame)
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VideoEncodeError, import_optional
from .overlay import BACKGROUND, validate_frame

__all__ = [
    "H264Writer",
    "even_size",
    "faststart_remux",
    "fit_frame",
    "interrupt_safely",
    "no_interrupt_halfway",
    "require_encoder",
    "thumbnail_png",
    "top_level_boxes",
]

log = logging.getLogger(__name__)

#: Muxer flags while recording: every fragment is a complete, playable unit (empty ``moov`` first).
FRAGMENTED_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"

_uninterruptible = threading.local()  # .depth: H264Writer sections running; .pending: a deferred interrupt


@contextlib.contextmanager
def no_interrupt_halfway() -> Iterator[None]:
    """Mark a section (encode + mux of one frame, or closing the file) that :func:`interrupt_safely`
    must not cut in half; an interrupt asked for meanwhile is raised when the section ends.

    A caller that must keep its own bookkeeping in step with the file (e.g. a frame counter) wraps
    its :meth:`H264Writer.write` and the update in one such section; sections nest."""
    _uninterruptible.depth = getattr(_uninterruptible, "depth", 0) + 1
    try:
        yield
    finally:
        _uninterruptible.depth -= 1
        pending = getattr(_uninterruptible, "pending", None)
        if _uninterruptible.depth == 0 and pending is not None:
            _uninterruptible.pending = None
            raise pending


def interrupt_safely(exc: BaseException) -> None:
    """Raise ``exc`` now, or, while this thread is inside an :class:`H264Writer` frame write or close,
    as soon as that ends.

    For signal handlers that interrupt the main thread (e.g. a test runner's SIGTERM handler): raised
    between the encoder returning a frame's packets and the muxer writing them, an interrupt would
    drop those packets, and the frames that reference them would no longer decode.

    Raises:
        BaseException: ``exc``, unless deferred.
    """
    if getattr(_uninterruptible, "depth", 0) > 0:
        _uninterruptible.pending = exc
        return
    raise exc


def _av() -> Any:
    return import_optional("av", "encoding H.264 video")


def _cv2() -> Any:
    return import_optional("cv2", "preparing video frames")


def require_encoder() -> None:
    """Import PyAV and OpenCV now, so that a missing one fails before any work instead of at the first frame.

    Raises:
        DependencyNotInstalled: PyAV or OpenCV cannot be imported (the message says what to install).
    """
    _av()
    _cv2()


def even_size(width: int, height: int) -> tuple[int, int]:
    """Round ``(width, height)`` up to even numbers, as yuv420p's half-resolution chroma needs."""
    return width + width % 2, height + height % 2


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return ``frame`` fitted into ``size`` = (width, height) pixels without distortion.

    A frame that already fits inside ``size`` unscaled in one dimension-pair (the common case: an
    odd-sized first frame padded to even) is padded at the right/bottom; any other frame is resized
    to the largest size that keeps its aspect ratio (area interpolation when shrinking, linear when
    growing) and letterboxed, centred, on :data:`~videokit.overlay.BACKGROUND`.

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
    """Write RGB frames to an H.264 MP4 as they arrive; the file plays at every moment.

    The output size is fixed by the first frame, rounded up to even width and height (padding at the
    right/bottom); later frames of another size are letterboxed into it (:func:`fit_frame`). Frame
    ``i`` is shown at ``i / fps`` seconds, so the duration is ``frames_written / fps``.

    With ``fragmented=True`` (default) the file is a fragmented MP4 while frames are written (see the
    module docstring): a process killed at any instant leaves a playable file missing at most the
    last ``fragment_seconds`` of video plus the encoder's delay (a few frames). :meth:`close` turns it
    into a ``+faststart`` MP4 by a stream-copy remux, atomically. With ``fragmented=False`` the file
    is written as a ``+faststart`` MP4 directly and is unplayable until :meth:`close` has run.

    Args:
        path: output file; its folder must exist. Nothing is created until the first frame.
        fps: frame rate of the video, frames/s (> 0; fractional rates such as 29.97 work).
        crf: x264 constant rate factor, 0 (lossless) .. 51; 23 is x264's default, small text stays sharp.
        preset: x264 speed/size preset (``"ultrafast"`` .. ``"veryslow"``); ``"superfast"`` encodes
            about twice as fast as ``"veryfast"`` at 640x480 with the same CRF, at a larger file.
        gop_seconds: maximum distance between keyframes, seconds of video (seeking granularity, and
            what a reader of a killed recording may have to skip).
        fragmented: record as fragmented MP4 and remux on close (see above).
        fragment_seconds: longest fragment, seconds of video (``fragmented`` only): the most a kill loses.

    Raises:
        ValueError: ``fps``, ``gop_seconds`` or ``fragment_seconds`` not > 0.
        VideoEncodeError: from :meth:`write`/:meth:`close` when PyAV/FFmpeg or the file fails; names the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 15.0,
        *,
        crf: int = 23,
        preset: str = "superfast",
        gop_seconds: float = 1.0,
        fragmented: bool = True,
        fragment_seconds: float = 0.5,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0 frames/s, got {fps!r}")
        if not gop_seconds > 0:
            raise ValueError(f"gop_seconds must be > 0 seconds of video, got {gop_seconds!r}")
        if not fragment_seconds > 0:
            raise ValueError(f"fragment_seconds must be > 0 seconds of video, got {fragment_seconds!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.fragmented = bool(fragmented)
        self._crf = int(crf)
        self._preset = preset
        self._gop = max(1, round(gop_seconds * fps))
        self._fragment_us = max(1, round(fragment_seconds * 1e6))
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._frames = 0
        self._closed = False
        self._created = False  # True once this writer has created (truncated) the file

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
        """True once :meth:`close` (or :meth:`discard`) has run, or after an encoder error."""
        return self._closed

    def _open(self, width: int, height: int) -> None:
        av = _av()
        self._size = even_size(width, height)
        if self.fragmented:
            # flush_packets: each fragment reaches the file when it is complete, not when FFmpeg's
            # 32 KiB I/O buffer fills (a small video would otherwise sit in memory until close).
            options = {
                "movflags": FRAGMENTED_MOVFLAGS,
                "frag_duration": str(self._fragment_us),
                "flush_packets": "1",
            }
        else:
            options = {"movflags": "+faststart"}
        try:
            self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
            self._created = True
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

    def _mux(self, packets: Any) -> None:
        """Hand encoded packets to the muxer (which writes the file); a seam for disk-full tests."""
        self._container.mux(packets)

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame.

        Args:
            frame: (H, W, 3) uint8 RGB.

        Raises:
            ValueError: wrong shape or dtype (message names them).
            RuntimeError: the writer is closed.
            VideoEncodeError: the encoder or the file failed (a full disk: ENOSPC in the message);
                the writer is closed afterwards and the file is left as it was (see :meth:`discard`).
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
            with no_interrupt_halfway():
                self._mux(self._stream.encode(video_frame))
                self._frames += 1
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoEncodeError(f"encoding frame {self._frames} into {self.path} failed: {exc}") from exc

    def close(self) -> None:
        """Flush the encoder and finish the MP4 (fragmented: remux to ``+faststart``). Idempotent.

        A writer that never got a frame creates no file. If the remux fails (a full disk), the
        fragmented file stays at :attr:`path`, complete and playable, and the error is raised.

        Raises:
            VideoEncodeError: flushing, writing the trailer or the remux failed; names the file.
        """
        with no_interrupt_halfway():
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        av = _av()
        try:
            self._mux(self._stream.encode(None))
            self._container.close()
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoEncodeError(
                f"finishing {self.path} failed after {self._frames} frames: {exc}"
            ) from exc
        finally:
            self._container = None
        if self.fragmented:
            faststart_remux(self.path)
        log.debug("wrote %s: %d frames", self.path, self._frames)

    def discard(self) -> None:
        """Stop without finishing and delete the file this writer created (a partial recording after a
        failure); a file it did not create is left alone. Idempotent."""
        self._abort()
        if self._created:
            self._created = False
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete the partial video %s: %s", self.path, exc)

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


def faststart_remux(source: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> Path:
    """Copy the video stream of ``source`` into a ``+faststart`` MP4 at ``target`` (default: ``source``).

    No re-encoding: packets are copied, their timestamps shifted so the first frame shows at 0 s
    (as ``ffmpeg -i source -c copy -movflags +faststart target`` does). The result is written to a
    hidden temporary file in ``target``'s folder and ``os.replace``-d onto ``target``: until then
    ``target`` (and ``source``) are untouched, and nothing is left behind on failure or interruption.

    Returns:
        ``target``.

    Raises:
        VideoEncodeError: ``source`` cannot be read (no video stream) or the output cannot be written
            (a full disk: ENOSPC in the message); names both files.
    """
    av = _av()
    source = Path(source)
    target = source if target is None else Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.remux.tmp")
    copied = 0
    try:
        with av.open(str(source)) as src:
            in_stream = src.streams.video[0]
            offset = in_stream.start_time or 0
            with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as dst:
                out_stream = dst.add_stream_from_template(in_stream)
                out_stream.time_base = in_stream.time_base
                for packet in src.demux(in_stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts -= offset
                    packet.dts -= offset
                    packet.stream = out_stream
                    dst.mux(packet)
                    copied += 1
        os.replace(tmp, target)
    except (av.FFmpegError, OSError, IndexError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise VideoEncodeError(
            f"remuxing {source} into a faststart MP4 {target} failed after {copied} packets: {exc} "
            f"({source} is untouched)"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def top_level_boxes(path: str | os.PathLike[str]) -> list[str]:
    """The types of an MP4's top-level boxes in file order, e.g. ``["ftyp", "moov", "mdat"]``.

    A ``+faststart`` MP4 has ``moov`` before ``mdat`` and no ``moof``; a fragmented one has ``moof``
    boxes. A truncated last box is listed too.

    Raises:
        OSError: the file cannot be read.
    """
    boxes: list[str] = []
    with open(path, "rb") as fh:
        size_total = os.fstat(fh.fileno()).st_size
        at = 0
        while at + 8 <= size_total:
            fh.seek(at)
            size, kind = struct.unpack(">I4s", fh.read(8))
            if size == 1:  # 64-bit size follows
                size = struct.unpack(">Q", fh.read(8))[0]
            elif size == 0:  # box runs to the end of the file
                size = size_total - at
            boxes.append(kind.decode("latin-1"))
            if size < 8:
                break
            at += size
    return boxes


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
