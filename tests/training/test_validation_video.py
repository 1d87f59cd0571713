"""The validation video: a valid H.264 MP4 of one episode, atomic on failure, YOLO degrading clearly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("cv2")

from flyby.policies import PatrolPolicy  # noqa: E402
from flyby.training.evaluate import eval_env_cfg, run_evaluation  # noqa: E402
from flyby.training.validation_video import record_validation_video  # noqa: E402

EPISODE_S = 2.0
STEPS = round(EPISODE_S / 0.04)  # PX4ISR-v0 steps at 25 Hz


def _probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return ctx.name, ctx.pix_fmt, stream.average_rate, frames


def test_video_is_h264_with_one_frame_per_step(tmp_path):
    out = tmp_path / "video" / "validation.mp4"
    video = record_validation_video(
        PatrolPolicy(), 1000, out, flight_stack="cascade", episode_length_s=EPISODE_S, progress=False
    )
    assert video.path == out and out.is_file()
    codec, pix_fmt, rate, frames = _probe(out)
    assert codec == "h264" and pix_fmt == "yuv420p" and rate == 25
    assert len(frames) == video.frames == video.steps == STEPS
    h, w = frames[0].shape[:2]
    assert (w, h) == video.size and w % 2 == 0 and h % 2 == 0 and w >= 640 and h >= 480  # 320x240 shown at 2x
    assert video.flight_stack == "cascade" and "no PX4" in video.flight_stack_label and video.seed == 1000
    assert video.label == "patrol" and video.num_targets > 0 and 0 <= video.targets_found <= video.num_targets
    assert not video.crashed and not video.geofence
    # Ground-truth mode reports no detection figures (1 by construction), and says why.
    assert (
        video.perception_mode == "ground_truth"
        and video.detection is None
        and "ground" in video.detection_note
    )
    # The frames move (the drone flies) and carry the overlay's dark bars around the camera image.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0
    assert frames[0][:8].mean() < 60  # the header bar
    assert sorted(p.name for p in out.parent.iterdir()) == ["validation.mp4"]  # no temporary file left


def test_an_exception_mid_episode_leaves_no_file(tmp_path):
    out = tmp_path / "validation.mp4"

    class Boom(PatrolPolicy):
        def __call__(self, obs):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 20:
                raise RuntimeError("policy failed at step 20")
            return super().__call__(obs)

    with pytest.raises(RuntimeError, match="policy failed at step 20"):
        record_validation_video(
            Boom(), 1000, out, flight_stack="cascade", episode_length_s=EPISODE_S, progress=False
        )
    assert list(tmp_path.iterdir()) == []  # neither the MP4 nor a half-written temporary file
    out.write_bytes(b"previous video")
    with pytest.raises(RuntimeError):
        record_validation_video(
            Boom(), 1000, out, flight_stack="cascade", episode_length_s=EPISODE_S, progress=False
        )
    assert out.read_bytes() == b"previous video" and [p.name for p in tmp_path.iterdir()] == [
        "validation.mp4"
    ]


def test_yolo_that_cannot_run_degrades_with_a_reason(tmp_path):
    cfg = eval_env_cfg(EPISODE_S / 2)
    if not hasattr(cfg, "perception"):
        pytest.skip("PX4ISR-v0 has no perception.mode in this checkout")
    cfg = replace(cfg, perception=replace(cfg.perception, weights=str(tmp_path / "no_such_weights.pt")))
    video = record_validation_video(
        PatrolPolicy(),
        1000,
        tmp_path / "v.mp4",
        flight_stack="cascade",
        env_cfg=cfg,
        perception_mode="yolo",
        progress=False,
    )
    assert video.perception_mode == "ground_truth" and video.detection is None
    assert (
        video.detection_note.startswith("YOLO not available: ")
        and "no_such_weights.pt" in video.detection_note
    )
    assert video.frames == STEPS // 2


def test_bad_perception_mode():
    with pytest.raises(ValueError, match="perception_mode must be 'ground_truth' or 'yolo', got 'lidar'"):
        record_validation_video(
            PatrolPolicy(), 0, "unused.mp4", flight_stack="cascade", perception_mode="lidar"
        )


def test_evaluation_records_the_video_of_the_first_seed(tmp_path):
    run = run_evaluation(
        PatrolPolicy(),
        seeds=[1001, 1000],
        flight_stack="cascade",
        episode_length_s=1.0,
        baselines=(),
        record_video=True,
        out_dir=tmp_path,
        progress=False,
    )
    assert (tmp_path / "validation.mp4").is_file() and run.video.seed == 1001
    assert (
        run.metrics["video"] == str(tmp_path / "validation.mp4")
        and run.paths["video"] == run.metrics["video"]
    )
    # The recorded episode is the evaluated one: rendering changes nothing the policy sees.
    first = run.results["trained"].episodes[0]
    assert (
        run.video.ret == pytest.approx(first.ret, abs=1e-9) and run.video.targets_found == first.targets_seen
    )
    assert run.metrics["detection"] is None and run.metrics["perception_mode"] == "ground_truth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "tracks.json", "validation.mp4"]
