"""Same-run floor checks (``video_recorder.check_floor``): the rule, bad input, the recorder without
pytest, and, on generated test files with ``pytester``, the outcome, metrics JSON, terminal summary,
JUnit properties, report row and phase-gate summary for pass / fail / not reachable / mixed."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_plugin_report import _gate_rows  # the "Phase gates" table parser, shared with the report tests

from pytest_video_plugin import NOT_REACHABLE_HERE, FloorCheck, VideoRecorder, judge_floor
from pytest_video_plugin.floors import format_numbers, not_reachable_note
from pytest_video_plugin.markers import verdict

#: The gate's two checks as the Phase 1 test makes them, with the numbers of a slow machine:
#: B 86 steps/s, ceiling 93 steps/s, A 60 steps/s.
FLOOR_TESTS = """
import numpy as np
import pytest

def frames(video_recorder, n=3):
    for i in range(n):
        video_recorder.add_frame(np.full((48, 64, 3), 40 * i, np.uint8))

@pytest.mark.phase1
def test_pass(video_recorder):
    frames(video_recorder)
    video_recorder.check_floor("B steps/s", measured=125.0, floor=120.0, ceiling=130.0, unit="steps/s")

@pytest.mark.phase1
def test_fail(video_recorder):
    frames(video_recorder)
    video_recorder.check_floor("B steps/s", measured=86.0, floor=120.0, ceiling=130.0, unit="steps/s")

@pytest.mark.phase1
def test_not_reachable(video_recorder):
    frames(video_recorder)
    video_recorder.check_floor("B steps/s", measured=86.0, floor=120.0, ceiling=93.0, unit="steps/s")

@pytest.mark.phase1
def test_mixed_not_reachable_and_pass(video_recorder):
    frames(video_recorder)
    b_fps, ceiling_fps, a_fps = 86.0, 93.0, 40.0
    video_recorder.check_floor("B steps/s", measured=b_fps, floor=120.0, ceiling=ceiling_fps, unit="steps/s")
    video_recorder.check_floor(
        "speed-up B/A", measured=b_fps / a_fps, floor=2.0, ceiling=ceiling_fps / a_fps, unit="x"
    )

@pytest.mark.phase1
def test_mixed_not_reachable_and_fail(video_recorder):
    frames(video_recorder)
    b_fps, ceiling_fps, a_fps = 86.0, 93.0, 60.0
    video_recorder.check_floor("B steps/s", measured=b_fps, floor=120.0, ceiling=ceiling_fps, unit="steps/s")
    video_recorder.check_floor("speed-up B/A", measured=1.2, floor=1.5, ceiling=ceiling_fps / a_fps, unit="x")

def test_no_video(video_recorder):
    video_recorder.check_floor("reward", measured=0.5, floor=0.9)
"""

MARKERS_INI = "[pytest]\nmarkers =\n    phase1: p1\n"

NR_TEXT = (
    "B steps/s: not reachable here: floor 120 steps/s, ceiling 93 steps/s measured in this run "
    "(measured 86 steps/s); neither passed nor failed"
)
NR_SHORT = "B steps/s: not reachable here: floor 120 steps/s, ceiling 93 steps/s (measured 86 steps/s)"
NR_VERDICT = "NOT REACHABLE HERE (B steps/s: floor 120, ceiling 93)"


def _metrics(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    return json.loads((pytester.path / "output" / "metrics" / f"test_gen.py__{name}.json").read_text())


def _reports(reprec: pytest.HookRecorder) -> dict[str, pytest.TestReport]:
    return {
        r.nodeid.split("::")[-1]: r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"
    }


# -- the rule ------------------------------------------------------------------------------------


def test_ceiling_below_the_floor_is_not_reachable_with_both_numbers() -> None:
    check = judge_floor("B steps/s", measured=86, floor=120.0, ceiling=93.0, unit="steps/s")
    assert check.verdict == NOT_REACHABLE_HERE and not check.reachable
    assert (check.measured, check.floor, check.ceiling, check.unit) == (86.0, 120.0, 93.0, "steps/s")
    assert check.text == NR_TEXT
    assert check.short == NR_SHORT
    assert not_reachable_note(check.as_dict()) == "B steps/s: floor 120, ceiling 93"


def test_not_reachable_wins_over_the_measured_value() -> None:
    # The floor is never judged against a machine whose own ceiling is below it, even when noise
    # puts the measured value above the ceiling; the text still shows all three numbers.
    check = judge_floor("B steps/s", measured=121.0, floor=120.0, ceiling=93.0, unit="steps/s")
    assert check.verdict == NOT_REACHABLE_HERE and "(measured 121 steps/s)" in check.text


@pytest.mark.parametrize(
    ("measured", "ceiling", "expected"),
    [
        (119.9, 130.0, "fail"),  # the machine could: the code did not
        (120.0, 120.0, "pass"),  # a ceiling equal to the floor is reachable
        (119.0, 120.0, "fail"),
        (125.0, None, "pass"),  # no ceiling: a plain floor
        (86.0, None, "fail"),
    ],
)
def test_reachable_floors_pass_or_fail_on_measured(
    measured: float, ceiling: float | None, expected: str
) -> None:
    check = judge_floor("B steps/s", measured=measured, floor=120.0, ceiling=ceiling, unit="steps/s")
    assert check.verdict == expected and check.reachable
    assert check.text.endswith(": FAILED" if expected == "fail" else ": ok")
    assert ("ceiling" in check.text) == (ceiling is not None)


def test_texts_name_the_check_measured_floor_and_ceiling() -> None:
    fail = judge_floor("B steps/s", measured=86.0, floor=120.0, ceiling=130.0, unit="steps/s")
    assert fail.text == (
        "B steps/s: measured 86 steps/s, floor 120 steps/s, ceiling 130 steps/s in this run: FAILED"
    )
    assert fail.short == "B steps/s: 86 steps/s (floor 120 steps/s, ceiling 130 steps/s)"
    plain = judge_floor("reward", measured=0.5, floor=0.9)
    assert plain.text == "reward: measured 0.5, floor 0.9: FAILED"
    assert plain.short == "reward: 0.5 (floor 0.9)"


def test_unequal_numbers_never_read_alike() -> None:
    assert format_numbers(120.0, 93.37) == ("120", "93.37")
    assert format_numbers(12_345.6, 120.0) == ("12,346", "120")
    assert format_numbers(2.0, 1.99996) == ("2", "1.99996")
    assert format_numbers(2.0, 2.0) == ("2", "2")
    check = judge_floor("speed-up B/A", measured=2.0, floor=2.0, ceiling=1.99996, unit="x")
    assert check.verdict == NOT_REACHABLE_HERE
    assert not_reachable_note(check.as_dict()) == "speed-up B/A: floor 2, ceiling 1.99996"


def test_numpy_scalars_are_accepted() -> None:
    check = judge_floor("n", measured=np.float32(3.5), floor=np.int64(2), ceiling=np.float64(4.0))
    assert check.verdict == "pass" and type(check.measured) is float and type(check.floor) is float


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"measured": math.nan},
            "measured must be a finite real number (int, float or numpy scalar), got float nan",
        ),
        ({"measured": math.inf}, "measured must be a finite real number*got float inf"),
        ({"measured": np.float32("nan")}, "measured must be a finite real number*got float32 *nan*"),
        ({"measured": "86"}, "measured must be a finite real number*got str '86'"),
        ({"measured": None}, "measured must be a finite real number*got NoneType None"),
        ({"measured": True}, "measured must be a finite real number*got bool True"),
        ({"measured": 10**400}, "measured must be a finite real number*got int 1000*"),
        ({"floor": -1.0}, "floor must be a finite real number >= 0*got float -1.0"),
        ({"floor": math.nan}, "floor must be a finite real number >= 0*got float nan"),
        ({"ceiling": -5}, "ceiling must be a finite real number >= 0*got int -5"),
        ({"ceiling": math.inf}, "ceiling must be a finite real number >= 0*got float inf"),
        ({"ceiling": "93"}, "ceiling must be a finite real number >= 0*got str '93'"),
        ({"unit": 3}, "unit must be a single-line str such as 'steps/s' or 'x' ('' for none), got int 3"),
        ({"unit": None}, "unit must be a single-line str*got NoneType None"),
        ({"unit": b"x"}, "unit must be a single-line str*got bytes b'x'"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(kwargs: dict[str, Any], message: str) -> None:
    args = {"measured": 86.0, "floor": 120.0, "ceiling": 93.0, "unit": "steps/s", **kwargs}
    with pytest.raises(ValueError) as excinfo:
        judge_floor("B steps/s", **args)
    text = str(excinfo.value)
    assert text.startswith("check_floor('B steps/s'): ")
    assert re.fullmatch(re.escape(message).replace(r"\*", ".*"), text.split(": ", 1)[1]), text


@pytest.mark.parametrize("name", ["", "  ", None, 3, "two\nlines"])
def test_bad_names_raise_value_error(name: Any) -> None:
    with pytest.raises(ValueError, match=r"check_floor: name must be a non-empty single-line str, got "):
        judge_floor(name, measured=1.0, floor=1.0)


def test_verdict_words() -> None:
    nr = judge_floor("B steps/s", measured=86, floor=120, ceiling=93, unit="steps/s").as_dict()
    nr2 = judge_floor("speed-up B/A", measured=1.4, floor=2, ceiling=1.55, unit="x").as_dict()
    ok = judge_floor("speed-up B/A", measured=2.1, floor=2, ceiling=2.2, unit="x").as_dict()
    bad = judge_floor("speed-up B/A", measured=1.2, floor=1.5, ceiling=1.55, unit="x").as_dict()
    vram = {"kind": "max_vram", "status": "not measurable"}
    min_fps = {"kind": "min_fps", "status": "fail"}
    assert verdict("passed", [], [nr]) == NR_VERDICT
    assert verdict("passed", [], [nr, ok]) == NR_VERDICT
    assert verdict("passed", [], [nr, nr2]) == (
        "NOT REACHABLE HERE (B steps/s: floor 120, ceiling 93; speed-up B/A: floor 2, ceiling 1.55)"
    )
    assert verdict("passed", [], [ok]) == "PASS"
    assert verdict("failed", [], [bad]) == "FAIL (speed-up B/A)"
    assert verdict("failed", [min_fps], [nr, bad]) == f"FAIL (min_fps, speed-up B/A); {NR_VERDICT}"
    assert verdict("failed", [], [nr]) == f"FAIL; {NR_VERDICT}"  # the test failed on its own
    assert verdict("passed", [vram], [nr]) == f"{NR_VERDICT}; max_vram not measurable here"
    assert verdict("skipped", [], [nr]) == "SKIP"


# -- the recorder, without pytest -----------------------------------------------------------------


def test_recorder_keeps_checks_in_the_metrics_json_without_a_video(tmp_path: Path) -> None:
    with VideoRecorder(tmp_path / "run.mp4", metrics_path=tmp_path / "run.json") as rec:
        check = rec.check_floor("B steps/s", measured=86.0, floor=120.0, ceiling=93.0, unit="steps/s")
        rec.check_floor("speed-up B/A", measured=2.2, floor=2.0, unit="x")
        assert isinstance(check, FloorCheck)
        assert [c.name for c in rec.floor_checks] == ["B steps/s", "speed-up B/A"]
        with pytest.raises(ValueError, match=r"check_floor\('B steps/s'\): a check of that name was already"):
            rec.check_floor("B steps/s", measured=130.0, floor=120.0)
        with pytest.raises(ValueError, match="floor must be a finite real number >= 0.*got float -2.0"):
            rec.check_floor("other", measured=1.0, floor=-2.0)
    assert not (tmp_path / "run.mp4").exists()
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["video"] is None
    assert data["floor_checks"] == [
        {"name": "B steps/s", "measured": 86.0, "floor": 120.0, "ceiling": 93.0, "unit": "steps/s",
         "verdict": "not reachable here", "text": NR_TEXT, "short": NR_SHORT},
        {"name": "speed-up B/A", "measured": 2.2, "floor": 2.0, "ceiling": None, "unit": "x",
         "verdict": "pass", "text": "speed-up B/A: measured 2.2 x, floor 2 x: ok",
         "short": "speed-up B/A: 2.2 x (floor 2 x)"},
    ]  # fmt: skip
    with pytest.raises(RuntimeError, match=r"check_floor\(\) called on the video recorder .* after it"):
        rec.check_floor("late", measured=1.0, floor=1.0)


# -- under pytest ---------------------------------------------------------------------------------


def test_outcomes_json_terminal_and_junit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=FLOOR_TESTS)
    pytester.makeini(MARKERS_INI)
    reprec = pytester.inline_run("--junitxml=junit.xml")
    reprec.assertoutcome(passed=3, failed=3)
    calls = _reports(reprec)
    assert {name for name, r in calls.items() if r.passed} == {
        "test_pass", "test_not_reachable", "test_mixed_not_reachable_and_pass",
    }  # fmt: skip

    # A missed floor fails the call after the body: the message names check, measured, floor; the
    # video and the metrics were written first.
    fail_text = str(calls["test_fail"].longrepr)
    assert "pytest_video_plugin: test_gen.py::test_fail missed its floor check(s):" in fail_text
    assert (
        "  B steps/s: measured 86 steps/s, floor 120 steps/s, ceiling 130 steps/s in this run: FAILED"
        in fail_text
    )
    assert (pytester.path / "output" / "videos" / "test_gen.py__test_fail.mp4").is_file()
    mixed_fail = str(calls["test_mixed_not_reachable_and_fail"].longrepr)
    assert "speed-up B/A: measured 1.2 x, floor 1.5 x, ceiling 1.55 x in this run: FAILED" in mixed_fail
    assert f"  {NR_TEXT}" in mixed_fail  # the not-reachable check is listed beside the failure
    assert "reward: measured 0.5, floor 0.9: FAILED" in str(calls["test_no_video"].longrepr)

    # The metrics JSON: every check with its numbers and verdict, and the test's verdict.
    nr = _metrics(pytester, "test_not_reachable")
    assert nr["verdict"] == NR_VERDICT and nr["thresholds"] == []
    (check,) = nr["floor_checks"]
    assert {k: check[k] for k in ("name", "measured", "floor", "ceiling", "unit", "verdict")} == {
        "name": "B steps/s", "measured": 86.0, "floor": 120.0, "ceiling": 93.0, "unit": "steps/s",
        "verdict": "not reachable here",
    }  # fmt: skip
    assert _metrics(pytester, "test_pass")["verdict"] == "PASS"
    assert _metrics(pytester, "test_fail")["verdict"] == "FAIL (B steps/s)"
    mixed = _metrics(pytester, "test_mixed_not_reachable_and_pass")
    assert [c["verdict"] for c in mixed["floor_checks"]] == ["not reachable here", "pass"]
    assert mixed["floor_checks"][1]["ceiling"] == pytest.approx(93.0 / 40.0)
    assert mixed["verdict"] == NR_VERDICT  # never a plain PASS
    assert _metrics(pytester, "test_mixed_not_reachable_and_fail")["verdict"] == (
        f"FAIL (speed-up B/A); {NR_VERDICT}"
    )
    no_video = _metrics(pytester, "test_no_video")
    assert no_video["video"] is None and no_video["floor_checks"][0]["verdict"] == "fail"
    assert not (pytester.path / "output" / "videos" / "test_gen.py__test_no_video.mp4").exists()

    # JUnit XML: one "floor <name>" property per check and the verdict.
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_not_reachable"].iter("property")}
    assert props["floor B steps/s"] == NR_TEXT and props["verdict"] == NR_VERDICT

    # The terminal summary (a fresh run, to read its output).
    result = pytester.runpytest("-rP")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*= video thresholds (pytest_video_plugin) =*",
            "test_gen.py::test_pass: PASS",
            "    B steps/s: measured 125 steps/s, floor 120 steps/s, ceiling 130 steps/s in this run: ok",
            "test_gen.py::test_fail: FAIL (B steps/s)",
            f"test_gen.py::test_not_reachable: {NR_VERDICT}",
            f"    {NR_TEXT}",
            f"test_gen.py::test_mixed_not_reachable_and_pass: {NR_VERDICT}",
            f"    {NR_TEXT}",
            "    speed-up B/A: measured 2.15 x, floor 2 x, ceiling 2.325 x in this run: ok",
        ]
    )
    # ... and the passed test's own report section (-rP) says it too.
    result.stdout.fnmatch_lines(["*- pytest_video_plugin thresholds -*", NR_TEXT])


def test_not_reachable_and_passing_checks_keep_the_exit_code_zero(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=FLOOR_TESTS)
    pytester.makeini(MARKERS_INI)
    result = pytester.runpytest("-k", "test_pass or test_not_reachable or and_pass")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"test_gen.py::test_not_reachable: {NR_VERDICT}"])


def test_report_row_and_phase_gate_summary(pytester: pytest.Pytester, read_report: Any) -> None:
    pytester.makepyfile(test_gen=FLOOR_TESTS)
    pytester.makeini(MARKERS_INI)
    report = pytester.path / "report.html"
    pytester.runpytest(f"--html={report}").assert_outcomes(passed=3, failed=3)
    view = read_report(report)
    nr = view.cells("test_gen.py::test_not_reachable")
    assert nr["video_verdict"] == NR_VERDICT
    assert nr["video_fps"] == NR_SHORT
    mixed = view.cells("test_gen.py::test_mixed_not_reachable_and_pass")
    assert mixed["video_verdict"] == NR_VERDICT
    assert mixed["video_fps"].split("<br>") == [
        NR_SHORT, "speed-up B/A: 2.15 x (floor 2 x, ceiling 2.325 x)",
    ]  # fmt: skip
    assert view.cells("test_gen.py::test_pass")["video_verdict"] == "PASS"
    assert view.cells("test_gen.py::test_fail")["video_verdict"] == "FAIL (B steps/s)"
    no_video = view.cells("test_gen.py::test_no_video")
    assert no_video["video_verdict"] == "FAIL (reward)" and no_video["video_fps"] == "reward: 0.5 (floor 0.9)"

    rows = _gate_rows(view.text)
    assert "test_gen.py::test_no_video" not in rows  # no phase marker, no gate row
    row = rows["test_gen.py::test_not_reachable"]
    assert row[0] == "phase1" and row[2] == NR_VERDICT
    assert row[3] == NR_SHORT  # figure vs threshold: floor, ceiling and measured
    assert 'style="color:#b26a00' in re.search(
        r"<tr><td>phase1</td><td>test_gen.py::test_not_reachable</td>(<td[^>]*>)", view.text
    ).group(1)  # amber, neither the green of PASS nor the red of FAIL
    assert rows["test_gen.py::test_mixed_not_reachable_and_pass"][3].split("<br>")[0] == NR_SHORT
    assert rows["test_gen.py::test_pass"][2] == "PASS"
    assert rows["test_gen.py::test_mixed_not_reachable_and_fail"][2] == f"FAIL (speed-up B/A); {NR_VERDICT}"


def test_xdist_carries_floor_checks_to_the_controller(pytester: pytest.Pytester, read_report: Any) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed: pip install pytest-xdist")
    pytester.makepyfile(test_gen=FLOOR_TESTS)
    pytester.makeini(MARKERS_INI)
    report = pytester.path / "report.html"
    result = pytester.runpytest("-n", "2", f"--html={report}", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines([f"test_gen.py::test_not_reachable: {NR_VERDICT}", f"    {NR_TEXT}"])
    view = read_report(report)
    assert view.cells("test_gen.py::test_not_reachable")["video_verdict"] == NR_VERDICT
    assert _gate_rows(view.text)["test_gen.py::test_not_reachable"][2] == NR_VERDICT


def test_video_mode_off_skipped_failing_and_bad_input(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen="""
import pytest

def test_mode_off(video_recorder):
    video_recorder.check_floor("B steps/s", measured=86.0, floor=120.0, ceiling=93.0, unit="steps/s")

def test_skipped_after_a_missed_floor(video_recorder):
    video_recorder.check_floor("B steps/s", measured=86.0, floor=120.0)
    pytest.skip("no simulator here")

def test_fails_on_its_own(video_recorder):
    video_recorder.check_floor("B steps/s", measured=86.0, floor=120.0, ceiling=93.0, unit="steps/s")
    raise RuntimeError("the test's own failure")

def test_bad_input(video_recorder):
    video_recorder.check_floor("B steps/s", measured=float("nan"), floor=120.0)
"""
    )
    result = pytester.runpytest("--video-mode=off")
    result.assert_outcomes(passed=1, skipped=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "E *RuntimeError: the test's own failure",
            "E *ValueError: check_floor('B steps/s'): measured must be a finite real number*got float nan",
            "test_gen.py::test_mode_off: NOT REACHABLE HERE (B steps/s: floor 120, ceiling 93)",
        ]
    )
    assert _metrics(pytester, "test_mode_off")["verdict"] == NR_VERDICT
    assert _metrics(pytester, "test_skipped_after_a_missed_floor")["verdict"] == "SKIP"
    assert _metrics(pytester, "test_fails_on_its_own")["verdict"] == f"FAIL; {NR_VERDICT}"
    bad = _metrics(pytester, "test_bad_input")  # the error is the test's; its metrics still exist
    assert bad["floor_checks"] == [] and bad["verdict"] == "FAIL"


def test_retain_on_failure_keeps_the_video_of_a_not_reachable_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=FLOOR_TESTS)
    pytester.makeini(MARKERS_INI)
    pytester.runpytest("--video-mode=retain-on-failure", "-k", "test_pass or test_not_reachable or test_fail")
    # test_pass passed: deleted; test_fail failed and test_not_reachable is no PASS: both kept
    videos = sorted(p.name for p in (pytester.path / "output" / "videos").glob("runs/*/*.mp4"))
    assert videos == ["test_gen.py__test_fail.mp4", "test_gen.py__test_not_reachable.mp4"]
    latest = sorted(p.name for p in (pytester.path / "output" / "videos").glob("*.mp4"))
    assert latest == videos
    assert _metrics(pytester, "test_pass")["video_deleted"].startswith("deleted: the test passed")
