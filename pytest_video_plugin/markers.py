"""The plugin's markers: parsing and validating them, and judging a test's thresholds.

Markers (registered with help text in :func:`pytest_video_plugin.plugin.pytest_configure`):

* ``video(mode=, fps=, every_n=, embed=)``: per-test recording settings, over the ini file and the
  command line. Markers closer to the test win key by key (function over class over module).
* ``min_fps(value, metric="fps")``: ``metric`` must reach ``value``. ``"fps"`` is the rate counted
  with ``video_recorder.count_steps`` (the number the FPS overlay shows); any other name is a value
  recorded with ``video_recorder.record_metric``.
* ``max_vram(size)`` / ``max_rss(size)``: peak GPU memory in use / peak host RSS must stay at or
  below ``size``: ``"20 GB"``, ``"512 MB"``, ``"8GiB"`` or a plain int of bytes. Where no GPU is
  visible, ``max_vram`` is reported as "not measurable here (no GPU)": neither passed nor failed.

Errors in a marker (unknown keyword, bad unit, missing value) raise :class:`MarkerError`, which the
plugin reports as a usage error of that test at setup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from .errors import VideoPluginError
from .floors import NOT_REACHABLE_HERE, not_reachable_note

__all__ = [
    "EMBED_CHOICES",
    "MARKER_HELP",
    "MODE_CHOICES",
    "NOT_MEASURABLE_NO_GPU",
    "MarkerError",
    "TestPlan",
    "Threshold",
    "ThresholdResult",
    "evaluate",
    "format_bytes",
    "parse_every_n",
    "parse_fps",
    "parse_size",
    "plan_for",
    "verdict",
]

MODE_CHOICES = ("on", "off", "retain-on-failure")
EMBED_CHOICES = ("link", "inline")

#: What a threshold that this machine cannot measure says, in the report and the test's output.
NOT_MEASURABLE_NO_GPU = "not measurable here (no GPU)"

#: Marker name -> help line, as ``pytest --markers`` shows them.
MARKER_HELP = {
    "video": "video(mode=None, fps=None, every_n=None, embed=None): per-test video settings "
    "(pytest_video_plugin); mode on|off|retain-on-failure, embed link|inline; they override "
    "--video-* options and ini keys",
    "min_fps": "min_fps(value, metric='fps'): fail the test unless the metric reaches value; 'fps' is the "
    "video_recorder.count_steps rate (steps/s), any other name a video_recorder.record_metric value",
    "max_vram": "max_vram(size): fail the test when peak GPU memory in use exceeds size, e.g. '20 GB', "
    "'512 MB', '8GiB' or an int of bytes; 'not measurable here (no GPU)' without a GPU",
    "max_rss": "max_rss(size): fail the test when the peak host RSS of the test process exceeds size, "
    "e.g. '8 GB', '512 MB', '8GiB' or an int of bytes",
}

_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")
_UNITS_HELP = "B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)"


class MarkerError(VideoPluginError):
    """A marker of this plugin has an unknown keyword, a bad value or a bad unit."""


def parse_size(value: Any) -> int:
    """A memory size in bytes from ``"20 GB"``, ``"512 MB"``, ``"8GiB"``, ``"1.5 GB"`` or an int.

    Units are case-insensitive: B, kB, MB, GB, TB are powers of 1000, KiB, MiB, GiB, TiB of 1024;
    a string without a unit is bytes.

    Raises:
        ValueError: not a size, an unknown unit, or a value not > 0 (the message lists the units).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '20 GB' or an int of bytes, got {value!r}")
    if isinstance(value, int):
        number, unit = float(value), "b"
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match is None:
            raise ValueError(f"expected a size such as '20 GB', '512 MB' or '8GiB', got {value!r}")
        number, unit = float(match.group(1)), (match.group(2) or "b").lower()
        if unit not in _SIZE_UNITS:
            raise ValueError(
                f"unknown unit {match.group(2)!r} in {value!r}; use {_UNITS_HELP} or a plain int of bytes"
            )
    else:
        raise ValueError(
            f"expected a size such as '20 GB' or an int of bytes, got {type(value).__name__} {value!r}"
        )
    size = round(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be > 0 bytes, got {value!r}")
    return size


def format_bytes(num_bytes: float | None, binary: bool = False) -> str:
    """``21_300_000_000 -> "21.30 GB"``; ``binary=True`` uses GiB/MiB; None -> ``"n/a"``."""
    if num_bytes is None:
        return "n/a"
    big, small, names = (2**30, 2**20, ("GiB", "MiB")) if binary else (10**9, 10**6, ("GB", "MB"))
    if abs(num_bytes) >= big:
        return f"{num_bytes / big:.2f} {names[0]}"
    return f"{num_bytes / small:.1f} {names[1]}"


def parse_fps(value: Any, what: str) -> float:
    """A frame rate > 0 frames/s. Raises ValueError naming ``what``."""
    try:
        fps = float(value)
    except (TypeError, ValueError):
        fps = float("nan")
    if isinstance(value, bool) or not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"{what} must be a number > 0 frames/s, got {value!r}")
    return fps


def parse_every_n(value: Any, what: str) -> int:
    """An int >= 1 (ints given as strings are accepted). Raises ValueError naming ``what``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1 (record every Nth frame), got {value!r}")
    return value


def parse_choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``. Raises ValueError naming ``what`` and the choices."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class Threshold:
    """One threshold marker of a test.

    Attributes:
        kind: marker name: ``"min_fps"``, ``"max_vram"`` or ``"max_rss"``.
        limit: steps/s (or the metric's own unit) for ``min_fps``; bytes for the others.
        metric: ``"fps"`` or a recorded metric name for ``min_fps``; the summary key otherwise.
        source: the marker as written, e.g. ``"max_vram('20 GB')"``.
        binary: the size was given in KiB/MiB/GiB/TiB (measured values are shown alike).
    """

    kind: Literal["min_fps", "max_vram", "max_rss"]
    limit: float
    metric: str
    source: str
    binary: bool = False


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold judged against a finished test's metrics.

    Attributes:
        source: the marker as written.
        kind: marker name.
        status: ``"pass"``, ``"fail"`` or ``"not measurable"``.
        measured: the measured value (steps/s, metric unit or bytes), or None.
        limit: the threshold, same unit.
        text: one line stating measured vs required, e.g.
            ``"min_fps(500): fps 123.4 steps/s, required >= 500 steps/s: FAILED"``.
        short: the same for a table cell, e.g. ``"123.4 steps/s (>= 500)"``.
    """

    source: str
    kind: str
    status: str
    measured: float | None
    limit: float
    text: str
    short: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON, xdist transport)."""
        return {
            "source": self.source, "kind": self.kind, "status": self.status,
            "measured": self.measured, "limit": self.limit, "text": self.text, "short": self.short,
        }  # fmt: skip


@dataclass(frozen=True)
class TestPlan:
    """What the markers of one test ask for.

    Attributes:
        video: per-test overrides from ``video(...)`` markers (keys: mode, fps, every_n, embed).
        thresholds: the test's threshold markers.
    """

    __test__ = False  # not a test class, despite the name

    video: Mapping[str, Any] = field(default_factory=dict)
    thresholds: tuple[Threshold, ...] = ()


def _marker_source(mark: pytest.Mark) -> str:
    parts = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"{mark.name}({', '.join(parts)})"


def _fail(nodeid: str, mark: pytest.Mark, problem: str) -> MarkerError:
    return MarkerError(f"{nodeid}: @pytest.mark.{_marker_source(mark)}: {problem}")


def _check_keywords(nodeid: str, mark: pytest.Mark, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(mark.kwargs) - set(allowed))
    if unknown:
        raise _fail(
            nodeid, mark,
            f"unknown keyword argument(s) {', '.join(unknown)}; {mark.name} accepts "
            + (", ".join(allowed) if allowed else "no keywords"),
        )  # fmt: skip


def _single_value(nodeid: str, mark: pytest.Mark, what: str) -> Any:
    values = list(mark.args)
    if "value" in mark.kwargs:
        values.append(mark.kwargs["value"])
    if len(values) != 1:
        raise _fail(nodeid, mark, f"expected exactly one {what}, got {len(values)}")
    return values[0]


def _video_overrides(nodeid: str, marks: list[pytest.Mark]) -> dict[str, Any]:
    """Merge ``video`` markers, closest first: the first value seen for a key wins."""
    parsers = {
        "mode": lambda v: parse_choice(v, MODE_CHOICES, "mode"),
        "embed": lambda v: parse_choice(v, EMBED_CHOICES, "embed"),
        "fps": lambda v: parse_fps(v, "fps"),
        "every_n": lambda v: parse_every_n(v, "every_n"),
    }
    merged: dict[str, Any] = {}
    for mark in marks:
        if mark.args:
            raise _fail(nodeid, mark, "takes keyword arguments only: mode=, fps=, every_n=, embed=")
        _check_keywords(nodeid, mark, parsers)
        for key, raw in mark.kwargs.items():
            try:
                value = parsers[key](raw)
            except ValueError as exc:
                raise _fail(nodeid, mark, str(exc)) from None
            merged.setdefault(key, value)
    return merged


def _min_fps(nodeid: str, mark: pytest.Mark) -> Threshold:
    _check_keywords(nodeid, mark, ("value", "metric"))
    raw = _single_value(nodeid, mark, "value (the minimum rate)")
    metric = mark.kwargs.get("metric", "fps")
    if not isinstance(metric, str) or not metric:
        raise _fail(
            nodeid, mark, f"metric must be a non-empty str ('fps' or a recorded metric), got {metric!r}"
        )
    try:
        if isinstance(raw, bool):
            raise TypeError
        limit = float(raw)
    except (TypeError, ValueError):
        raise _fail(nodeid, mark, f"value must be a number > 0, got {raw!r}") from None
    if not (limit > 0 and math.isfinite(limit)):
        raise _fail(nodeid, mark, f"value must be a number > 0, got {raw!r}")
    return Threshold("min_fps", limit, metric, _marker_source(mark))


def _max_size(nodeid: str, mark: pytest.Mark) -> Threshold:
    _check_keywords(nodeid, mark, ("value",))
    raw = _single_value(nodeid, mark, "size such as '20 GB'")
    try:
        limit = parse_size(raw)
    except ValueError as exc:
        raise _fail(nodeid, mark, str(exc)) from None
    binary = isinstance(raw, str) and raw.strip().lower().endswith("ib")
    metric = "vram_peak_bytes" if mark.name == "max_vram" else "rss_peak_bytes"
    return Threshold(mark.name, float(limit), metric, _marker_source(mark), binary)  # type: ignore[arg-type]


def plan_for(item: pytest.Item) -> TestPlan:
    """Parse and validate the plugin's markers on ``item`` (closest markers first).

    Several ``min_fps`` markers may target different metrics; for one metric, and for
    ``max_vram``/``max_rss``, the closest marker wins.

    Raises:
        MarkerError: naming the test, the marker as written and the problem.
    """
    nodeid = item.nodeid
    video = _video_overrides(nodeid, list(item.iter_markers("video")))
    thresholds: dict[tuple[str, str], Threshold] = {}
    for mark in item.iter_markers("min_fps"):
        threshold = _min_fps(nodeid, mark)
        thresholds.setdefault((threshold.kind, threshold.metric), threshold)
    for name in ("max_vram", "max_rss"):
        for mark in item.iter_markers(name):
            threshold = _max_size(nodeid, mark)
            thresholds.setdefault((threshold.kind, threshold.metric), threshold)
    return TestPlan(video=video, thresholds=tuple(thresholds.values()))


def _format_rate(value: float, metric: str) -> str:
    if metric == "fps":
        return f"{value:,.1f} steps/s" if value < 100 else f"{value:,.0f} steps/s"
    return f"{value:,.4g}"


def evaluate(threshold: Threshold, summary: Mapping[str, Any]) -> ThresholdResult:
    """Judge ``threshold`` against a recorder summary (see ``VideoRecorder.summary``)."""
    t = threshold
    if t.kind == "min_fps":
        if t.metric == "fps":
            measured = summary.get("fps")
            if measured is None:
                steps = summary.get("steps", 0)
                why = (
                    "the test never called video_recorder.count_steps"
                    if steps == 0 and summary.get("wall_time_s") is None
                    else "the test counted steps only once (no time span to divide by)"
                )
                text = (
                    f"{t.source}: no FPS measured: {why}; call count_steps(0) before the timed loop and "
                    f"count_steps(n) after each batch of n agent steps: FAILED"
                )
                short = f"no steps counted (>= {_format_rate(t.limit, t.metric)})"
                return ThresholdResult(t.source, t.kind, "fail", None, t.limit, text, short)
        else:
            recorded = summary.get("metrics", {})
            if t.metric not in recorded:
                text = (
                    f"{t.source}: metric {t.metric!r} was never recorded "
                    "with video_recorder.record_metric: FAILED"
                )
                short = f"{t.metric} not recorded (>= {_format_rate(t.limit, t.metric)})"
                return ThresholdResult(t.source, t.kind, "fail", None, t.limit, text, short)
            measured = recorded[t.metric]
            if isinstance(measured, bool) or not isinstance(measured, (int, float)):
                text = f"{t.source}: metric {t.metric!r} is {measured!r}, not a number: FAILED"
                short = f"{t.metric} = {measured!r}, not a number"
                return ThresholdResult(t.source, t.kind, "fail", None, t.limit, text, short)
        ok = measured >= t.limit
        text = (
            f"{t.source}: {t.metric} {_format_rate(measured, t.metric)}, required >= "
            f"{_format_rate(t.limit, t.metric)}: {'ok' if ok else 'FAILED'}"
        )
        name = "" if t.metric == "fps" else f"{t.metric} "
        short = f"{name}{_format_rate(measured, t.metric)} (>= {_format_rate(t.limit, t.metric)})"
        return ThresholdResult(
            t.source, t.kind, "pass" if ok else "fail", float(measured), t.limit, text, short
        )
    what = "peak VRAM" if t.kind == "max_vram" else "peak RSS"
    measured = summary.get(t.metric)
    if measured is None:
        if t.kind == "max_vram":
            text = f"{t.source}: {what} {NOT_MEASURABLE_NO_GPU}; neither passed nor failed"
        else:
            text = f"{t.source}: {what} not measurable here (no RSS sample); neither passed nor failed"
        short = f"{'VRAM' if t.kind == 'max_vram' else 'RSS'} not measurable here" + (
            " (no GPU)" if t.kind == "max_vram" else ""
        )
        return ThresholdResult(t.source, t.kind, "not measurable", None, t.limit, text, short)
    ok = measured <= t.limit
    device = f" on {summary['vram']}" if t.kind == "max_vram" and summary.get("vram") else ""
    text = (
        f"{t.source}: {what}{device} {format_bytes(measured, t.binary)}, required <= "
        f"{format_bytes(t.limit, t.binary)}: {'ok' if ok else 'FAILED'}"
    )
    short = (
        f"{'VRAM' if t.kind == 'max_vram' else 'RSS'} {format_bytes(measured, t.binary)} "
        f"(<= {format_bytes(t.limit, t.binary)})"
    )
    return ThresholdResult(t.source, t.kind, "pass" if ok else "fail", float(measured), t.limit, text, short)


def verdict(
    outcome: str, results: Iterable[Mapping[str, Any]], floor_checks: Iterable[Mapping[str, Any]] = ()
) -> str:
    """One word or short phrase for the report's verdict column.

    Args:
        outcome: the call report's ``"passed"``, ``"failed"`` or ``"skipped"``.
        results: :meth:`ThresholdResult.as_dict` of the test's threshold markers.
        floor_checks: :meth:`~pytest_video_plugin.floors.FloorCheck.as_dict` of its floor checks.

    Returns:
        ``"PASS"``, ``"FAIL"``, ``"FAIL (min_fps)"`` when thresholds or floor checks were missed (the
        marker kind, or the check's name), ``"SKIP"``, ``"PASS (max_vram not measurable here)"`` when
        a threshold could not be judged, and ``"NOT REACHABLE HERE (B steps/s: floor 120, ceiling
        93)"`` instead of ``"PASS"`` when a floor is above this machine's same-run ceiling (appended
        as ``"; NOT REACHABLE HERE (...)"`` to a FAIL): never a plain PASS then.
    """
    results, floor_checks = list(results), list(floor_checks)
    failed = [r["kind"] for r in results if r["status"] == "fail"]
    failed += [c["name"] for c in floor_checks if c["verdict"] == "fail"]
    unmeasured = [r["kind"] for r in results if r["status"] == "not measurable"]
    unreachable = [not_reachable_note(c) for c in floor_checks if c["verdict"] == NOT_REACHABLE_HERE]
    not_reachable = f"{NOT_REACHABLE_HERE.upper()} ({'; '.join(unreachable)})" if unreachable else ""
    if outcome == "skipped":
        return "SKIP"
    if outcome == "failed":
        word = f"FAIL ({', '.join(failed)})" if failed else "FAIL"
        return f"{word}; {not_reachable}" if not_reachable else word
    if not_reachable:
        return not_reachable + (f"; {', '.join(unmeasured)} not measurable here" if unmeasured else "")
    if unmeasured:
        return f"PASS ({', '.join(unmeasured)} not measurable here)"
    return "PASS"
