"""Video evidence survives kills, reruns, parallel runs and a full disk (pytest_video_plugin).

- SIGKILL mid-recording (an OOM kill, a hard CI cancel): the run's MP4 is a fragmented MP4 that
  decodes and holds every frame but at most one second of video; the metrics JSON exists and holds
  the metric recorded early. The previous run's video and the latest view are untouched.
- SIGTERM mid-recording (``timeout``, a CI cancel): pytest stops as on Ctrl-C, the video is finished
  as a ``+faststart`` MP4 holding every frame, and the metrics JSON says "finished".
- Both files play in headless Chromium (the fragmented one and the faststart one).
- Two sessions of the same test id at once: each ends with its own playable video, and each
  report's "Phase gates" link names that session's own file.
- A second session (``make gates`` then ``make test``) deletes nothing the first report links.
- A full disk while recording (``OSError(ENOSPC)`` injected into the muxer, then into every metrics
  write): the test is FAILED once (no ERROR), names the file and the error, leaves no partial MP4 and
  no temporary file, and the previous run's files and the latest view are byte for byte as they were.

The kill tests run pytest in a subprocess on a generated test that records tiny frames in a loop
and reports its progress in a side file; the parent waits for a known number of frames (polling that
file, no fixed sleep) before it sends the signal.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from videokit.encode import top_level_boxes

FFPROBE_MISSING = "ffprobe not found on PATH: install FFmpeg (Debian/Ubuntu: apt-get install -y ffmpeg)"
#: Video frame rate of the generated recordings; "one second of video" is this many frames.
FPS = 30
#: Frames the subprocess must have recorded before the parent kills it (3 s of video).
FRAMES_BEFORE_KILL = 3 * FPS
STEM = "test_rec.py__test_records_until_killed"
#: Plugins the subprocess runs do not need (faster start; pytest-playwright wraps every test call).
QUIET_PLUGINS = ["-p", "no:cacheprovider", "-p", "no:playwright", "-p", "no:cov", "-p", "no:benchmark"]

RECORDING_TEST = """
import os
import time
from pathlib import Path

import numpy as np

PROGRESS = Path(os.environ["VIDEO_EVIDENCE_PROGRESS"])


def _progress(frames):
    tmp = PROGRESS.with_name(PROGRESS.name + ".tmp")
    tmp.write_text(str(frames))
    os.replace(tmp, PROGRESS)


def test_records_until_killed(video_recorder):
    video_recorder.record_metric("early", 42)
    deadline = time.monotonic() + 60  # the parent kills it long before; never run forever
    frames = 0
    while time.monotonic() < deadline:
        video_recorder.add_frame(np.full((48, 64, 3), (5 * frames) % 256, np.uint8))
        frames += 1
        _progress(frames)
"""


def _ffprobe_frames(path: Path) -> int:
    """Frames ffprobe decodes from ``path`` (0 when it cannot open it, e.g. the 48-byte MP4 of old)."""
    cmd = [
        "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
        "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    text = out.stdout.strip().rstrip(",")
    return int(text) if out.returncode == 0 and text.isdigit() else 0


@pytest.fixture(scope="module")
def ffprobe_available() -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip(FFPROBE_MISSING)


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} under {folder}, found {found}"
    return found[0]


@dataclass
class KilledRun:
    """What a recording subprocess left behind after a signal."""

    root: Path
    returncode: int
    output: str
    frames_handed: int  # frames add_frame had returned for before the signal (the side file)
    video: Path  # this run's file, output/videos/runs/<run id>/<stem>.mp4
    metrics: dict[str, Any]  # this run's metrics JSON
    earlier: dict[Path, bytes]  # files of an earlier run and the latest view, before this run

    def earlier_untouched(self) -> bool:
        return all(p.is_file() and p.read_bytes() == data for p, data in self.earlier.items())


def _record_and_signal(root: Path, sig: signal.Signals) -> KilledRun:
    """Run the recording test in a pytest subprocess, wait for FRAMES_BEFORE_KILL frames, send ``sig``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_rec.py").write_text(RECORDING_TEST)
    # an earlier run's evidence of the same test, and its latest view: nothing may touch them
    videos, metrics_dir = root / "output" / "videos", root / "output" / "metrics"
    earlier = {
        videos / "runs" / "20200101T000000.000000Z-1" / f"{STEM}.mp4": b"an earlier run's video",
        metrics_dir / "runs" / "20200101T000000.000000Z-1" / f"{STEM}.json": b'{"earlier": true}',
        videos / f"{STEM}.mp4": b"the latest view of the earlier run",
    }
    for path, data in earlier.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    progress = root / "progress.txt"
    env = {**os.environ, "VIDEO_EVIDENCE_PROGRESS": str(progress), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", *QUIET_PLUGINS, f"--video-fps={FPS}", "test_rec.py"]
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # await the event "FRAMES_BEFORE_KILL frames recorded" by polling the side file
            if progress.is_file() and int(progress.read_text() or 0) >= FRAMES_BEFORE_KILL:
                break
            if proc.poll() is not None:
                pytest.fail(
                    f"the recording subprocess ended early ({proc.returncode}):\n{proc.stdout.read()}"
                )
            assert time.monotonic() < deadline, "the recording subprocess never reached its frames"
            time.sleep(0.01)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    video = _only(videos, f"runs/2*Z-{proc.pid}/{STEM}.mp4")
    metrics = json.loads(_only(metrics_dir, f"runs/2*Z-{proc.pid}/{STEM}.json").read_text())
    leftovers = [p for p in root.rglob("*.tmp") if p.name != "progress.txt.tmp"]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    return KilledRun(root, proc.returncode, output, int(progress.read_text()), video, metrics, earlier)


@pytest.fixture(scope="module")
def sigkilled(tmp_path_factory: pytest.TempPathFactory, ffprobe_available: None) -> KilledRun:
    return _record_and_signal(tmp_path_factory.mktemp("sigkill"), signal.SIGKILL)


@pytest.fixture(scope="module")
def sigtermed(tmp_path_factory: pytest.TempPathFactory, ffprobe_available: None) -> KilledRun:
    return _record_and_signal(tmp_path_factory.mktemp("sigterm"), signal.SIGTERM)


def test_sigkill_leaves_a_playable_video_missing_at_most_one_second(sigkilled: KilledRun) -> None:
    run = sigkilled
    assert run.returncode == -signal.SIGKILL
    decoded = _ffprobe_frames(run.video)
    assert decoded >= run.frames_handed - FPS, (
        f"{run.video} decodes {decoded} frames of the {run.frames_handed} recorded before SIGKILL: "
        f"more than one second ({FPS} frames) lost"
    )
    assert decoded <= run.frames_handed + 1
    assert "moof" in top_level_boxes(run.video)  # the fragmented recording, as it was when killed


def test_sigkill_keeps_the_metrics_written_so_far(sigkilled: KilledRun) -> None:
    assert sigkilled.metrics["metrics"] == {"early": 42}
    assert sigkilled.metrics["state"] == "recording"  # says the process never finished
    assert sigkilled.metrics["test"] == "test_rec.py::test_records_until_killed"


def test_sigkill_deletes_nothing_of_an_earlier_run(sigkilled: KilledRun) -> None:
    assert sigkilled.earlier_untouched()


def test_sigterm_finishes_the_video_as_faststart_and_writes_the_metrics(sigtermed: KilledRun) -> None:
    run = sigtermed
    assert run.returncode == pytest.ExitCode.INTERRUPTED, run.output
    assert "SIGTERM received" in run.output, run.output
    boxes = top_level_boxes(run.video)
    assert "moof" not in boxes and boxes.index("moov") < boxes.index("mdat"), boxes  # +faststart
    decoded = _ffprobe_frames(run.video)
    assert run.frames_handed <= decoded <= run.frames_handed + 1
    assert run.metrics["state"] == "finished"
    assert run.metrics["metrics"] == {"early": 42}
    assert run.metrics["frames"] == decoded
    # the latest view now shows this run's finished video; the earlier run's own files are untouched
    assert (run.root / "output" / "videos" / f"{STEM}.mp4").samefile(run.video)
    for path, data in run.earlier.items():
        if "runs" in path.parts:
            assert path.read_bytes() == data


@pytest.mark.browser
def test_fragmented_and_faststart_videos_play_in_headless_chromium(
    sigkilled: KilledRun, sigtermed: KilledRun, tmp_path: Path
) -> None:
    from pytest_video_plugin.browser import BrowserUnavailable, play_report_videos

    page = tmp_path / "page.html"
    page.write_text(
        "<html><body>"
        f'<video src="{sigkilled.video.as_uri()}"></video><video src="{sigtermed.video.as_uri()}"></video>'
        "</body></html>"
    )
    try:
        states = play_report_videos(page)
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    assert [Path(s.src).name for s in states] == [STEM + ".mp4"] * 2
    for state, run in zip(states, (sigkilled, sigtermed)):
        assert state.ready_state >= 2 and state.advanced_s > 0.2, state
        assert state.duration_s == pytest.approx(_ffprobe_frames(run.video) / FPS, abs=0.2), state


# ------------------------------------------------------------------ parallel and later runs

PARALLEL_TEST = """
import os
import time
from pathlib import Path

import numpy as np
import pytest

MEETING = Path(os.environ["VIDEO_EVIDENCE_MEETING"])


@pytest.mark.phase1
def test_same_id(video_recorder):
    for i in range(10):
        video_recorder.add_frame(np.full((48, 64, 3), 20 * i, np.uint8))
    (MEETING / f"recording-{os.getpid()}").touch()
    deadline = time.monotonic() + 30
    while len(list(MEETING.glob("recording-*"))) < 2:  # both sessions are recording now
        assert time.monotonic() < deadline, "the other session never started recording"
        time.sleep(0.01)
    for i in range(20):
        video_recorder.add_frame(np.full((48, 64, 3), 10 * i, np.uint8))
"""


def _gate_link(report: Path) -> Path:
    """The file the report's "Phase gates" video cell links, resolved against the report's folder."""
    text = report.read_text(encoding="utf-8")
    gates = text[text.index('class="pytest-video-gates"') :]
    match = re.search(r'<a href="([^"]+)"', gates)
    assert match, f"no video link in the Phase gates table of {report}"
    return (report.parent / html.unescape(match.group(1))).resolve()


def test_two_sessions_of_the_same_test_at_once_keep_their_own_videos_and_links(
    tmp_path: Path, ffprobe_available: None
) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    phase1: phase 1 gate\n")
    (tmp_path / "test_par.py").write_text(PARALLEL_TEST)
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    env = {**os.environ, "VIDEO_EVIDENCE_MEETING": str(meeting)}
    env.pop("PYTEST_ADDOPTS", None)
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        *QUIET_PLUGINS,
        "--self-contained-html",
        "-W",
        "ignore::UserWarning",
    ]
    procs = [  # started together; the test bodies wait for each other, so both record at once
        subprocess.Popen(
            [*args, f"--html=report{k}.html", "test_par.py"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in (1, 2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output
    links = [_gate_link(tmp_path / f"report{k}.html") for k in (1, 2)]
    assert links[0] != links[1], "both reports link the same file"
    for link, proc in zip(links, procs):
        assert link.is_file() and link.parent.name.endswith(f"Z-{proc.pid}"), link
        assert _ffprobe_frames(link) == 30, f"{link} does not hold its session's 30 frames"
        boxes = top_level_boxes(link)
        assert boxes.index("moov") < boxes.index("mdat")
    latest = tmp_path / "output" / "videos" / "test_par.py__test_same_id.mp4"
    assert any(latest.samefile(link) for link in links)  # the latest view shows one of them, whole


def test_a_later_session_deletes_nothing_an_earlier_report_links(
    pytester: pytest.Pytester, ffprobe_available: None
) -> None:
    """``make gates`` then ``make test``: the first report's links still play after the second run."""
    pytest.importorskip("pytest_html", reason="pytest-html is not installed: pip install pytest-html")
    pytester.makeini("[pytest]\nmarkers =\n    phase1: phase 1 gate\n")
    pytester.makepyfile(
        test_gate="""
import numpy as np
import pytest

@pytest.mark.phase1
def test_gate(video_recorder):
    video_recorder.set_latest_name("render_skip_validation")
    for i in range(12):
        video_recorder.add_frame(np.full((48, 64, 3), 20 * i, np.uint8))
"""
    )
    args = ["-p", "no:playwright", "--self-contained-html", "-W", "ignore::UserWarning"]
    pytester.runpytest(*args, "--html=gates.html").assert_outcomes(passed=1)
    first = _gate_link(pytester.path / "gates.html")
    first_bytes = first.read_bytes()
    pytester.runpytest(*args, "--html=test-report.html").assert_outcomes(passed=1)
    second = _gate_link(pytester.path / "test-report.html")
    assert first != second
    assert first.read_bytes() == first_bytes and _ffprobe_frames(first) == 12
    latest = pytester.path / "output" / "videos" / "render_skip_validation.mp4"
    assert latest.samefile(second)  # the people's view shows the newest run, under the asked-for name
    assert (pytester.path / "output" / "metrics" / "render_skip_validation.json").is_file()


# ------------------------------------------------------------------------------- disk full

DISK_FULL_CONFTEST = """
import errno
import os

import pytest

from pytest_video_plugin import evidence
from videokit.encode import H264Writer


@pytest.fixture(autouse=True)
def disk_fills_up(monkeypatch):
    if not os.environ.get("SIMULATE_DISK_FULL"):
        return
    full = []
    mux, write_all = H264Writer._mux, evidence._write_all

    def mux_until_full(self, packets):
        if self.frames_written >= 5 or full:
            full.append(True)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        mux(self, packets)

    def write_unless_full(fh, text):
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(fh, text)

    monkeypatch.setattr(H264Writer, "_mux", mux_until_full)
    monkeypatch.setattr(evidence, "_write_all", write_unless_full)
"""


def test_disk_full_fails_the_test_once_and_loses_nothing_else(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(DISK_FULL_CONFTEST)
    pytester.makepyfile(
        test_disk="""
import numpy as np

def test_records(video_recorder):
    video_recorder.record_metric("early", 1)
    for i in range(20):
        video_recorder.add_frame(np.full((48, 64, 3), 10 * i, np.uint8))
"""
    )
    pytester.runpytest("-p", "no:playwright").assert_outcomes(passed=1)
    output = pytester.path / "output"
    before = {p: p.read_bytes() for p in output.rglob("*") if p.is_file()}
    assert any(p.name == "test_disk.py__test_records.mp4" and "runs" not in p.parts for p in before)

    monkeypatch.setenv("SIMULATE_DISK_FULL", "1")
    result = pytester.runpytest("-p", "no:playwright", "-rA")
    result.assert_outcomes(failed=1, errors=0)  # one failure, not FAILED and ERROR
    result.stdout.fnmatch_lines(
        [
            (
                "*VideoEncodeError: encoding frame 5 into *test_disk.py__test_records.mp4 failed: "
                "*No space left on device*"
            )
        ]
    )
    # the earlier run's files and the latest view: byte for byte as they were
    assert {p: p.read_bytes() for p in before} == before
    # this run: no partial MP4, no temporary file; what is left is whole JSON
    new = [p for p in output.rglob("*") if p.is_file() and p not in before]
    assert not [p for p in new if p.suffix == ".mp4"], new
    assert not [p for p in output.rglob("*") if p.name.endswith(".tmp")]
    (metrics,) = [p for p in new if p.name == "test_disk.py__test_records.json"]
    assert json.loads(metrics.read_text())["metrics"] == {"early": 1}  # written before the disk filled
