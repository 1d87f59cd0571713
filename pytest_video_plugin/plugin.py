"""pytest entry point of ``pytest_video_plugin`` (registered as the ``video`` pytest11 plugin).

* options: group "video" with ``--video-dir`` / ini ``video_dir`` and ``--video-fps`` / ini ``video_fps``;
* fixture: ``video_recorder`` (from :mod:`.fixtures`);
* hook: ``pytest_video_draw_overlays`` (spec in :mod:`.hooks`);
* reporting: right after the test body, the recorder is finalized and, for the ``call`` report,
  the video and metrics JSON are attached to pytest-html (when installed and ``--html`` is given)
  and the metrics added to ``user_properties`` (JUnit XML). Everything rides on the report, so it
  works under pytest-xdist, where only the controller writes the HTML report and its assets.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import hooks
from .fixtures import VideoSettings, finish_recording, settings_key, video_recorder  # noqa: F401 - fixture
from .recorder import RecorderResult

log = logging.getLogger(__name__)

DEFAULT_VIDEO_DIR = "output/videos"
DEFAULT_FPS = 15.0


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
        help=f"folder for test videos (MP4); metrics JSON go to DIR/../metrics. "
        f"Default: ini video_dir, else {DEFAULT_VIDEO_DIR} under the rootdir.",
    )
    group.addoption(
        "--video-fps",
        dest="video_fps",
        metavar="FPS",
        type=float,
        default=None,
        help=f"frame rate of recorded videos, frames/s (default: ini video_fps, else {DEFAULT_FPS:g}).",
    )
    parser.addini(
        "video_dir",
        help=f"folder for test videos, relative to the rootdir (default {DEFAULT_VIDEO_DIR}).",
        default=DEFAULT_VIDEO_DIR,
    )
    parser.addini(
        "video_fps",
        help=f"frame rate of recorded videos (default {DEFAULT_FPS:g}).",
        default=str(DEFAULT_FPS),
    )


def resolve_settings(config: pytest.Config) -> VideoSettings:
    """Options > ini > defaults. ``--video-dir`` is relative to the invocation folder, ini to the rootdir.

    Raises:
        pytest.UsageError: the frame rate is not a number > 0.
    """
    cli_dir = config.getoption("video_dir")
    if cli_dir:
        video_dir = Path(config.invocation_params.dir, os.path.expanduser(cli_dir))
    else:
        video_dir = Path(config.rootpath, os.path.expanduser(str(config.getini("video_dir"))))
    raw_fps = config.getoption("video_fps")
    if raw_fps is None:
        raw_fps = config.getini("video_fps")
    try:
        fps = float(raw_fps)
    except (TypeError, ValueError):
        fps = float("nan")
    if not fps > 0:
        raise pytest.UsageError(f"--video-fps / ini video_fps must be a number > 0 frames/s, got {raw_fps!r}")
    return VideoSettings(video_dir=video_dir.resolve(), fps=fps)


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options once per session into ``config.stash``."""
    config.stash[settings_key] = resolve_settings(config)


def pytest_report_header(config: pytest.Config) -> str:
    """One header line: where videos go and at which frame rate."""
    settings = config.stash[settings_key]
    return f"video: dir={settings.video_dir}, fps={settings.fps:g}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """After the test body: finalize the recorder and attach video and metrics to the call report."""
    report = yield
    if report.when != "call":
        return report
    try:
        finished = finish_recording(item)
    except OSError as exc:
        _report_problem(report, f"pytest_video_plugin could not finish the recording: {exc}")
        return report
    if finished is None:
        return report
    result, new_properties = finished
    report.user_properties.extend(new_properties)
    if result.error is not None:
        _report_problem(report, f"pytest_video_plugin: {result.error}")
    html_extras = _html_extras(item.config, result)
    if html_extras:
        report.extras = [*getattr(report, "extras", []), *html_extras]
    return report


def _report_problem(report: pytest.TestReport, message: str) -> None:
    """Fail a passed report with ``message``; for an already failed or skipped one, add a section."""
    log.error("%s", message)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = message
    else:
        report.sections.append(("pytest_video_plugin", message))


def _html_extras(config: pytest.Config, result: RecorderResult) -> list[dict[str, Any]]:
    """pytest-html extras for the video and the metrics JSON; empty without pytest-html or ``--html``.

    The video is passed as base64 so pytest-html writes it into ``assets/`` next to the report and
    links it relatively. With ``--self-contained-html`` the video would become a data URI, which
    makes large reports crash browsers, so there the video is linked relative to the report instead.
    """
    html_path = config.getoption("htmlpath", None)
    if not html_path:
        return []
    try:
        from pytest_html import extras
    except ImportError:
        return []
    attached: list[dict[str, Any]] = []
    if result.video_path is not None:
        if config.getoption("self_contained_html", False):
            content = _relative_link(result.video_path, Path(os.path.expandvars(html_path)).expanduser())
        else:
            content = base64.b64encode(result.video_path.read_bytes()).decode("ascii")
        attached.append(extras.video(content, name=f"video: {result.video_path.name}"))
    attached.append(extras.json(result.summary, name="metrics"))
    return attached


def _relative_link(target: Path, report_path: Path) -> str:
    """Path of ``target`` relative to the report's folder, always starting with ``./`` or ``../``.

    The prefix also keeps pytest-html from mistaking the path for base64 data.
    """
    relative = Path(os.path.relpath(target.resolve(), report_path.resolve().parent)).as_posix()
    return relative if relative.startswith("../") else f"./{relative}"
