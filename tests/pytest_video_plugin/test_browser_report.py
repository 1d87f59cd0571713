"""Open a pytest-html report with a recorded video in headless Chromium and check that it plays.

Needs Playwright's Python package and a system Chromium (no ``playwright install`` download):
``pip install playwright`` and ``apt-get install -y chromium``. Set ``CHROMIUM_PATH`` to use another
Chromium binary. The screenshot goes to ``output/reports/plugin_report.png`` under the rootdir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

FRAMES, FPS = 30, 15.0
EXPECTED_DURATION_S = FRAMES / FPS
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]

GENERATED_TEST = f"""
import numpy as np
from pytest_video_plugin import Box, Text

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


def _chromium_path() -> str:
    """The Chromium binary to use, or skip the test naming what is missing and how to install it."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        if not Path(configured).is_file():
            pytest.skip(
                f"CHROMIUM_PATH={configured} is not a file: point it at a Chromium binary or unset it"
            )
        return configured
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found is None:
        pytest.skip(
            "chromium not found on PATH or at /usr/bin/chromium: install it with "
            "'apt-get install -y chromium' (Debian/Ubuntu) or set CHROMIUM_PATH to a Chromium binary"
        )
    return found


def test_report_video_plays_in_headless_chromium(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    chromium = _chromium_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason='playwright is not installed: pip install playwright (or pip install "flyby[test]"); '
        "the test uses the system chromium, so 'playwright install' is not needed",
    )
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")

    pytester.makepyfile(test_report_video=GENERATED_TEST)
    report = pytester.path / "report" / "report.html"
    pytester.runpytest(f"--html={report}", f"--video-fps={FPS:g}").assert_outcomes(passed=1)

    screenshot = request.config.rootpath / "output" / "reports" / "plugin_report.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.as_uri())
            page.click("#show_all_details")  # passed tests are collapsed by default
            videos = page.locator("video")
            assert videos.count() == 1, "expected exactly one <video>: pytest-html's player"
            for i in range(videos.count()):
                video = videos.nth(i).element_handle()
                page.wait_for_function("v => v.readyState >= 2", arg=video, timeout=15_000)
                state = video.evaluate(
                    "v => ({src: v.currentSrc, duration: v.duration, error: v.error && v.error.code})"
                )
                assert state["error"] is None, state
                assert "/assets/" in state["src"], state
                assert state["duration"] > 0
                assert state["duration"] == pytest.approx(EXPECTED_DURATION_S, rel=0.10), state
                start = video.evaluate("v => v.currentTime")
                video.evaluate("v => { v.muted = true; return v.play(); }")
                page.wait_for_function(f"v => v.currentTime > {start + 0.3}", arg=video, timeout=10_000)
                video.evaluate("v => v.pause()")
                video.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
