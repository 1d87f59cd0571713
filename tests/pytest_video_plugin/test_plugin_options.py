"""The plugin's options and ini keys, run on generated test files with ``pytester``: video modes,
every-n recording, inline embedding and its cap, precedence, encoder failures, cleanup between runs."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Probe = Callable[[Path], dict[str, Any]]

TESTS = """
import numpy as np
import pytest

def record(video_recorder, n):
    video_recorder.count_steps(0)
    for i in range(n):
        video_recorder.count_steps(4)
        video_recorder.add_frame(np.full((48, 64, 3), (9 * i) % 256, np.uint8), rendered=i % 2 == 0)

def test_passes(video_recorder):
    record(video_recorder, 10)

def test_fails(video_recorder):
    record(video_recorder, 10)
    assert False, "failing on purpose"
"""

#: Frames differ from each other (noise) so the H.264 file grows with their number.
NOISY_TESTS = """
import numpy as np

def record(video_recorder, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        video_recorder.add_frame(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))

def test_a_small(video_recorder):
    record(video_recorder, 2, 0)

def test_b_large(video_recorder):
    record(video_recorder, 40, 1)
"""


def _videos(pytester: pytest.Pytester) -> Path:
    return pytester.path / "output" / "videos"


def _metrics(pytester: pytest.Pytester, name: str, file: str = "test_gen.py") -> dict[str, Any]:
    return json.loads((pytester.path / "output" / "metrics" / f"{file}__{name}.json").read_text())


def test_mode_off_writes_metrics_but_no_video(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest("--video-mode=off").assert_outcomes(passed=1, failed=1)
    assert not _videos(pytester).exists()
    data = _metrics(pytester, "test_passes")
    assert (data["frames"], data["frames_recorded"], data["recording"], data["video"]) == (10, 0, False, None)
    assert data["fps"] > 0 and data["steps"] == 40


def test_retain_on_failure_keeps_only_failing_videos(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest("--video-mode=retain-on-failure", "--junitxml=junit.xml").assert_outcomes(
        passed=1, failed=1
    )
    assert sorted(p.name for p in _videos(pytester).iterdir()) == ["runs", "test_gen.py__test_fails.mp4"]
    (run,) = (_videos(pytester) / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["test_gen.py__test_fails.mp4"]
    assert ffprobe(_videos(pytester) / "test_gen.py__test_fails.mp4")["nb_read_frames"] == 10
    passed = _metrics(pytester, "test_passes")
    assert passed["video"] is None and "retain-on-failure" in passed["video_deleted"]
    assert passed["frames"] == 10  # the metrics stay
    assert _metrics(pytester, "test_fails")["video"].endswith("test_gen.py__test_fails.mp4")
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="video" value="None"' in junit  # the passing test's property no longer names a file


def test_every_n_records_every_nth_frame_and_counts_all(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest("--video-every-n=4", "-k", "passes").assert_outcomes(passed=1)
    info = ffprobe(_videos(pytester) / "test_gen.py__test_passes.mp4")
    assert info["nb_read_frames"] == 3  # frames 1, 5 and 9 of 10
    data = _metrics(pytester, "test_passes")
    assert (data["frames"], data["frames_recorded"], data["every_n"]) == (10, 3, 4)
    assert (data["frames_rendered"], data["frames_skipped"]) == (5, 5)  # counted over all 10


def test_precedence_ini_then_cli_then_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=TESTS
        + """
@pytest.mark.video(fps=30, mode="on")
def test_marked(video_recorder):
    record(video_recorder, 4)
"""
    )
    pytester.makeini("[pytest]\nvideo_fps = 10\nvideo_every_n = 2\nvideo_mode = off\n")
    pytester.runpytest("-k", "passes or marked").assert_outcomes(passed=2)
    ini_only = _metrics(pytester, "test_passes")
    assert (ini_only["video_fps"], ini_only["every_n"], ini_only["video_mode"]) == (10, 2, "off")
    marked = _metrics(pytester, "test_marked")
    assert (marked["video_fps"], marked["every_n"], marked["video_mode"]) == (30, 2, "on")

    pytester.runpytest("-k", "passes or marked", "--video-fps=20", "--video-mode=on").assert_outcomes(
        passed=2
    )
    cli = _metrics(pytester, "test_passes")
    assert (cli["video_fps"], cli["every_n"], cli["video_mode"]) == (20, 2, "on")
    assert _metrics(pytester, "test_marked")["video_fps"] == 30


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (["--video-every-n=0"], "", "*--video-every-n must be an int >= 1 (record every Nth frame), got 0"),
        ([], "video_mode = sometimes", "*ini video_mode must be one of on, off, retain-on-failure*"),
        ([], "video_embed = embedded", "*ini video_embed must be one of link, inline*"),
        (["--video-embed-max-mb=-1"], "", "*--video-embed-max-mb must be a number of megabytes > 0*"),
        ([], "video_fps = fast", "*ini video_fps must be a number > 0 frames/s*"),
    ],
)
def test_bad_option_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    pytester.makepyfile(test_gen=TESTS)
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_inline_embed_under_self_contained_html(pytester: pytest.Pytester, read_report: Any) -> None:
    pytester.makepyfile(test_gen=TESTS)
    report = pytester.path / "report.html"
    pytester.runpytest(
        f"--html={report}", "--self-contained-html", "--video-embed=inline", "-k", "passes"
    ).assert_outcomes(passed=1)
    view = read_report(report)
    (video,) = view.extras("test_gen.py::test_passes", "video")
    assert video["content"].startswith("data:video/mp4;base64,")
    mp4 = (_videos(pytester) / "test_gen.py__test_passes.mp4").read_bytes()
    assert base64.b64decode(video["content"].split(",", 1)[1]) == mp4
    assert "pytest_video_inline_bytes" not in view.text  # private keys never reach the report
    assert not (pytester.path / "assets").exists()


def test_inline_embed_is_refused_above_the_per_report_cap(
    pytester: pytest.Pytester, read_report: Any
) -> None:
    pytester.makepyfile(test_gen=NOISY_TESTS)
    pytester.runpytest().assert_outcomes(passed=2)  # learn the sizes of the two videos
    small = (_videos(pytester) / "test_gen.py__test_a_small.mp4").stat().st_size
    large = (_videos(pytester) / "test_gen.py__test_b_large.mp4").stat().st_size
    assert large > 4 * small, (small, large)
    cap_mb = 2 * small / 1e6  # room for the small video, not for both
    report = pytester.path / "report.html"
    result = pytester.runpytest(
        f"--html={report}", "--self-contained-html", "--video-embed=inline", f"--video-embed-max-mb={cap_mb}",
        "-W", "ignore::UserWarning",  # pytest-html warns about the linked (not inlined) video
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= video thresholds (pytest_video_plugin) =*",
            (
                "--video-embed=inline refused for test_gen.py::test_b_large: its video (*MB) would bring "
                f"this report's inline videos to *MB, above the cap of {cap_mb:g} MB (--video-embed-max-mb "
                "/ ini video_embed_max_mb); linked instead: "
                "./output/videos/runs/*/test_gen.py__test_b_large.mp4.*"
            ),
        ]
    )
    view = read_report(report)
    (small_video,) = view.extras("test_gen.py::test_a_small", "video")
    (large_video,) = view.extras("test_gen.py::test_b_large", "video")
    assert small_video["content"].startswith("data:video/mp4;base64,")
    assert re.fullmatch(
        r"\./output/videos/runs/[^/]+/test_gen\.py__test_b_large\.mp4", large_video["content"]
    )
    assert "inline refused" in view.entry("test_gen.py::test_b_large")["log"]


def test_inline_embed_cap_applies_to_a_single_video_too(pytester: pytest.Pytester, read_report: Any) -> None:
    pytester.makepyfile(test_gen=NOISY_TESTS)
    pytester.makeini("[pytest]\nvideo_embed = inline\nvideo_embed_max_mb = 0.001\n")
    report = pytester.path / "report.html"
    result = pytester.runpytest(
        f"--html={report}", "--self-contained-html", "-k", "large", "-W", "ignore::UserWarning"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["--video-embed=inline refused for test_gen.py::test_b_large*cap of 0.001 MB*"]
    )
    (video,) = read_report(report).extras("test_gen.py::test_b_large", "video")
    assert re.fullmatch(r"\./output/videos/runs/[^/]+/test_gen\.py__test_b_large\.mp4", video["content"])


def test_encoder_failure_fails_the_test_naming_the_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.makeconftest(
        """
import pytest
from videokit.encode import H264Writer
from videokit.errors import VideoEncodeError

@pytest.fixture(autouse=True)
def broken_trailer(monkeypatch):
    def close(self):
        raise VideoEncodeError(
            f"finishing {self.path} failed after 10 frames: [Errno 28] No space left on device"
        )
    monkeypatch.setattr(H264Writer, "close", close)
"""
    )
    result = pytester.runpytest("-k", "passes")
    result.assert_outcomes(failed=1)
    video = f"{_videos(pytester)}/runs/*/test_gen.py__test_passes.mp4"
    result.stdout.fnmatch_lines(
        [f"pytest_video_plugin: finishing {video} failed after 10 frames: *No space left*"]
    )
    (metrics,) = (pytester.path / "output" / "metrics" / "runs").glob("*/test_gen.py__test_passes.json")
    assert json.loads(metrics.read_text())["frames"] == 10  # the metrics JSON is still written
    # a failed recording leaves the latest view alone
    assert not (_videos(pytester) / "test_gen.py__test_passes.mp4").exists()
    assert not (pytester.path / "output" / "metrics" / "test_gen.py__test_passes.json").exists()


def test_encoder_failure_while_recording_names_the_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen="""
import numpy as np

def test_blocked(video_recorder):
    # this run's video file, output/videos/runs/<run id>/<stem>.mp4, is a folder:
    # the encoder cannot open it
    run_id = video_recorder.metrics_path.parent.name
    runs = video_recorder.metrics_path.parents[3] / "videos" / "runs"
    runs.joinpath(run_id, "test_gen.py__test_blocked.mp4").mkdir()
    video_recorder.add_frame(np.zeros((48, 64, 3), np.uint8))
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["E *VideoEncodeError: cannot open *test_gen.py__test_blocked.mp4 for H.264 encoding*"]
    )


def test_a_later_run_deletes_nothing_of_an_earlier_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest("-k", "passes").assert_outcomes(passed=1)
    videos, metrics = _videos(pytester), pytester.path / "output" / "metrics"
    assert (videos / "test_gen.py__test_passes.mp4").is_file()
    (first_run,) = (videos / "runs").iterdir()
    first_files = {p: p.read_bytes() for p in (*first_run.iterdir(), *(metrics / "runs").glob("*/*.json"))}
    (videos / "someone_elses.mp4").write_bytes(b"not ours")
    (metrics / "phase3_scaling.json").write_text("{}")
    pytester.runpytest("-k", "fails").assert_outcomes(failed=1)
    assert sorted(p.name for p in videos.iterdir()) == [
        "runs", "someone_elses.mp4", "test_gen.py__test_fails.mp4", "test_gen.py__test_passes.mp4",
    ]  # fmt: skip
    assert sorted(p.name for p in metrics.iterdir()) == [
        "phase3_scaling.json", "runs", "test_gen.py__test_fails.json", "test_gen.py__test_passes.json",
    ]  # fmt: skip
    assert len(list((videos / "runs").iterdir())) == 2
    assert {p: p.read_bytes() for p in first_files} == first_files  # the first run's files, unchanged
    # --collect-only touches nothing either
    pytester.runpytest("--collect-only")
    assert len(list((videos / "runs").iterdir())) == 2 and (videos / "test_gen.py__test_fails.mp4").is_file()


def test_crashing_test_body_still_finalizes_the_video(pytester: pytest.Pytester, ffprobe: Probe) -> None:
    pytester.makepyfile(
        test_gen=TESTS
        + """
def test_raises(video_recorder):
    record(video_recorder, 5)
    raise RuntimeError("simulator crashed")

def test_exits(video_recorder):
    record(video_recorder, 6)
    raise SystemExit(3)
"""
    )
    result = pytester.runpytest("-k", "raises or exits")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*RuntimeError: simulator crashed*"])
    for name, frames in (("test_raises", 5), ("test_exits", 6)):
        assert ffprobe(_videos(pytester) / f"test_gen.py__{name}.mp4")["nb_read_frames"] == frames
        assert _metrics(pytester, name)["frames"] == frames
