"""Open the pipeline report of a synthetic run in headless Chromium: every image loads, the video plays,
and nothing is fetched from outside the report's folder.

Uses the video plugin's browser setup (system Chromium through Playwright, no ``playwright install``):
``pip install playwright`` and ``apt-get install -y chromium``, or ``CHROMIUM_PATH``. The screenshot goes
to ``output/reports/pipeline_report_fake.png`` under the rootdir.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_run import VIDEO_FPS, VIDEO_FRAMES, write_fake_run

from flyby.pipeline.report import write_report
from pytest_video_plugin.browser import CHROMIUM_ARGS, BrowserUnavailable, chromium_path

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000
PLAY_S = 0.3


def _open_report(report: Path, screenshot: Path) -> dict:
    """Load ``report``, play its video; return what the browser says about images, video and requests."""
    try:
        executable = chromium_path()
        from playwright.sync_api import sync_playwright
    except (BrowserUnavailable, ImportError) as exc:
        pytest.skip(
            f"{exc}: install playwright and chromium (apt-get install -y chromium) to run browser checks"
        )
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images, i => ({alt: i.alt, complete: i.complete,"
                " w: i.naturalWidth, h: i.naturalHeight}))"
            )
            video = page.locator("video").element_handle()
            video.scroll_into_view_if_needed()
            video.evaluate("v => { if (v.readyState < 2) { v.preload = 'auto'; v.load(); } }")
            page.wait_for_function("v => v.readyState >= 2 || v.error", arg=video, timeout=TIMEOUT_MS)
            loaded = video.evaluate(
                "v => ({src: v.currentSrc, ready: v.readyState, duration: v.duration,"
                " error: v.error && v.error.code, start: v.currentTime})"
            )
            if loaded["error"] is None:
                video.evaluate("v => v.play()")  # resolves once playback starts; rejects on a media error
                page.wait_for_function(
                    f"v => v.currentTime > {loaded['start'] + PLAY_S} || v.error",
                    arg=video,
                    timeout=TIMEOUT_MS,
                )
            played = video.evaluate(
                "v => { v.pause(); return {now: v.currentTime, error: v.error && v.error.code}; }"
            )
            page.evaluate("window.scrollTo(0, 0)")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {
        "images": images,
        "video": loaded,
        "played": played,
        "requests": requests,
        "failed": failed,
        "errors": errors,
    }


def test_report_images_load_and_video_plays_in_headless_chromium(tmp_path, request):
    run = write_fake_run(tmp_path / "output", "fake")
    report = write_report(run)
    screenshot = request.config.rootpath / "output" / "reports" / "pipeline_report_fake.png"
    seen = _open_report(report, screenshot)

    assert len(seen["images"]) == 3, seen["images"]
    for image in seen["images"]:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0, image

    video, played = seen["video"], seen["played"]
    assert video["error"] is None and played["error"] is None, (video, played)
    assert video["src"].endswith("/fake_report_assets/validation.mp4") and video["ready"] >= 2, video
    assert video["duration"] == pytest.approx(VIDEO_FRAMES / VIDEO_FPS, rel=0.1), video
    assert played["now"] - video["start"] > PLAY_S, played

    assert not seen["failed"] and not seen["errors"], (seen["failed"], seen["errors"])
    outside = [
        u for u in seen["requests"] if not (u.startswith("data:") or u.startswith(report.parent.as_uri()))
    ]
    assert not outside, f"the report fetched something outside its folder: {outside}"
    assert screenshot.stat().st_size > 50_000
