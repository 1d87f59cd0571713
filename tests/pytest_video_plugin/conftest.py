"""Shared helpers for the pytest_video_plugin tests: pytester, an ffprobe wrapper, report readers."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FFPROBE_MISSING = "ffprobe not found on PATH: install FFmpeg (Debian/Ubuntu: apt-get install -y ffmpeg)"


def run_ffprobe(path: Path) -> dict[str, Any]:
    """Decode every frame of ``path`` with ffprobe; return the first video stream's fields plus
    ``format_duration`` (s) and ``moov_first`` (True when the index precedes the media data)."""
    cmd = [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
        "-show_entries", "stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate",
        "-show_entries", "format=duration,format_name", "-of", "json", str(path),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    info = json.loads(out.stdout)
    stream = info["streams"][0]
    stream["nb_read_frames"] = int(stream["nb_read_frames"])
    stream["format_duration"] = float(info["format"]["duration"])
    head = path.read_bytes()[:4096]
    stream["moov_first"] = (
        0 <= head.find(b"moov") < (head.find(b"mdat") if b"mdat" in head else len(head) + 1)
    )
    return stream


@pytest.fixture
def ffprobe() -> Callable[[Path], dict[str, Any]]:
    """:func:`run_ffprobe`, skipping the test when ffprobe is not installed."""
    if shutil.which("ffprobe") is None:
        pytest.skip(FFPROBE_MISSING)
    return run_ffprobe


@pytest.fixture(autouse=True)
def _in_process_runs_without_pytest_playwright(request: pytest.FixtureRequest) -> None:
    """Keep pytest-playwright out of in-process ``pytester.runpytest`` runs.

    pytest-playwright (0.10) wraps every test call in a process-global soft-assertion scope of
    playwright and refuses to nest one (``AssertionError: nested soft assertion scopes are not
    supported``), so a test run in-process inside a test run always fails when it is installed.
    Subprocess runs are unaffected; ``test_coexistence.py`` loads it there on purpose.
    pytester clears ``PYTEST_ADDOPTS`` when it starts, hence it is set after pytester exists.
    """
    if "pytester" not in request.fixturenames or importlib.util.find_spec("pytest_playwright") is None:
        return
    request.getfixturevalue("pytester")
    request.getfixturevalue("monkeypatch").setenv("PYTEST_ADDOPTS", "-p no:playwright")


class ReportView:
    """A pytest-html 4 report: its text and the JSON blob its JavaScript renders."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        match = re.search(r'data-jsonblob="([^"]*)"', self.text)
        assert match, f"no data-jsonblob in {path}"
        self.data: dict[str, Any] = json.loads(html.unescape(match.group(1)))

    def entry(self, nodeid: str) -> dict[str, Any]:
        """The entry of ``nodeid``'s call phase (row cells, extras, log)."""
        (entry,) = [e for e in self.data["tests"][nodeid] if f">{nodeid}<" in "".join(e["resultsTableRow"])]
        return entry

    def cells(self, nodeid: str) -> dict[str, str]:
        """``{column class: cell text}`` of ``nodeid``'s call row, e.g. ``{"video_verdict": "PASS"}``."""
        found = {}
        for cell in self.entry(nodeid)["resultsTableRow"]:
            match = re.match(r'<td class="col-([\w-]+)">(.*)</td>$', cell, re.DOTALL)
            if match:
                found[match.group(1)] = html.unescape(match.group(2))
        return found

    def extras(self, nodeid: str, format_type: str) -> list[dict[str, Any]]:
        return [e for e in self.entry(nodeid)["extras"] if e["format_type"] == format_type]


@pytest.fixture
def read_report() -> Callable[[Path], ReportView]:
    """:class:`ReportView`, skipping the test when pytest-html is not installed."""
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    return ReportView
