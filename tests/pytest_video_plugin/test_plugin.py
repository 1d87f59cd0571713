"""End-to-end tests of the pytest integration, run on generated test files with ``pytester``."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Probe = Callable[[Path], dict[str, Any]]

#: A generated test module: ``test_video`` records FRAMES frames of 64x48 with every overlay kind.
VIDEO_TESTS = """
import numpy as np
import pytest
from pytest_video_plugin import Box, Text

FRAMES = {frames}

def record(video_recorder, frames=FRAMES):
    video_recorder.set_header(backend="unit-test backend", flight_stack="none")
    video_recorder.count_steps(0)
    for i in range(frames):
        video_recorder.count_steps(16)
        frame = np.full((48, 64, 3), (7 * i) % 256, np.uint8)
        video_recorder.add_frame(
            frame,
            boxes=[Box(4, 4, 30, 30, label="thing", color=(255, 80, 0), confidence=0.9),
                   Box(6, 6, 32, 32, label="truth", style="dashed")],
            texts=[Text("hello", x=2, y=44)],
            metrics={{"i": i, "reward": 0.5 * i}},
            footer="generated test",
            rendered=i % 2 == 0,
        )

def test_video(video_recorder):
    record(video_recorder)
    video_recorder.record_metric("fps_16_things", video_recorder.fps)
    assert video_recorder.path is not None
"""

STEM = "test_gen.py__test_video"


def _write_tests(pytester: pytest.Pytester, frames: int = 30, extra: str = "") -> None:
    pytester.makepyfile(test_gen=VIDEO_TESTS.format(frames=frames) + extra)


def _video(pytester: pytest.Pytester, stem: str = STEM) -> Path:
    return pytester.path / "output" / "videos" / f"{stem}.mp4"


def _run_video(pytester: pytest.Pytester, stem: str = STEM) -> Path:
    """This run's own file of ``stem`` (``output/videos/runs/<run id>/<stem>.mp4``; one run only)."""
    (found,) = (pytester.path / "output" / "videos" / "runs").glob(f"*/{stem}.mp4")
    return found


def _metrics(pytester: pytest.Pytester, stem: str = STEM) -> dict[str, Any]:
    return json.loads((pytester.path / "output" / "metrics" / f"{stem}.json").read_text())


def _report_data(report: Path) -> dict[str, Any]:
    """The JSON blob pytest-html 4 embeds in report.html and renders with JavaScript."""
    match = re.search(r'data-jsonblob="([^"]*)"', report.read_text(encoding="utf-8"))
    assert match, f"no data-jsonblob in {report}"
    return json.loads(html.unescape(match.group(1)))


def _call_extras(data: dict[str, Any], nodeid: str) -> list[dict[str, Any]]:
    (entry,) = [e for e in data["tests"][nodeid] if f">{nodeid}<" in "".join(e["resultsTableRow"])]
    return entry["extras"]


def test_passing_test_writes_h264_video_with_all_frames(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    _write_tests(pytester, frames=30)
    result = pytester.runpytest("--video-fps=15")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["video: dir=*output*videos, fps=15, mode=on, every_n=1, embed=link*"])
    run_id = _run_video(pytester).parent.name
    result.stdout.fnmatch_lines([f"video: *, run folder runs/{run_id}"])  # where this run's files are
    info = ffprobe(_video(pytester))
    assert info["codec_name"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["nb_read_frames"] == 30
    assert info["format_duration"] == pytest.approx(30 / 15, rel=0.02)
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    assert info["width"] > 64 and info["height"] > 48  # sidebar, header and footer were added


def test_video_fps_option_sets_the_duration(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    _write_tests(pytester, frames=10)
    pytester.makeini("[pytest]\nvideo_fps = 20\nvideo_dir = elsewhere/vids\n")
    pytester.runpytest().assert_outcomes(passed=1)
    video = pytester.path / "elsewhere" / "vids" / f"{STEM}.mp4"
    assert ffprobe(video)["format_duration"] == pytest.approx(10 / 20, rel=0.05)
    assert (pytester.path / "elsewhere" / "metrics" / f"{STEM}.json").is_file()


def test_bad_video_fps_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _write_tests(pytester)
    result = pytester.runpytest("--video-fps=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--video-fps*must be a number > 0*"])


def test_failing_test_still_gets_its_video_and_metrics(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    _write_tests(
        pytester,
        extra="""
def test_fails(video_recorder):
    record(video_recorder, frames=5)
    raise AssertionError("boom after 5 frames")
""",
    )
    result = pytester.runpytest("-k", "test_fails", "--junitxml=junit.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: boom after 5 frames*"])
    stem = "test_gen.py__test_fails"
    assert ffprobe(_video(pytester, stem))["nb_read_frames"] == 5
    assert _metrics(pytester, stem)["frames"] == 5
    testcase = ET.parse(pytester.path / "junit.xml").find(".//testcase")
    assert testcase is not None and testcase.find("failure") is not None


def test_unwritable_video_dir_fails_naming_the_path(pytester: pytest.Pytester) -> None:
    _write_tests(pytester)
    (pytester.path / "blocker").write_text("a file where a folder should be")
    bad_dir = pytester.path / "blocker" / "videos"
    result = pytester.runpytest(f"--video-dir={bad_dir}")
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert f"video folder {bad_dir / 'runs'}" in output and "is not writable" in output
    assert "--video-dir=<writable folder>" in output


def test_metrics_json_and_junit_properties(pytester: pytest.Pytester) -> None:
    _write_tests(
        pytester,
        extra="""
@pytest.mark.phase3
def test_phase(video_recorder):
    record(video_recorder, frames=2)

def test_phase_override(video_recorder):
    video_recorder.set_header(phase="phase9")
    record(video_recorder, frames=2)
""",
    )
    pytester.makeini("[pytest]\nmarkers =\n    phase3: phase 3\n")
    pytester.runpytest("--junitxml=junit.xml").assert_outcomes(passed=3)
    data = _metrics(pytester)
    expected = {
        "fps", "steps", "wall_time_s", "frames", "video", "rss_peak_bytes", "vram_peak_bytes", "vram",
        "metrics", "test", "phase", "header", "started_utc",
    }  # fmt: skip
    assert expected <= set(data)
    assert data["frames"] == 30 and data["steps"] == 30 * 16
    assert data["fps"] > 0 and data["wall_time_s"] > 0
    assert data["fps"] == pytest.approx(data["timed_steps"] / data["wall_time_s"])
    assert data["metrics"]["fps_16_things"] > 0
    assert data["video"] == str(_run_video(pytester))  # the run's own file, not the latest view
    assert _run_video(pytester).samefile(_video(pytester))
    assert data["header"] == {"backend": "unit-test backend", "flight_stack": "none"}
    assert data["test"] == "test_gen.py::test_video"
    assert data["rss_peak_bytes"] > 0
    assert (data["vram_peak_bytes"] is None) == (data["vram"] == "no GPU")
    assert data["phase"] is None
    assert _metrics(pytester, "test_gen.py__test_phase")["phase"] == "phase3"
    assert _metrics(pytester, "test_gen.py__test_phase_override")["phase"] == "phase9"
    case = next(
        c for c in ET.parse(pytester.path / "junit.xml").iter("testcase") if c.get("name") == "test_video"
    )
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(props["fps_16_things"]) > 0
    assert props["frames"] == "30" and props["video"] == str(_run_video(pytester))
    assert props["vram"] == data["vram"]


def test_html_report_has_the_video_in_the_call_extras_as_an_asset(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    _write_tests(pytester, frames=6)
    report = pytester.path / "report" / "report.html"
    pytester.runpytest(f"--html={report}").assert_outcomes(passed=1)
    extras = _call_extras(_report_data(report), "test_gen.py::test_video")
    videos = [e for e in extras if e["format_type"] == "video"]
    assert len(videos) == 1
    link = videos[0]["content"]
    assert link.startswith("assets/") and link.endswith(".mp4"), link
    asset = report.parent / link
    assert asset.read_bytes() == _video(pytester).read_bytes()
    (metrics,) = [e for e in extras if e["format_type"] == "json"]
    assert metrics["content"].startswith("assets/")
    assert json.loads((report.parent / metrics["content"]).read_text())["frames"] == 6
    # one player, pytest-html's own: the plugin adds no second <video> tag
    assert report.read_text(encoding="utf-8").count("<video") == 1


def test_self_contained_html_links_the_video_instead_of_inlining_it(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    _write_tests(pytester, frames=3)
    report = pytester.path / "report.html"
    result = pytester.runpytest(f"--html={report}", "--self-contained-html", "-W", "ignore::UserWarning")
    result.assert_outcomes(passed=1)
    (video,) = [
        e
        for e in _call_extras(_report_data(report), "test_gen.py::test_video")
        if e["format_type"] == "video"
    ]
    run_id = _run_video(pytester).parent.name
    assert video["content"] == f"./output/videos/runs/{run_id}/{STEM}.mp4"
    assert "data:video/mp4" not in report.read_text(encoding="utf-8")


def test_test_without_frames_gets_metrics_but_no_video(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    pytester.makepyfile(
        test_gen="""
def test_video(video_recorder):
    video_recorder.count_steps(0)
    video_recorder.count_steps(10)
    video_recorder.record_metric("answer", 42)

def test_plain():
    pass
"""
    )
    earlier = _video(pytester)
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"the latest video of an earlier run")
    report = pytester.path / "report.html"
    pytester.runpytest(f"--html={report}").assert_outcomes(passed=2)
    # evidence is never deleted: the latest view keeps the earlier video; this run's metrics, report
    # and run folder say there is no video
    assert earlier.read_bytes() == b"the latest video of an earlier run"
    assert _metrics(pytester)["metrics"] == {"answer": 42}
    assert _metrics(pytester)["video"] is None
    formats = [e["format_type"] for e in _call_extras(_report_data(report), "test_gen.py::test_video")]
    assert formats == ["json"]
    assert _call_extras(_report_data(report), "test_gen.py::test_plain") == []
    written = sorted(p.name for p in (pytester.path / "output" / "metrics").iterdir())
    assert written == ["runs", f"{STEM}.json"]
    (run,) = (pytester.path / "output" / "metrics" / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "run.json", f"{STEM}.json"]
    assert list((pytester.path / "output" / "videos" / "runs").glob("*/*")) == []


def test_draw_overlays_hook_runs_after_the_builtins(pytester: pytest.Pytester) -> None:
    av = pytest.importorskip("av")
    _write_tests(pytester, frames=4)
    pytester.makeconftest(
        """
def pytest_video_draw_overlays(frame, annotations, recorder):
    x, y = annotations.origin
    frame[y + 10 : y + 30, x + 40 : x + 60] = (0, 0, 255)  # a blue square over the caller frame
    with open("hook_calls.txt", "a") as f:
        f.write(f"{annotations.index} {annotations.frame_size} {annotations.footer}\\n")
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    calls = (pytester.path / "hook_calls.txt").read_text().splitlines()
    assert calls == [f"{i} (64, 48) generated test" for i in range(1, 5)]
    with av.open(str(_video(pytester))) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    blue = (first[..., 2] > 200) & (first[..., 0] < 60) & (first[..., 1] < 60)  # nothing else is blue
    assert blue.sum() > 200, "the blue square drawn by the conftest hook is not in the video"


def test_keyboard_interrupt_in_the_test_body_still_closes_the_video(
    pytester: pytest.Pytester, ffprobe: Probe
) -> None:
    _write_tests(
        pytester,
        extra="""
def test_interrupted(video_recorder):
    record(video_recorder, frames=5)
    raise KeyboardInterrupt
""",
    )
    result = pytester.runpytest_subprocess("-k", "test_interrupted")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    stem = "test_gen.py__test_interrupted"
    assert ffprobe(_video(pytester, stem))["nb_read_frames"] == 5
    assert _metrics(pytester, stem)["frames"] == 5


def test_tests_without_the_fixture_create_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert not (pytester.path / "output").exists()


def test_works_under_xdist_with_the_report_written_by_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed: pip install pytest-xdist")
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    _write_tests(
        pytester,
        frames=4,
        extra="""
def test_second(video_recorder):
    record(video_recorder, frames=3)
""",
    )
    report = pytester.path / "report.html"
    result = pytester.runpytest("-n", "2", f"--html={report}", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2)
    data = _report_data(report)
    for nodeid, stem in [
        ("test_gen.py::test_video", STEM),
        ("test_gen.py::test_second", "test_gen.py__test_second"),
    ]:
        (video,) = [e for e in _call_extras(data, nodeid) if e["format_type"] == "video"]
        assert (report.parent / video["content"]).read_bytes() == _video(pytester, stem).read_bytes()
    names = {p.get("name") for p in ET.parse(pytester.path / "junit.xml").iter("property")}
    assert {"fps", "frames", "video", "fps_16_things"} <= names


@pytest.mark.parametrize(
    ("nodeid", "stem"),
    [
        (
            "tests/fullstack/test_phase3_multi_drone_throughput.py::test_grid_video",
            "test_phase3_multi_drone_throughput.py__test_grid_video",
        ),
        ("tests/a/test_x.py::TestGroup::test_y[16-320x240]", "test_x.py__TestGroup__test_y_16-320x240"),
        ("test_x.py::test_y", "test_x.py__test_y"),
    ],
)
def test_video_stem_is_readable(nodeid: str, stem: str) -> None:
    from pytest_video_plugin.fixtures import video_stem

    assert video_stem(nodeid) == stem


def test_video_stem_keeps_lossy_ids_apart() -> None:
    from pytest_video_plugin.fixtures import video_stem

    stems = {video_stem(f"test_x.py::test_y[{param}]") for param in ("a/b", "a:b", "a b", "a_b")}
    assert len(stems) == 4
    a = video_stem("test_x.py::test_y[a/b]")
    assert re.fullmatch(r"test_x\.py__test_y_a_b-[0-9a-f]{8}", a)
    long_stem = video_stem("test_x.py::test_" + "z" * 300)
    assert len(long_stem) <= 150 and re.fullmatch(r"[A-Za-z0-9_.-]+", long_stem)
