"""The plugin's markers, run on generated test files with ``pytester``: thresholds and their failures,
"not measurable here", per-test ``video(...)`` settings and marker validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_video_plugin.markers import MarkerError, Threshold, evaluate, parse_size, verdict
from pytest_video_plugin.metrics import GpuMemoryProbe

#: Helpers for generated tests: ``spin`` counts steps as fast as Python can (millions of steps/s).
HELPERS = """
import numpy as np
import pytest

def spin(video_recorder, batches=50, steps=16):
    video_recorder.count_steps(0)
    for _ in range(batches):
        video_recorder.count_steps(steps)

def frames(video_recorder, n=3):
    for i in range(n):
        video_recorder.add_frame(np.full((48, 64, 3), 40 * i, np.uint8))
"""


def _metrics(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    return json.loads((pytester.path / "output" / "metrics" / f"test_gen.py__{name}.json").read_text())


def _reports(reprec: pytest.HookRecorder, name: str) -> dict[str, pytest.TestReport]:
    return {
        r.when: r for r in reprec.getreports("pytest_runtest_logreport") if r.nodeid.endswith(f"::{name}")
    }


def test_markers_are_registered_with_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.video(mode=None, fps=None, every_n=None, embed=None): per-test video settings*",
            "@pytest.mark.min_fps(value, metric='fps'): fail the test unless*",
            "@pytest.mark.max_vram(size): fail the test when peak GPU memory*",
            "@pytest.mark.max_rss(size): fail the test when the peak host RSS*",
        ]
    )
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.video(fps=10)
@pytest.mark.min_fps(1)
@pytest.mark.max_rss("64 GB")
@pytest.mark.max_vram("20 GB")
def test_all(video_recorder):
    spin(video_recorder)
"""
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_missed_min_fps_fails_the_call_not_the_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(1e12)
def test_slow(video_recorder):
    video_recorder.set_header(backend="unit backend", flight_stack="none", drones=16)
    spin(video_recorder)
    frames(video_recorder)

@pytest.mark.min_fps(1000)
def test_fast(video_recorder):
    spin(video_recorder)
"""
    )
    reprec = pytester.inline_run("--junitxml=junit.xml")
    reprec.assertoutcome(passed=1, failed=1)
    slow = _reports(reprec, "test_slow")
    assert slow["call"].failed and slow["setup"].passed and slow["teardown"].passed
    text = str(slow["call"].longrepr)
    assert "test_gen.py::test_slow missed its threshold(s)" in text
    assert (
        "min_fps(1000000000000.0): fps " in text and "required >= 1,000,000,000,000 steps/s: FAILED" in text
    )
    assert "backend: unit backend; flight stack: none; drones: 16" in text  # the config
    assert "800 steps counted, 800 timed over" in text
    assert (pytester.path / "output" / "videos" / "test_gen.py__test_slow.mp4").is_file()  # evidence kept
    data = _metrics(pytester, "test_slow")
    assert data["verdict"] == "FAIL (min_fps)" and data["thresholds"][0]["status"] == "fail"
    assert data["thresholds"][0]["measured"] == pytest.approx(data["fps"])
    assert _reports(reprec, "test_fast")["call"].passed
    assert _metrics(pytester, "test_fast")["verdict"] == "PASS"
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="verdict" value="FAIL (min_fps)"' in junit


def test_min_fps_without_counted_steps_fails_saying_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(10)
def test_never_counts(video_recorder):
    frames(video_recorder)

@pytest.mark.min_fps(10)
def test_counts_once(video_recorder):
    video_recorder.count_steps(100)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*min_fps(10): no FPS measured: the test never called video_recorder.count_steps;*FAILED",
            "*min_fps(10): no FPS measured: the test counted steps only once*FAILED",
        ]
    )


def test_min_fps_on_a_recorded_metric(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(100, metric="env_steps_per_s")
def test_enough(video_recorder):
    video_recorder.record_metric("env_steps_per_s", 150.0)

@pytest.mark.min_fps(100, metric="env_steps_per_s")
def test_short(video_recorder):
    video_recorder.record_metric("env_steps_per_s", 99.5)

@pytest.mark.min_fps(100, metric="env_steps_per_s")
def test_missing(video_recorder):
    spin(video_recorder)
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*min_fps(100, metric='env_steps_per_s'): env_steps_per_s 99.5, required >= 100: FAILED",
            "*min_fps(100, metric='env_steps_per_s'): metric 'env_steps_per_s' was never recorded*FAILED",
        ]
    )


def test_max_rss_applies_even_without_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen="""
import pytest

@pytest.mark.max_rss("1 MB")
def test_too_big():
    pass

@pytest.mark.max_rss("64GiB")
def test_fits():
    pass
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    # The unit follows the size (MB, or GB once the test process has grown past 1 GB).
    result.stdout.fnmatch_lines(["*max_rss('1 MB'): peak RSS * ?B, required <= 1.0 MB: FAILED"])
    assert _metrics(pytester, "test_fits")["rss_peak_bytes"] > 1e6


def test_max_vram_is_measured_or_reported_not_measurable(pytester: pytest.Pytester) -> None:
    probe = GpuMemoryProbe()
    has_gpu = probe.available
    probe.close()
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.max_vram("2000 GB")
def test_vram(video_recorder):
    spin(video_recorder)
"""
    )
    result = pytester.runpytest("-rP")
    result.assert_outcomes(passed=1)  # never failed for lack of a GPU, never silently passed either
    data = _metrics(pytester, "test_vram")
    (threshold,) = data["thresholds"]
    if has_gpu:
        assert threshold["status"] == "pass" and threshold["measured"] == data["vram_peak_bytes"] > 0
        assert data["verdict"] == "PASS"
        result.stdout.fnmatch_lines(["*max_vram('2000 GB'): peak VRAM on * GB, required <= 2000.00 GB: ok"])
    else:
        assert threshold["status"] == "not measurable" and threshold["measured"] is None
        assert data["verdict"] == "PASS (max_vram not measurable here)"
        result.stdout.fnmatch_lines(
            [
                # the test's own report section (shown here by -rP) ...
                "*- pytest_video_plugin thresholds -*",
                "max_vram('2000 GB'): peak VRAM not measurable here (no GPU); neither passed nor failed",
                # ... and the terminal summary
                "*= video thresholds (pytest_video_plugin) =*",
                "test_gen.py::test_vram: PASS (max_vram not measurable here)",
            ]
        )


def test_threshold_on_an_already_failing_test_adds_a_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(1e12)
def test_broken(video_recorder):
    spin(video_recorder)
    assert 1 == 2, "the test's own failure"
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the test's own failure*", "*missed its threshold(s)*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('max_rss("8 XB")', "@pytest.mark.max_rss('8 XB'): unknown unit 'XB' in '8 XB'; use B, kB, MB, GB*"),
        ('max_vram("lots")', "@pytest.mark.max_vram('lots'): expected a size such as '20 GB'*"),
        ('max_vram("20 GB", "30 GB")', "*expected exactly one size such as '20 GB', got 2"),
        (
            'min_fps(100, metrc="fps")',
            "*min_fps(100, metrc='fps'): unknown keyword argument(s) metrc;*value, metric",
        ),
        ("min_fps()", "@pytest.mark.min_fps(): expected exactly one value (the minimum rate), got 0"),
        ('min_fps("fast")', "*min_fps('fast'): value must be a number > 0, got 'fast'"),
        (
            'video(mode="sometimes")',
            "*video(mode='sometimes'): mode must be one of on, off, retain-on-failure*",
        ),
        ("video(every_n=0)", "*video(every_n=0): every_n must be an int >= 1*"),
        (
            "video(fsp=10)",
            "*video(fsp=10): unknown keyword argument(s) fsp; video accepts mode, embed, fps, every_n",
        ),
        ('video("on")', "*video('on'): takes keyword arguments only*"),
    ],
)
def test_bad_markers_are_usage_errors_naming_the_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        test_gen=f"""
import pytest

@pytest.mark.{marker}
def test_bad(request):
    raise AssertionError("the body must not run")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"pytest_video_plugin usage error: test_gen.py::test_bad: {message}"])
    result.stdout.no_fnmatch_line("*the body must not run*")


def test_video_marker_overrides_cli_and_closest_marker_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
pytestmark = pytest.mark.video(fps=12, every_n=2)

def test_module_level(video_recorder):
    frames(video_recorder, 4)

@pytest.mark.video(fps=30)
def test_function_level(video_recorder):
    frames(video_recorder, 4)

@pytest.mark.video(mode="off")
def test_off(video_recorder):
    frames(video_recorder, 4)
"""
    )
    pytester.runpytest("--video-fps=20", "--video-every-n=3").assert_outcomes(passed=3)
    module = _metrics(pytester, "test_module_level")
    assert (module["video_fps"], module["every_n"], module["frames_recorded"]) == (12, 2, 2)
    function = _metrics(pytester, "test_function_level")
    assert (function["video_fps"], function["every_n"]) == (
        30,
        2,
    )  # fps from the function, every_n from the module
    off = _metrics(pytester, "test_off")
    assert off["video"] is None and off["video_mode"] == "off" and off["frames"] == 4
    assert not (pytester.path / "output" / "videos" / "test_gen.py__test_off.mp4").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20 GB", 20 * 10**9), ("512 MB", 512 * 10**6), ("8GiB", 8 * 2**30), ("1.5gb", 1_500_000_000),
     (4096, 4096), ("100", 100), (" 2 TiB ", 2 * 2**40), ("64 kB", 64_000)],
)  # fmt: skip
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["8 XB", "GB", "", "-1 GB", "0 MB", True, 1.5, None, "1e3 MB"])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_evaluate_and_verdict() -> None:
    summary = {"fps": 1500.0, "steps": 3000, "vram_peak_bytes": None, "vram": "no GPU",
               "rss_peak_bytes": 3 * 10**9, "metrics": {"reward": 0.9}}  # fmt: skip
    fps = evaluate(Threshold("min_fps", 1000.0, "fps", "min_fps(1000)"), summary)
    assert (fps.status, fps.short) == ("pass", "1,500 steps/s (>= 1,000 steps/s)")
    rss = evaluate(Threshold("max_rss", 2e9, "rss_peak_bytes", "max_rss('2 GB')"), summary)
    assert (
        rss.status == "fail" and rss.text == "max_rss('2 GB'): peak RSS 3.00 GB, required <= 2.00 GB: FAILED"
    )
    vram = evaluate(Threshold("max_vram", 2e10, "vram_peak_bytes", "max_vram('20 GB')"), summary)
    assert vram.status == "not measurable" and "not measurable here (no GPU)" in vram.text
    reward = evaluate(Threshold("min_fps", 0.95, "reward", "min_fps(0.95, metric='reward')"), summary)
    assert reward.status == "fail"
    dicts = [fps.as_dict(), vram.as_dict()]
    assert verdict("passed", dicts) == "PASS (max_vram not measurable here)"
    assert verdict("failed", [rss.as_dict()]) == "FAIL (max_rss)"
    assert verdict("skipped", []) == "SKIP" and verdict("passed", []) == "PASS"
    assert issubclass(MarkerError, Exception)


def test_metrics_json_carries_thresholds(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(1)
@pytest.mark.max_rss("64 GB")
def test_ok(video_recorder):
    spin(video_recorder)
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
    data = _metrics(pytester, "test_ok")
    assert [t["source"] for t in data["thresholds"]] == ["min_fps(1)", "max_rss('64 GB')"]
    assert all(t["status"] == "pass" for t in data["thresholds"]) and data["verdict"] == "PASS"


def test_skipped_and_xfailed_tests_are_not_judged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen=HELPERS
        + """
@pytest.mark.min_fps(10)
def test_skips_itself(video_recorder):
    pytest.skip("no simulator here")

@pytest.mark.xfail(reason="known slow", strict=True)
@pytest.mark.min_fps(1e12)
def test_known_slow(video_recorder):
    spin(video_recorder)
    assert False
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(skipped=1, xfailed=1)
    result.stdout.no_fnmatch_line("*FAILED*")
    assert _metrics(pytester, "test_skips_itself")["verdict"] == "SKIP"
