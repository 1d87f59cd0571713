"""The gates command's report, checked as a person would: run the Phase 3 gate into a fresh
report, probe its MP4 with ffprobe, and play it from report.html in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pytest_video_plugin.browser import BrowserUnavailable, play_report_videos

pytestmark = pytest.mark.browser


def test_phase3_report_embeds_a_playable_h264_video(tmp_path, output_dir, request):
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not found: install it with 'apt-get install -y ffmpeg'")
    report = tmp_path / "report.html"
    videos = tmp_path / "videos"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/fullstack",
            "-m",
            "phase3 and not slow",  # the gate and its video, not the -m slow scaling rows
            f"--video-dir={videos}",
            f"--html={report}",
            "-q",
        ],
        cwd=request.config.rootpath,
        check=False,  # the return code is asserted below, with the output
        capture_output=True,
        text=True,
        timeout=600,
    )
    # What is checked here is the report and its video, which a gate leaves whatever its verdict. The
    # throughput floor is the Phase 3 gate's own verdict (it runs in this session too): a machine
    # busy elsewhere may miss it here (one CI rehearsal read 9,317 against 10,000 while other work
    # ran) and the report must still embed the video. Any other failure fails this test.
    output = run.stdout[-3000:] + run.stderr[-3000:]
    floor_only = (
        run.returncode == 1
        and "1 failed" in run.stdout
        and "FAIL (min_fps)" in run.stdout
        and "Traceback" not in run.stdout + run.stderr
    )
    assert run.returncode == 0 or floor_only, output

    # The run's own file, and the people's latest view under the seed plan's name (the same bytes).
    (mp4,) = videos.glob("runs/*/*phase3*.mp4")
    latest = videos / "multi_drone_grid.mp4"
    assert latest.is_file() and latest.read_bytes() == mp4.read_bytes(), sorted(videos.rglob("*.mp4"))
    probe = json.loads(
        subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,pix_fmt,width,height:format=duration",
                "-of",
                "json",
                str(mp4),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p"), stream
    duration = float(probe["format"]["duration"])
    assert duration > 2.0, f"video is only {duration:.2f} s"

    html = report.read_text()
    assert "test_phase3_multi_drone_throughput" in html
    try:
        states = play_report_videos(report, screenshot=output_dir / "reports" / "gate_report.png")
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    assert len(states) == 1, states
    (state,) = states
    assert state.ready_state >= 2 and state.duration_s == pytest.approx(duration, rel=0.10), state
    assert state.advanced_s > 0.3
