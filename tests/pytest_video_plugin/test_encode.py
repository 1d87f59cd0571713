"""Unit tests of videokit.encode: the streaming H.264 writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_video_plugin import H264Writer, VideoEncodeError
from videokit.encode import even_size, fit_frame, thumbnail_png
from videokit.overlay import BACKGROUND

Probe = Callable[[Path], dict[str, Any]]


def _frame(h: int, w: int, t: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + t) % 256, (y * 4) % 256, np.full_like(x, 128)], -1).astype(np.uint8)


def test_writes_browser_playable_h264(tmp_path: Path, ffprobe: Probe) -> None:
    path = tmp_path / "clip.mp4"
    with H264Writer(path, fps=10) as writer:
        for t in range(25):
            writer.write(_frame(48, 64, t))
    info = ffprobe(path)
    assert info["codec_name"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (64, 48)
    assert info["nb_read_frames"] == 25
    assert info["format_duration"] == pytest.approx(2.5, abs=0.05)  # 25 frames / 10 fps
    assert info["moov_first"], "+faststart should put the moov atom before the media data"


def test_odd_sized_frames_are_padded_to_even(tmp_path: Path, ffprobe: Probe) -> None:
    path = tmp_path / "odd.mp4"
    with H264Writer(path, fps=15) as writer:
        for t in range(3):
            writer.write(_frame(47, 63, t))
        assert writer.size == (64, 48)
    info = ffprobe(path)
    assert (info["width"], info["height"]) == (64, 48)
    assert info["nb_read_frames"] == 3


def test_later_frames_of_another_size_are_letterboxed(tmp_path: Path, ffprobe: Probe) -> None:
    path = tmp_path / "mixed.mp4"
    with H264Writer(path, fps=15) as writer:
        writer.write(_frame(48, 64))
        writer.write(_frame(100, 100))  # squarer and larger
        writer.write(_frame(10, 64))
    info = ffprobe(path)
    assert (info["width"], info["height"]) == (64, 48)
    assert info["nb_read_frames"] == 3


def test_fit_frame_keeps_aspect_and_centres() -> None:
    frame = np.full((100, 100, 3), 255, np.uint8)
    out = fit_frame(frame, (64, 48))
    assert out.shape == (48, 64, 3)
    assert (out[:, 8:56] == 255).all()  # 48x48 centred
    assert tuple(out[0, 0]) == BACKGROUND and tuple(out[0, 63]) == BACKGROUND
    assert fit_frame(frame, (100, 100)) is frame
    assert even_size(63, 47) == (64, 48)


def test_close_is_idempotent_and_no_frame_means_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    writer = H264Writer(path)
    writer.close()
    writer.close()
    assert not path.exists()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(_frame(8, 8))


def test_encoder_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-folder" / "clip.mp4"
    writer = H264Writer(path)
    with pytest.raises(VideoEncodeError, match=str(path)):
        writer.write(_frame(16, 16))
    assert writer.closed


def test_wrong_frame_raises_value_error_naming_the_shape(tmp_path: Path) -> None:
    writer = H264Writer(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match=r"\(16, 16, 4\)"):
        writer.write(np.zeros((16, 16, 4), np.uint8))
    writer.close()


def test_fps_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        H264Writer(tmp_path / "x.mp4", fps=0)


def test_thumbnail_is_a_small_png_of_the_middle_frame(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.mp4"
    with H264Writer(path, fps=10, gop_seconds=1.0) as writer:
        for value in range(0, 250, 5):  # 50 grey frames getting brighter
            writer.write(np.full((120, 160, 3), value, np.uint8))
    png = thumbnail_png(path, width=80)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 5_000
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (60, 80, 3)
    assert 60 < int(image.mean()) < 190  # from the middle of the clip, not its first or last frame


def test_thumbnail_of_a_broken_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video")
    with pytest.raises(VideoEncodeError, match="broken.mp4"):
        thumbnail_png(path)


def test_the_file_decodes_while_it_is_being_written(tmp_path: Path, ffprobe: Probe) -> None:
    """A fragmented MP4 while recording: a reader (or a kill) at any frame sees a playable file."""
    from videokit.encode import top_level_boxes

    path = tmp_path / "live.mp4"
    writer = H264Writer(path, fps=30, fragment_seconds=0.5)
    for t in range(60):
        writer.write(_frame(48, 64, t))
    live = ffprobe(path)  # not closed: what a SIGKILL would leave
    assert 60 - 30 <= live["nb_read_frames"] < 60, "a kill may lose at most ~1 s of video"
    assert "moof" in top_level_boxes(path)
    writer.close()
    info = ffprobe(path)
    assert info["nb_read_frames"] == 60
    assert info["format_duration"] == pytest.approx(2.0, abs=0.05)  # starts at 0 s after the remux
    assert info["moov_first"] and "moof" not in top_level_boxes(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.mp4"]  # no temporary file left


def test_unfragmented_mode_writes_faststart_directly(tmp_path: Path, ffprobe: Probe) -> None:
    from videokit.encode import top_level_boxes

    path = tmp_path / "plain.mp4"
    with H264Writer(path, fps=10, fragmented=False) as writer:
        for t in range(5):
            writer.write(_frame(48, 64, t))
    assert ffprobe(path)["nb_read_frames"] == 5 and "moof" not in top_level_boxes(path)


@pytest.mark.parametrize("name", ["gop_seconds", "fragment_seconds"])
def test_gop_and_fragment_lengths_must_be_positive(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        H264Writer(tmp_path / "x.mp4", **{name: 0})


def test_faststart_remux_failure_leaves_the_source_and_no_temporary_file(tmp_path: Path) -> None:
    from videokit.encode import faststart_remux

    source = tmp_path / "broken.mp4"
    source.write_bytes(b"not a video")
    with pytest.raises(VideoEncodeError, match=r"broken\.mp4.*is untouched"):
        faststart_remux(source)
    assert source.read_bytes() == b"not a video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


def test_a_write_error_leaves_the_file_for_the_caller_and_discard_removes_only_its_own(
    tmp_path: Path,
) -> None:
    import errno

    path = tmp_path / "full.mp4"
    writer = H264Writer(path, fps=10)
    writer.write(_frame(48, 64))

    def disk_full(packets: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer._mux = disk_full  # type: ignore[method-assign]
    with pytest.raises(VideoEncodeError, match=r"full\.mp4 failed: .*No space left on device"):
        for t in range(30):
            writer.write(_frame(48, 64, t))
    assert writer.closed and path.exists()
    writer.discard()
    assert not path.exists()
    someone_elses = tmp_path / "someone_elses.mp4"
    someone_elses.mkdir()
    other = H264Writer(someone_elses)
    with pytest.raises(VideoEncodeError):
        other.write(_frame(16, 16))  # cannot open a folder
    other.discard()
    assert someone_elses.is_dir()  # not created by the writer: left alone


def test_an_interrupt_between_encoding_and_muxing_waits_for_the_frame(tmp_path: Path, ffprobe: Probe) -> None:
    """The plugin's SIGTERM handler interrupts through interrupt_safely: a frame being written is
    finished first (packets dropped between encoder and muxer would break the frames after them)."""
    from videokit.encode import interrupt_safely

    path = tmp_path / "clip.mp4"
    writer = H264Writer(path, fps=10)
    for t in range(5):
        writer.write(_frame(48, 64, t))
    real_mux = writer._mux

    def signal_arrives_then_mux(packets: Any) -> None:
        interrupt_safely(KeyboardInterrupt("SIGTERM"))  # as if the signal came right after encode()
        real_mux(packets)

    writer._mux = signal_arrives_then_mux  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        writer.write(_frame(48, 64, 5))
    assert writer.frames_written == 6  # the frame went into the file before the interrupt
    writer._mux = real_mux  # type: ignore[method-assign]
    writer.close()
    assert ffprobe(path)["nb_read_frames"] == 6
    with pytest.raises(KeyboardInterrupt, match="now"):
        interrupt_safely(KeyboardInterrupt("now"))  # outside a write: raised at once
