"""The plugin loads and works beside pytest-playwright, pytest-benchmark, pytest-cov and pytest-timeout.

pytest-playwright owns ``--video``; this plugin's options are all ``--video-*`` so both load in one
run. The run is a subprocess: pytest-playwright cannot run inside an in-process pytester run (see
the ``conftest.py`` of this folder). Loading pytest-playwright downloads no browser; this test
launches none.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

OTHERS = {
    "pytest_playwright": "pytest-playwright",
    "pytest_benchmark": "pytest-benchmark",
    "pytest_cov": "pytest-cov",
    "pytest_timeout": "pytest-timeout",
    "pytest_html": "pytest-html",
}

SIM_MODULE = """
def step(state):
    return [x * 0.5 + 1.0 for x in state]
"""

TESTS = """
import numpy as np
import pytest
import simmod

@pytest.mark.timeout(120)
@pytest.mark.min_fps(1)
def test_recorded_and_benchmarked(video_recorder, benchmark, browser_name):
    assert browser_name == "chromium"  # pytest-playwright's fixture; no browser is launched
    state = [0.0] * 16
    video_recorder.count_steps(0)
    for i in range(12):
        state = simmod.step(state)
        video_recorder.count_steps(16)
        video_recorder.add_frame(np.full((48, 64, 3), 20 * i, np.uint8), metrics={"x0": state[0]})
    benchmark(simmod.step, state)
"""


def test_loads_with_playwright_benchmark_cov_and_timeout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = [dist for module, dist in OTHERS.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f'not installed: {", ".join(missing)}; install them with: pip install "flyby[test]"')
    monkeypatch.delenv(
        "PYTEST_ADDOPTS", raising=False
    )  # the folder's conftest keeps playwright out in-process
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)  # under an outer -n run, pytest-benchmark would switch off
    pytester.makepyfile(simmod=SIM_MODULE, test_coexist=TESTS)
    report = pytester.path / "report.html"
    result = pytester.runpytest_subprocess(
        "-p", "playwright", "-p", "benchmark", "-p", "pytest_cov", "-p", "timeout",
        "--strict-markers",
        "--video=off",  # pytest-playwright's option ...
        "--video-mode=on", "--video-fps=12",  # ... and ours, side by side
        f"--output={pytester.path / 'playwright-results'}",
        "--browser=chromium",
        "--cov=simmod", "--cov-report=term",
        "--timeout=300",
        "--benchmark-min-rounds=3", "--benchmark-max-time=0.05",
        f"--html={report}",
        timeout=240,
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "video: dir=*, fps=12, mode=on*",
            "plugins: *",
            "*= video thresholds (pytest_video_plugin) =*",
            "test_coexist.py::test_recorded_and_benchmarked[[]chromium[]]: PASS",
            "*simmod.py*100%*",  # pytest-cov measured the module
            "*benchmark: 1 tests*",
        ]
    )
    plugins_line = next(line for line in result.outlines if line.startswith("plugins: "))
    for name in ("playwright", "benchmark", "cov", "timeout", "html", "flyby"):
        assert f"{name}-" in plugins_line, plugins_line
    stem = "test_coexist.py__test_recorded_and_benchmarked_chromium"
    metrics = json.loads((pytester.path / "output" / "metrics" / f"{stem}.json").read_text())
    assert metrics["frames"] == 12 and metrics["video_fps"] == 12 and metrics["verdict"] == "PASS"
    assert (pytester.path / "output" / "videos" / f"{stem}.mp4").is_file()
    assert "Phase gates" not in report.read_text()  # no phase marker here
