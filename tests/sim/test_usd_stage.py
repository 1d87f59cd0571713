"""The ISR world as a USD stage (flyby.sim.usd_stage), opened and checked with Pixar's pxr (usd-core).

The Isaac Sim backend loads this stage, so what is checked here is what Isaac Sim renders: prim
counts, box extents, class labels, units, and that every drone camera projects a world point to
the pixel flyby's pinhole model gives (within 0.5 px; measured: 3e-6 px, USD stores the lens as float32).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from flyby.dynamics.multirotor import MultirotorCfg
from flyby.enums import ResolutionPreset
from flyby.errors import BackendUnavailable
from flyby.geometry import quat_wxyz_to_rot
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.sim import usd_stage as us
from flyby.world import WorldCfg, generate_world

pxr = pytest.importorskip("pxr", reason="usd-core is not installed: pip install 'flyby[usd]'")
from pxr import Gf, Usd, UsdGeom, UsdPhysics, UsdSemantics  # noqa: E402


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldCfg(), seed=3)


def children(stage, path: str) -> list:
    return list(stage.GetPrimAtPath(path).GetChildren())


def label(prim) -> list[str]:
    return list(UsdSemantics.LabelsAPI(prim, us.CLASS_TAXONOMY).GetLabelsAttr().Get())


def test_units_counts_and_class_labels(world):
    stage = us.build_usd_stage(world, 4, CameraCfg())
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdPhysics.GetStageKilogramsPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetPath() == "/World"
    assert len(children(stage, "/World/Buildings")) == world.num_buildings > 0
    assert len(children(stage, "/World/Roads")) == len(world.road_axis) > 0
    assert len(children(stage, "/World/Targets")) == world.num_targets > 0
    assert len(children(stage, "/World/Drones")) == 4
    cameras = [p for p in stage.Traverse() if p.IsA(UsdGeom.Camera)]
    assert [str(p.GetPath()) for p in cameras] == [f"{us.drone_path(i)}/camera" for i in range(4)]
    expected = {0: "vehicle", 1: "person"}
    for t in range(world.num_targets):
        assert label(stage.GetPrimAtPath(us.target_path(t))) == [expected[int(world.target_class[t])]]
    assert {label(p)[0] for p in children(stage, "/World/Buildings")} == {"building"}
    assert label(stage.GetPrimAtPath("/World/Ground")) == ["ground"]
    assert stage.GetRootLayer().customLayerData["flyby:world_seed"] == 3


def test_box_extents_are_the_world_s(world):
    stage = us.build_usd_stage(world, 1, CameraCfg())
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    for b in range(world.num_buildings):
        box = cache.ComputeWorldBound(
            stage.GetPrimAtPath(f"/World/Buildings/building_{b}")
        ).ComputeAlignedRange()
        np.testing.assert_allclose(box.GetMin(), world.building_min_w[b], atol=1e-9)
        np.testing.assert_allclose(box.GetMax(), world.building_max_w[b], atol=1e-9)
    # Targets are turned boxes: their corners, as the ground-truth detector computes them.
    for t in range(world.num_targets):
        to_world = UsdGeom.Xformable(stage.GetPrimAtPath(us.target_path(t))).ComputeLocalToWorldTransform(
            Usd.TimeCode.Default()
        )
        c, s = math.cos(world.target_yaw0_rad[t]), math.sin(world.target_yaw0_rad[t])
        half = 0.5 * world.target_size_m[t]
        for sx, sy, sz in ((1, 1, 1), (-1, 1, -1), (1, -1, 1), (-1, -1, -1)):
            local = Gf.Vec3d(0.5 * sx, 0.5 * sy, 0.5 * sz)  # a corner of the unit cube
            ox, oy = sx * half[0], sy * half[1]
            expected = world.target_pos0_w[t] + [c * ox - s * oy, s * ox + c * oy, sz * half[2]]
            np.testing.assert_allclose(to_world.Transform(local), expected, atol=1e-9)


def project_usd(stage, drone: int, points_w: np.ndarray, width: int, height: int) -> np.ndarray:
    """(k, 2) pixels of world points through the stage's camera of ``drone`` (Gf's frustum)."""
    cam = UsdGeom.Camera(stage.GetPrimAtPath(f"{us.drone_path(drone)}/camera")).GetCamera(
        Usd.TimeCode.Default()
    )
    frustum = cam.frustum
    to_ndc = frustum.ComputeViewMatrix() * frustum.ComputeProjectionMatrix()
    out = []
    for p in points_w:
        ndc = to_ndc.Transform(Gf.Vec3d(*p))
        out.append([(ndc[0] + 1.0) * 0.5 * width, (1.0 - ndc[1]) * 0.5 * height])
    return np.array(out)


def project_flyby(cam_pos, rot_wc, intr: PinholeIntrinsics, points_w: np.ndarray) -> np.ndarray:
    p_c = (points_w - cam_pos) @ rot_wc  # R_wc^T (p - c), row by row
    return np.stack([intr.fx * p_c[:, 0] / p_c[:, 2] + intr.cx, intr.fy * p_c[:, 1] / p_c[:, 2] + intr.cy], 1)


@pytest.mark.parametrize(
    "preset", [ResolutionPreset.TRAINING, ResolutionPreset.EVALUATION, ResolutionPreset.FULL]
)
def test_cameras_project_as_flyby_s_pinhole(world, preset):
    """Level drones at several yaws, then one drone turned and tilted through its orient op (what
    Isaac Sim's XFormPrim.set_world_poses writes): USD's projection equals flyby's within 0.5 px."""
    camera = CameraCfg(preset=preset, pitch_deg=35.0, fovy_deg=60.0)
    intr = PinholeIntrinsics.from_cfg(camera)
    rng = np.random.default_rng(0)
    pos = np.array([[0.0, 0.0, 40.0], [30.0, -20.0, 25.0], [-40.0, 35.0, 60.0]])
    yaw = np.array([0.3, 2.5, -1.9])
    stage = us.build_usd_stage(world, 3, camera, drone_pos_w=pos, drone_yaw_rad=yaw)
    quat = np.array([0.9, 0.2, -0.15, 0.35])
    quat /= np.linalg.norm(quat)
    orient = stage.GetPrimAtPath(us.drone_path(2)).GetAttribute("xformOp:orient")
    orient.Set(Gf.Quatd(*quat))
    rot_wb = np.stack(
        [quat_wxyz_to_rot(np.array([[math.cos(a / 2), 0, 0, math.sin(a / 2)]]))[0] for a in yaw]
    )
    rot_wb[2] = quat_wxyz_to_rot(quat[None])[0]
    cam_pos, rot_wc = camera_poses_w(pos, rot_wb, camera)
    checked = 0
    for i in range(3):
        # Points in front of the camera, spread over the image: depth 5-100 m, inside the frame.
        depth = rng.uniform(5.0, 100.0, 50)
        pix = rng.uniform([0, 0], [intr.width, intr.height], (50, 2))
        p_c = np.stack(
            [(pix[:, 0] - intr.cx) / intr.fx * depth, (pix[:, 1] - intr.cy) / intr.fy * depth, depth], 1
        )
        points_w = cam_pos[i] + p_c @ rot_wc[i].T
        ours = project_flyby(cam_pos[i], rot_wc[i], intr, points_w)
        np.testing.assert_allclose(ours, pix, atol=1e-6)  # the construction is right
        theirs = project_usd(stage, i, points_w, intr.width, intr.height)
        assert np.abs(theirs - ours).max() < 0.5, f"drone {i}: {np.abs(theirs - ours).max():.3g} px"
        checked += len(points_w)
    assert checked == 150
    lens = us.usd_camera_params(camera)
    assert lens.horizontal_aperture / lens.vertical_aperture == pytest.approx(intr.width / intr.height)
    cam = UsdGeom.Camera(stage.GetPrimAtPath(f"{us.drone_path(0)}/camera"))
    assert tuple(cam.GetClippingRangeAttr().Get()) == pytest.approx((camera.near_m, camera.far_m))


def test_overview_camera_projects_as_the_mujoco_one(world):
    from flyby.sim.overview import overview_camera_for

    overview = overview_camera_for(world, 640, 480)
    stage = us.build_usd_stage(world, 1, CameraCfg(), overview=overview)
    hx, hy = world.half_extent
    points = np.array(
        [[sx * hx, sy * hy, z] for sx in (-1, 0.3, 1) for sy in (-1, 0.5, 1) for z in (0.0, 20.0)]
    )
    cam = UsdGeom.Camera(stage.GetPrimAtPath(us.OVERVIEW_PATH)).GetCamera(Usd.TimeCode.Default())
    to_ndc = cam.frustum.ComputeViewMatrix() * cam.frustum.ComputeProjectionMatrix()
    usd = np.array(
        [[(n[0] + 1) * 320, (1 - n[1]) * 240] for n in (to_ndc.Transform(Gf.Vec3d(*p)) for p in points)]
    )
    assert np.abs(usd - overview.project(points)).max() < 0.5
    assert not us.build_usd_stage(world, 1, CameraCfg()).GetPrimAtPath(us.OVERVIEW_PATH).IsValid()


def test_dynamic_drones_are_rigid_bodies_with_the_airframe_s_mass(world):
    airframe = MultirotorCfg()
    stage = us.build_usd_stage(world, 2, CameraCfg(), dynamic=airframe)
    for i in range(2):
        prim = stage.GetPrimAtPath(us.drone_path(i))
        assert prim.HasAPI(UsdPhysics.RigidBodyAPI) and prim.HasAPI(UsdPhysics.MassAPI)
        mass = UsdPhysics.MassAPI(prim)
        assert mass.GetMassAttr().Get() == pytest.approx(airframe.mass_kg)
        np.testing.assert_allclose(mass.GetDiagonalInertiaAttr().Get(), airframe.inertia_kgm2, rtol=1e-6)
        assert stage.GetPrimAtPath(f"{us.drone_path(i)}/body").HasAPI(UsdPhysics.CollisionAPI)
    scene = UsdPhysics.Scene(stage.GetPrimAtPath("/World/PhysicsScene"))
    assert scene.GetGravityMagnitudeAttr().Get() == pytest.approx(9.80665)
    assert all(p.HasAPI(UsdPhysics.CollisionAPI) for p in children(stage, "/World/Buildings"))
    kinematic = us.build_usd_stage(world, 1, CameraCfg())
    assert not kinematic.GetPrimAtPath(us.drone_path(0)).HasAPI(UsdPhysics.RigidBodyAPI)


def test_saved_stage_reopens_the_same(world, tmp_path):
    stage = us.build_usd_stage(world, 2, CameraCfg())
    path = us.save_usd_stage(stage, tmp_path / "scene" / "isr.usda")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["isr.usda"]  # no temp file left
    again = Usd.Stage.Open(str(path))
    assert len(children(again, "/World/Targets")) == world.num_targets
    assert UsdGeom.GetStageUpAxis(again) == UsdGeom.Tokens.z
    with pytest.raises(ValueError, match=r"'.*isr.obj' must end in .usd, .usda or .usdc"):
        us.save_usd_stage(stage, tmp_path / "isr.obj")


def test_bad_input_names_the_value(world):
    with pytest.raises(ValueError, match="num_drones=0 must be >= 1"):
        us.build_usd_stage(world, 0, CameraCfg())
    with pytest.raises(
        ValueError, match=r"expected drone_pos_w \(2, 3\) and drone_yaw_rad \(2,\).*got \(3,\)"
    ):
        us.build_usd_stage(world, 2, CameraCfg(), drone_pos_w=np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        us.build_usd_stage(world, 1, CameraCfg(), drone_pos_w=[[0.0, np.nan, 30.0]])


def test_without_usd_core_the_error_says_how_to_install_it(world, monkeypatch):
    monkeypatch.setitem(sys.modules, "pxr", None)  # import pxr now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'flyby\[usd\]'"):
        us.build_usd_stage(world, 1, CameraCfg())


def test_cli_writes_the_stage_and_refuses_bad_arguments(tmp_path, capsys):
    from flyby.cli import main

    out = tmp_path / "isr.usda"
    assert main(["usd", str(out), "--drones", "2", "--preset", "training", "--dynamic"]) == 0
    assert "2 drone(s) with 128x128 cameras, rigid bodies" in capsys.readouterr().out
    stage = Usd.Stage.Open(str(out))
    assert len(children(stage, "/World/Drones")) == 2
    assert stage.GetPrimAtPath(us.drone_path(1)).HasAPI(UsdPhysics.RigidBodyAPI)
    assert main(["usd", str(tmp_path / "isr.obj")]) == 2
    assert "must end in .usda (text), .usdc or .usd" in capsys.readouterr().err
    assert main(["usd", str(out), "--drones", "0"]) == 2
    assert "--drones must be >= 1, got 0" in capsys.readouterr().err
