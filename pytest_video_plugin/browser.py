"""Check that a report's videos really play, in headless Chromium (Playwright, system Chromium).

Needs Playwright (``pip install playwright``, or the command in the ini key
``video_browser_install_hint``) and a Chromium binary (Debian: ``apt-get install -y chromium``);
``playwright install`` is not needed. ``CHROMIUM_PATH`` selects another binary. This module does
not import pytest: a test turns :class:`BrowserUnavailable` into a skip with its message.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import VideoPluginError, install_hint

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
)


class BrowserUnavailable(VideoPluginError):
    """Chromium or Playwright is missing; the message says what and how to install it."""


@dataclass(frozen=True)
class VideoState:
    """What the browser reports for one ``<video>`` element after loading and playing it."""

    src: str  # currentSrc, as the browser resolved it
    ready_state: int  # HTMLMediaElement.readyState after loading (>= 2: a frame is available)
    duration_s: float  # seconds
    advanced_s: float  # how far currentTime moved after play(), seconds


def chromium_path() -> str:
    """The Chromium binary to use.

    Raises:
        BrowserUnavailable: none found (message names the install command).
    """
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        if not Path(configured).is_file():
            raise BrowserUnavailable(
                f"CHROMIUM_PATH={configured} is not a file: point it at a Chromium binary or unset it"
            )
        return configured
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found is None:
        raise BrowserUnavailable(
            "chromium not found on PATH or at /usr/bin/chromium: install it with "
            "'apt-get install -y chromium' (Debian/Ubuntu) or set CHROMIUM_PATH to a Chromium binary"
        )
    return found


def play_report_videos(
    report: Path,
    *,
    screenshot: Path | None = None,
    play_s: float = 0.3,
    timeout_ms: int = 15_000,
    screenshot_from: str | None = None,
) -> list[VideoState]:
    """Open ``report`` (a pytest-html file), load and play every ``<video>`` with a source.

    Returns the state of each video.

    Expands all result rows first (pytest-html collapses passed tests). Saves a full-page
    screenshot to ``screenshot`` when given; with ``screenshot_from`` (a CSS selector, e.g.
    ``".summary"``) the screenshot starts at the top of that element instead of the page's.

    Raises:
        BrowserUnavailable: Chromium or Playwright is missing.
        RuntimeError: a video reports a media error, or does not load or advance in time.
    """
    chromium = chromium_path()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(
            f"playwright is not installed: {install_hint('playwright')}; "
            "the system chromium is used, so 'playwright install' is not needed"
        ) from exc
    states: list[VideoState] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(Path(report).resolve().as_uri())
            if page.locator("#show_all_details").count():
                page.click("#show_all_details")
            # pytest-html 4.x puts an empty <video> into every row's media template: only those with a
            # source are videos of the report.
            videos = page.locator("video:has(source[src]:not([src=''])), video[src]:not([src=''])")
            for i in range(videos.count()):
                video = videos.nth(i).element_handle()
                try:
                    # Browsers defer media loads on long pages: bring the video into view and ask for it.
                    video.scroll_into_view_if_needed()
                    video.evaluate("v => { if (v.readyState < 2) { v.preload = 'auto'; v.load(); } }")
                    page.wait_for_function("v => v.readyState >= 2 || v.error", arg=video, timeout=timeout_ms)
                    info = video.evaluate(
                        "v => ({src: v.currentSrc, ready: v.readyState, duration: v.duration,"
                        " error: v.error && v.error.code})"
                    )
                    if info["error"] is not None:
                        raise RuntimeError(f"video {info['src']} failed with media error {info['error']}")
                    start = video.evaluate("v => v.currentTime")
                    video.evaluate("v => { v.muted = true; return v.play(); }")
                    page.wait_for_function(
                        f"v => v.currentTime > {start + play_s}", arg=video, timeout=timeout_ms
                    )
                    now = video.evaluate("v => { v.pause(); return v.currentTime; }")
                except PlaywrightError as exc:
                    raise RuntimeError(f"video {i} in {report} did not load or play: {exc}") from exc
                states.append(
                    VideoState(info["src"], int(info["ready"]), float(info["duration"]), now - start)
                )
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.evaluate("window.scrollTo(0, 0)")
                clip = None
                if screenshot_from is not None:
                    box = page.locator(screenshot_from).first.bounding_box()
                    if box is None:
                        raise RuntimeError(f"{screenshot_from!r} is not shown in {report}")
                    root = "document.documentElement"
                    size = page.evaluate(f"[{root}.scrollWidth, {root}.scrollHeight]")
                    clip = {"x": 0, "y": box["y"], "width": size[0], "height": size[1] - box["y"]}
                page.screenshot(path=str(screenshot), full_page=True, clip=clip)
        finally:
            browser.close()
    return states
