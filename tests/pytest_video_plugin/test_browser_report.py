"""Open a pytest-html report with a recorded video in headless Chromium and check that it plays.

Needs Playwright's Python package and a system Chromium (no ``playwright install`` download):
``pip install playwright`` and ``apt-get install -y chromium``. Set ``CHROMIUM_PATH`` to use another
Chromium binary. The screenshots go to ``output/reports/plugin_report_{link,inline}.png`` under the
rootdir.
"""

from __future__ import annotations

import pytest

from pytest_video_plugin.browser import BrowserUnavailable, play_report_videos

pytestmark = pytest.mark.browser

FRAMES, FPS = 30, 15.0
EXPECTED_DURATION_S = FRAMES / FPS
GENERATED_TEST = f"""
import numpy as np
import pytest
from pytest_video_plugin import Box, Text

@pytest.mark.phase1
@pytest.mark.min_fps(1)
@pytest.mark.max_vram("20 GB")
def test_moving_square(video_recorder):
    video_recorder.set_header(backend="synthetic frames", flight_stack="none")
    video_recorder.count_steps(0)
    for i in range({FRAMES}):
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:, :, 2] = np.linspace(40, 160, 320, dtype=np.uint8)[None, :]
        x = 20 + 8 * i
        frame[100:140, x : x + 40] = (240, 200, 40)
        video_recorder.count_steps(16)
        video_recorder.add_frame(
            frame,
            boxes=[Box(x, 100, x + 40, 140, label="square", color=(255, 80, 0), confidence=0.95),
                   Box(x - 2, 98, x + 42, 142, label="truth", color=(0, 255, 0), style="dashed")],
            texts=[Text(f"t={{i / {FPS}:.2f}} s", x=5, y=15)],
            metrics={{"frame": i, "x_px": x}},
            footer="browser playback check",
        )
"""


@pytest.mark.parametrize("embed", ["link", "inline"])
def test_report_video_plays_in_headless_chromium(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, embed: str
) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    pytester.makepyfile(test_report_video=GENERATED_TEST)
    pytester.makeini("[pytest]\nmarkers =\n    phase1: phase 1 gate\n")
    report = pytester.path / "report" / "report.html"
    embed_args = ["--self-contained-html", "--video-embed=inline"] if embed == "inline" else []
    pytester.runpytest(f"--html={report}", f"--video-fps={FPS:g}", *embed_args).assert_outcomes(passed=1)
    assert "Phase gates" in report.read_text(encoding="utf-8")

    screenshot = request.config.rootpath / "output" / "reports" / f"plugin_report_{embed}.png"
    try:
        states = play_report_videos(report, screenshot=screenshot)
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    assert len(states) == 1, "expected exactly one <video>: pytest-html's player"
    (state,) = states
    if embed == "inline":
        assert state.src.startswith("data:video/mp4;base64,"), state.src[:60]
    else:
        assert "/assets/" in state.src, state
    assert state.ready_state >= 2 and state.duration_s > 0
    assert state.duration_s == pytest.approx(EXPECTED_DURATION_S, rel=0.10), state
    assert state.advanced_s > 0.3, state
    assert screenshot.stat().st_size > 10_000
