"""The plugin knows no host project: header fields are whatever the test sets, and the install
commands in "missing package" messages come from the host's ini (``video_install_hint``,
``video_browser_install_hint``), else ``pip install <package>``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_video_plugin.browser import BrowserUnavailable, play_report_videos
from videokit.encode import H264Writer, require_encoder
from videokit.errors import DependencyNotInstalled, import_optional, install_hint, set_install_hints

HEADER_TESTS = """
import numpy as np
import pytest

@pytest.mark.phase1
@pytest.mark.min_fps(1e12)
def test_site(video_recorder):
    video_recorder.set_header(site="lab 3", operator_name="kim")
    video_recorder.count_steps(0)
    for i in range(3):
        video_recorder.count_steps(4)
        video_recorder.add_frame(np.full((48, 64, 3), 40 * i, np.uint8))
"""

MISSING_AV_TESTS = """
import sys
import numpy as np

def test_without_pyav(video_recorder, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # "import av" now fails, as when it is not installed
    video_recorder.add_frame(np.zeros((48, 64, 3), np.uint8))

def test_without_playwright(monkeypatch, tmp_path):
    from pytest_video_plugin.browser import play_report_videos
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    monkeypatch.setenv("CHROMIUM_PATH", sys.executable)  # any file: the Playwright import is what fails
    play_report_videos(tmp_path / "report.html")
"""


@pytest.fixture
def no_hints() -> object:
    """videokit's defaults for the test (this session's ini sets flyby's commands); restored after."""
    previous = set_install_hints({})
    yield
    set_install_hints(previous)


def test_custom_header_fields_reach_the_json_the_report_and_the_terminal(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    pytester.makepyfile(test_gen=HEADER_TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    phase1: p1\n")
    result = pytester.runpytest("--html=report.html")
    result.assert_outcomes(failed=1)
    data = json.loads((pytester.path / "output" / "metrics" / "test_gen.py__test_site.json").read_text())
    assert list(data["header"].items()) == [("site", "lab 3"), ("operator_name", "kim")]
    assert "backend" not in data and "flight_stack" not in data  # no field is built in
    # the failure message's config line and the terminal summary, in the order set
    out = result.stdout.str()
    assert "config: site: lab 3; operator name: kim; GPU: " in out
    assert "    header: site: lab 3; operator name: kim" in out
    # the "Phase gates" table's last column
    text = (pytester.path / "report.html").read_text(encoding="utf-8")
    (table,) = re.findall(r'<div class="pytest-video-gates">(.*?)</div>', text, re.DOTALL)
    assert "<th>Header</th>" in table
    (row,) = re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]
    assert re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)[-1] == "site: lab 3; operator name: kim"


def test_the_configured_install_hints_name_the_host_projects_command(pytester: pytest.Pytester) -> None:
    before = install_hint("av"), install_hint("playwright")
    pytester.makepyfile(test_gen=MISSING_AV_TESTS)
    pytester.makeini(
        '[pytest]\nvideo_install_hint = pip install "labkit[video]"\n'
        'video_browser_install_hint = pip install "labkit[browser]"\n'
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "DependencyNotInstalled: encoding H.264 video needs the 'av' package" in out
    assert 'Install it with: pip install "labkit[video]"' in out
    assert 'BrowserUnavailable: playwright is not installed: pip install "labkit[browser]"' in out
    errors = [line for line in out.splitlines() if line.startswith("E ")]
    assert errors and not [line for line in errors if "pip install av" in line or "flyby" in line]
    # the inner session put back the hints it found
    assert (install_hint("av"), install_hint("playwright")) == before


def test_without_configured_hints_the_messages_name_the_package(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=MISSING_AV_TESTS)
    pytester.makeini("[pytest]\n")  # no hints: not this repository's pyproject.toml either
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "Install it with: pip install av" in out
    assert "playwright is not installed: pip install playwright;" in out
    assert not [line for line in out.splitlines() if line.startswith("E ") and "flyby" in line]


def test_this_repository_configures_flybys_extras() -> None:
    """pyproject.toml's ini sets flyby's commands for this session (the plugin itself names none)."""
    assert install_hint("av") == 'pip install "flyby[video]"'
    assert install_hint("pynvml") == 'pip install "flyby[video]"'
    assert install_hint("playwright") == 'pip install "flyby[test]"'


def test_import_optional_names_the_default_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_hints: object
) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DependencyNotInstalled, match=r"Install it with: pip install opencv-python-headless$"):
        import_optional("cv2", "drawing video overlays")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(DependencyNotInstalled, match=r"needs the 'av' package .* pip install av$"):
        require_encoder()  # fails before any frame, which flyby relies on for its own message
    writer = H264Writer(tmp_path / "never-written.mp4", fps=10)
    with pytest.raises(DependencyNotInstalled, match=r"pip install av$"):
        writer.write(np.zeros((8, 8, 3), np.uint8))
    assert not (tmp_path / "never-written.mp4").exists()


def test_set_install_hints_replaces_all_and_returns_the_previous(no_hints: object) -> None:
    assert set_install_hints({"av": "  get-av  ", "cv2": None, "psutil": ""}) == {}
    assert install_hint("av") == "get-av" and install_hint("cv2") == "pip install opencv-python-headless"
    assert set_install_hints({}) == {"av": "get-av"}
    assert install_hint("av") == "pip install av"
    assert install_hint("some_module") == "pip install some_module"  # unknown: the import name
    with pytest.raises(TypeError, match=r"got 'av': 3"):
        set_install_hints({"av": 3})  # type: ignore[dict-item]
    assert install_hint("av") == "pip install av"  # a refused call changes nothing


def test_the_browser_check_names_the_configured_playwright_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_hints: object
) -> None:
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    monkeypatch.setenv("CHROMIUM_PATH", sys.executable)
    with pytest.raises(BrowserUnavailable, match=r"^playwright is not installed: pip install playwright;"):
        play_report_videos(tmp_path / "report.html")
    set_install_hints({"playwright": "apt-get install -y python3-playwright"})
    with pytest.raises(BrowserUnavailable, match=r"not installed: apt-get install -y python3-playwright;"):
        play_report_videos(tmp_path / "report.html")
