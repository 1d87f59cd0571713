from __future__ import annotations

import numpy as np
import pytest

from flyby.enums import TargetClass
from flyby.errors import ConfigError
from flyby.world import WorldCfg, generate_world

ARRAYS = (
    "building_min_w",
    "building_max_w",
    "road_offset_m",
    "target_class",
    "target_size_m",
    "target_pos0_w",
    "target_yaw0_rad",
    "target_road",
    "target_speed_mps",
    "height_map_m",
)


def test_same_seed_same_world_bit_for_bit():
    a, b = generate_world(seed=7), generate_world(seed=7)
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    c = generate_world(seed=8)
    assert c.building_min_w.tobytes() != a.building_min_w.tobytes()


def test_layout_is_physically_consistent(world):
    half = world.half_extent
    assert world.num_buildings == 40 and world.size_m == (200.0, 200.0)
    lo, hi = world.building_min_w, world.building_max_w
    assert (lo[:, :2] >= -half).all() and (hi[:, :2] <= half).all()
    assert (lo[:, 2] == 0).all() and (hi[:, 2] >= 6.0).all() and (hi[:, 2] <= 35.0).all()
    # No two buildings overlap.
    for i in range(world.num_buildings):
        others = np.delete(np.arange(world.num_buildings), i)
        overlap = (lo[i, :2] < hi[others, :2]).all(1) & (hi[i, :2] > lo[others, :2]).all(1)
        assert not overlap.any()
    # No building stands on a road.
    for axis, off in zip(world.road_axis, world.road_offset_m):
        k = 1 - int(axis)
        assert not (
            (lo[:, k] < off + world.road_width_m / 2) & (hi[:, k] > off - world.road_width_m / 2)
        ).any()


def test_targets_have_two_classes_with_metric_sizes(world):
    classes = set(world.target_class.tolist())
    assert classes == {TargetClass.VEHICLE, TargetClass.PERSON}
    veh = world.target_class == TargetClass.VEHICLE
    np.testing.assert_allclose(world.target_size_m[veh], [[4.5, 1.8, 1.5]] * veh.sum())
    np.testing.assert_allclose(world.target_size_m[~veh], [[0.5, 0.5, 1.8]] * (~veh).sum())
    # People stand in the open, not inside buildings.
    assert not world.points_in_buildings(world.target_pos0_w[~veh]).any()


def test_moving_vehicles_drive_along_their_road_at_their_speed(world):
    moving = np.flatnonzero(world.moving)
    assert moving.size == 12
    p0, _ = world.target_poses(10.0)
    p1, yaw1 = world.target_poses(10.1)
    step = np.linalg.norm(p1[moving] - p0[moving], axis=1)
    bounced = np.abs(step - world.target_speed_mps[moving] * 0.1) > 1e-9
    assert bounced.sum() <= 1  # at most one turns round at the edge within 0.1 s
    for t in np.linspace(0, 300, 31):
        pos, yaw = world.target_poses(float(t))
        axis = world.road_axis[world.target_road[moving]]
        across = pos[moving, 1 - axis]  # coordinate that must stay on the road
        road = world.road_offset_m[world.target_road[moving]]
        assert (np.abs(across - road) <= world.road_width_m / 2).all()
        assert (np.abs(pos[moving, :2]) <= world.half_extent).all()
    static = np.flatnonzero(~world.moving)
    np.testing.assert_array_equal(world.target_poses(50.0)[0][static], world.target_pos0_w[static])


def test_height_map_matches_buildings(world):
    centres = 0.5 * (world.building_min_w + world.building_max_w)
    np.testing.assert_allclose(world.height_at(centres[:, :2]), world.building_max_w[:, 2], rtol=1e-6)
    assert world.height_at(np.array([[1e4, 1e4]]))[0] == 0.0
    inside = centres.copy()
    inside[:, 2] = 1.0
    assert world.points_in_buildings(inside).all()


def test_bad_world_inputs_raise_config_error():
    with pytest.raises(ConfigError, match="seed"):
        generate_world(seed=-1)
    with pytest.raises(ConfigError, match="building_height_m: min 40.0 is greater than max 10.0"):
        generate_world(WorldCfg(building_height_m=(40.0, 10.0)))
    with pytest.raises(ConfigError, match="need roads"):
        generate_world(WorldCfg(roads_per_axis=0))


def test_vehicles_keep_right_in_both_directions(world):
    moving = np.flatnonzero(world.moving)
    for t in np.linspace(0, 120, 61):
        pos, yaw = world.target_poses(float(t))
        axis = world.road_axis[world.target_road[moving]]
        heading = np.stack([np.cos(yaw[moving]), np.sin(yaw[moving])], axis=1)
        right = np.stack([heading[:, 1], -heading[:, 0]], axis=1)  # heading rotated -90 deg
        centre = pos[moving, :2].copy()
        centre[np.arange(moving.size), 1 - axis] = world.road_offset_m[world.target_road[moving]]
        offset = ((pos[moving, :2] - centre) * right).sum(axis=1)
        assert (offset > 0).all(), "a vehicle drives on the left"


def test_fast_world_queries_match_plain_formulas_bit_for_bit(world):
    """target_poses, height_at and points_in_buildings against their plain numpy formulas."""
    mov = np.flatnonzero(world.moving)
    axis = world.road_axis[world.target_road[mov]].astype(np.intp)
    half = world.half_extent[axis] - 0.5 * world.target_size_m[mov, 0]
    length = 2.0 * half
    s0 = world.target_pos0_w[mov, axis] + half
    forward = np.cos(world.target_yaw0_rad[mov] - axis * (np.pi / 2)) >= 0
    u0 = np.where(forward, s0, 2 * length - s0)
    road_centre = world.road_offset_m[world.target_road[mov]]
    lane = np.abs(world.target_pos0_w[mov, 1 - axis] - road_centre)
    for t_s in np.linspace(0.0, 400.0, 41).tolist():
        pos, yaw = world.target_pos0_w.copy(), world.target_yaw0_rad.copy()
        u = np.mod(u0 + world.target_speed_mps[mov] * t_s, 2 * length)
        going = u < length
        pos[mov, axis] = np.where(going, u, 2 * length - u) - half
        right = np.where(going, 1.0, -1.0) * np.where(axis == 0, -1.0, 1.0)
        pos[mov, 1 - axis] = road_centre + right * lane
        yaw[mov] = axis * (np.pi / 2) + np.where(going, 0.0, np.pi)
        got_pos, got_yaw = world.target_poses(t_s)
        assert got_pos.tobytes() == pos.tobytes() and got_yaw.tobytes() == yaw.tobytes()

    rng = np.random.default_rng(0)
    xy = rng.uniform(-150.0, 150.0, (50, 9, 2))
    xy[0, :4] = [[-1e4, 0.0], [1e4, 0.0], [0.0, -1e4], [0.0, 1e4]]
    padded = np.pad(world.height_map_m, 1)
    ij = np.floor((xy + world.half_extent) / world.height_map_cell_m).astype(np.intp) + 1
    ij = np.minimum(np.maximum(ij, 0), np.asarray(padded.shape) - 1)
    assert world.height_at(xy).tobytes() == padded[ij[..., 0], ij[..., 1]].tobytes()
    assert (world.height_at(xy[0, :4]) == 0.0).all()

    points = np.c_[rng.uniform(-100.0, 100.0, (500, 2)), rng.uniform(0.0, 40.0, 500)]
    points[:40] = world.building_min_w  # exactly on a corner: inside (boxes are closed)
    for margin in (0.0, 0.35):
        lo, hi = world.building_min_w - margin, world.building_max_w + margin
        p = points[:, None, :]
        expected = ((p >= lo) & (p <= hi)).all(axis=2).any(axis=1)
        np.testing.assert_array_equal(world.points_in_buildings(points, margin), expected)
    assert world.points_in_buildings(points[:40]).all()


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_compiled_target_poses_equal_the_reference_bit_for_bit(seed):
    """flyby.mdp.kernels.target_poses_into (the compiled step's) against ISRWorld.target_poses."""
    from flyby.mdp.kernels import target_poses_into

    world = generate_world(WorldCfg(), seed)
    assert world.moving.any()
    pos, yaw = np.empty((world.num_targets, 3)), np.empty(world.num_targets)
    times = np.concatenate([np.linspace(0.0, 3000.0, 6001), [0.05 * 1201, 1e6, 123.456789]])
    for t_s in times:
        target_poses_into(
            float(t_s), world.target_pos0_w, world.target_yaw0_rad, *world.target_motion, pos, yaw
        )
        ref_pos, ref_yaw = world.target_poses(float(t_s))
        np.testing.assert_array_equal(pos.view(np.int64), ref_pos.view(np.int64), err_msg=f"t = {t_s} s")
        np.testing.assert_array_equal(yaw.view(np.int64), ref_yaw.view(np.int64), err_msg=f"t = {t_s} s")
