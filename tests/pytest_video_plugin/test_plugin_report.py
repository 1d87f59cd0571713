"""The pytest-html report and pytest-xdist: FPS / VRAM / RSS / verdict columns, the phase-gate
summary with thumbnails, and per-test data riding on the reports from xdist workers."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_video_plugin.markers import NOT_MEASURABLE_NO_GPU

GATE_TESTS = """
import numpy as np
import pytest

def record(video_recorder, n=6):
    video_recorder.set_header(backend="unit backend", flight_stack="none")
    video_recorder.count_steps(0)
    for i in range(n):
        video_recorder.count_steps(16)
        video_recorder.add_frame(np.full((48, 64, 3), 30 * i, np.uint8))

@pytest.mark.phase3
@pytest.mark.min_fps(1)
@pytest.mark.max_vram("2000 GB")
def test_gate_ok(video_recorder):
    record(video_recorder)

@pytest.mark.phase2
@pytest.mark.min_fps(1e12)
def test_gate_slow(video_recorder):
    record(video_recorder)

@pytest.mark.phase1
@pytest.mark.max_rss("8 XB")
def test_gate_bad_marker(video_recorder):
    record(video_recorder)

def test_plain_recording(video_recorder):
    record(video_recorder, 2)

def test_no_recorder():
    pass
"""

MARKERS_INI = "[pytest]\nmarkers =\n    phase1: p1\n    phase2: p2\n    phase3: p3\n"


def _gate_rows(html_text: str) -> dict[str, list[str]]:
    """``{test id: [cells...]}`` of the "Phase gates" table."""
    (table,) = re.findall(r'<div class="pytest-video-gates">(.*?)</div>', html_text, re.DOTALL)
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        rows[cells[1]] = cells
    return rows


def _check_report(report: Path, view: Any, has_gpu_text: bool | None = None) -> None:
    text = view.text
    # columns, before Links
    assert re.search(
        r">FPS</th>\s*<th[^>]*>VRAM</th>\s*<th[^>]*>RSS</th>\s*<th[^>]*>Verdict</th>\s*<th>Links", text
    )
    ok = view.cells("test_gen.py::test_gate_ok")
    assert ok["video_fps"].endswith("steps/s") and ok["video_rss"].endswith(("MB", "GB"))
    assert ok["video_vram"] == NOT_MEASURABLE_NO_GPU or ok["video_vram"].endswith("GB")
    assert ok["video_verdict"] in ("PASS", "PASS (max_vram not measurable here)")
    assert view.cells("test_gen.py::test_gate_slow")["video_verdict"] == "FAIL (min_fps)"
    assert view.cells("test_gen.py::test_plain_recording")["video_verdict"] == "PASS"
    assert view.cells("test_gen.py::test_no_recorder")["video_fps"] == ""
    (setup_row,) = view.data["tests"]["test_gen.py::test_gate_bad_marker"]
    assert '<td class="col-video_verdict">ERROR (setup)</td>' in setup_row["resultsTableRow"]
    # the phase-gate summary at the top: every phase test, none other
    rows = _gate_rows(text)
    assert sorted(rows) == [
        "test_gen.py::test_gate_bad_marker",
        "test_gen.py::test_gate_ok",
        "test_gen.py::test_gate_slow",
    ]
    assert [rows["test_gen.py::test_gate_ok"][0], rows["test_gen.py::test_gate_slow"][0]] == [
        "phase3",
        "phase2",
    ]
    assert rows["test_gen.py::test_gate_ok"][2].startswith("PASS")
    assert (
        "min_fps: " in rows["test_gen.py::test_gate_ok"][3]
        and "steps/s (&gt;= 1.0 steps/s)" in rows["test_gen.py::test_gate_ok"][3]
    )
    assert rows["test_gen.py::test_gate_slow"][2] == "FAIL (min_fps)"
    assert rows["test_gen.py::test_gate_bad_marker"][2] == "ERROR (setup)"
    video_cell = rows["test_gen.py::test_gate_ok"][4]
    # the link names this run's own file, which no later run deletes (not the "latest" view)
    link = re.search(r'href="([^"]+)"', video_cell)
    assert link and re.fullmatch(
        r"\./output/videos/runs/[^/]+/test_gen\.py__test_gate_ok\.mp4", link.group(1)
    ), video_cell
    assert (report.parent / link.group(1)).is_file()
    assert '<img src="data:image/png;base64,' in video_cell
    # the set_header fields, in the order set: what the test ran on
    assert rows["test_gen.py::test_gate_ok"][5] == "backend: unit backend; flight stack: none"
    assert text.index("Phase gates") < text.index('id="results-table"')


def test_html_report_has_columns_and_a_phase_gate_summary(
    pytester: pytest.Pytester, read_report: Any
) -> None:
    pytester.makepyfile(test_gen=GATE_TESTS)
    pytester.makeini(MARKERS_INI)
    report = pytester.path / "report.html"
    pytester.runpytest(f"--html={report}").assert_outcomes(passed=3, failed=1, errors=1)
    _check_report(report, read_report(report))


def test_xdist_two_workers_carry_thresholds_columns_and_summary(
    pytester: pytest.Pytester, read_report: Any
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed: pip install pytest-xdist")
    pytester.makepyfile(test_gen=GATE_TESTS)
    pytester.makeini(MARKERS_INI)
    report = pytester.path / "report.html"
    result = pytester.runpytest("-n", "2", f"--html={report}", "--junitxml=junit.xml", "-p", "no:randomly")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    # the threshold failure happened in a worker and reached the controller as a failed call
    result.stdout.fnmatch_lines(
        [
            (
                "pytest_video_plugin usage error: test_gen.py::test_gate_bad_marker: "
                "@pytest.mark.max_rss('8 XB')*"
            ),
            "pytest_video_plugin: test_gen.py::test_gate_slow missed its threshold(s):",
            "*= video thresholds (pytest_video_plugin) =*",
        ]
    )
    _check_report(report, read_report(report))
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_gate_slow"].iter("property")}
    assert props["verdict"] == "FAIL (min_fps)" and "FAILED" in props["threshold min_fps(1000000000000.0)"]
    # one file per test in one run folder, whichever worker ran it (the controller hands the workers
    # its run id); the run's index is written once, by the controller
    expected = [f"test_gen.py__{n}.mp4" for n in ("test_gate_ok", "test_gate_slow", "test_plain_recording")]
    (run,) = (pytester.path / "output" / "videos" / "runs").iterdir()
    assert sorted(p.name for p in run.iterdir()) == expected
    assert sorted(p.name for p in (pytester.path / "output" / "videos").glob("*.mp4")) == expected
    index = json.loads((pytester.path / "output" / "metrics" / "runs" / run.name / "run.json").read_text())
    assert index["run_id"] == run.name and len(index["files"]) == 6


def test_xdist_auto(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed: pip install pytest-xdist")
    pytester.makepyfile(test_gen=GATE_TESTS)
    pytester.makeini(MARKERS_INI)
    result = pytester.runpytest("-n", "auto", "-k", "ok or plain")
    result.assert_outcomes(passed=2)
    metrics = pytester.path / "output" / "metrics"
    assert json.loads((metrics / "test_gen.py__test_gate_ok.json").read_text())["verdict"].startswith("PASS")
