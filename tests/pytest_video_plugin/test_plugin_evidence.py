"""Run folders, the latest view, ``set_latest_name``, ``--video-prune-keep`` and the SIGTERM handler.

The kill, parallel-run and disk-full scenarios are in ``tests/faults/test_video_evidence.py``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from pytest_video_plugin.evidence import RunFolders, RunLock, new_run_id, prune_runs, publish_latest

TESTS = """
import numpy as np

def test_default_name(video_recorder):
    for i in range(3):
        video_recorder.add_frame(np.full((48, 64, 3), 30 * i, np.uint8))

def test_named(video_recorder):
    video_recorder.set_latest_name("render_skip_validation")
    for i in range(4):
        video_recorder.add_frame(np.full((48, 64, 3), 30 * i, np.uint8))
"""


def _runs(pytester: pytest.Pytester, kind: str = "videos") -> list[str]:
    root = pytester.path / "output" / kind / "runs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_latest_view_uses_set_latest_name_or_the_default_stem(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest().assert_outcomes(passed=2)
    videos, metrics = pytester.path / "output" / "videos", pytester.path / "output" / "metrics"
    (run_id,) = _runs(pytester)
    run_videos = videos / "runs" / run_id
    # the run keeps the test ids' names; the latest view uses the asked-for name
    assert sorted(p.name for p in run_videos.iterdir()) == [
        "test_gen.py__test_default_name.mp4",
        "test_gen.py__test_named.mp4",
    ]
    assert (videos / "render_skip_validation.mp4").samefile(run_videos / "test_gen.py__test_named.mp4")
    assert (videos / "test_gen.py__test_default_name.mp4").samefile(
        run_videos / "test_gen.py__test_default_name.mp4"
    )
    latest = json.loads((metrics / "render_skip_validation.json").read_text())
    assert latest["frames"] == 4 and latest["run_id"] == run_id and latest["verdict"] == "PASS"
    assert latest["video"] == str(run_videos / "test_gen.py__test_named.mp4")
    assert not (videos / "test_gen.py__test_named.mp4").exists()


def test_set_latest_name_with_a_bad_stem_fails_the_test_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gen="""
def test_bad(video_recorder):
    video_recorder.set_latest_name("videos/render.mp4")
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ValueError: set_latest_name(): the latest-view name 'videos/render.mp4' is not a plain file stem*"]
    )


def test_the_same_test_id_twice_in_one_session_keeps_both_videos(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    pytester.runpytest("--keep-duplicates", "test_gen.py", "test_gen.py", "-k", "default").assert_outcomes(
        passed=2
    )
    (run_id,) = _runs(pytester)
    names = sorted(p.name for p in (pytester.path / "output" / "videos" / "runs" / run_id).iterdir())
    assert names == ["test_gen.py__test_default_name-2.mp4", "test_gen.py__test_default_name.mp4"]


def test_prune_only_when_asked_and_never_this_or_a_running_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gen=TESTS)
    for _ in range(3):
        pytester.runpytest("-k", "default").assert_outcomes(passed=1)
    first, second, third = _runs(pytester)
    assert _runs(pytester, "metrics") == [first, second, third]  # no run deletes another by default
    videos, metrics = pytester.path / "output" / "videos", pytester.path / "output" / "metrics"
    running = RunFolders(new_run_id(pid=1), videos, metrics)  # "older" than none: sorts last, held
    lock = RunLock(running)
    lock.acquire()
    try:
        result = pytester.runpytest("-k", "default", "--video-prune-keep=1")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(
            [
                (
                    "pytest_video_plugin: --video-prune-keep=1 deleted 2 earlier run folder(s) "
                    f"under *: {first}, {second}"
                )
            ]
        )
    finally:
        lock.release()
    remaining = _runs(pytester, "metrics")
    assert first not in remaining and second not in remaining
    assert third in remaining and running.run_id in remaining and len(remaining) == 3  # + this session's
    assert _runs(pytester) == sorted(r for r in remaining if r != running.run_id)
    # the latest view keeps its file although the run it came from is gone
    assert (videos / "test_gen.py__test_default_name.mp4").is_file()


@pytest.mark.parametrize("bad", ["-1", "two", "1.5"])
def test_prune_keep_must_be_a_whole_number(pytester: pytest.Pytester, bad: str) -> None:
    pytester.makepyfile(test_gen=TESTS)
    result = pytester.runpytest(f"--video-prune-keep={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--video-prune-keep must be a whole number of earlier runs to keep (>= 0), got '{bad}'*"]
    )


def test_prune_runs_checks_keep() -> None:
    with pytest.raises(ValueError, match="keep must be an int >= 0"):
        prune_runs(Path("v"), Path("m"), -1)


def test_publish_latest_replaces_atomically_and_never_writes_into_the_run_file(tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    run_a.write_bytes(b"run a")
    run_b.write_bytes(b"run b")
    latest = tmp_path / "latest" / "x.mp4"
    publish_latest(run_a, latest)
    publish_latest(run_b, latest)
    assert latest.read_bytes() == b"run b" and run_a.read_bytes() == b"run a"
    assert sorted(p.name for p in latest.parent.iterdir()) == ["x.mp4"]


def test_new_run_ids_sort_by_time_and_name_the_process() -> None:
    import datetime as dt

    early = new_run_id(dt.datetime(2026, 1, 2, 3, 4, 5, 6), pid=7)
    assert early == "20260102T030405.000006Z-7"
    assert early < new_run_id(pid=7) and new_run_id().endswith(f"Z-{os.getpid()}")


def test_sigterm_handler_is_installed_for_the_session_and_restored() -> None:
    from pytest_video_plugin.plugin import SigtermAsInterrupt

    outer = signal.getsignal(signal.SIGTERM)  # this very session's handler (the plugin's own)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        handler = SigtermAsInterrupt()
        handler.pytest_sessionstart(None)  # type: ignore[arg-type]
        installed = signal.getsignal(signal.SIGTERM)
        assert installed is not signal.SIG_DFL
        with pytest.raises(KeyboardInterrupt, match="SIGTERM received"):
            installed(signal.SIGTERM, None)  # type: ignore[operator,misc]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a second SIGTERM ends the process
        handler.pytest_sessionstart(None)  # type: ignore[arg-type]
        handler.pytest_unconfigure(None)  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # someone else's choice is left alone
        SigtermAsInterrupt().pytest_sessionstart(None)  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, outer)
