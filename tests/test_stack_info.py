"""What flyby runs on, in words (flyby.utils.stack_info): `flyby info`, the report's Environment table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flyby.errors import ConfigError
from flyby.utils import stack_info


def test_mujoco_line_names_the_version_and_gl_platform(monkeypatch):
    monkeypatch.delenv("FLYBY_BACKEND", raising=False)
    line = stack_info.backend_summary("mujoco")
    assert line.startswith("MuJoCo ") and "offscreen" in line


def test_isaac_line_says_where_it_runs(monkeypatch):
    line = stack_info.backend_summary("isaac")
    assert "Isaac Sim" in line
    if "not importable" in line:  # here; inside the container the version shows instead
        assert "podman/README.md" in line
    with pytest.raises(ConfigError, match="allowed: mujoco, isaac"):
        stack_info.backend_summary("physx")


def test_isaac_line_reads_the_version_file_and_renderer(monkeypatch, tmp_path):
    """Inside the container Isaac Sim's version is in $ISAAC_PATH/VERSION (no pip metadata)."""
    (tmp_path / "VERSION").write_text("5.1.0-rc.19\n")
    monkeypatch.setenv("ISAAC_PATH", str(tmp_path))
    monkeypatch.setenv("FLYBY_ISAAC_RENDERER", "PathTracing")
    line = stack_info.backend_summary("isaac")
    assert line == "Isaac Sim 5.1.0-rc.19 (PathTracing, RTX)"


def test_flight_stack_line_follows_px4(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("PX4_DIR", raising=False)
    assert stack_info.flight_stack_summary("auto").endswith("(PX4 SITL not found)")
    assert stack_info.flight_stack_summary("px4").startswith("PX4 SITL requested but not found: ")
    assert "(--flight-stack cascade)" in stack_info.flight_stack_summary("cascade")
    fake = tmp_path / "build" / "px4_sitl_default" / "bin" / "px4"  # the layout PX4_DIR points into
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PX4_DIR", str(tmp_path))
    line = stack_info.flight_stack_summary("auto")
    assert line.startswith("PX4 SITL (lockstep over MAVLink), ") and str(fake) in line and "PX4_DIR" in line


def test_summary_keys_in_order():
    keys = list(stack_info.stack_summary(None, "cascade"))
    assert keys == [
        "Simulator backend",
        "GPU",
        "Flight stack (PX4ISR-v0)",
        "Motion (DirectISR-v0, MultiDroneISR-v0)",
        "Kernel (FLYBY_KERNEL)",
    ]


def test_the_report_environment_table_names_the_stack(tmp_path):
    """A pytest-html report of this suite carries the lines in its Environment table."""
    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "report.html"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", f"{Path(__file__).name}::test_summary_keys_in_order", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", f"--html={report}", "--self-contained-html",
         "--flight-stack", "cascade"],
        cwd=root / "tests", capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    html = report.read_text()
    for needle in ("Simulator backend", "MuJoCo", "Flight stack (PX4ISR-v0)", "built-in cascade", "Kernel"):
        assert needle in html, needle
