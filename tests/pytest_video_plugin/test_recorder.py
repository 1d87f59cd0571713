"""Unit tests of pytest_video_plugin.recorder.VideoRecorder, used directly without pytest hooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_video_plugin import Box, FrameAnnotations, Text, VideoRecorder
from pytest_video_plugin.recorder import utc_timestamp

Probe = Callable[[Path], dict[str, Any]]

SUMMARY_KEYS = {
    "test", "phase", "header", "started_utc", "fps", "steps", "timed_steps",
    "wall_time_s", "frames", "frames_rendered", "frames_skipped", "frames_recorded", "every_n", "recording",
    "video", "video_fps", "video_size",
    "rss_peak_bytes", "vram_peak_bytes", "vram_start_bytes", "vram", "memory_samples", "metrics",
    "floor_checks", "state", "video_error",
}  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _frame(h: int = 60, w: int = 80) -> np.ndarray:
    return np.full((h, w, 3), 90, np.uint8)


@pytest.fixture
def recorder(tmp_path: Path) -> Any:
    rec = VideoRecorder(
        tmp_path / "v.mp4", metrics_path=tmp_path / "m" / "v.json", fps=10, test_name="t.py::test_x"
    )
    yield rec
    rec.finalize()


@pytest.mark.parametrize(
    ("frame", "shape"),
    [
        (np.zeros((60, 80, 3), np.float64), "(60, 80, 3)"),
        (np.zeros((60, 80), np.uint8), "(60, 80)"),
        (np.zeros((60, 80, 4), np.uint8), "(60, 80, 4)"),
    ],
    ids=["float64", "gray", "rgba"],
)
def test_add_frame_rejects_wrong_dtype_or_shape(
    recorder: VideoRecorder, frame: np.ndarray, shape: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        recorder.add_frame(frame)
    assert shape in str(excinfo.value)
    assert str(frame.dtype) in str(excinfo.value)
    assert recorder.path is None  # nothing was encoded


def test_add_frame_rejects_non_box_annotations(recorder: VideoRecorder) -> None:
    with pytest.raises(TypeError, match=r"boxes\[0\] must be a Box"):
        recorder.add_frame(_frame(), boxes=[(0, 0, 1, 1)])  # type: ignore[list-item]


def test_fps_is_counted_steps_over_time_between_counts(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = VideoRecorder(tmp_path / "v.mp4", clock=clock)
    assert rec.fps is None
    rec.count_steps(0)
    clock.t = 0.5
    rec.count_steps(100)
    slow = rec.fps
    clock.t = 1.0
    rec.count_steps(400)  # faster second half
    assert slow == pytest.approx(200.0)
    assert rec.fps == pytest.approx(500 / 1.0)
    assert rec.fps > slow > 0
    assert rec.steps == 500
    result = rec.finalize()
    assert result.summary["fps"] == pytest.approx(500.0)
    assert result.summary["wall_time_s"] == pytest.approx(1.0)


def test_finalize_writes_video_and_metrics_json(tmp_path: Path, ffprobe: Probe) -> None:
    rec = VideoRecorder(
        tmp_path / "v.mp4", metrics_path=tmp_path / "metrics" / "v.json", fps=10, phase="phase2"
    )
    rec.set_header(backend="sim", flight_stack="none", gpu_note="n/a")
    rec.count_steps(0)
    for i in range(12):
        rec.count_steps(8)
        rec.add_frame(
            _frame(),
            boxes=[Box(5, 5, 30, 30, label="obj", confidence=0.5), Box(6, 6, 31, 31, style="dashed")],
            texts=[Text("hello", 2, 10)],
            metrics={"i": i},
            footer="footer text",
            rendered=i % 3 == 0,
        )
    rec.record_metric("throughput", np.float32(123.5))
    rec.record_metric("label", "ok")
    rec.record_metric("broken", float("nan"))
    result = rec.finalize()
    assert rec.finalize() is result  # idempotent
    assert result.video_path == tmp_path / "v.mp4" == rec.path
    data = json.loads((tmp_path / "metrics" / "v.json").read_text())
    assert set(data) == SUMMARY_KEYS
    assert data["state"] == "finished" and data["video_error"] is None
    assert data["frames"] == 12 and data["frames_rendered"] == 4 and data["frames_skipped"] == 8
    assert data["steps"] == 96 and data["fps"] > 0
    assert data["metrics"] == {"throughput": 123.5, "label": "ok", "broken": None}
    assert data["phase"] == "phase2"
    # free-form fields, in the order set, as str; the plugin's own fields are not among them
    assert list(data["header"].items()) == [("backend", "sim"), ("flight_stack", "none"), ("gpu_note", "n/a")]
    assert data["rss_peak_bytes"] > 0
    assert (data["vram_peak_bytes"] is None) == (data["vram"] == "no GPU")
    assert data["video"] == str(tmp_path / "v.mp4")
    info = ffprobe(result.video_path)
    assert info["nb_read_frames"] == 12
    assert [w % 2 for w in data["video_size"]] == [0, 0]
    props = dict(result.user_properties())
    assert props["throughput"] == 123.5 and props["frames"] == 12 and props["video"] == data["video"]


def test_header_has_no_fields_until_set(recorder: VideoRecorder) -> None:
    summary = recorder.summary()
    assert summary["header"] == {} and "backend" not in summary and "flight_stack" not in summary
    segments = recorder._header_segments()
    assert not any(s.startswith(("backend", "flight stack")) for s in segments)  # nothing built in


def test_custom_header_fields_keep_their_order_and_show_in_the_video_header(recorder: VideoRecorder) -> None:
    recorder.set_header(site="lab 3", run_number=7)
    recorder.set_header(operator="kim", site="lab 4", ignored=None)  # a reset keeps its place
    assert list(recorder.header_fields.items()) == [
        ("site", "lab 4"),
        ("run_number", "7"),
        ("operator", "kim"),
    ]
    assert recorder.summary()["header"] == recorder.header_fields
    segments = recorder._header_segments()
    fields = segments[3:-1]  # after test name, phase and UTC time; the GPU is last
    assert fields == ["site: lab 4", "run number: 7", "operator: kim"]
    assert segments[-1] == "no GPU" or segments[-1].startswith("GPU: ")


def test_set_header_refuses_the_recorders_own_test_field(recorder: VideoRecorder) -> None:
    with pytest.raises(ValueError, match=r"set_header\(test=\.\.\.\): 'test' is the recorder's own"):
        recorder.set_header(test="other name")
    assert recorder.summary()["header"] == {}


def test_recorder_rejects_use_after_finalize(recorder: VideoRecorder) -> None:
    recorder.finalize()
    with pytest.raises(RuntimeError, match="after it was finalized"):
        recorder.add_frame(_frame())
    with pytest.raises(RuntimeError, match="after it was finalized"):
        recorder.record_metric("x", 1)


def test_record_metric_rejects_non_scalars(recorder: VideoRecorder) -> None:
    with pytest.raises(TypeError, match="'arr'"):
        recorder.record_metric("arr", [1, 2])
    with pytest.raises(ValueError, match="non-empty"):
        recorder.record_metric("", 1)


def test_draw_hook_gets_the_composed_frame_and_annotations(tmp_path: Path) -> None:
    seen: list[tuple[tuple[int, ...], FrameAnnotations]] = []

    def hook(*, frame: np.ndarray, annotations: FrameAnnotations, recorder: VideoRecorder) -> None:
        seen.append((frame.shape, annotations))
        frame[:4, :4] = 255  # drawing in place must be allowed

    with VideoRecorder(tmp_path / "v.mp4", draw_hook=hook) as rec:
        rec.add_frame(_frame(), boxes=[Box(1, 1, 5, 5)], footer="f", rendered=False)
    ((shape, annotations),) = seen
    assert shape[0] > 60 and shape[1] > 80
    assert annotations.index == 1 and annotations.rendered is False and annotations.footer == "f"
    assert annotations.frame_size == (80, 60)
    assert annotations.origin[1] > 0  # below the header


def test_no_frames_means_no_video(tmp_path: Path) -> None:
    with VideoRecorder(tmp_path / "v.mp4", metrics_path=tmp_path / "v.json") as rec:
        rec.count_steps(3)
    result = rec.finalize()
    assert result.video_path is None and rec.path is None
    assert json.loads((tmp_path / "v.json").read_text())["video"] is None


def test_utc_timestamp_format() -> None:
    import datetime as dt

    stamp = utc_timestamp(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert stamp == "2025-01-02 03:04:05 UTC"


def test_every_n_encodes_every_nth_frame_and_counts_all(tmp_path: Path, ffprobe: Probe) -> None:
    calls: list[int] = []
    rec = VideoRecorder(
        tmp_path / "v.mp4", fps=10, every_n=3, draw_hook=lambda **kw: calls.append(kw["annotations"].index)
    )
    for i in range(10):
        rec.add_frame(_frame(), rendered=i % 2 == 0)
    assert (rec.frames, rec.frames_recorded) == (10, 4)
    result = rec.finalize()
    assert calls == [1, 4, 7, 10]  # the hook sees the frames that are drawn, numbered among all
    assert ffprobe(tmp_path / "v.mp4")["nb_read_frames"] == 4
    s = result.summary
    assert (s["frames"], s["frames_recorded"], s["frames_rendered"], s["every_n"]) == (10, 4, 5, 3)


def test_record_video_false_counts_frames_and_writes_no_file(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "v.mp4", metrics_path=tmp_path / "v.json", record_video=False)
    rec.count_steps(0)
    for _ in range(5):
        rec.count_steps(2)
        rec.add_frame(_frame())
    result = rec.finalize()
    assert result.video_path is None and not (tmp_path / "v.mp4").exists()
    summary = result.summary
    assert (summary["frames"], summary["frames_recorded"], summary["recording"]) == (5, 0, False)
    assert summary["steps"] == 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_every_n_must_be_a_positive_int(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="every_n must be an int >= 1"):
        VideoRecorder(tmp_path / "v.mp4", every_n=bad)  # type: ignore[arg-type]


def test_footer_says_how_many_frames_are_recorded(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "v.mp4", every_n=4)
    assert rec._status_segments(9, True)[-1] == "frame 9 (rendered), 1 in 4 recorded"
    assert VideoRecorder(tmp_path / "w.mp4")._status_segments(2, False)[-1] == "frame 2 (skipped)"


def test_set_name_renames_video_and_metrics_before_the_first_frame(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "auto_name.mp4", metrics_path=tmp_path / "m" / "auto_name.json")
    rec.start()
    rec.set_name("functions_check_hover")
    rec.add_frame(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(RuntimeError, match="before the first add_frame"):
        rec.set_name("too_late")
    rec.finalize()
    assert (tmp_path / "functions_check_hover.mp4").stat().st_size > 0
    assert (tmp_path / "m" / "functions_check_hover.json").is_file()
    assert not (tmp_path / "auto_name.mp4").exists()
    assert not (tmp_path / "m" / "auto_name.json").exists()  # its start-of-recording JSON moved too
    assert rec.latest_name == "functions_check_hover"
    with pytest.raises(ValueError, match="not a plain file stem"):
        VideoRecorder(tmp_path / "x.mp4").set_name("../escape")


def test_set_name_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "functions_check_hover.mp4").write_bytes(b"an earlier recording")
    rec = VideoRecorder(tmp_path / "auto_name.mp4", metrics_path=tmp_path / "auto_name.json")
    rec.set_name("functions_check_hover")
    rec.add_frame(np.zeros((48, 64, 3), np.uint8))
    result = rec.finalize()
    assert (tmp_path / "functions_check_hover.mp4").read_bytes() == b"an earlier recording"
    assert result.video_path == tmp_path / "functions_check_hover-2.mp4"
    assert result.metrics_path == tmp_path / "functions_check_hover-2.json"
    assert rec.latest_name == "functions_check_hover"  # the latest view still uses the asked-for name


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ("", ValueError, "not a plain file stem"),
        ("a/b", ValueError, r"has '/'"),
        ("../up", ValueError, "not a plain file stem"),
        (".hidden", ValueError, "not a plain file stem"),
        ("name with space", ValueError, r"has ' '"),
        ("render.mp4", ValueError, "pass the stem only \\('render'\\)"),
        ("x" * 201, ValueError, "not a plain file stem"),
        (None, TypeError, "must be a str file stem"),
        (7, TypeError, "got int"),
    ],
)
def test_set_latest_name_rejects_anything_but_a_plain_stem(
    tmp_path: Path, bad: object, error: type, match: str
) -> None:
    rec = VideoRecorder(tmp_path / "v.mp4")
    with pytest.raises(error, match=match):
        rec.set_latest_name(bad)  # type: ignore[arg-type]
    assert rec.latest_name == "v"


def test_set_latest_name_is_kept_and_refused_after_finalize(tmp_path: Path) -> None:
    rec = VideoRecorder(tmp_path / "v.mp4")
    rec.set_latest_name("render_skip_validation")
    rec.set_latest_name("render_skip_validation-2.b")  # the last call wins
    assert rec.latest_name == "render_skip_validation-2.b"
    rec.finalize()
    with pytest.raises(RuntimeError, match="after it was finalized"):
        rec.set_latest_name("late")


def test_metrics_json_is_written_while_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a SIGKILL leaves: the JSON exists from the start and holds every recorded metric at once;
    frame and step counts are rewritten at most every metrics_interval_s."""
    from pytest_video_plugin import recorder as recorder_module

    writes: list[dict[str, Any]] = []
    real_write = recorder_module.atomic_write_json

    def counting_write(path: Path, data: Any, **kwargs: Any) -> Path:
        writes.append(dict(data))
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(recorder_module, "atomic_write_json", counting_write)
    metrics = tmp_path / "m" / "v.json"
    rec = VideoRecorder(tmp_path / "v.mp4", metrics_path=metrics, metrics_interval_s=3600)
    rec.start()
    assert json.loads(metrics.read_text())["state"] == "recording"
    rec.record_metric("early", 42)
    assert json.loads(metrics.read_text())["metrics"] == {"early": 42}
    rec.check_floor("x", measured=2.0, floor=1.0)
    assert json.loads(metrics.read_text())["floor_checks"][0]["verdict"] == "pass"
    for _ in range(20):
        rec.add_frame(_frame())
        rec.count_steps(4)
    assert len(writes) == 3  # start, record_metric, check_floor: the frames waited for the interval
    rec.finalize()
    final = json.loads(metrics.read_text())
    assert final["state"] == "finished" and final["frames"] == 20
    assert sorted(p.name for p in metrics.parent.iterdir()) == ["v.json"]  # no temporary file left


def test_metrics_json_follows_frames_once_the_interval_passed(tmp_path: Path) -> None:
    metrics = tmp_path / "v.json"
    rec = VideoRecorder(tmp_path / "v.mp4", metrics_path=metrics, metrics_interval_s=1e-9)
    for _ in range(3):
        rec.add_frame(_frame())
    assert json.loads(metrics.read_text())["frames"] == 3
    rec.finalize()


def test_metrics_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics_interval_s must be > 0"):
        VideoRecorder(tmp_path / "v.mp4", metrics_interval_s=0)


def test_a_full_disk_stops_the_recording_deletes_the_partial_video_and_reports_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pytest_video_plugin import VideoEncodeError
    from videokit.encode import H264Writer

    real_mux = H264Writer._mux

    def mux(self: H264Writer, packets: Any) -> None:
        if self.frames_written >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_mux(self, packets)

    monkeypatch.setattr(H264Writer, "_mux", mux)
    rec = VideoRecorder(tmp_path / "v.mp4", metrics_path=tmp_path / "v.json")
    with pytest.raises(VideoEncodeError, match=r"v\.mp4 failed: .*No space left on device"):
        for _ in range(10):
            rec.add_frame(_frame())
    assert not (tmp_path / "v.mp4").exists()  # the partial video is deleted
    with pytest.raises(VideoEncodeError, match="recording stopped after an earlier error"):
        rec.add_frame(_frame())
    result = rec.finalize()
    assert result.video_path is None and isinstance(result.error, VideoEncodeError)
    assert result.metrics_error is None
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["video"] is None and "No space left" in data["video_error"] and data["state"] == "finished"


def test_finalize_reports_an_unwritable_metrics_json_without_raising_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pytest_video_plugin import evidence

    rec = VideoRecorder(tmp_path / "v.mp4", metrics_path=tmp_path / "v.json")
    rec.add_frame(_frame())

    def full(fh: Any, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evidence, "_write_all", full)
    result = rec.finalize()
    assert isinstance(result.metrics_error, OSError) and result.metrics_error.errno == errno.ENOSPC
    assert "v.json" in str(result.metrics_error)
    assert rec.finalize() is result  # once: a second call (the fixture's teardown) reports nothing new
    assert result.video_path == tmp_path / "v.mp4" and result.error is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
