"""The learned detector (flyby.perception.yolo), its drawing and its CLI.

The shipped weights are scored here on frames of a world no split of the training data
used (seed 300), against the ground truth at the same camera poses.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from flyby.errors import DependencyNotInstalled, FlybyError
from flyby.perception import yolo as yolo_mod
from flyby.perception.draw import CLASS_RGB, YOLO_RGB
from flyby.perception.yolo import (
    CLASS_NAMES,
    DEFAULT_WEIGHTS,
    REPRODUCE_COMMAND,
    WeightsError,
    YoloDetector,
    yolo_config_dir,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None,
    reason='ultralytics is not installed: pip install "flyby[yolo]"',
)


# Floors for the shipped weights on the 8 frames of world 300 below (measured: recall 18/21 = 0.86 of the
# targets >= 8 px across, precision 25/29 = 0.86 against every visible target); the floors leave a margin.
RECALL_FLOOR = 0.7
PRECISION_FLOOR = 0.7


@pytest.fixture(scope="module")
def detector() -> YoloDetector:
    return YoloDetector()


@pytest.fixture(scope="module")
def held_out_frames():
    """8 frames of world seed 300 (in no dataset split) aimed at targets, with their ground truth."""
    from flyby.geometry import quat_wxyz_to_rot
    from flyby.perception.camera import camera_poses_w
    from flyby.perception.gt import GroundTruthDetector
    from flyby.perception.yolo_dataset import YoloDatasetCfg, render_camera_cfg, sample_camera_poses
    from flyby.sim.base import make_backend
    from flyby.world import generate_world

    cam = render_camera_cfg()
    world = generate_world(seed=300)
    cfg = YoloDatasetCfg(background_fraction=0.0, low_fraction=0.5)
    tpos, tyaw = world.target_poses(12.0)
    pos, quat, _ = sample_camera_poses(np.random.default_rng(1), world, tpos, 8, cfg, cam)
    with make_backend("mujoco", world, 8, cam) as backend:
        backend.set_target_poses(tpos, tyaw)
        backend.set_drone_poses(pos, quat)
        frames = backend.render_cameras()
    c_pos, rot = camera_poses_w(pos, quat_wxyz_to_rot(quat), cam)
    det = GroundTruthDetector.from_world(cam, world).detect(c_pos, rot, tpos, tyaw, world.target_size_m)
    side = np.minimum(
        det.boxes_px[..., 2] - det.boxes_px[..., 0], det.boxes_px[..., 3] - det.boxes_px[..., 1]
    )
    big = det.visible & (side >= 8.0)  # boxes big enough that a detector must not miss them
    gts = {
        name: [(det.boxes_px[i][m[i]], world.target_class[m[i]].astype(np.int64)) for i in range(8)]
        for name, m in (("all", det.visible), ("big", big))
    }
    return frames, gts


def test_shipped_weights_exist_small_with_a_card() -> None:
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size < 6_500_000
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert card["classes"] == {"0": "vehicle", "1": "person"}
    assert card["train"]["from_scratch"] is True and card["train"]["imgsz"] == 320
    seeds = card["dataset"]["config"]
    assert not set(seeds["test_seeds"]) & set(seeds["train_seeds"] + seeds["val_seeds"])
    assert {"map50", "map50_95", "cpu_ms_per_frame"} <= set(card["metrics"])
    assert card["reproduce"].startswith("flyby yolo-dataset") and "flyby yolo-train" in card["reproduce"]


def test_shipped_weights_find_targets_in_a_new_world(detector, held_out_frames) -> None:
    from flyby.perception.matching import DetectionTally

    frames, gts = held_out_frames
    preds = detector.detect(frames)
    assert len(preds) == len(frames)
    every, big = DetectionTally(iou_threshold=0.5), DetectionTally(iou_threshold=0.5)
    for p, (gb, gc), (bb, bc) in zip(preds, gts["all"], gts["big"]):
        assert p.boxes_px.dtype == np.float32 and p.cls.dtype == np.int64 and p.conf.dtype == np.float32
        assert (np.diff(p.conf) <= 0).all()  # highest confidence first
        assert (p.boxes_px[:, 2] <= 320.5).all() and (p.boxes_px[:, 3] <= 240.5).all()  # input pixels
        every.add(p.boxes_px, p.cls, gb, gc, p.conf)  # precision: against every visible target
        big.add(p.boxes_px, p.cls, bb, bc, p.conf)  # recall: of the targets at least 8 px across
    assert big.tp + big.fn >= 10
    assert big.recall >= RECALL_FLOOR, big.as_dict()
    assert every.precision >= PRECISION_FLOOR, every.as_dict()


def test_channel_order_rgb_in_bgr_to_ultralytics(detector, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(detector.model, "predict", lambda images, **kw: (seen.extend(images), [])[1])
    img = np.zeros((1, 24, 32, 3), np.uint8)
    img[..., 0] = 255  # pure red, RGB
    detector.detect(img)
    assert seen[0][..., 2].min() == 255 and seen[0][..., 0].max() == 0  # red is last in BGR


def test_bgr_flip_matters_for_the_detector(detector, held_out_frames) -> None:
    """Feeding BGR (the wrong order) changes what is detected: the flip is not a no-op."""
    frames, _ = held_out_frames
    rgb = detector.detect(frames[:4])
    bgr = detector.detect(np.ascontiguousarray(frames[:4, ..., ::-1]))
    assert [len(p.cls) for p in rgb] != [len(p.cls) for p in bgr] or any(
        not np.allclose(a.conf, b.conf, atol=1e-3) for a, b in zip(rgb, bgr)
    )


def test_detect_input_checks(detector) -> None:
    assert detector.detect(np.zeros((0, 24, 32, 3), np.uint8)) == []
    assert len(detector.detect(np.zeros((24, 32, 3), np.uint8))) == 1  # one image
    with pytest.raises(
        ValueError, match=r"\(N, H, W, 3\) uint8 RGB, got shape \(1, 24, 32, 3\) dtype float32"
    ):
        detector.detect(np.zeros((1, 24, 32, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        detector.detect(np.zeros((1, 24, 32), np.uint8))
    for kwargs, msg in (
        ({"conf": 1.5}, "conf=1.5"),
        ({"iou": -0.1}, "iou=-0.1"),
        ({"imgsz": 16}, "imgsz=16"),
    ):
        with pytest.raises(ValueError, match=msg):
            YoloDetector(**kwargs)


def test_missing_corrupt_and_foreign_weights_name_the_path_and_the_fix(tmp_path) -> None:
    with pytest.raises(WeightsError) as err:
        YoloDetector(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(err.value) and REPRODUCE_COMMAND in str(err.value)
    assert isinstance(err.value, FlybyError) and err.value.path == tmp_path / "nope.pt"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot load YOLO weights .*bad.pt.*flyby yolo-train"):
        YoloDetector(bad)
    ul = yolo_mod.import_ultralytics()
    coco = tmp_path / "coco.pt"
    ul.YOLO("yolo11n.yaml").save(coco)  # random weights with ultralytics' 80 COCO names
    with pytest.raises(WeightsError, match="detect classes .* flyby expects"):
        YoloDetector(coco)


def test_missing_ultralytics_is_a_dependency_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "flyby\[yolo\]"'):
        yolo_mod.import_ultralytics()


def test_offline_environment_and_fonts(monkeypatch, tmp_path) -> None:
    ul = yolo_mod.import_ultralytics()
    import ultralytics.utils as uu

    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
    assert uu.ONLINE is False and uu.SETTINGS["sync"] is False
    assert {p.name for p in Path(uu.USER_CONFIG_DIR).glob("*.ttf")} >= {"Arial.ttf", "Arial.Unicode.ttf"}
    assert ul.__version__
    # The config folder: FLYBY_YOLO_CONFIG_DIR first, created when missing.
    monkeypatch.setenv("FLYBY_YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    assert yolo_config_dir() == tmp_path / "cfg" and (tmp_path / "cfg").is_dir()
    yolo_mod._install_fonts(tmp_path / "fonts")
    fonts = sorted(p.name for p in (tmp_path / "fonts").iterdir())
    assert fonts == ["Arial.Unicode.ttf", "Arial.ttf"]
    assert (tmp_path / "fonts/Arial.ttf").read_bytes()[:4] in (
        b"\x00\x01\x00\x00",
        b"true",
    )  # a TrueType file


def test_detect_after_mujoco_rendering_does_not_crash() -> None:
    """torch imports triton at the first predict; next to Mesa's LLVM (MuJoCo's CPU renderer) that was a
    segfault. flyby keeps triton out: render first, then detect, in a fresh process."""
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from flyby.world import generate_world\n"
        "from flyby.sim.base import make_backend\n"
        "from flyby.perception.camera import CameraCfg\n"
        "b = make_backend('mujoco', generate_world(seed=0), 1, CameraCfg())\n"
        "frames = b.render_cameras()\n"
        "from flyby.perception.yolo import YoloDetector\n"
        "print(len(YoloDetector().detect(frames)), sys.modules.get('triton', 'absent'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "1"


def test_one_colour_per_class_and_source() -> None:
    """flyby.perception.draw holds the overlay colours: every class has one, and YOLO's differ from
    the ground truth's so the two boxes drawn on one target are told apart."""
    from flyby.enums import TargetClass

    classes = {int(c) for c in TargetClass}
    assert set(CLASS_RGB) == classes == set(YOLO_RGB) == set(CLASS_NAMES)
    assert all(CLASS_RGB[c] != YOLO_RGB[c] for c in classes)
    assert len(set(CLASS_RGB.values())) == len(classes)


def test_class_names_are_the_target_classes() -> None:
    assert CLASS_NAMES == {0: "vehicle", 1: "person"}


# ----------------------------------------------------------------------------- CLI


def test_cli_help_and_bad_input(capsys, tmp_path) -> None:
    from flyby.cli import main

    for cmd in ("yolo-dataset", "yolo-train", "yolo-eval"):
        with pytest.raises(SystemExit) as exit_:
            main([cmd, "--help"])
        assert exit_.value.code == 0
        assert cmd in capsys.readouterr().out
    cases = [
        (["yolo-dataset", "--train-seeds", "x"], "--train-seeds: 'x' is not a seed list"),
        (["yolo-dataset", "--val-seeds", "0"], "val_seeds: world seeds [0] are also in train_seeds"),
        (["yolo-train", "--imgsz", "100", "--data", str(tmp_path)], "imgsz: 100 must be a multiple of 32"),
        (["yolo-train", "--data", str(tmp_path / "none")], "flyby yolo-dataset"),
        (
            ["yolo-eval", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path)],
            "YOLO weights not found",
        ),
        (["yolo-eval", "--data", str(tmp_path / "none")], "not found; export one first"),
        (["yolo-eval", "--imgsz", "33"], "--imgsz: 33 must be a positive multiple of 32"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_cli_eval_prints_held_out_scores(capsys, tmp_path) -> None:
    from flyby.cli import main
    from flyby.perception.yolo_dataset import YoloDatasetCfg, export_dataset

    cfg = YoloDatasetCfg(
        train_seeds=(0,), val_seeds=(100,), test_seeds=(300,), train_frames_per_seed=1, val_frames_per_seed=1,
        test_frames_per_seed=4, batch=4, background_fraction=0.0,
    )  # fmt: skip
    ds = export_dataset(tmp_path / "ds", cfg, progress=False)
    assert (
        main(
            ["yolo-eval", "--data", str(ds.root), "--timing-frames", "2", "--json", str(tmp_path / "e.json")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test split (held-out worlds 300)" in out
    assert "mAP50    :" in out and "mAP50-95 :" in out and "ms/frame at 320x240" in out
    result = json.loads((tmp_path / "e.json").read_text())
    assert 0.0 <= result["map50_95"] <= result["map50"] <= 1.0
    assert result["cpu_ms_per_frame"] > 0 and result["seeds"] == [300]
