"""Dynamic mode of the MuJoCo backend: free-body drones, gravity, contacts, wrench frames, IMU reading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flyby.control import CascadeCfg, CascadeController
from flyby.dynamics.multirotor import MultirotorCfg, RotorModel
from flyby.enums import ResolutionPreset
from flyby.geometry import STANDARD_GRAVITY, quat_wxyz_to_rot, rotate_inverse, yaw_quat_wxyz
from flyby.perception.camera import CameraCfg
from flyby.sim import mujoco_scene
from flyby.sim.base import DynamicSimBackend, SimBackend, make_backend

mb = pytest.importorskip(
    "flyby.sim.mujoco_backend", reason="MuJoCo offscreen rendering (EGL/OSMesa) is unavailable"
)

AIRFRAME = MultirotorCfg()
WEIGHT_N = AIRFRAME.mass_kg * STANDARD_GRAVITY
HALF_HEIGHT_M = AIRFRAME.collision_half_extent_m[2]
LEVEL = np.array([[1.0, 0.0, 0.0, 0.0]])


@pytest.fixture(scope="module")
def dyn(world):
    """Two free-body drones in the default world (seed 0, with buildings)."""
    with mb.MujocoBackend(
        world, 2, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(160, 120), dynamic=AIRFRAME
    ) as backend:
        yield backend


def place(backend, pos_w, quat_wxyz=None) -> None:
    pos = np.asarray(pos_w, dtype=float).reshape(-1, 3)
    quat = np.tile(LEVEL, (len(pos), 1)) if quat_wxyz is None else np.asarray(quat_wxyz, dtype=float)
    backend.reset_drone_states(pos, quat)


def test_scene_layout(dyn, world):
    assert isinstance(dyn, SimBackend) and isinstance(dyn, DynamicSimBackend)
    m = dyn.model
    assert dyn.dynamic is AIRFRAME and dyn.physics_dt == 0.004
    assert m.opt.timestep == 0.004 and m.opt.gravity[2] == pytest.approx(-STANDARD_GRAVITY)
    assert m.nq == 14 and m.nu == 12
    body = mb.mujoco.mj_name2id(m, mb.mujoco.mjtObj.mjOBJ_BODY, "drone_0")
    assert m.body_mass[body] == pytest.approx(AIRFRAME.mass_kg)
    np.testing.assert_allclose(m.body_inertia[body], AIRFRAME.inertia_kgm2)
    # One invisible collision box per building, in the never-drawn group.
    names = [m.geom(g).name for g in range(m.ngeom)]
    boxes = [g for g, name in enumerate(names) if name.startswith("building_collision_")]
    assert len(boxes) == world.num_buildings
    assert (m.geom_group[boxes] == mujoco_scene.GROUP_COLLISION).all()
    # Only world boxes, the ground and drone boxes collide.
    colliding = {names[g] for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]}
    assert colliding == {"ground", *(names[g] for g in boxes), "drone_0_collision", "drone_1_collision"}


def test_make_backend_passes_dynamic_mode_through(world):
    cam = CameraCfg(preset=ResolutionPreset.MULTI)
    with make_backend(
        "mujoco", world, 1, cam, overview_size=(64, 48), dynamic=AIRFRAME, physics_dt=0.002
    ) as b:
        assert b.dynamic is AIRFRAME and b.physics_dt == 0.002 and b.model.opt.timestep == 0.002
        assert "dynamic" in repr(b)


def test_kinematic_scene_has_no_collision_geometry(world):
    with mb.MujocoBackend(world, 1, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(64, 48)) as kin:
        assert kin.dynamic is None
        assert not kin.model.geom_contype.any() and not kin.model.geom_conaffinity.any()
        assert kin.model.nu == 0 and kin.model.nq == 0
        with pytest.raises(RuntimeError, match="dynamic mode"):
            kin.step_physics()
        with pytest.raises(RuntimeError, match="dynamic mode"):
            kin.drone_state()


def test_set_drone_poses_raises_in_dynamic_mode(dyn):
    with pytest.raises(RuntimeError, match="reset_drone_states"):
        dyn.set_drone_poses(np.zeros((2, 3)), np.tile(LEVEL, (2, 1)))


def test_free_fall_without_thrust(dyn):
    place(dyn, [[0.0, 0.0, 80.0], [5.0, 0.0, 80.0]])
    dyn.apply_body_wrench(np.zeros((2, 3)), np.zeros((2, 3)))
    t0 = dyn.sim_time_s
    dyn.step_physics(250)  # 1 s
    state = dyn.drone_state()
    assert dyn.sim_time_s - t0 == pytest.approx(1.0)
    np.testing.assert_allclose(state.lin_vel_w[:, 2], -STANDARD_GRAVITY, rtol=1e-9)
    # Semi-implicit Euler: z drops by g h^2 n (n + 1) / 2.
    np.testing.assert_allclose(
        state.pos_w[:, 2], 80.0 - STANDARD_GRAVITY * 0.004**2 * 250 * 251 / 2, rtol=1e-9
    )
    # an accelerometer in free fall reads 0
    np.testing.assert_allclose(state.specific_force_b, 0.0, atol=1e-9)
    assert not state.contact.any()


def test_resting_on_the_ground_reads_plus_g_and_contact(dyn):
    place(dyn, [[2.0, 3.0, 0.3], [0.0, 0.0, 40.0]])
    dyn.apply_body_wrench(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, WEIGHT_N]]), np.zeros((2, 3)))
    dyn.step_physics(500)
    state = dyn.drone_state()
    # Drone 0 settled on its collision box; drone 1 hovers on a weight-cancelling force.
    assert state.pos_w[0, 2] == pytest.approx(HALF_HEIGHT_M, abs=2e-3)
    np.testing.assert_allclose(state.lin_vel_w[0], 0.0, atol=1e-3)
    np.testing.assert_allclose(state.specific_force_b, [[0, 0, STANDARD_GRAVITY]] * 2, atol=1e-3)
    np.testing.assert_array_equal(state.contact, [True, False])
    assert state.pos_w[1, 2] == pytest.approx(40.0, abs=1e-6)


def test_tilted_at_rest_accelerometer_sees_gravity_in_body_frame(dyn):
    # Hovering force along world up while rolled 30 deg: specific force = R^T (0, 0, g).
    roll = math.radians(30.0)
    quat = np.array([[math.cos(roll / 2), math.sin(roll / 2), 0.0, 0.0]] * 2)
    place(dyn, [[0.0, 0.0, 40.0], [5.0, 0.0, 40.0]], quat)
    up_b = rotate_inverse(quat, np.tile([0.0, 0.0, WEIGHT_N], (2, 1)))
    dyn.apply_body_wrench(up_b, np.zeros((2, 3)))
    dyn.step_physics(50)
    state = dyn.drone_state()
    np.testing.assert_allclose(state.lin_vel_w, 0.0, atol=1e-9)
    np.testing.assert_allclose(
        state.specific_force_b[0],
        [0.0, STANDARD_GRAVITY * math.sin(roll), STANDARD_GRAVITY * math.cos(roll)],
        atol=1e-6,
    )


def test_body_wrench_turns_with_the_drone(dyn):
    # Yawed 90 deg: a body +x force pushes north; a body torque about x spins about body x.
    quat = yaw_quat_wxyz(np.array([math.pi / 2, math.pi / 2]))
    place(dyn, [[0.0, 0.0, 40.0], [5.0, 0.0, 40.0]], quat)
    force = np.array([[3.0, 0.0, WEIGHT_N], [0.0, 0.0, WEIGHT_N]])
    torque = np.array([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]])
    dyn.apply_body_wrench(force, torque)
    dyn.step_physics(25)  # 0.1 s
    state = dyn.drone_state()
    assert state.lin_vel_w[0, 1] == pytest.approx(3.0 / AIRFRAME.mass_kg * 0.1, rel=1e-6)
    assert abs(state.lin_vel_w[0, 0]) < 1e-9
    expected_rate = 0.01 / AIRFRAME.inertia_kgm2[0] * 0.1
    assert state.ang_vel_b[1, 0] == pytest.approx(expected_rate, rel=1e-3)
    np.testing.assert_allclose(state.ang_vel_b[1, 1:], 0.0, atol=1e-6)
    # The spin is about the body x axis, which points north after the yaw.
    x_axis_w = quat_wxyz_to_rot(state.quat_wxyz)[1][:, 0]
    np.testing.assert_allclose(x_axis_w, [0.0, 1.0, 0.0], atol=1e-3)


def test_bad_wrench_and_reset_inputs(dyn):
    with pytest.raises(ValueError, match="force_b"):
        dyn.apply_body_wrench(np.zeros((1, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        dyn.apply_body_wrench(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="1e\\+10"):
        dyn.apply_body_wrench(np.full((2, 3), 1e11), np.zeros((2, 3)))
    assert (dyn.data.ctrl == 0).all()
    with pytest.raises(ValueError, match="ids"):
        dyn.reset_drone_states(np.zeros((1, 3)), LEVEL, ids=np.array([2]))
    with pytest.raises(ValueError, match="n must be"):
        dyn.step_physics(0)
    with pytest.raises(ValueError, match="physics_dt"):
        mb.MujocoBackend(dyn.world, 1, dyn.camera, dynamic=AIRFRAME, physics_dt=0.05)


def test_physics_blow_up_is_an_error_not_a_silent_reset(dyn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warning to ./MUJOCO_LOG.TXT
    place(dyn, [[0.0, 0.0, 40.0], [5.0, 0.0, 40.0]])
    dyn.apply_body_wrench(np.zeros((2, 3)), np.array([[0.0, 0.0, 0.0], [0.0, 1e9, 0.0]]))
    with pytest.raises(mb.PhysicsUnstable, match="drone 1"):
        dyn.step_physics(3)
    place(dyn, [[0.0, 0.0, 40.0], [5.0, 0.0, 40.0]])  # usable again after a reset
    dyn.step_physics(3)
    assert np.isfinite(dyn.drone_state().pos_w).all()


def clear_approach(world, min_height: float = 12.0) -> tuple[int, np.ndarray]:
    """A building at least ``min_height`` tall and a point 6 m west of it with a clear line to its face."""
    for b in np.argsort(-world.building_max_w[:, 2]):
        lo, hi = world.building_min_w[b], world.building_max_w[b]
        if hi[2] < min_height:
            break
        y = 0.5 * (lo[1] + hi[1])
        line = np.stack([np.linspace(lo[0] - 6.0, lo[0] - 0.8, 30), np.full(30, y), np.full(30, 8.0)], axis=1)
        if not world.points_in_buildings(line, margin_m=0.5).any():
            return int(b), line[0]
    raise AssertionError("no building with a clear approach in this world")


def test_drone_flying_into_a_building_stops_with_contact(dyn, world):
    b, start = clear_approach(world)
    face_x = world.building_min_w[b, 0]
    place(dyn, [start, [0.0, 0.0, 40.0]])
    rotors = RotorModel(AIRFRAME, 2)
    ctrl = CascadeController(CascadeCfg(), AIRFRAME, 2)
    vel_sp = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    state = dyn.drone_state()
    touched = np.zeros(2, dtype=bool)
    corners_b = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * np.asarray(
        AIRFRAME.collision_half_extent_m
    )
    max_x = -np.inf  # front-most point of drone 0's collision box
    for _ in range(round(5.0 / 0.004)):
        u = ctrl.update(vel_sp, np.zeros(2), state, 0.004)
        omega = rotors.step(u, True, 0.004)
        dyn.apply_body_wrench(*rotors.wrench_b(omega, rotate_inverse(state.quat_wxyz, state.lin_vel_w)))
        dyn.step_physics(1)
        state = dyn.drone_state()
        touched |= state.contact
        corners_w = state.pos_w[0] + corners_b @ quat_wxyz_to_rot(state.quat_wxyz)[0].T
        max_x = max(max_x, corners_w[:, 0].max())
    np.testing.assert_array_equal(touched, [True, False])
    # Stopped at the wall: the collision box reaches the face and sinks in by at most a few cm.
    assert face_x - 0.02 < max_x < face_x + 0.05
    np.testing.assert_allclose(state.lin_vel_w[0], 0.0, atol=0.2)
    assert state.contact[0]


def test_rendering_follows_the_physics(dyn):
    place(dyn, [[0.0, 0.0, 30.0], [10.0, 0.0, 30.0]])
    dyn.apply_body_wrench(np.zeros((2, 3)), np.zeros((2, 3)))
    before = dyn.render_cameras()
    dyn.step_physics(250)  # 4.9 m of free fall
    pos, _ = dyn.drone_poses()
    np.testing.assert_array_equal(pos, dyn.drone_state().pos_w)
    after = dyn.render_cameras()
    assert after.shape == (2, 80, 80, 3) and after.std() > 5
    assert np.abs(after.astype(int) - before).mean() > 2, "camera did not move with the drone"
    uv = dyn.overview_project(pos)
    assert np.isfinite(uv).all()
    assert dyn.render_overview().shape == (120, 160, 3)
