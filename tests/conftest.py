"""Shared fixtures: world seeds, small configs and output folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # the plugin's own tests drive pytest in a sandbox

REPO_ROOT = Path(__file__).resolve().parents[1]
FLIGHT_PROFILES = ("takeoff", "hover", "box", "detection")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--flight-stack",
        choices=("auto", "px4", "cascade"),
        default="auto",
        help="flight stack of the full-fidelity tests (functions check, gates): auto = PX4 SITL when found "
        "(PX4_DIR or px4 on PATH), else the built-in cascade",
    )
    parser.addoption(
        "--backend",
        choices=("auto", "mujoco", "isaac"),
        default="auto",
        help="simulator backend of every test that renders or simulates (sets FLYBY_BACKEND for the "
        "session): auto = FLYBY_BACKEND when set, else Isaac Sim where it runs, else MuJoCo",
    )
    parser.addoption(
        "--flight-profile",
        choices=(*FLIGHT_PROFILES, "all"),
        default="all",
        help="functions-check flight profile to run (default: all). Not --profile: pytest-profiling owns it.",
    )


# A test that times itself, flies PX4 (its lockstep runs at the machine's pace) or drives the MAVLink
# double's clock shares no cores: `make test` runs these `serial` tests alone, after the others ran in
# parallel (pytest-xdist). Marked by folder, by gate marker, and by the fixtures that start PX4.
_SERIAL_MARKERS = ("phase1", "phase2", "phase3", "phase4", "functions_check", "px4")
_SERIAL_FIXTURES = ("px4_binary", "flight_stack")
_SERIAL_FOLDERS = ("fullstack", "px4")


def _is_serial(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(m) for m in _SERIAL_MARKERS):
        return True
    if any(f in getattr(item, "fixturenames", ()) for f in _SERIAL_FIXTURES):
        return True
    return item.path.parent.name in _SERIAL_FOLDERS


def pytest_configure(config: pytest.Config) -> None:
    """``--backend mujoco|isaac`` becomes ``FLYBY_BACKEND`` for this session (and its xdist workers,
    which configure with the same options), so envs, gates and fixtures all build that backend."""
    choice = config.getoption("--backend")
    if choice != "auto":
        os.environ["FLYBY_BACKEND"] = choice


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict, config: pytest.Config) -> None:
    """The report's Environment table (pytest-html via pytest-metadata) names what the tests ran on:
    simulator backend, GPU, the full-fidelity flight stack, the training envs' motion, the kernel."""
    from flyby.utils.stack_info import stack_summary

    metadata.update(stack_summary(None, config.getoption("--flight-stack")))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The same lines at the top of the terminal report."""
    from flyby.utils.stack_info import stack_summary

    return [f"{k}: {v}" for k, v in stack_summary(None, config.getoption("--flight-stack")).items()]


ISAAC_SKIP_REASON = "Isaac Sim not importable: run inside the container (podman/README.md)"


def isaac_sim_importable() -> bool:
    """Whether Isaac Sim's Python package is importable here (inside the container it is)."""
    import importlib.util

    try:
        return importlib.util.find_spec("isaacsim") is not None
    except (ImportError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that must run alone ``serial``; skip ``isaac`` tests where Isaac Sim is not
    importable (they run in the container); deselect functions-check profiles other than
    --flight-profile."""
    no_isaac = None if isaac_sim_importable() else pytest.mark.skip(reason=ISAAC_SKIP_REASON)
    for item in items:
        if _is_serial(item):
            item.add_marker(pytest.mark.serial)
        if no_isaac is not None and item.get_closest_marker("isaac"):
            item.add_marker(no_isaac)
    chosen = config.getoption("--flight-profile")
    if chosen == "all":
        return
    keep, drop = [], []
    for item in items:
        profile = getattr(item, "callspec", None) and item.callspec.params.get("profile")
        (drop if profile is not None and profile != chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


OUTPUT_DIR = REPO_ROOT / "output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """The repo's ``output/`` folder (git-ignored), created on demand."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def flight_stack(request) -> str:
    """``--flight-stack`` resolved: "px4" or "cascade".

    ``px4`` without PX4 skips (fails under FLYBY_REQUIRE_PX4=1).
    """
    from flyby.config.envs import PX4Cfg
    from flyby.envs.px4_env import resolve_flight_stack
    from flyby.errors import PX4Unavailable

    try:
        return resolve_flight_stack(request.config.getoption("--flight-stack"), PX4Cfg()).value
    except PX4Unavailable as exc:
        _px4_missing(exc)


@pytest.fixture(scope="session")
def px4_binary() -> Path:
    """The PX4 SITL binary; tests that need it skip with the build instruction when it is absent.

    ``FLYBY_REQUIRE_PX4=1`` (set by ``.ci/run``, which unpacks ``../shared/px4/``) turns the skip
    into a failure, so CI cannot pass with its PX4 tests silently skipped.
    """
    from flyby.errors import PX4Unavailable
    from flyby.px4.launcher import find_px4

    try:
        return find_px4()[0]
    except PX4Unavailable as exc:
        _px4_missing(exc)


def _px4_missing(exc: Exception):
    if os.environ.get("FLYBY_REQUIRE_PX4") == "1":
        pytest.fail(f"FLYBY_REQUIRE_PX4=1 but PX4 SITL is not usable: {exc}", pytrace=False)
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def world():
    """The default ISR world (seed 0), shared read-only by tests."""
    from flyby.world import generate_world

    return generate_world(seed=0)


@pytest.fixture(scope="session")
def backend_kind() -> str:
    """The simulator backend the tests render with (``--backend``, ``FLYBY_BACKEND`` or automatic)."""
    from flyby.sim.base import select_backend_kind

    return select_backend_kind(os.environ.get("FLYBY_BACKEND") or None).value
