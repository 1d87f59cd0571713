"""pytest entry point of ``pytest_video_plugin`` (registered as the ``video`` pytest11 plugin).

* options: group "video", each also an ini key; precedence ini < command line < ``video(...)`` marker:

  ============================ ====================== =============================================
  option                       ini key                meaning
  ============================ ====================== =============================================
  ``--video-dir=DIR``          ``video_dir``          MP4 folder (metrics JSON in ``DIR/../metrics``)
  ``--video-mode=MODE``        ``video_mode``         ``on`` | ``off`` | ``retain-on-failure``
  ``--video-fps=FPS``          ``video_fps``          frame rate of the videos
  ``--video-every-n=N``        ``video_every_n``      encode every Nth frame handed to ``add_frame``
  ``--video-embed=HOW``        ``video_embed``        ``link`` | ``inline`` (``--self-contained-html``)
  ``--video-embed-max-mb=MB``  ``video_embed_max_mb`` cap on a report's inline videos (25 MB)
  ``--video-prune-keep=N``     ``video_prune_keep``   delete all but the N newest earlier runs
  (ini only)                   ``video_install_hint`` install command shown when PyAV, OpenCV, psutil
                                                      or nvidia-ml-py is missing (``pip install <pkg>``)
  (ini only)                   ``video_browser_``     install command shown when Playwright is missing
                               ``install_hint``       (``pip install playwright``)
  ============================ ====================== =============================================

  The host project sets the install hints to its own command, e.g. an extra that pins tested
  versions: ``video_install_hint = 'pip install "myproject[video]"'`` (example).

* files: every session writes into its own run folder, ``<video-dir>/runs/<run id>/`` and
  ``<video-dir>/../metrics/runs/<run id>/`` (:mod:`.evidence`); reports link those files, and no
  later run deletes them (only ``--video-prune-keep``). ``<video-dir>/<name>.mp4`` and
  ``<video-dir>/../metrics/<name>.json`` are the "latest" view, updated atomically when a test
  finishes (``video_recorder.set_latest_name`` picks ``name``);
* SIGTERM: for the session the plugin turns SIGTERM into ``KeyboardInterrupt`` (as Ctrl-C), so a CI
  cancel or ``timeout`` finishes the video and writes the metrics through the normal teardown; a
  second SIGTERM ends the process at once (the fragmented video on disk still plays). The previous
  handler is restored at the end of the session;

* markers: ``video(...)``, ``min_fps(...)``, ``max_vram(...)``, ``max_rss(...)`` (see :mod:`.markers`),
  validated when each test is set up;
* fixture: ``video_recorder`` (from :mod:`.fixtures`); a test with a threshold marker gets it even
  without asking, so its memory is sampled. Its ``check_floor(name, measured=, floor=, ceiling=,
  unit=)`` adds same-run floor checks (:mod:`.floors`), judged with the thresholds;
* hook: ``pytest_video_draw_overlays`` (spec in :mod:`.hooks`);
* reporting: right after the test body the recorder is finalized, the thresholds and floor checks
  are judged (a missed one fails the test's ``call`` report; a floor above the same-run ceiling
  leaves it passed, its verdict "NOT REACHABLE HERE (...)"), and the video, the metrics JSON and
  the verdict are attached to the call report: as pytest-html extras, as ``user_properties`` (JUnit
  XML) and as the ``pytest_video`` report attribute (a dict of JSON types). Everything rides on the
  report, so it works under pytest-xdist, where only the controller (:mod:`.reporting`) picks the
  run id (handed to the workers), locks and prunes run folders, writes the report columns and the
  phase-gate summary. Each worker writes the files of the tests it runs and their latest view.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from videokit.encode import interrupt_safely, thumbnail_png
from videokit.errors import set_install_hints

from . import hooks
from .errors import VideoPluginError
from .evidence import new_run_id
from .fixtures import (  # noqa: F401 - video_recorder is the fixture pytest collects from this plugin
    VideoSettings,
    VideoTestState,
    find_phase,
    finish_recording,
    plan_key,
    publish_latest_view,
    settings_key,
    state_key,
    video_recorder,
)
from .floors import NOT_REACHABLE_HERE, FloorCheck
from .markers import (
    EMBED_CHOICES,
    MARKER_HELP,
    MODE_CHOICES,
    MarkerError,
    ThresholdResult,
    evaluate,
    parse_every_n,
    parse_fps,
    plan_for,
    verdict,
)
from .recorder import RecorderResult, _write_json, format_header_fields
from .reporting import (
    INLINE_BYTES_KEY,
    LINK_KEY,
    REPORT_ATTR,
    RUN_ID_WORKERINPUT_KEY,
    VideoSessionReport,
    inline_refusal,
    relative_link,
)

log = logging.getLogger(__name__)

DEFAULT_VIDEO_DIR = "output/videos"
DEFAULT_FPS = 15.0
DEFAULT_MODE = "on"
DEFAULT_EMBED = "link"
DEFAULT_EVERY_N = 1
DEFAULT_EMBED_MAX_MB = 25.0
#: Width of the phase-gate thumbnails in the HTML summary, pixels.
THUMBNAIL_WIDTH = 240
#: Import names of the optional packages that ini ``video_install_hint`` installs.
VIDEO_PACKAGES = ("av", "cv2", "psutil", "pynvml")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register ``pytest_video_draw_overlays``."""
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the "video" option group and its ini keys."""
    group = parser.getgroup("video", "video evidence (pytest_video_plugin)")
    group.addoption(
        "--video-dir",
        dest="video_dir",
        metavar="DIR",
        default=None,
        help=f"folder for test videos (MP4); metrics JSON go to DIR/../metrics. Each session writes "
        "DIR/runs/<run id>/ (and DIR/../metrics/runs/<run id>/), which no later run deletes; "
        "DIR/<name>.mp4 shows the newest video of each test. "
        f"Default: ini video_dir, else {DEFAULT_VIDEO_DIR} under the rootdir.",
    )
    group.addoption(
        "--video-mode",
        dest="video_mode",
        choices=MODE_CHOICES,
        default=None,
        help="on: record every test using video_recorder; off: metrics and thresholds only, no video; "
        "retain-on-failure: record, then delete the videos of tests that passed (kept when a floor "
        "check is 'not reachable here') "
        f"(default: ini video_mode, else {DEFAULT_MODE}).",
    )
    group.addoption(
        "--video-fps",
        dest="video_fps",
        metavar="FPS",
        type=float,
        default=None,
        help=f"frame rate of recorded videos, frames/s (default: ini video_fps, else {DEFAULT_FPS:g}).",
    )
    group.addoption(
        "--video-every-n",
        dest="video_every_n",
        metavar="N",
        default=None,
        help="encode every Nth frame handed to add_frame (frame counter and metrics still count all; "
        f"default: ini video_every_n, else {DEFAULT_EVERY_N}).",
    )
    group.addoption(
        "--video-embed",
        dest="video_embed",
        choices=EMBED_CHOICES,
        default=None,
        help="link: the report links the MP4 (an assets/ copy, or the file itself with "
        "--self-contained-html); inline: with --self-contained-html the MP4 is embedded as base64, "
        f"up to --video-embed-max-mb per report (default: ini video_embed, else {DEFAULT_EMBED}).",
    )
    group.addoption(
        "--video-embed-max-mb",
        dest="video_embed_max_mb",
        metavar="MB",
        type=float,
        default=None,
        help="cap on the inline videos of one report, megabytes; videos beyond it are refused and linked "
        f"(default: ini video_embed_max_mb, else {DEFAULT_EMBED_MAX_MB:g}).",
    )
    group.addoption(
        "--video-prune-keep",
        dest="video_prune_keep",
        metavar="N",
        default=None,
        help="at session start, delete the run folders (videos and metrics under DIR/runs and "
        "DIR/../metrics/runs) of all but the N newest earlier runs; this run and runs still in progress "
        "are never deleted, and the latest view DIR/<name>.mp4 keeps its files. Without it (default: "
        "ini video_prune_keep, else none) nothing is ever deleted.",
    )
    parser.addini(
        "video_prune_keep",
        help="earlier runs to keep when pruning at session start (default: empty, no pruning).",
        default="",
    )
    parser.addini(
        "video_dir",
        help=f"folder for test videos, relative to the rootdir (default {DEFAULT_VIDEO_DIR}).",
        default=DEFAULT_VIDEO_DIR,
    )
    parser.addini(
        "video_mode", help=f"on | off | retain-on-failure (default {DEFAULT_MODE}).", default=DEFAULT_MODE
    )
    parser.addini(
        "video_fps",
        help=f"frame rate of recorded videos (default {DEFAULT_FPS:g}).",
        default=str(DEFAULT_FPS),
    )
    parser.addini(
        "video_every_n",
        help=f"encode every Nth frame handed to add_frame (default {DEFAULT_EVERY_N}).",
        default=str(DEFAULT_EVERY_N),
    )
    parser.addini("video_embed", help=f"link | inline (default {DEFAULT_EMBED}).", default=DEFAULT_EMBED)
    parser.addini(
        "video_install_hint",
        help="command that installs the plugin's optional packages (PyAV, OpenCV, psutil, nvidia-ml-py), "
        "shown when one is missing, e.g. the host project's extra (default: pip install <package>).",
        default="",
    )
    parser.addini(
        "video_browser_install_hint",
        help="command that installs Playwright for the report browser check, shown when it is missing "
        "(default: pip install playwright).",
        default="",
    )
    parser.addini(
        "video_embed_max_mb",
        help=f"cap on the inline videos of one report, MB (default {DEFAULT_EMBED_MAX_MB:g}).",
        default=str(DEFAULT_EMBED_MAX_MB),
    )


def _option_or_ini(config: pytest.Config, name: str) -> tuple[Any, str]:
    """The command-line value of ``name`` if given, else the ini value; plus where it came from."""
    value = config.getoption(name)
    if value is not None:
        return value, f"--{name.replace('_', '-')}"
    return config.getini(name), f"ini {name}"


def resolve_settings(config: pytest.Config) -> VideoSettings:
    """Command line > ini > defaults. ``--video-dir`` is relative to the invocation folder, ini to rootdir.

    Raises:
        pytest.UsageError: a value is out of range; the message names the option or ini key.
    """
    cli_dir = config.getoption("video_dir")
    if cli_dir:
        video_dir = Path(config.invocation_params.dir, os.path.expanduser(cli_dir))
    else:
        video_dir = Path(config.rootpath, os.path.expanduser(str(config.getini("video_dir"))))
    raw_fps, fps_from = _option_or_ini(config, "video_fps")
    raw_mode, mode_from = _option_or_ini(config, "video_mode")
    raw_embed, embed_from = _option_or_ini(config, "video_embed")
    raw_every_n, every_n_from = _option_or_ini(config, "video_every_n")
    raw_cap, cap_from = _option_or_ini(config, "video_embed_max_mb")
    raw_keep, keep_from = _option_or_ini(config, "video_prune_keep")
    try:
        fps = parse_fps(raw_fps, fps_from)
        every_n = parse_every_n(raw_every_n, every_n_from)
        if raw_mode not in MODE_CHOICES:
            raise ValueError(f"{mode_from} must be one of {', '.join(MODE_CHOICES)}, got {raw_mode!r}")
        if raw_embed not in EMBED_CHOICES:
            raise ValueError(f"{embed_from} must be one of {', '.join(EMBED_CHOICES)}, got {raw_embed!r}")
        try:
            cap_mb = float(raw_cap)
        except (TypeError, ValueError):
            cap_mb = float("nan")
        if not cap_mb > 0:
            raise ValueError(f"{cap_from} must be a number of megabytes > 0, got {raw_cap!r}")
        prune_keep = _parse_prune_keep(raw_keep, keep_from)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    return VideoSettings(
        video_dir=video_dir.resolve(),
        fps=fps,
        mode=raw_mode,
        embed=raw_embed,
        every_n=every_n,
        embed_max_bytes=round(cap_mb * 1e6),
        run_id=_run_id(config, video_dir.resolve()),
        prune_keep=prune_keep,
    )


def _parse_prune_keep(raw: Any, source: str) -> int | None:
    """``--video-prune-keep`` / ini ``video_prune_keep``: None (empty) or an int >= 0."""
    if raw is None or str(raw).strip() == "":
        return None
    try:
        keep = int(str(raw).strip())
    except ValueError:
        keep = -1
    if keep < 0:
        raise ValueError(
            f"{source} must be a whole number of earlier runs to keep (>= 0), got {raw!r}; "
            "leave it out to delete nothing"
        )
    return keep


def _run_id(config: pytest.Config, video_dir: Path) -> str:
    """This session's run id: the controller's (handed to xdist workers), else a new one whose
    folders do not exist yet."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        given = workerinput.get(RUN_ID_WORKERINPUT_KEY)
        return str(given) if given else f"xdist-{workerinput.get('testrunuid') or new_run_id()}"
    run_id = new_run_id()
    runs = video_dir / "runs"
    n = 1
    while (runs / run_id).exists() or (video_dir.parent / "metrics" / "runs" / run_id).exists():
        n += 1
        run_id = f"{new_run_id()}-{n}"
    return run_id


def install_hints(config: pytest.Config) -> dict[str, str | None]:
    """Import name -> install command from the ini keys ``video_install_hint`` (the recording's
    packages) and ``video_browser_install_hint`` (Playwright); None where a key is empty, which
    leaves videokit's default ``pip install <package>``."""
    video = str(config.getini("video_install_hint")).strip() or None
    browser = str(config.getini("video_browser_install_hint")).strip() or None
    return {**dict.fromkeys(VIDEO_PACKAGES, video), "playwright": browser}


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options, set the install hints (restored when the session ends), register the
    markers, the SIGTERM handling and (on the controller only) the report plugin."""
    config.stash[settings_key] = resolve_settings(config)
    previous_hints = set_install_hints(install_hints(config))
    config.add_cleanup(lambda: set_install_hints(previous_hints))
    for help_line in MARKER_HELP.values():
        config.addinivalue_line("markers", help_line)
    config.pluginmanager.register(SigtermAsInterrupt(), SigtermAsInterrupt.NAME)
    if not hasattr(config, "workerinput"):  # xdist workers only run tests; the controller reports
        config.pluginmanager.register(VideoSessionReport(config), VideoSessionReport.NAME)


class SigtermAsInterrupt:
    """For the session, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    pytest then tears the running test down (the ``video_recorder`` fixture finishes the video and
    writes the metrics) and ends the session as interrupted (exit code 2). The first SIGTERM puts the
    previous handler back, so a second one ends the process at once (the fragmented video on disk
    still plays). Installed only when SIGTERM has its default action and pytest runs in the main
    thread (an embedding program's own handler is left alone); restored at ``pytest_unconfigure``.
    """

    NAME = "pytest_video_plugin_sigterm"

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.restore()
        # raised now, or right after the frame being encoded is in the file (never between the two)
        interrupt_safely(
            KeyboardInterrupt(
                "SIGTERM received: pytest_video_plugin stops the session as on Ctrl-C, finishing the video "
                "and metrics of the running test (a second SIGTERM ends the process at once)"
            )
        )

    def restore(self) -> None:
        """Put the previous SIGTERM handler back (idempotent)."""
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.restore()


def pytest_report_header(config: pytest.Config) -> str:
    """One header line: where videos go and how they are recorded."""
    s = config.stash[settings_key]
    return (
        f"video: dir={s.video_dir}, fps={s.fps:g}, mode={s.mode}, every_n={s.every_n}, embed={s.embed} "
        f"(inline cap {s.embed_max_bytes / 1e6:g} MB), run folder runs/{s.run_id}"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Parse and validate the plugin's markers before any fixture runs (a bad marker is a setup error)."""
    item.stash[plan_key] = plan_for(item)


@pytest.fixture(autouse=True)
def _video_thresholds_need_a_recorder(request: pytest.FixtureRequest) -> None:
    """A test with ``min_fps``/``max_vram``/``max_rss`` gets ``video_recorder`` (its memory sampler)
    even when it does not ask for it; without it no threshold could be judged."""
    plan = request.node.stash.get(plan_key, None)
    if plan is not None and plan.thresholds:
        request.getfixturevalue("video_recorder")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """After the test body: finalize the recorder, judge thresholds, attach video and metrics.

    Each step below is one job, in this order; later steps read what earlier ones decided.
    """
    report = yield
    _usage_error(report, call)
    phase = find_phase(item)
    finished = _finish_recording(item, report) if report.when == "call" else None
    if finished is None:  # setup/teardown, or a test without video_recorder: only the gate row's phase
        if phase is not None:
            setattr(report, REPORT_ATTR, {"phase": phase})
        return report
    state, result, settings = finished
    judged = _judge_thresholds(item, report, state, result, settings)
    video_path, deleted = _apply_video_mode(item, report, result, judged, settings)
    final_verdict = _record_verdict(item, report, judged)
    data = _report_data(phase, settings, result, video_path, deleted, judged, final_verdict)
    summary = {
        **result.summary, "run_id": settings.run_id, "video": data["video"], "video_deleted": deleted,
        "video_mode": settings.mode, "thresholds": data["thresholds"], "verdict": final_verdict,
    }  # fmt: skip
    result = _rewrite_metrics(report, result, summary)
    _publish_latest(state, result, video_path, data)
    _attach_html(item, report, summary, settings, video_path, data)
    setattr(report, REPORT_ATTR, data)
    return report


class _Judged(NamedTuple):
    """What :func:`_judge_thresholds` decided: the markers' results and the same-run floor checks."""

    results: list[ThresholdResult]  # one per threshold marker; empty when the body was not judged
    floors: list[FloorCheck]  # the recorder's check_floor calls; empty for a skipped body


def _usage_error(report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """A bad marker (a :class:`MarkerError` in setup) reads as a plugin usage error, not a traceback."""
    if report.when == "setup" and call.excinfo is not None and isinstance(call.excinfo.value, MarkerError):
        report.longrepr = f"pytest_video_plugin usage error: {call.excinfo.value}"


def _finish_recording(
    item: pytest.Item, report: pytest.TestReport
) -> tuple[VideoTestState, RecorderResult, VideoSettings] | None:
    """Finalize the recorder of a ``call`` report and add its metrics to the report's ``user_properties``.

    Returns:
        (the test's state, the recorder's result, its settings), or None when the test did not use
        ``video_recorder``.
    """
    finished = finish_recording(item)
    if finished is None:
        return None
    result, new_properties = finished
    state = item.stash[state_key]
    state.reported = True
    report.user_properties.extend(new_properties)
    return state, result, state.settings or item.config.stash[settings_key]


def _judge_thresholds(
    item: pytest.Item,
    report: pytest.TestReport,
    state: VideoTestState,
    result: RecorderResult,
    settings: VideoSettings,
) -> _Judged:
    """Judge the threshold markers and floor checks; a miss (or a recorder error) fails the call report.

    A skipped (or xfailed) body is not judged. A report that already failed keeps its own longrepr
    and gets the threshold text as a section; a passed one lists the verdicts in a section.
    """
    problems = [f"pytest_video_plugin: {e}" for e in (result.error, result.metrics_error) if e is not None]
    plan = item.stash.get(plan_key, None)
    judged = plan is not None and not report.skipped
    results = [evaluate(t, result.summary) for t in plan.thresholds] if judged else []
    floors = list(state.recorder.floor_checks) if not report.skipped else []
    missed = [r for r in results if r.status == "fail"] + [c for c in floors if c.verdict == "fail"]
    if missed:
        problems.append(_threshold_longrepr(item.nodeid, results, floors, result, settings))
    elif results or floors:
        lines = [r.text for r in results] + [c.text for c in floors]
        report.sections.append(("pytest_video_plugin thresholds", "\n".join(lines)))
    if missed and not report.passed:  # already failed: keep its own longrepr, add ours as a section
        report.sections.append(("pytest_video_plugin thresholds", problems.pop()))
    _fail_call(report, problems)
    return _Judged(results, floors)


def _apply_video_mode(
    item: pytest.Item,
    report: pytest.TestReport,
    result: RecorderResult,
    judged: _Judged,
    settings: VideoSettings,
) -> tuple[Path | None, str | None]:
    """``retain-on-failure``: delete the video of a passed test (kept when a floor was not reachable).

    Returns:
        (the video kept, or None; why it was deleted, or None).
    """
    video_path = result.video_path
    unreachable = any(c.verdict == NOT_REACHABLE_HERE for c in judged.floors)  # not a PASS: keep it
    if settings.mode != "retain-on-failure" or video_path is None or not report.passed or unreachable:
        return video_path, None
    video_path.unlink(missing_ok=True)  # this run's file; the latest view keeps what it showed
    for props in (report.user_properties, item.user_properties):
        props[:] = [("video", None) if name == "video" else (name, v) for name, v in props]
    return None, "deleted: the test passed (video mode retain-on-failure)"


def _record_verdict(item: pytest.Item, report: pytest.TestReport, judged: _Judged) -> str:
    """The test's verdict, added with each threshold and floor check to ``user_properties`` (JUnit XML)."""
    final_verdict = verdict(
        report.outcome, [r.as_dict() for r in judged.results], [c.as_dict() for c in judged.floors]
    )
    props = [(f"threshold {r.source}", r.text) for r in judged.results]
    props += [(f"floor {c.name}", c.text) for c in judged.floors]
    props.append(("verdict", final_verdict))
    report.user_properties.extend(props)
    item.user_properties.extend(props)
    return final_verdict


def _report_data(
    phase: str | None,
    settings: VideoSettings,
    result: RecorderResult,
    video_path: Path | None,
    deleted: str | None,
    judged: _Judged,
    final_verdict: str,
) -> dict[str, Any]:
    """The ``pytest_video`` report attribute (JSON types only: it crosses pytest-xdist with the report).

    ``header`` is the recorder's :meth:`~.recorder.VideoRecorder.set_header` fields, in order.
    ``video_latest``, ``metrics_latest``, ``thumbnail_png`` and ``embed_refused`` are filled in by
    the later steps.
    """
    summary = result.summary
    return {
        "phase": phase,
        "run_id": settings.run_id,
        "video": None if video_path is None else str(video_path),
        "video_deleted": deleted,
        "video_latest": None,
        "metrics_json": None if result.metrics_path is None else str(result.metrics_path),
        "metrics_latest": None,
        "mode": settings.mode,
        "every_n": settings.every_n,
        "fps": summary["fps"],
        "steps": summary["steps"],
        "frames": summary["frames"],
        "vram_peak_bytes": summary["vram_peak_bytes"],
        "vram": summary["vram"],
        "rss_peak_bytes": summary["rss_peak_bytes"],
        "header": dict(summary.get("header", {})),
        "thresholds": [r.as_dict() for r in judged.results],
        "floor_checks": [c.as_dict() for c in judged.floors],
        "verdict": final_verdict,
        "thumbnail_png": None,
        "embed_refused": None,
    }


def _rewrite_metrics(
    report: pytest.TestReport, result: RecorderResult, summary: dict[str, Any]
) -> RecorderResult:
    """Rewrite the metrics JSON with the verdict; a write error fails the call report and is returned
    in :attr:`RecorderResult.metrics_error` (so the latest view is not pointed at a stale file)."""
    if result.metrics_path is None or result.metrics_error is not None:
        return result
    try:
        _write_json(result.metrics_path, summary)
    except OSError as exc:
        _fail_call(report, [f"pytest_video_plugin could not update the metrics JSON: {exc}"])
        return RecorderResult(result.video_path, result.metrics_path, result.summary, result.error, exc)
    return result


def _publish_latest(
    state: VideoTestState, result: RecorderResult, video_path: Path | None, data: dict[str, Any]
) -> None:
    """Point the latest view at this test's files and note where in ``data``."""
    latest_video, latest_metrics = publish_latest_view(state, result, video_path)
    data["video_latest"] = None if latest_video is None else str(latest_video)
    data["metrics_latest"] = None if latest_metrics is None else str(latest_metrics)


def _attach_html(
    item: pytest.Item,
    report: pytest.TestReport,
    summary: dict[str, Any],
    settings: VideoSettings,
    video_path: Path | None,
    data: dict[str, Any],
) -> None:
    """With ``--html``: the video and metrics as pytest-html extras, a refused inline embed as a
    section, and the thumbnail of a phase gate's video for the summary table."""
    if not item.config.getoption("htmlpath", None):
        return
    html_extras, refusal = _html_extras(item.config, item.nodeid, summary, settings, video_path)
    if html_extras:
        report.extras = [*getattr(report, "extras", []), *html_extras]
    if refusal is not None:
        data["embed_refused"] = refusal
        report.sections.append(("pytest_video_plugin", refusal))
    if data["phase"] is not None and video_path is not None:
        data["thumbnail_png"] = _thumbnail(video_path)


def _threshold_longrepr(
    nodeid: str,
    results: list[ThresholdResult],
    floors: list[FloorCheck],
    result: RecorderResult,
    settings: VideoSettings,
) -> str:
    """The failure text of a missed threshold or floor check: every threshold's and check's measured
    vs required (ceilings included), and the config."""
    summary = result.summary
    wall = summary.get("wall_time_s")
    missed_markers = any(r.status == "fail" for r in results)
    missed_floors = any(c.verdict == "fail" for c in floors)
    what = " and ".join(
        w for w, missed in (("threshold(s)", missed_markers), ("floor check(s)", missed_floors)) if missed
    )
    lines = [
        f"pytest_video_plugin: {nodeid} missed its {what}:",
        *(f"  {r.text}" for r in results),
        *(f"  {c.text}" for c in floors),
        "config: "
        + "; ".join(
            part
            for part in (
                format_header_fields(summary.get("header", {})),
                f"GPU: {summary.get('vram')}",
                f"{summary.get('steps', 0):,} steps counted"
                + (f", {summary.get('timed_steps', 0):,} timed over {wall:.3f} s" if wall else ""),
                f"video mode={settings.mode}, fps={settings.fps:g}, every_n={settings.every_n}",
                f"metrics JSON: {result.metrics_path}",
            )
            if part
        ),
    ]
    return "\n".join(lines)


def _fail_call(report: pytest.TestReport, problems: list[str]) -> None:
    """Fail a passed call report with ``problems``; for an already failed or skipped one, add sections."""
    if not problems:
        return
    for message in problems:
        log.error("%s", message)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = "\n".join(problems)
    else:
        for message in problems:
            report.sections.append(("pytest_video_plugin", message))


def _thumbnail(video_path: Path) -> str | None:
    """Base64 PNG thumbnail of the video, or None (logged) when it cannot be read."""
    try:
        return base64.b64encode(thumbnail_png(video_path, THUMBNAIL_WIDTH)).decode("ascii")
    except VideoPluginError as exc:
        log.warning("no thumbnail for the report summary: %s", exc)
        return None


def _html_extras(
    config: pytest.Config, nodeid: str, summary: dict[str, Any], settings: VideoSettings, video: Path | None
) -> tuple[list[dict[str, Any]], str | None]:
    """pytest-html extras for the video and the metrics JSON (none without pytest-html or ``--html``),
    and the message refusing ``inline`` for a video bigger than the cap on its own (else None).

    Without ``--self-contained-html`` the video is passed as base64, so pytest-html writes it into
    ``assets/`` next to the report and links it relatively (``--video-embed`` does not matter). With
    ``--self-contained-html``, ``link`` (default) links the video relative to the report, and
    ``inline`` embeds it as base64 unless that would take the report's inline videos over the cap
    (checked here for this video alone, and on the controller for the whole report).
    """
    html_path = config.getoption("htmlpath", None)
    if not html_path:
        return [], None
    try:
        from pytest_html import extras
    except ImportError:
        return [], None
    attached: list[dict[str, Any]] = []
    refusal = None
    if video is not None:
        name = f"video: {video.name}"
        if not config.getoption("self_contained_html", False):
            attached.append(extras.video(base64.b64encode(video.read_bytes()).decode("ascii"), name=name))
        else:
            link = relative_link(video, Path(os.path.expandvars(html_path)).expanduser())
            size = video.stat().st_size
            if settings.embed == "inline" and size <= settings.embed_max_bytes:
                extra = extras.video(base64.b64encode(video.read_bytes()).decode("ascii"), name=name)
                extra[INLINE_BYTES_KEY], extra[LINK_KEY] = size, link
                attached.append(extra)
            else:
                if settings.embed == "inline":
                    refusal = inline_refusal(nodeid, size, size, settings.embed_max_bytes, link)
                    log.warning("%s", refusal)
                attached.append(extras.video(link, name=name))
    attached.append(extras.json(summary, name="metrics"))
    return attached, refusal
