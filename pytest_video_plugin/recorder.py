"""The per-test video recorder: overlays each frame, streams it to an MP4, and keeps metrics.

:class:`VideoRecorder` is what the ``video_recorder`` fixture yields, but it does not depend on
pytest and can be used directly::

    with VideoRecorder("out/run.mp4", metrics_path="out/run.json", test_name="my run") as rec:
        rec.set_header(model="resnet18", dataset="val split")   # any fields, shown in this order
        for batch in range(100):
            ...                                   # run 16 steps
            rec.count_steps(16)
            rec.add_frame(image, metrics={"reward": r})

Every output frame is the caller's frame with its boxes and texts, a metrics sidebar on the right, a
header bar (test name, phase, UTC time, the caller's :meth:`~VideoRecorder.set_header` fields, GPU)
and a footer bar (steps/s,
memory, frame counter, caller text); see :class:`~videokit.overlay.PanelLayout`.

Evidence survives a killed process: the video is a fragmented MP4 while it is recorded (it plays at
every moment, see :mod:`videokit.encode`) and becomes a ``+faststart`` MP4 on :meth:`VideoRecorder.finalize`;
the metrics JSON is written atomically when recording starts, on every ``record_metric`` and
``check_floor``, and at most every ``metrics_interval_s`` seconds of ``add_frame`` / ``count_steps``
calls (its ``state`` is ``"recording"`` until ``finalize`` writes ``"finished"``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videokit.encode import H264Writer, no_interrupt_halfway
from videokit.errors import VideoEncodeError
from videokit.overlay import Box, PanelLayout, Text, compose_panels, validate_frame

from .evidence import atomic_write_json, validate_stem
from .floors import FloorCheck, judge_floor
from .metrics import NO_GPU, MemorySampler, StepRate

__all__ = [
    "DrawHook",
    "FrameAnnotations",
    "RecorderResult",
    "VideoRecorder",
    "format_header_fields",
    "utc_timestamp",
]

log = logging.getLogger(__name__)

#: Header names the recorder fills in itself; ``set_header`` takes ``phase`` but not ``test``.
RESERVED_HEADER_FIELDS = ("test",)
#: Bounds on the number of text lines in the header and footer bars.
MIN_BAR_LINES, MAX_BAR_LINES = 2, 4

MetricValue = int | float | bool | str | None


def format_header_fields(fields: Mapping[str, Any], sep: str = "; ") -> str:
    """``"name: value"`` for each header field in order, joined by ``sep``; underscores read as spaces.

    ``{"model": "resnet18", "data_split": "val"}`` -> ``"model: resnet18; data split: val"``;
    ``{}`` -> ``""``. The one spelling of the fields in the video header, the failure message, the
    report's gate table and the terminal summary.
    """
    return sep.join(f"{name.replace('_', ' ')}: {value}" for name, value in fields.items())


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """``"YYYY-mm-dd HH:MM:SS UTC"`` for ``now`` (default: the current time)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class FrameAnnotations:
    """What :meth:`VideoRecorder.add_frame` was asked to draw, handed to custom overlay hooks.

    Attributes:
        boxes, texts: as given, in caller-frame pixel coordinates.
        metrics: sidebar values as given.
        footer: caller footer text.
        rendered: False when the caller marked the frame as a skipped render.
        index: 1-based number of this frame in the video.
        origin: (x, y) of the caller frame's top-left pixel in the composed frame; add it to
            caller-frame coordinates to draw in the composed frame.
        frame_size: (width, height) of the caller frame, pixels.
    """

    boxes: tuple[Box, ...]
    texts: tuple[Text, ...]
    metrics: Mapping[str, Any]
    footer: str
    rendered: bool
    index: int
    origin: tuple[int, int]
    frame_size: tuple[int, int]


#: Called after the built-in overlays as ``hook(frame=..., annotations=..., recorder=...)``; it may
#: draw in place on ``frame``, the composed (H, W, 3) uint8 RGB output frame. Its return value is ignored.
DrawHook = Callable[..., object]


@dataclass(frozen=True)
class RecorderResult:
    """Outcome of :meth:`VideoRecorder.finalize`.

    Attributes:
        video_path: the finished MP4, or None when no frame was added or the recording failed.
        metrics_path: the metrics JSON, or None when the recorder had no metrics path.
        summary: the metrics JSON content (see :meth:`VideoRecorder.summary`).
        error: the encoder error met while recording or finishing the video, if any (already
            logged); after an error while recording the partial video is deleted.
        metrics_error: the error met writing the final metrics JSON (a full disk), if any (logged).
    """

    video_path: Path | None
    metrics_path: Path | None
    summary: dict[str, Any]
    error: VideoEncodeError | None = None
    metrics_error: OSError | None = None

    def user_properties(self) -> list[tuple[str, Any]]:
        """(name, value) pairs for ``item.user_properties`` / JUnit XML: built-ins, then recorded metrics."""
        keys = ("video", "fps", "steps", "wall_time_s", "frames", "rss_peak_bytes", "vram_peak_bytes", "vram")
        props: list[tuple[str, Any]] = [(key, self.summary[key]) for key in keys]
        if self.metrics_path is not None:
            props.append(("metrics_json", str(self.metrics_path)))
        props.extend(self.summary["metrics"].items())
        return props


def _json_scalar(name: str, value: Any) -> MetricValue:
    """Validate a recorded metric and make it strict-JSON safe (non-finite floats become None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(
        f"metric {name!r} must be an int, float, bool, str or None, got {type(value).__name__}: {value!r}"
    )


@dataclass
class _FrameCounts:
    total: int = 0  # handed to add_frame
    rendered: int = 0  # of those, marked rendered
    recorded: int = 0  # of those, encoded into the video

    @property
    def skipped(self) -> int:
        return self.total - self.rendered


@dataclass
class _Header:
    test_name: str
    phase: str | None
    fields: dict[str, str] = field(default_factory=dict)  # the caller's, in the order first set


class VideoRecorder:
    """Records one overlaid H.264 video plus throughput and memory metrics.

    Args:
        video_path: MP4 to write; its folder must exist. Created on the first :meth:`add_frame`
            (fragmented MP4 while recording, ``+faststart`` after :meth:`finalize`).
        metrics_path: metrics JSON, written atomically while recording and by :meth:`finalize`;
            None to skip. Its folder is created.
        fps: video frame rate, frames/s.
        test_name: shown first in the header.
        phase: shown in the header (e.g. ``"phase3"``); None shows ``"phase: none"``.
        draw_hook: extra overlay layer, see :data:`DrawHook`.
        sample_interval_s: memory sampling period, seconds.
        clock: monotonic time source for steps/s, seconds (injectable for tests).
        every_n: encode every Nth frame handed to :meth:`add_frame` (frames 1, 1+N, 1+2N, ...);
            the others are counted (frame counter, rendered/skipped totals) but neither drawn nor
            encoded, which is what makes recording cheap on a fast loop.
        record_video: False counts frames and keeps metrics but writes no video at all.
        metrics_interval_s: longest time between two writes of the metrics JSON while frames or
            steps are added, seconds (what a SIGKILL can lose of the counters; recorded metrics
            and floor checks are written at once).

    Raises:
        ValueError: ``fps``, ``sample_interval_s`` or ``metrics_interval_s`` not > 0, ``every_n``
            not an int >= 1.
    """

    def __init__(
        self,
        video_path: str | os.PathLike[str],
        *,
        metrics_path: str | os.PathLike[str] | None = None,
        fps: float = 15.0,
        test_name: str = "",
        phase: str | None = None,
        draw_hook: DrawHook | None = None,
        sample_interval_s: float = 0.2,
        clock: Callable[[], float] = time.perf_counter,
        every_n: int = 1,
        record_video: bool = True,
        metrics_interval_s: float = 1.0,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0 frames/s, got {fps!r}")
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise ValueError(f"every_n must be an int >= 1 (record every Nth frame), got {every_n!r}")
        if not metrics_interval_s > 0:
            raise ValueError(f"metrics_interval_s must be > 0 seconds, got {metrics_interval_s!r}")
        self.every_n = every_n
        self.record_video = bool(record_video)
        self._video_path = Path(video_path)
        self._metrics_path = None if metrics_path is None else Path(metrics_path)
        self.video_fps = float(fps)
        self._header = _Header(test_name=test_name, phase=phase)
        self._draw_hook = draw_hook
        self._rate = StepRate(clock)
        self._sampler = MemorySampler(sample_interval_s)
        self._writer: H264Writer | None = None
        self._layouts: dict[tuple[int, int], PanelLayout] = {}
        self._bar_lines: tuple[int, int] | None = None
        self._frames = _FrameCounts()
        self._metrics: dict[str, MetricValue] = {}
        self._floor_checks: list[FloorCheck] = []
        self._started_utc: str | None = None
        self._result: RecorderResult | None = None
        self._latest_name: str | None = None
        self._video_error: VideoEncodeError | None = None  # met while recording (partial file deleted)
        self._close_error: VideoEncodeError | None = None  # met finishing the file (recording kept)
        self._state = "recording"
        self._metrics_interval_s = float(metrics_interval_s)
        self._metrics_written_at: float | None = None  # time.monotonic() of the last write
        self._metrics_write_failed = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """Path of the MP4, or None before the first frame and after a failed recording."""
        return self._video_path if self._writer is not None and self._video_error is None else None

    @property
    def metrics_path(self) -> Path | None:
        """Path of the metrics JSON (written while recording and at finalize), or None."""
        return self._metrics_path

    @property
    def latest_name(self) -> str:
        """File stem of this recording in the pytest plugin's "latest" view (``<video-dir>/<stem>.mp4``):
        the :meth:`set_latest_name` stem, else the stem of the video file."""
        return self._latest_name or self._video_path.stem

    def set_name(self, stem: str) -> None:
        """Name the outputs ``<stem>.mp4`` and ``<stem>.json`` in the same folders, and in the latest view.

        For tests whose evidence has a conventional file name (for example
        ``functions_check_hover``); the caller keeps names unique across tests. A file of that name
        already in the folder is never overwritten: the outputs are then ``<stem>-2.mp4`` (``-3``,
        ...), while the latest view still uses ``<stem>`` (unless :meth:`set_latest_name` says otherwise).

        Raises:
            ValueError: ``stem`` is not a plain file stem (letters, digits, ``_ . -``; see
                :func:`~pytest_video_plugin.evidence.validate_stem`).
            RuntimeError: called after the first frame (the file is already open).
        """
        try:
            validate_stem(stem, "video name")
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if self._writer is not None:
            raise RuntimeError(
                f"set_name({stem!r}) must come before the first add_frame(); {self._video_path} is open"
            )
        unique, n = stem, 1
        while self._taken(unique):
            n += 1
            unique = f"{stem}-{n}"
        self._video_path = self._video_path.with_name(f"{unique}.mp4")
        if self._metrics_path is not None:
            old, self._metrics_path = self._metrics_path, self._metrics_path.with_name(f"{unique}.json")
            if self._metrics_written_at is not None and old != self._metrics_path:
                old.unlink(missing_ok=True)  # this recorder's own file, written under the old name
                self._write_metrics(force=True)
        if self._latest_name is None and unique != stem:
            self._latest_name = stem

    def _taken(self, stem: str) -> bool:
        """True when a file named ``stem`` already exists where this recorder would write."""
        if self._video_path.with_name(f"{stem}.mp4").exists():
            return True
        if self._metrics_path is None:
            return False
        metrics = self._metrics_path.with_name(f"{stem}.json")
        return metrics != self._metrics_path and metrics.exists()  # our own file does not count

    def set_latest_name(self, stem: str) -> None:
        """Name this test's files in the pytest plugin's "latest" view.

        The plugin keeps every run's files in ``<video-dir>/runs/<run id>/`` and shows the newest
        of each test in ``<video-dir>/<stem>.mp4`` and ``<video-dir>/../metrics/<stem>.json``; by
        default ``stem`` is the test's file stem (see ``video_stem``). After
        ``set_latest_name("render_skip_validation")`` they are ``<video-dir>/render_skip_validation.mp4``
        and ``<video-dir>/../metrics/render_skip_validation.json``. The run's own files keep their
        names. May be called at any time before the recorder is finalized; the last call wins. The
        caller keeps latest names unique across tests (the last test to finish wins a shared name).

        Args:
            stem: a plain file stem: 1-200 ASCII letters, digits, ``_``, ``.``, ``-``, not starting
                with ``.``, without folder or extension.

        Raises:
            ValueError: ``stem`` is not a plain file stem (the message names it and the rule).
            TypeError: ``stem`` is not a str.
            RuntimeError: the recorder is finalized.
        """
        self._check_open("set_latest_name")
        self._latest_name = validate_stem(stem, "set_latest_name(): the latest-view name")

    @property
    def fps(self) -> float | None:
        """Counted steps per second so far (see :meth:`count_steps`), or None before two counts."""
        return self._rate.fps

    @property
    def steps(self) -> int:
        """All steps counted so far."""
        return self._rate.steps

    @property
    def frames(self) -> int:
        """Frames added so far (all of them, recorded or not; see :attr:`frames_recorded`)."""
        return self._frames.total

    @property
    def frames_recorded(self) -> int:
        """Frames encoded into the video so far: about ``frames / every_n``, 0 when not recording."""
        return self._frames.recorded

    @property
    def metrics(self) -> dict[str, MetricValue]:
        """Copy of the values recorded with :meth:`record_metric`."""
        return dict(self._metrics)

    @property
    def floor_checks(self) -> tuple[FloorCheck, ...]:
        """The checks made with :meth:`check_floor`, in call order."""
        return tuple(self._floor_checks)

    @property
    def finalized(self) -> bool:
        """True once :meth:`finalize` has run."""
        return self._result is not None

    def start(self) -> None:
        """Start the memory sampler (idempotent; :meth:`add_frame` and :meth:`count_steps` call it)."""
        self._check_open("start")
        if self._started_utc is None:
            self._started_utc = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            self._sampler.start()
            self._write_metrics(force=True)

    def set_header(self, *, phase: str | None = None, **fields: Any) -> None:
        """Set header fields: free-form ``name=value`` pairs that say what the test ran on.

        The recorder knows no field names: the host project picks them, e.g.
        ``set_header(model="resnet18", dataset="val split")``. Each shows in the video header as
        ``"name: value"`` (underscores read as spaces), after the test name, phase and UTC time and
        before the GPU, in the order first set (setting a field again changes its value, not its
        place); the metrics JSON keeps them under ``header``, and the report's gate table, a failure
        message and the terminal summary show them too. A field never set is not shown.

        Args:
            phase: overrides the phase found from the test's markers.
            **fields: header fields; values are shown with ``str(value)``; None leaves a field unchanged.

        Raises:
            ValueError: a field is named ``test`` (the test name is the recorder's own field).
        """
        reserved = sorted(set(fields) & set(RESERVED_HEADER_FIELDS))
        if reserved:
            raise ValueError(
                f"set_header({reserved[0]}=...): {reserved[0]!r} is the recorder's own header field "
                f"(the test name, {self._header.test_name!r}); name your field differently"
            )
        if phase is not None:
            self._header.phase = str(phase)
        self._header.fields.update({name: str(value) for name, value in fields.items() if value is not None})

    @property
    def header_fields(self) -> dict[str, str]:
        """A copy of the :meth:`set_header` fields, in the order first set."""
        return dict(self._header.fields)

    def count_steps(self, steps: int, *, seconds: float | None = None) -> None:
        """Count ``steps`` agent transitions completed since the previous call.

        steps/s = steps counted after the first call / seconds from the first call to the latest.
        The first call starts the clock (its own steps have no known start time): call
        ``count_steps(0)`` right before a timed loop, or accept that the first batch is not timed.

        With ``seconds``, the steps were timed by the caller instead (a run the video shows but the
        test did not step itself, e.g. a pipeline's training stage: its env steps and wall time):
        they join the rate as they are, and the clock is not started.

        Raises:
            ValueError: ``steps`` is not an int >= 0, or ``seconds`` is not a finite number > 0.
        """
        self.start()
        if seconds is None:
            self._rate.count(steps)
        else:
            self._rate.count_timed(steps, seconds)
        self._write_metrics()

    def record_metric(self, name: str, value: Any) -> None:
        """Record a scalar for the metrics JSON and the test's user properties (not drawn).

        Args:
            name: non-empty key; recording the same name again overwrites it.
            value: int, float, bool, str, None or a numpy scalar; NaN/inf are stored as null.

        Raises:
            ValueError: empty name. TypeError: non-scalar value.
        """
        self._check_open("record_metric")
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty str, got {name!r}")
        self._metrics[name] = _json_scalar(name, value)
        self._write_metrics(force=True)

    def check_floor(
        self,
        name: str,
        *,
        measured: float,
        floor: float,
        ceiling: float | None = None,
        unit: str = "",
    ) -> FloorCheck:
        """Judge ``measured >= floor``, given the ``ceiling`` this machine reached in this run.

        The rule (:mod:`pytest_video_plugin.floors`): ``ceiling < floor`` -> ``"not reachable
        here"`` (the report shows floor, ceiling and measured; the floor is never lowered); else
        ``measured < floor`` -> ``"fail"``; else ``"pass"``. Nothing is raised for a missed floor:
        under pytest the plugin fails the test after its body returns (video and metrics written
        first), and a not-reachable check leaves the test passed with the verdict "NOT REACHABLE
        HERE (...)". Every check goes to the metrics JSON (``floor_checks``). No video is needed.

        Args:
            name: what was measured, e.g. ``"B steps/s"``; unique within this recorder.
            measured: the measured value in ``unit``; finite.
            floor: the value to reach, in ``unit``; finite, >= 0.
            ceiling: the best this machine reached on the same work in this run, in ``unit``;
                finite, >= 0; None for a plain floor.
            unit: display unit, e.g. ``"steps/s"`` or ``"x"``; ``""`` for none.

        Returns:
            The judged :class:`~pytest_video_plugin.floors.FloorCheck`.

        Raises:
            ValueError: a bad name, unit or number (NaN, inf, negative floor or ceiling, not a
                real number), or a name already checked; the message names the value.
            RuntimeError: the recorder is finalized.
        """
        self._check_open("check_floor")
        check = judge_floor(name, measured=measured, floor=floor, ceiling=ceiling, unit=unit)
        if any(done.name == check.name for done in self._floor_checks):
            raise ValueError(
                f"check_floor({name!r}): a check of that name was already made in this test; give each "
                "check its own name"
            )
        self._floor_checks.append(check)
        self._write_metrics(force=True)
        return check

    def add_frame(
        self,
        frame: np.ndarray,
        *,
        boxes: Iterable[Box] = (),
        texts: Iterable[Text] = (),
        metrics: Mapping[str, Any] | None = None,
        footer: str = "",
        rendered: bool = True,
    ) -> None:
        """Overlay and encode one frame (or only count it: see ``every_n`` and ``record_video``).

        Args:
            frame: (H, W, 3) uint8 RGB. The first frame fixes the video size; later frames of
                another size are letterboxed into it.
            boxes: :class:`Box` es in ``frame`` pixel coordinates.
            texts: :class:`Text` s in ``frame`` pixel coordinates.
            metrics: key -> value lines for the sidebar (ints, floats, strings).
            footer: extra footer text.
            rendered: False marks a frame whose render was skipped (the counter says "skipped").

        Raises:
            ValueError: ``frame`` is not (H, W, 3) uint8; the message names its shape and dtype.
            TypeError: a box or text is not a :class:`Box` / :class:`Text`.
            RuntimeError: the recorder is finalized.
            VideoEncodeError: the encoder or the file failed (names the file; a full disk says
                ENOSPC). The partial video is deleted and later calls raise the same error.
        """
        self._check_open("add_frame")
        if self._video_error is not None:
            raise VideoEncodeError(f"recording stopped after an earlier error: {self._video_error}")
        frame = validate_frame(frame)
        boxes, texts = tuple(boxes), tuple(texts)
        _check_items(boxes, Box, "boxes")
        _check_items(texts, Text, "texts")
        self.start()
        index = self._frames.total + 1
        if not self.record_video or (index - 1) % self.every_n:
            self._frames.total = index
            self._frames.rendered += bool(rendered)
            return
        metrics = dict(metrics or {})
        layout = self._layout_for(frame, footer)
        out = compose_panels(
            frame,
            layout,
            header=layout.wrap(self._header_segments()),
            footer=self._footer_lines(layout, index, rendered, footer),
            metrics=metrics,
            boxes=boxes,
            texts=texts,
        )
        if self._draw_hook is not None:
            annotations = FrameAnnotations(
                boxes=boxes,
                texts=texts,
                metrics=metrics,
                footer=footer,
                rendered=bool(rendered),
                index=index,
                origin=layout.origin,
                frame_size=(frame.shape[1], frame.shape[0]),
            )
            self._draw_hook(frame=out, annotations=annotations, recorder=self)
        if self._writer is None:
            self._writer = H264Writer(self._video_path, self.video_fps)
        # A deferred SIGTERM (see encode.interrupt_safely) is raised once the frame is in the file *and*
        # counted, so the metrics' frame count always equals the frames the video holds.
        with no_interrupt_halfway():
            try:
                self._writer.write(out)
            except VideoEncodeError as exc:
                self._video_error = exc
                self._writer.discard()
                log.error("%s (partial video %s deleted)", exc, self._video_path)
                self._write_metrics(force=True)
                raise
            self._frames.total = index
            self._frames.rendered += bool(rendered)
            self._frames.recorded += 1
        self._write_metrics()

    def summary(self) -> dict[str, Any]:
        """The metrics JSON content so far.

        Keys: ``state`` (``"recording"`` until :meth:`finalize`, then ``"finished"``: a file left
        with ``"recording"`` comes from a process that was killed), ``test``, ``phase``, ``header``
        (the :meth:`set_header` fields, name -> str, in the order first set),
        ``started_utc``, ``fps`` (steps/s or null), ``steps``, ``timed_steps``, ``wall_time_s``
        (first to last count, s, or null), ``frames`` (all handed in), ``frames_rendered``,
        ``frames_skipped``, ``frames_recorded`` (encoded), ``every_n``, ``recording`` (False when
        recording is off), ``video`` (path or null), ``video_fps``, ``video_size`` ([w, h] or null),
        ``rss_peak_bytes``, ``vram_peak_bytes`` (null without GPU), ``vram_start_bytes``, ``vram``
        (GPU or "no GPU"), ``memory_samples``, ``metrics`` (every :meth:`record_metric` value),
        ``floor_checks`` (every :meth:`check_floor`: name, measured, floor, ceiling, unit, verdict,
        text, short), ``video_error`` (the encoder error, or null).
        """
        sampler = self._sampler
        size = self._writer.size if self._writer is not None else None
        return {
            "state": self._state,
            "test": self._header.test_name,
            "phase": self._header.phase,
            "header": dict(self._header.fields),
            "started_utc": self._started_utc,
            "fps": self._rate.fps,
            "steps": self._rate.steps,
            "timed_steps": self._rate.timed_steps,
            "wall_time_s": self._rate.elapsed_s,
            "frames": self._frames.total,
            "frames_rendered": self._frames.rendered,
            "frames_skipped": self._frames.skipped,
            "frames_recorded": self._frames.recorded,
            "every_n": self.every_n,
            "recording": self.record_video,
            "video": str(self.path) if self.path is not None else None,
            "video_fps": self.video_fps,
            "video_size": list(size) if size else None,
            "rss_peak_bytes": sampler.rss_peak_bytes or None,
            "vram_peak_bytes": sampler.vram_peak_bytes,
            "vram_start_bytes": sampler.vram_start_bytes,
            "vram": sampler.gpu_description if sampler.gpu_available else NO_GPU,
            "memory_samples": sampler.samples,
            "metrics": dict(self._metrics),
            "floor_checks": [check.as_dict() for check in self._floor_checks],
            "video_error": next((str(e) for e in (self._video_error, self._close_error) if e), None),
        }

    def finalize(self) -> RecorderResult:
        """Stop sampling, finish the video (``+faststart``) and write the final metrics JSON. Idempotent.

        Errors do not raise: an encoder error (met while recording or closing) does not stop the
        JSON from being written, and a JSON that cannot be written (a full disk) does not stop the
        result from being returned; both are logged and returned in :attr:`RecorderResult.error` and
        :attr:`RecorderResult.metrics_error` for the caller to report, once.

        Returns:
            The same :class:`RecorderResult` on every call.
        """
        if self._result is not None:
            return self._result
        self._sampler.stop()
        if self._writer is not None and self._video_error is None:
            try:
                self._writer.close()
            except VideoEncodeError as exc:
                log.error("%s", exc)
                self._close_error = exc
        error = self._video_error or self._close_error
        self._state = "finished"
        summary = self.summary()
        metrics_error: OSError | None = None
        if self._metrics_path is not None:
            try:
                atomic_write_json(self._metrics_path, summary, fsync=True)
            except OSError as exc:
                log.error("cannot write the video metrics JSON: %s", exc)
                metrics_error = exc
        video = self.path if self.path is not None and self.path.is_file() else None
        self._result = RecorderResult(video, self._metrics_path, summary, error, metrics_error)
        return self._result

    def __enter__(self) -> VideoRecorder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        result = self.finalize()
        if result.error is not None:
            raise result.error
        if result.metrics_error is not None:
            raise result.metrics_error

    # -- internals ----------------------------------------------------------------------------

    def _write_metrics(self, *, force: bool = False) -> None:
        """Write the metrics JSON so far, atomically (survives SIGKILL); unless ``force``, only when
        ``metrics_interval_s`` has passed since the last write. A failure is logged once, not raised:
        the final write in :meth:`finalize` is the one that reports."""
        if self._metrics_path is None or self._result is not None:
            return
        now = time.monotonic()
        if (
            not force
            and self._metrics_written_at is not None
            and now - self._metrics_written_at < self._metrics_interval_s
        ):
            return
        self._metrics_written_at = now
        try:
            atomic_write_json(self._metrics_path, self.summary())
        except (OSError, ValueError) as exc:
            if not self._metrics_write_failed:
                log.warning("cannot update the video metrics JSON while recording (retried later): %s", exc)
            self._metrics_write_failed = True

    def _check_open(self, what: str) -> None:
        if self._result is not None:
            raise RuntimeError(
                f"{what}() called on the video recorder of {self._header.test_name or self._video_path} "
                "after it was finalized (the video is closed once the test body returns)"
            )

    def _header_segments(self) -> list[str]:
        h = self._header
        gpu = self._sampler.gpu_description if self._sampler.gpu_available else NO_GPU
        segments = [
            h.test_name,
            f"phase: {h.phase or 'none'}",
            utc_timestamp(),
            *(format_header_fields({name: value}) for name, value in h.fields.items()),
            gpu if gpu == NO_GPU else f"GPU: {gpu}",
        ]
        return segments

    def _status_segments(self, index: int, rendered: bool) -> list[str]:
        fps = self._rate.fps
        if fps is None:
            fps_text = "FPS -- steps/s"
        else:
            fps_text = f"FPS {fps:,.0f} steps/s" if fps >= 100 else f"FPS {fps:.1f} steps/s"
        counter = f"frame {index} ({'rendered' if rendered else 'skipped'})"
        if self.every_n > 1:
            counter += f", 1 in {self.every_n} recorded"
        return [fps_text, self._sampler.memory_label(), counter]

    def _footer_lines(self, layout: PanelLayout, index: int, rendered: bool, footer: str) -> list[str]:
        return layout.wrap(self._status_segments(index, rendered)) + (layout.wrap([footer]) if footer else [])

    def _layout_for(self, frame: np.ndarray, footer: str) -> PanelLayout:
        """Layout for this frame size; the bar line counts are fixed by the first frame."""
        height, width = frame.shape[:2]
        layout = self._layouts.get((height, width))
        if layout is not None:
            return layout
        if self._bar_lines is None:
            probe = PanelLayout.for_frame(height, width)
            header_n = len(probe.wrap(self._header_segments()))
            footer_n = len(self._footer_lines(probe, 10**6, False, footer))
            self._bar_lines = (
                min(max(header_n, MIN_BAR_LINES), MAX_BAR_LINES),
                min(max(footer_n, MIN_BAR_LINES), MAX_BAR_LINES),
            )
        layout = PanelLayout.for_frame(height, width, *self._bar_lines)
        self._layouts[(height, width)] = layout
        return layout


def _check_items(items: tuple[Any, ...], kind: type, what: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise TypeError(f"{what}[{i}] must be a {kind.__name__}, got {type(item).__name__}: {item!r}")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as strict, indented JSON to ``path`` atomically and durably (folder created).

    Raises:
        OSError: naming the path (``errno`` kept); no temporary file is left and the old file is intact.
    """
    atomic_write_json(path, data, fsync=True)
