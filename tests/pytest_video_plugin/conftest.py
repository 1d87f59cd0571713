"""Shared helpers for the pytest_video_plugin tests: pytester and an ffprobe wrapper."""

from __future__ import annotations

import json
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
