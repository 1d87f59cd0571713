"""The MuJoCo backend: shapes, determinism, and that pixels line up with the pinhole model."""

from __future__ import annotations

import numpy as np
import pytest

from flyby.enums import BackendKind, ResolutionPreset
from flyby.geometry import yaw_quat_wxyz, yaw_rotation
from flyby.perception.camera import CameraCfg, PinholeIntrinsics, camera_poses_w
from flyby.sim import mujoco_scene
from flyby.sim.base import SimBackend, make_backend
from flyby.sim.gl import ensure_gl_platform
from flyby.world import WorldCfg, generate_world

mb = pytest.importorskip(
    "flyby.sim.mujoco_backend", reason="MuJoCo offscreen rendering (EGL/OSMesa) is unavailable"
)


def quat_to_rot(q: np.ndarray) -> np.ndarray:
    """(N, 4) wxyz -> (N, 3, 3), written out independently of the code under test."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def assert_same_image(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to rasteriser rounding: the same camera drawn at another viewport
    position of the framebuffer may differ by 1 in a few texture-interpolated pixels."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 1e-3, (
        f"max diff {diff.max()}, {(diff > 0).mean():.2%} differ"
    )


def random_poses(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(-70, 70, (n, 2)), rng.uniform(25, 45, n)]
    return pos, yaw_quat_wxyz(rng.uniform(-np.pi, np.pi, n))


@pytest.fixture(scope="module")
def backend16(world):
    """16 drones, 80x80 multi-drone tiles, default world (shared by the module)."""
    with make_backend("mujoco", world, 16, CameraCfg(preset=ResolutionPreset.MULTI)) as backend:
        backend.set_drone_poses(*random_poses(16))
        yield backend


# ----------------------------------------------------------------------------- API, shapes


def test_backend_satisfies_protocol(backend16):
    assert isinstance(backend16, SimBackend)
    assert backend16.kind is BackendKind.MUJOCO
    assert backend16.num_drones == 16
    assert backend16.description.startswith("mujoco ")
    assert ensure_gl_platform().upper() in backend16.description


@pytest.mark.parametrize(
    ("n", "preset"),
    [(1, ResolutionPreset.TRAINING), (4, ResolutionPreset.EVALUATION)],
)
def test_render_shapes_small(world, n, preset):
    cam = CameraCfg(preset=preset)
    with mb.MujocoBackend(world, n, cam, overview_size=(160, 120)) as backend:
        backend.set_drone_poses(*random_poses(n, seed=n))
        imgs = backend.render_cameras()
        assert imgs.shape == (n, cam.height, cam.width, 3) and imgs.dtype == np.uint8
        assert imgs.std() > 5, "camera images are blank"
        ov = backend.render_overview()
        assert ov.shape == (120, 160, 3) and ov.dtype == np.uint8


def test_render_shapes_16(backend16):
    imgs = backend16.render_cameras()
    assert imgs.shape == (16, 80, 80, 3) and imgs.dtype == np.uint8
    # Every tile shows a scene (not black, not one flat colour).
    assert (imgs.reshape(16, -1).std(axis=1) > 5).all()
    ov = backend16.render_overview()
    assert ov.shape == (480, 640, 3) and ov.dtype == np.uint8
    grid, offsets = backend16.render_grid()
    assert grid.shape == (4 * 80 + 3, 4 * 80 + 3, 3)
    x, y = offsets[5]
    np.testing.assert_array_equal(grid[y : y + 80, x : x + 80], imgs[5])


def test_subset_ids_match_full_render(backend16):
    full = backend16.render_cameras()
    ids = np.array([9, 3, 15, 0, 7])  # 5 tiles: a partial last viewport row
    assert_same_image(backend16.render_cameras(ids), full[ids])
    assert backend16.render_cameras(np.array([], dtype=int)).shape == (0, 80, 80, 3)


def test_rendering_is_deterministic(backend16):
    a = backend16.render_cameras()
    ov_a = backend16.render_overview()
    backend16.set_drone_poses(*random_poses(16, seed=99))
    backend16.render_cameras()
    backend16.set_drone_poses(*random_poses(16))
    np.testing.assert_array_equal(backend16.render_cameras(), a)
    np.testing.assert_array_equal(backend16.render_overview(), ov_a)


def test_moving_one_drone_changes_only_its_image(backend16):
    before = backend16.render_cameras()
    pos, quat = backend16.drone_poses()
    backend16.set_drone_poses(pos[[2]] + [15.0, -10.0, 5.0], quat[[2]], ids=np.array([2]))
    after = backend16.render_cameras()
    assert np.abs(after[2].astype(int) - before[2]).mean() > 3
    others = np.arange(16) != 2
    np.testing.assert_array_equal(after[others], before[others])
    backend16.set_drone_poses(pos, quat)


def test_targets_move_when_set(backend16, world):
    ov0 = backend16.render_overview()
    pos, yaw = world.target_poses(0.0)
    backend16.set_target_poses(pos + [0.0, 0.0, 30.0], yaw)
    assert np.abs(backend16.render_overview().astype(int) - ov0).sum() > 0
    backend16.set_target_poses(pos, yaw)
    np.testing.assert_array_equal(backend16.render_overview(), ov0)


def test_bad_inputs_raise(backend16):
    with pytest.raises(ValueError, match="pos_w"):
        backend16.set_drone_poses(np.zeros((3, 3)), np.tile([1.0, 0, 0, 0], (4, 1)))
    with pytest.raises(ValueError, match="ids"):
        backend16.render_cameras(np.array([16]))
    with pytest.raises(ValueError, match="finite"):
        backend16.set_drone_poses(np.full((1, 3), np.nan), np.array([[1.0, 0, 0, 0]]), ids=np.array([0]))
    with pytest.raises(ValueError, match="yaw_rad"):
        backend16.set_target_poses(np.zeros((1, 3)), np.zeros(1))


def test_batches_larger_than_the_framebuffer(world, monkeypatch):
    # Shrink the framebuffer cap so 6 cameras need two passes of 2x2 viewports.
    import flyby.sim.mujoco_cameras as cameras

    monkeypatch.setattr(cameras, "_MAX_BUFFER_PX", 160)
    with mb.MujocoBackend(
        world, 6, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(160, 120)
    ) as backend:
        assert backend._renderer.grid == (2, 2)
        backend.set_drone_poses(*random_poses(6, seed=5))
        imgs = backend.render_cameras()
        singles = np.concatenate([backend.render_cameras(np.array([i])) for i in range(6)])
        assert_same_image(imgs, singles)


# ----------------------------------------------------------------------------- pixels vs pinhole model

TARGET_POS_W = np.array([6.0, -4.0, 0.75])  # vehicle box centre (height 1.5 m)
TARGET_YAW = 0.4


@pytest.fixture(scope="module")
def lone_vehicle_world():
    """No buildings, one road, one (orange) vehicle."""
    return generate_world(WorldCfg(num_buildings=0, roads_per_axis=1, num_vehicles=1, num_people=0), seed=3)


def box_corners_w(centre: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    return centre + (signs * size / 2) @ yaw_rotation(np.array([yaw]))[0].T


def projected_bbox(
    cam: CameraCfg, drone_pos: np.ndarray, drone_quat: np.ndarray, pts_w: np.ndarray
) -> np.ndarray:
    """(u_min, v_min, u_max, v_max) of world points through the pinhole model."""
    cam_pos, rot_wc = camera_poses_w(drone_pos[None], quat_to_rot(drone_quat[None]), cam)
    p_c = (pts_w - cam_pos[0]) @ rot_wc[0]
    assert (p_c[:, 2] > 0).all(), "target behind the camera"
    k = PinholeIntrinsics.from_cfg(cam)
    u = k.fx * p_c[:, 0] / p_c[:, 2] + k.cx
    v = k.fy * p_c[:, 1] / p_c[:, 2] + k.cy
    return np.array([u.min(), v.min(), u.max(), v.max()])


def rendered_bbox(img: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Pixel-edge bbox (u_min, v_min, u_max, v_max) of the orange/red target pixels."""
    assert rgb[0] > 0.8 and rgb[2] < 0.2, "test expects an orange/red vehicle"
    r, g, b = (img[..., i].astype(int) for i in range(3))
    mask = (r > 100) & (r - g > 50) & (r - b > 80)
    assert mask.sum() > 20, "target not visible in the render"
    vs, us = np.nonzero(mask)
    return np.array([us.min(), vs.min(), us.max() + 1, vs.max() + 1], dtype=float)


@pytest.mark.parametrize(
    ("pitch_deg", "drone_pos", "yaw", "roll"),
    [
        (90.0, np.array([7.0, -2.5, 20.0]), 0.9, 0.0),  # nadir, yawed
        (50.0, np.array([6.0, -4.0, 0.0]), 2.0, 0.06),  # oblique, yawed and slightly rolled
    ],
    ids=["nadir", "pitch50"],
)
def test_target_pixels_match_pinhole_projection(lone_vehicle_world, pitch_deg, drone_pos, yaw, roll):
    world = lone_vehicle_world
    cam = CameraCfg(preset=ResolutionPreset.EVALUATION, pitch_deg=pitch_deg)  # 320x240: non-square
    if pitch_deg < 90:
        # Stand back from the target along the heading, 18 m up, 1.5 m to the side.
        heading = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        left = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
        drone_pos = TARGET_POS_W * [1, 1, 0] - 14.0 * heading + 1.5 * left + [0, 0, 18.0]
    # Body attitude: yaw about z, then roll about body x (wxyz quaternion product).
    qz = np.array([np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)])
    qx = np.array([np.cos(roll / 2), np.sin(roll / 2), 0, 0])
    w1, x1, y1, z1 = qz
    w2, x2, y2, z2 = qx
    quat = np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )
    with mb.MujocoBackend(world, 1, cam, overview_size=(160, 120)) as backend:
        backend.set_target_poses(TARGET_POS_W[None], np.array([TARGET_YAW]))
        backend.set_drone_poses(drone_pos[None], quat[None])
        img = backend.render_cameras()[0]
        rgb = backend.target_rgba[0, :3]
    corners = box_corners_w(TARGET_POS_W, world.target_size_m[0], TARGET_YAW)
    expected = projected_bbox(cam, drone_pos, quat, corners)
    got = rendered_bbox(img, rgb)
    # Inside the image and not degenerate, so the comparison means something.
    assert (
        expected[0] > 2 and expected[1] > 2 and expected[2] < cam.width - 2 and expected[3] < cam.height - 2
    )
    assert expected[2] - expected[0] > 15
    np.testing.assert_allclose(got, expected, atol=2.0, err_msg=f"rendered {got} vs projected {expected}")


# ----------------------------------------------------------------------------- overview


def test_overview_projection_centre_and_marker(world):
    with mb.MujocoBackend(world, 2, CameraCfg(preset=ResolutionPreset.MULTI)) as backend:
        uv = backend.overview_project(np.array([[0.0, 0.0, 0.0]]))
        np.testing.assert_allclose(uv[0], [320.0, 240.0], atol=1.0)
        # Area corners are inside the image.
        hx, hy = world.half_extent
        corners = np.array([[sx * hx, sy * hy, 0.0] for sx in (-1, 1) for sy in (-1, 1)])
        c_uv = backend.overview_project(corners)
        assert ((c_uv >= 0) & (c_uv <= [640, 480])).all()
        # Drone 0's cyan marker is drawn where overview_project puts the drone.
        drone_pos = np.array([[30.0, 20.0, 45.0], [-60.0, -50.0, 45.0]])
        backend.set_drone_poses(drone_pos, yaw_quat_wxyz(np.zeros(2)))
        ov = backend.render_overview().astype(int)
        assert tuple(mujoco_scene.DRONE_RGB[0]) == (0.0, 0.9, 1.0)
        mask = (ov[..., 0] < 80) & (ov[..., 1] > 130) & (ov[..., 2] > 160)
        assert mask.sum() > 10, "drone marker not visible in the overview"
        vs, us = np.nonzero(mask)
        expected = backend.overview_project(drone_pos[:1])[0]
        np.testing.assert_allclose([us.mean() + 0.5, vs.mean() + 0.5], expected, atol=2.0)
        oc = backend.overview_camera  # a point 1 m behind the camera has no pixel
        assert np.isnan(backend.overview_project((oc.pos_w - oc.rot_wc[:, 2])[None])).all()


# ----------------------------------------------------------------------------- lifetime


def test_close_is_idempotent(world):
    backend = mb.MujocoBackend(world, 1, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(64, 48))
    backend.render_cameras()
    backend.close()
    backend.close()
    assert backend.closed
    with pytest.raises(RuntimeError, match="closed"):
        backend.render_cameras()
    with pytest.raises(RuntimeError, match="closed"):
        backend.render_overview()
