"""YOLO dataset export (flyby.perception.yolo_dataset).

Layout, labels that are the ground truth, seeds kept apart.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from flyby.enums import ResolutionPreset
from flyby.errors import ConfigError, FlybyError
from flyby.perception.camera import CameraCfg
from flyby.perception.yolo_dataset import (
    YoloDatasetCfg,
    export_dataset,
    parse_seeds,
    render_camera_cfg,
    sample_camera_poses,
    yolo_label_lines,
)
from flyby.world import generate_world

TINY = YoloDatasetCfg(
    train_seeds=(0,), val_seeds=(100,), test_seeds=(200,),
    train_frames_per_seed=6, val_frames_per_seed=3, test_frames_per_seed=3, batch=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return export_dataset(tmp_path_factory.mktemp("yolo") / "ds", TINY, progress=False)


def read_labels(path: Path) -> np.ndarray:
    rows = [list(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def test_render_camera_is_the_evaluation_envs() -> None:
    cam = render_camera_cfg()
    assert (cam.width, cam.height) == (320, 240)
    assert cam.preset is ResolutionPreset.EVALUATION
    assert cam.pitch_deg == 50.0 and cam.fovy_deg == 70.0


def test_layout_counts_and_data_yaml(tiny_dataset) -> None:
    root = tiny_dataset.root
    spec = yaml.safe_load(tiny_dataset.data_yaml.read_text())
    assert Path(spec["path"]) == root and Path(spec["path"]).is_absolute()
    assert spec["names"] == {0: "vehicle", 1: "person"}
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        images = sorted((root / spec[split]).glob("*.png"))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n == tiny_dataset.counts[split]["images"]
        assert [p.stem for p in images] == [p.stem for p in labels]
    # Split names carry their world seed: held-out worlds never leak into train.
    assert {p.name[:5] for p in (root / "images/train").glob("*.png")} == {"w0000"}
    assert {p.name[:5] for p in (root / "images/test").glob("*.png")} == {"w0200"}
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["counts"] == tiny_dataset.counts
    assert manifest["camera"]["width"] == 320
    assert not list(root.parent.glob(".ds.tmp-*"))  # the temporary folder was renamed away


def test_labels_are_normalised_boxes_of_known_classes(tiny_dataset) -> None:
    import cv2

    total = 0
    for lbl in (tiny_dataset.root / "labels").rglob("*.txt"):
        rows = read_labels(lbl)
        total += len(rows)
        if len(rows):
            assert set(rows[:, 0]) <= {0.0, 1.0}
            assert (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()
            assert (rows[:, 3:] > 0).all()
    assert total == sum(c["boxes"] for c in tiny_dataset.counts.values()) > 0
    img = cv2.imread(str(next((tiny_dataset.root / "images/train").glob("*.png"))))
    assert img.shape == (240, 320, 3)


def test_labels_cover_the_rendered_targets(tiny_dataset) -> None:
    """Target pixels (saturated red/orange/magenta/yellow palettes) lie inside labelled boxes."""
    import cv2

    checked = 0
    for img_path in sorted((tiny_dataset.root / "images/train").glob("*.png")):
        rows = read_labels(tiny_dataset.root / "labels/train" / f"{img_path.stem}.txt")
        if not len(rows):
            continue
        rgb = cv2.imread(str(img_path))[..., ::-1].astype(int)
        h, w = rgb.shape[:2]
        inside = np.zeros((h, w), dtype=bool)
        for _, cx, cy, bw, bh in rows:
            x1, x2 = int((cx - bw / 2) * w), int(np.ceil((cx + bw / 2) * w))
            y1, y2 = int((cy - bh / 2) * h), int(np.ceil((cy + bh / 2) * h))
            inside[max(y1 - 1, 0) : y2 + 1, max(x1 - 1, 0) : x2 + 1] = True
        # In the labelled boxes, the image holds strongly saturated target colours.
        sat = rgb.max(axis=2) - rgb.min(axis=2)
        assert (sat[inside] > 120).any(), f"{img_path.name}: no target colour inside its boxes"
        checked += 1
    assert checked >= 3


def test_existing_folder_is_refused_then_replaced_and_camera_override(tiny_dataset, tmp_path) -> None:
    with pytest.raises(FlybyError, match="already exists.*overwrite"):
        export_dataset(tiny_dataset.root, TINY, progress=False)
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    small = replace(TINY, train_frames_per_seed=1, val_frames_per_seed=1, test_frames_per_seed=1, batch=1)
    # Another camera too: the training preset's 128x128.
    ds = export_dataset(
        out, small, CameraCfg(preset=ResolutionPreset.TRAINING), overwrite=True, progress=False
    )
    assert not (out / "stale.txt").exists() and ds.counts["train"]["images"] == 1
    assert json.loads((ds.root / "dataset.json").read_text())["camera"]["width"] == 128
    (tmp_path / "file").write_text("x")
    with pytest.raises(FlybyError, match="is a file"):
        export_dataset(tmp_path / "file", small, overwrite=True, progress=False)


def test_failure_leaves_no_partial_dataset(tmp_path, monkeypatch) -> None:
    import flyby.perception.yolo_dataset as mod

    def boom(*args, **kwargs):
        raise RuntimeError("renderer died")

    monkeypatch.setattr(mod, "sample_camera_poses", boom)
    with pytest.raises(RuntimeError, match="renderer died"):
        export_dataset(tmp_path / "ds", TINY, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_held_out_seeds_must_be_apart() -> None:
    from flyby.config import check

    with pytest.raises(ConfigError) as err:
        check(replace(TINY, val_seeds=(0, 100), test_seeds=(100,)))
    text = str(err.value)
    assert "val_seeds: world seeds [0] are also in train_seeds" in text
    assert "test_seeds: world seeds [100] are also in val_seeds" in text
    with pytest.raises(ConfigError, match="altitude_m: min 50.0 is greater than max 45.0"):
        check(replace(TINY, altitude_m=(50.0, 45.0)))
    with pytest.raises(ConfigError, match="train_seeds: give at least one"):
        check(replace(TINY, train_seeds=()))


def test_poses_clear_buildings_and_stay_inside() -> None:
    world = generate_world(seed=3)
    cfg = YoloDatasetCfg()
    tpos, _ = world.target_poses(0.0)
    pos, quat, aimed = sample_camera_poses(
        np.random.default_rng(0), world, tpos, 200, cfg, render_camera_cfg()
    )
    assert (np.abs(pos[:, :2]) <= world.half_extent).all()
    assert (pos[:, 2] >= world.height_at(pos[:, :2]) + cfg.building_clearance_m - 1e-9).all()
    assert not world.points_in_buildings(pos).any()
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0)
    assert 0.6 < aimed.mean() < 0.95  # about 1 - background_fraction


def test_label_lines_by_hand_and_bad_boxes() -> None:
    lines = yolo_label_lines(np.array([[0, 0, 160, 120], [300, 200, 320, 240]]), np.array([0, 1]), 320, 240)
    assert lines == ["0 0.250000 0.250000 0.500000 0.500000", "1 0.968750 0.916667 0.062500 0.166667"]
    assert yolo_label_lines(np.zeros((0, 4)), np.zeros(0), 320, 240) == []
    with pytest.raises(ValueError, match="inside the 320x240 image"):
        yolo_label_lines(np.array([[0, 0, 330, 10]]), np.array([0]), 320, 240)
    with pytest.raises(ValueError, match="cls has 2 entries for 1 boxes"):
        yolo_label_lines(np.array([[0, 0, 3, 3]]), np.array([0, 1]), 320, 240)


def test_parse_seeds() -> None:
    assert parse_seeds("0..3") == (0, 1, 2, 3)
    assert parse_seeds("100, 101") == (100, 101)
    assert parse_seeds("0..1,7") == (0, 1, 7)
    for bad in ("a", "3..1", "-1", ""):
        with pytest.raises(ConfigError, match="seed"):
            parse_seeds(bad)
