"""PX4Launcher with fake ``px4`` scripts: lookup, command line, log capture, clean and forced stops."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from flyby.errors import PX4Unavailable
from flyby.px4 import launcher as launcher_mod
from flyby.px4.bridge import LockstepBridge
from flyby.px4.launcher import PX4Launcher, find_px4

PRINT_AND_EXIT = """#!/bin/sh
echo "fake px4 $@"
echo "env PX4_SYS_AUTOSTART=$PX4_SYS_AUTOSTART PX4_SIM_MODEL=$PX4_SIM_MODEL"
echo "cwd $(pwd)"
exit 3
"""

# Ignores SIGINT (so only SIGKILL ends it); the ignore is inherited by the sleeps.
HANG = """#!/bin/sh
trap '' INT
echo "FAKE-PX4-HANGING"
while :; do sleep 0.05; done
"""

CLEAN_SIGINT = """#!/bin/sh
trap 'echo "got SIGINT, shutting down"; exit 0' INT
echo "FAKE-PX4-RUNNING"
while :; do sleep 0.05; done
"""


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _wait_exit(launcher: PX4Launcher, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while launcher.poll() is None:
        assert time.monotonic() < deadline, "fake px4 did not exit"
        time.sleep(0.01)
    return launcher.poll()


def _group_alive(pgid: int, timeout_s: float = 2.0) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid`` (Linux /proc), after a short
    grace."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = False
        for stat_path in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat_path.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _wait_for_log(launcher: PX4Launcher, text: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in launcher.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in the log"
        time.sleep(0.01)


@pytest.fixture
def no_px4(monkeypatch, tmp_path):
    """No PX4_DIR and a PATH without px4."""
    monkeypatch.delenv("PX4_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return tmp_path


def test_missing_binary_names_px4_dir(no_px4):
    with pytest.raises(PX4Unavailable, match="PX4_DIR") as info:
        find_px4()
    assert "make px4_sitl_default" in str(info.value)
    with pytest.raises(PX4Unavailable, match="PX4_DIR"):
        PX4Launcher(0, log_dir=no_px4 / "logs").start()


def test_px4_dir_without_build_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PX4_DIR", str(tmp_path / "PX4-Autopilot"))
    with pytest.raises(PX4Unavailable) as info:
        find_px4()
    message = str(info.value)
    assert "PX4_DIR=" in message and "build/px4_sitl_default/bin/px4" in message


def test_fake_on_path_prints_and_exits(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", PRINT_AND_EXIT)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(3, log_dir=tmp / "logs")
    px4.start()
    workdir = px4.workdir
    assert workdir is not None and workdir.is_dir() and not any(workdir.iterdir())  # fresh and empty
    assert _wait_exit(px4) == 3
    log_text = px4.log_path.read_text()
    assert px4.log_path.parent == tmp / "logs" and px4.log_path.name.startswith("px4_3_")
    assert "fake px4 -i 3 -d" in log_text
    assert "env PX4_SYS_AUTOSTART=10016 PX4_SIM_MODEL=none_iris" in log_text
    assert f"cwd {workdir}" in log_text
    assert "exited with code 3" in px4.describe() and str(px4.log_path) in px4.describe()
    assert px4.stop() == 3
    assert px4.stop() is None  # idempotent: nothing left to stop
    assert not workdir.exists()


def test_px4_dir_layout_passes_etc(monkeypatch, tmp_path):
    root = tmp_path / "PX4-Autopilot"
    _script(root / "build/px4_sitl_default/bin/px4", PRINT_AND_EXIT)
    (root / "build/px4_sitl_default/etc").mkdir(parents=True)
    monkeypatch.setenv("PX4_DIR", str(root))
    with PX4Launcher(1, log_dir=tmp_path / "logs") as px4:
        _wait_exit(px4)
        etc = (root / "build/px4_sitl_default/etc").resolve()
        assert px4.command[-4:] == ["-i", "1", "-d", str(etc)]
        assert f"fake px4 -i 1 -d {etc}" in px4.log_path.read_text()


def test_hanging_fake_is_killed_within_bound(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", HANG)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(0, log_dir=tmp / "logs", stop_timeout_s=0.5).start()
    _wait_for_log(px4, "FAKE-PX4-HANGING")
    pid = px4.pid
    t0 = time.monotonic()
    code = px4.stop()
    elapsed = time.monotonic() - t0
    assert code == -9  # SIGKILL after SIGINT was ignored
    assert 0.4 < elapsed < 3.0, f"stop took {elapsed:.2f} s with a 0.5 s bound"
    assert not _group_alive(pid)  # the whole process group is gone, sleeps included


def test_clean_sigint_stop(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", CLEAN_SIGINT)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(0, log_dir=tmp / "logs", stop_timeout_s=5.0).start()
    _wait_for_log(px4, "FAKE-PX4-RUNNING")
    t0 = time.monotonic()
    assert px4.stop() == 0
    assert time.monotonic() - t0 < 2.0
    assert "got SIGINT, shutting down" in px4.log_path.read_text()


def test_stopped_on_exception_and_at_exit(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", CLEAN_SIGINT)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(KeyboardInterrupt), PX4Launcher(0, log_dir=tmp / "logs") as px4:
        _wait_for_log(px4, "FAKE-PX4-RUNNING")
        raise KeyboardInterrupt  # Ctrl-C inside the block
    assert px4.poll() is None and not px4.running  # stopped and forgotten
    left = PX4Launcher(1, log_dir=tmp / "logs").start()
    _wait_for_log(left, "FAKE-PX4-RUNNING")
    pid = left.pid
    launcher_mod.stop_all()  # what atexit runs
    assert not left.running
    assert not _group_alive(pid)


def test_bridge_reports_dead_px4_with_log_path(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", PRINT_AND_EXIT)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with PX4Launcher(0, log_dir=tmp / "logs") as px4, LockstepBridge(0, 0.1, port=0, process=px4) as bridge:
        t0 = time.monotonic()
        with pytest.raises(PX4Unavailable) as info:
            bridge.wait_for_connection(timeout_s=10.0)
        assert time.monotonic() - t0 < 3.0  # noticed the exit, did not sit out the 10 s
        assert str(px4.log_path) in str(info.value) and "exited with code 3" in str(info.value)


_CHILD = """
import os, sys, time
from flyby.px4.launcher import PX4Launcher
px4 = PX4Launcher(0, log_dir=sys.argv[1], stop_timeout_s=2.0)
with px4:
    print(px4.pid, px4.log_path, flush=True)
    if sys.argv[2] == "crash":
        time.sleep(0.3)
        os._exit(1)  # dies without any cleanup: no atexit, no context manager
    while True:
        time.sleep(0.05)
"""


@pytest.mark.parametrize("how", ["ctrl-c", "crash"])
def test_px4_does_not_outlive_flyby(no_px4, monkeypatch, how):
    import signal
    import subprocess
    import sys

    tmp = no_px4
    _script(tmp / "bin" / "px4", CLEAN_SIGINT)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp / "logs"), how], stdout=subprocess.PIPE, text=True
    )
    try:
        pid_text, log_path = child.stdout.readline().split()
        pid = int(pid_text)
        deadline = time.monotonic() + 5.0
        while "FAKE-PX4-RUNNING" not in Path(log_path).read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if how == "ctrl-c":
            child.send_signal(signal.SIGINT)  # KeyboardInterrupt in flyby -> the context manager stops PX4
        child.wait(timeout=10.0)
        assert not _group_alive(pid)
        if how == "ctrl-c":
            assert "got SIGINT, shutting down" in Path(log_path).read_text()  # a clean stop, not a kill
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5.0)


# Writes ULogs where PX4 SITL does (log/<date>/<time>.ulg in its working directory), then waits for SIGINT.
WRITES_ULOGS = """#!/bin/sh
mkdir -p log/2026-01-01
for name in $FAKE_ULOGS; do printf 'ULog-%s' "$name" > "log/2026-01-01/$name.ulg"; done
trap 'exit 0' INT
echo "FAKE-PX4-LOGGING"
while :; do sleep 0.05; done
"""


@pytest.mark.parametrize("names", [["12_00_00"], ["12_00_00", "12_05_00"], []])
def test_ulogs_are_kept_next_to_the_text_log(no_px4, monkeypatch, names):
    tmp = no_px4
    _script(tmp / "bin" / "px4", WRITES_ULOGS)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(4, log_dir=tmp / "logs", extra_env={"FAKE_ULOGS": " ".join(names)}).start()
    _wait_for_log(px4, "FAKE-PX4-LOGGING")
    workdir, text_log = px4.workdir, px4.log_path
    assert px4.stop() == 0
    assert not workdir.exists()  # kept first, then removed
    if len(names) == 1:
        expected = [text_log.with_suffix(".ulg")]
    else:
        expected = [text_log.with_name(f"{text_log.stem}.{n}.ulg") for n in range(1, len(names) + 1)]
    assert px4.ulog_paths == expected
    assert px4.kept_ulogs == ({text_log: expected} if names else {})
    assert [p.read_text() for p in expected] == [f"ULog-{n}" for n in names]  # PX4's order: by time
    px4.start()
    _wait_for_log(px4, "FAKE-PX4-LOGGING")
    px4.stop()
    assert len(px4.ulog_paths) == 2 * len(names)  # every run's ULogs, oldest first
    assert px4.ulog_paths[: len(names)] == expected


def test_ulog_move_across_filesystems_is_a_copy_then_rename(tmp_path, monkeypatch):
    import errno

    source, target = tmp_path / "work" / "a.ulg", tmp_path / "logs" / "px4_0_x.ulg"
    source.parent.mkdir()
    source.write_bytes(b"ULog" * 1000)
    real_replace = os.replace
    calls = []

    def cross_device_once(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) == 1:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(launcher_mod.os, "replace", cross_device_once)
    launcher_mod._move_atomic(source, target)
    assert target.read_bytes() == b"ULog" * 1000 and not source.exists()
    assert (
        calls[1][0].parent == target.parent and calls[1][1] == target
    )  # a temporary file beside it, renamed
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temporary file left


def test_ulog_that_cannot_be_kept_leaves_the_working_directory(no_px4, monkeypatch, caplog):
    tmp = no_px4
    _script(tmp / "bin" / "px4", WRITES_ULOGS)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(5, log_dir=tmp / "logs", extra_env={"FAKE_ULOGS": "12_00_00"}).start()
    _wait_for_log(px4, "FAKE-PX4-LOGGING")
    workdir = px4.workdir

    def fail(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(launcher_mod, "_move_atomic", fail)
    with caplog.at_level("ERROR", logger="flyby.px4.launcher"):
        assert px4.stop() == 0
    assert (workdir / "log/2026-01-01/12_00_00.ulg").is_file()  # not deleted with the directory
    assert "could not keep PX4's ULog" in caplog.text and str(workdir) in caplog.text
    assert px4.ulog_paths == [] and px4.workdir is None
    import shutil

    shutil.rmtree(workdir)


def test_keep_ulogs_false_removes_them_with_the_working_directory(no_px4, monkeypatch):
    tmp = no_px4
    _script(tmp / "bin" / "px4", WRITES_ULOGS)
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    px4 = PX4Launcher(6, log_dir=tmp / "logs", extra_env={"FAKE_ULOGS": "12_00_00"}, keep_ulogs=False).start()
    _wait_for_log(px4, "FAKE-PX4-LOGGING")
    workdir, text_log = px4.workdir, px4.log_path
    assert px4.stop() == 0
    assert not workdir.exists() and px4.ulog_paths == []
    assert text_log.is_file() and not list((tmp / "logs").glob("*.ulg"))  # the text log stays


def test_px4_cpu_pins_instances_round_the_allowed_cpus():
    from flyby.px4.launcher import px4_cpu

    assert px4_cpu(0, {0, 1}) == 1 and px4_cpu(1, {0, 1}) == 0 and px4_cpu(2, {0, 1}) == 1
    assert px4_cpu(0, {2, 5, 7}) == 7 and px4_cpu(1, {2, 5, 7}) == 5
    assert px4_cpu(0, {3}) is None  # one CPU: nothing to gain, PX4 is not pinned
    assert PX4Launcher(0, pin_cpu=False).cpu is None
    assert PX4Launcher(1, cpus={2, 5, 7}).cpu == 5  # from the set given (a flight stack's), not the thread's


def test_shared_cpu_instances_share_a_cpu():
    """The three runs' PX4s land on one CPU (``px4_cpu``); consecutive where spacing would pass 9."""
    from flyby.px4.launcher import px4_cpu, shared_cpu_instances

    for cpus in (2, 3, 4):
        instances = shared_cpu_instances(3, cpus=cpus)
        assert len(set(instances)) == 3
        assert len({px4_cpu(i, set(range(cpus))) for i in instances}) == 1, (cpus, instances)
    assert shared_cpu_instances(3, first=5, cpus=2) == [5, 7, 9]
    assert shared_cpu_instances(3, cpus=16) == [0, 1, 2]  # 0, 16, 32 would pass flyby's last instance, 9
    assert shared_cpu_instances(1) == [0]
