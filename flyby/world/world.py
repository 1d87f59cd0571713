"""The ISR world: a seeded procedural area of roads, buildings and targets.

The world is backend-neutral data (numpy arrays). Backends build their scene
from it; perception and collision checks read the same arrays, so what a drone
"detects" analytically is what the renderer draws.

Layout: the area is centred on the world origin, ``x in [-size_x/2, size_x/2]``
(east), ``y in [-size_y/2, size_y/2]`` (north), ground at ``z = 0``. Roads form
a Manhattan grid of axis-aligned strips; buildings are axis-aligned boxes placed
inside the blocks between roads; targets are vehicles (on roads, some driving
back and forth along their road) and people (anywhere outside buildings, roads included).

Same ``(cfg, seed)`` gives the same world bit for bit: one
``numpy.random.Generator(PCG64(seed))`` draws everything in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from flyby.config import cfg_field
from flyby.enums import TargetClass
from flyby.errors import ConfigError

# Target box sizes (length, width, height), metres. Vehicle: a mid-size car
# (about 4.5 x 1.8 x 1.5 m); person: an adult's shoulder-width footprint and
# height (0.5 x 0.5 x 1.8 m).
TARGET_SIZE_M = {
    TargetClass.VEHICLE: (4.5, 1.8, 1.5),
    TargetClass.PERSON: (0.5, 0.5, 1.8),
}


@dataclass(kw_only=True)
class WorldCfg:
    """Procedural ISR area."""

    size_m: tuple[float, float] = cfg_field((200.0, 200.0), gt=20.0)  # m, extent along x (east) and y (north)
    roads_per_axis: int = cfg_field(3, ge=0, le=20)  # roads running along x, and as many along y
    road_width_m: float = cfg_field(8.0, gt=0.0)  # m, full width of a road strip
    num_buildings: int = cfg_field(40, ge=0, le=2000)  # buildings to place (fewer if blocks fill up)
    building_footprint_m: tuple[float, float] = cfg_field((8.0, 24.0), gt=0.0)  # m, min/max side length
    building_height_m: tuple[float, float] = cfg_field((6.0, 35.0), gt=0.0)  # m, min/max height
    building_gap_m: float = cfg_field(3.0, ge=0.0)  # m, min clearance between buildings and to roads
    num_vehicles: int = cfg_field(24, ge=0, le=10000)  # vehicle targets (on roads)
    moving_vehicle_fraction: float = cfg_field(0.5, ge=0.0, le=1.0)  # share of vehicles that drive
    vehicle_speed_mps: tuple[float, float] = cfg_field((3.0, 12.0), ge=0.0)  # m/s, min/max driving speed
    num_people: int = cfg_field(16, ge=0, le=10000)  # person targets (outside buildings)

    def validate(self) -> list[str]:
        problems = []
        for name in ("building_footprint_m", "building_height_m", "vehicle_speed_mps"):
            lo, hi = getattr(self, name)
            if lo > hi:
                problems.append(f"{name}: min {lo} is greater than max {hi}")
        if self.roads_per_axis == 0 and self.num_vehicles > 0:
            problems.append(f"num_vehicles: {self.num_vehicles} vehicles need roads; set roads_per_axis >= 1")
        return problems


@dataclass(frozen=True, eq=False)
class ISRWorld:
    """A generated ISR area. All arrays are float64 unless stated; world ENU, metres.

    Attributes:
        seed: the seed it was generated from.
        size_m: (size_x, size_y) extent.
        building_min_w, building_max_w: (B, 3) axis-aligned box corners; min z = 0.
        road_axis: (R,) int8, 0 = road runs along x (constant y), 1 = along y.
        road_offset_m: (R,) the road centreline's constant coordinate.
        road_width_m: the road strip width.
        target_class: (T,) int8, :class:`~flyby.enums.TargetClass` values.
        target_size_m: (T, 3) (length, width, height) of each target's box.
        target_pos0_w: (T, 3) box centre at time 0 (z = height / 2).
        target_yaw0_rad: (T,) heading at time 0.
        target_road: (T,) int, road index a vehicle drives along, -1 if static.
        target_speed_mps: (T,) driving speed (0 when static).
        height_map_m: (Gx, Gy) float32 tallest building over each cell (0 = open).
        height_map_cell_m: cell size of ``height_map_m``.
    """

    seed: int
    size_m: tuple[float, float]
    building_min_w: np.ndarray
    building_max_w: np.ndarray
    road_axis: np.ndarray
    road_offset_m: np.ndarray
    road_width_m: float
    target_class: np.ndarray
    target_size_m: np.ndarray
    target_pos0_w: np.ndarray
    target_yaw0_rad: np.ndarray
    target_road: np.ndarray
    target_speed_mps: np.ndarray
    height_map_m: np.ndarray
    height_map_cell_m: float

    @property
    def num_buildings(self) -> int:
        return int(self.building_min_w.shape[0])

    @property
    def num_targets(self) -> int:
        return int(self.target_class.shape[0])

    @cached_property
    def half_extent(self) -> np.ndarray:
        """(2,) half the area size along x and y, metres (read-only: shared by every caller)."""
        half = 0.5 * np.asarray(self.size_m)
        half.flags.writeable = False
        return half

    @property
    def moving(self) -> np.ndarray:
        """(T,) bool, True for targets that drive along a road."""
        return self.target_road >= 0

    def target_poses(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Target poses at world time ``t_s`` seconds.

        Moving vehicles drive back and forth along their road between the area
        edges (a triangle wave in arc length), turning round at each end.

        Returns:
            pos_w: (T, 3) float64 box centres, metres, world ENU.
            yaw_rad: (T,) float64 headings.
        """
        pos = self.target_pos0_w.copy()
        yaw = self.target_yaw0_rad.copy()
        m = self.target_motion
        if m.mov.size == 0:
            return pos, yaw
        u = np.mod(m.u0 + m.speed * t_s, m.loop)
        going = u < m.length  # heading towards +axis
        flat = pos.reshape(-1)
        flat[m.along] = np.where(going, u, m.loop - u) - m.half
        # Lane (keep right) and heading for the current direction of travel.
        lane_yaw = np.where(going, m.going, m.back)  # (2, M): across-road coordinate, yaw
        flat[m.across] = lane_yaw[0]
        yaw[m.mov] = lane_yaw[1]
        return pos, yaw

    @cached_property
    def target_motion(self) -> TargetMotion:
        """Constants of the moving targets' triangle-wave motion, computed once (the compiled
        :func:`flyby.mdp.kernels.target_poses_into` reads them too)."""
        mov = np.flatnonzero(self.target_road >= 0)
        axis = self.road_axis[self.target_road[mov]].astype(np.intp)
        half = self.half_extent[axis] - 0.5 * self.target_size_m[mov, 0]
        length = 2.0 * half
        # Arc position at time 0 from the start of the road, and direction from the initial yaw.
        s0 = self.target_pos0_w[mov, axis] + half
        forward = np.cos(self.target_yaw0_rad[mov] - axis * (np.pi / 2)) >= 0
        # Unfold to a loop of length 2L: going forward covers [0, L), coming back [L, 2L).
        u0 = np.where(forward, s0, 2 * length - s0)
        road_centre = self.road_offset_m[self.target_road[mov]]
        lane = np.abs(self.target_pos0_w[mov, 1 - axis] - road_centre)
        # Lane and heading in each direction. Keep right: heading +x the right-hand lane is at -y;
        # heading +y it is at +x (and the other way round coming back).
        right = np.where(axis == 0, -1.0, 1.0)
        return TargetMotion(
            mov=mov,
            along=mov * 3 + axis,
            across=mov * 3 + (1 - axis),
            half=half,
            length=length,
            loop=2 * length,
            u0=u0,
            speed=self.target_speed_mps[mov],
            going=np.stack([road_centre + right * lane, axis * (np.pi / 2)]),
            back=np.stack([road_centre - right * lane, axis * (np.pi / 2) + np.pi]),
        )

    def height_at(self, xy_w: np.ndarray) -> np.ndarray:
        """Tallest building height under each point, from the height map.

        Args:
            xy_w: (..., 2) points, metres, world ENU. Points off the map read 0.

        Returns:
            (...,) float32 heights, metres.
        """
        # Index a copy of the map with a border of zero cells, clamping into the border: points
        # off the map read 0 without a mask.
        padded = self.padded_height_map
        ij = np.floor((np.asarray(xy_w) + self.half_extent) / self.height_map_cell_m).astype(np.intp)
        ij += 1
        # mode="clip" clamps i and j each into the map: one call for the clamp and the flat index.
        return padded.take(np.ravel_multi_index((ij[..., 0], ij[..., 1]), padded.shape, mode="clip"))

    @cached_property
    def padded_height_map(self) -> np.ndarray:
        """(Gx + 2, Gy + 2) float32 ``height_map_m`` with a border of zero cells, metres (points off
        the map read the border; shared with the compiled observation kernel: do not modify)."""
        padded = np.pad(self.height_map_m, 1)
        padded.flags.writeable = False
        return padded

    def points_in_buildings(self, pos_w: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
        """(N,) bool: points (N, 3) inside any building box grown by ``margin_m``."""
        if self.num_buildings == 0:
            return np.zeros(pos_w.shape[0], dtype=bool)
        lo, hi = self.grown_boxes(float(margin_m))
        # Axis-major (3, N, B): each comparison and the reduction over the axes run on
        # contiguous (N, B) planes (a reduction over a last axis of length 3 is slow).
        p = pos_w.T[:, :, None]
        inside = p >= lo
        inside &= p <= hi
        return np.logical_and.reduce(inside, axis=0).any(axis=1)

    def grown_boxes(self, margin_m: float) -> tuple[np.ndarray, np.ndarray]:
        """(3, 1, B) box corners grown by ``margin_m``, cached per margin (the env asks every step)."""
        cache = self.__dict__.setdefault("_grown_cache", {})
        if margin_m not in cache:
            cache[margin_m] = (
                (self.building_min_w - margin_m).T[:, None, :].copy(),
                (self.building_max_w + margin_m).T[:, None, :].copy(),
            )
        return cache[margin_m]


class TargetMotion(NamedTuple):
    """Constants of :meth:`ISRWorld.target_poses` for the M moving targets, (M,) unless stated."""

    mov: np.ndarray  # target indices
    along: np.ndarray  # flat index into pos (T, 3) of the coordinate along the road
    across: np.ndarray  # flat index of the coordinate across the road
    half: np.ndarray  # m, half the road length the centre can travel
    length: np.ndarray  # m, 2 * half
    loop: np.ndarray  # m, 2 * length: there and back
    u0: np.ndarray  # m, position on the loop at time 0
    speed: np.ndarray  # m/s
    going: np.ndarray  # (2, M): across-road coordinate of the lane (m) and yaw (rad) heading towards +axis
    back: np.ndarray  # (2, M): the same heading back


def generate_world(cfg: WorldCfg | None = None, seed: int = 0) -> ISRWorld:
    """Generate an ISR world from ``cfg`` and ``seed`` (deterministic).

    Raises:
        ConfigError: ``seed`` is negative or the config is inconsistent.
    """
    from flyby.config import check

    cfg = check(cfg or WorldCfg())
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError([f"seed: {seed!r} must be a non-negative integer"])
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    half = 0.5 * np.asarray(cfg.size_m, dtype=np.float64)

    road_axis, road_offset = _make_roads(cfg, rng, half)
    bmin, bmax = _place_buildings(cfg, rng, half, road_axis, road_offset)
    targets = _place_targets(cfg, rng, half, road_axis, road_offset, bmin, bmax)
    cell = 2.0
    height_map = _rasterize_heights(half, cell, bmin, bmax)
    return ISRWorld(
        seed=int(seed),
        size_m=(float(cfg.size_m[0]), float(cfg.size_m[1])),
        building_min_w=bmin,
        building_max_w=bmax,
        road_axis=road_axis,
        road_offset_m=road_offset,
        road_width_m=float(cfg.road_width_m),
        height_map_m=height_map,
        height_map_cell_m=cell,
        **targets,
    )


def _make_roads(cfg: WorldCfg, rng: np.random.Generator, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes, offsets = [], []
    n = cfg.roads_per_axis
    for axis in (0, 1):
        # A road along x has constant y, spread over the y extent (and vice versa).
        span = half[1 - axis]
        spacing = 2 * span / (n + 1) if n else 0.0
        for k in range(n):
            centre = -span + spacing * (k + 1) + rng.uniform(-0.15, 0.15) * spacing
            axes.append(axis)
            offsets.append(centre)
    return np.asarray(axes, dtype=np.int8), np.asarray(offsets, dtype=np.float64)


def _overlaps_road(lo: np.ndarray, hi: np.ndarray, road_axis, road_offset, half_width: float) -> bool:
    for axis, off in zip(road_axis, road_offset):
        k = 1 - int(axis)  # the coordinate that is constant along the road
        if lo[k] < off + half_width and hi[k] > off - half_width:
            return True
    return False


def _place_buildings(cfg, rng, half, road_axis, road_offset) -> tuple[np.ndarray, np.ndarray]:
    gap = cfg.building_gap_m
    half_road = 0.5 * cfg.road_width_m + gap
    fmin, fmax = cfg.building_footprint_m
    hmin, hmax = cfg.building_height_m
    mins: list[np.ndarray] = []
    maxs: list[np.ndarray] = []
    attempts = 0
    while len(mins) < cfg.num_buildings and attempts < 200 * max(cfg.num_buildings, 1):
        attempts += 1
        size = rng.uniform(fmin, fmax, size=2)
        centre = rng.uniform(-half + size / 2 + gap, half - size / 2 - gap)
        height = rng.uniform(hmin, hmax)
        lo, hi = centre - size / 2, centre + size / 2
        if _overlaps_road(lo, hi, road_axis, road_offset, half_road):
            continue
        # Footprints overlap (with clearance) when they overlap on both x and y.
        if any((lo < x[:2] + gap).all() and (hi > m[:2] - gap).all() for m, x in zip(mins, maxs)):
            continue
        mins.append(np.array([lo[0], lo[1], 0.0]))
        maxs.append(np.array([hi[0], hi[1], height]))
    if not mins:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return np.stack(mins), np.stack(maxs)


def _place_targets(cfg, rng, half, road_axis, road_offset, bmin, bmax) -> dict[str, np.ndarray]:
    classes, sizes, pos, yaw, road, speed = [], [], [], [], [], []
    n_moving = int(round(cfg.num_vehicles * cfg.moving_vehicle_fraction))
    vsize = np.asarray(TARGET_SIZE_M[TargetClass.VEHICLE])
    lane = 0.25 * cfg.road_width_m
    for k in range(cfg.num_vehicles):
        r = int(rng.integers(len(road_axis)))
        axis = int(road_axis[r])
        along = rng.uniform(-half[axis] + vsize[0], half[axis] - vsize[0])
        direction = 1.0 if rng.uniform() < 0.5 else -1.0
        p = np.zeros(3)
        p[axis] = along
        # Drive on the right: the lane is offset to the right of the heading.
        right = -direction if axis == 0 else direction
        p[1 - axis] = road_offset[r] + right * lane
        p[2] = vsize[2] / 2
        moving = k < n_moving
        classes.append(TargetClass.VEHICLE)
        sizes.append(vsize)
        pos.append(p)
        yaw.append(axis * np.pi / 2 + (0.0 if direction > 0 else np.pi))
        road.append(r if moving else -1)
        speed.append(rng.uniform(*cfg.vehicle_speed_mps) if moving else 0.0)
    psize = np.asarray(TARGET_SIZE_M[TargetClass.PERSON])
    placed = 0
    attempts = 0
    while placed < cfg.num_people and attempts < 1000 * max(cfg.num_people, 1):
        attempts += 1
        xy = rng.uniform(-half + 2.0, half - 2.0)
        p = np.array([xy[0], xy[1], psize[2] / 2])
        if (
            bmin.shape[0]
            and ((p[None, :2] >= bmin[:, :2] - 1.0) & (p[None, :2] <= bmax[:, :2] + 1.0)).all(1).any()
        ):
            continue
        classes.append(TargetClass.PERSON)
        sizes.append(psize)
        pos.append(p)
        yaw.append(rng.uniform(-np.pi, np.pi))
        road.append(-1)
        speed.append(0.0)
        placed += 1
    n = len(classes)
    return dict(
        target_class=np.asarray([int(c) for c in classes], dtype=np.int8).reshape(n),
        target_size_m=np.asarray(sizes, dtype=np.float64).reshape(n, 3),
        target_pos0_w=np.asarray(pos, dtype=np.float64).reshape(n, 3),
        target_yaw0_rad=np.asarray(yaw, dtype=np.float64).reshape(n),
        target_road=np.asarray(road, dtype=np.intp).reshape(n),
        target_speed_mps=np.asarray(speed, dtype=np.float64).reshape(n),
    )


def _rasterize_heights(half: np.ndarray, cell: float, bmin: np.ndarray, bmax: np.ndarray) -> np.ndarray:
    gx, gy = (np.ceil(2 * half / cell)).astype(int)
    hm = np.zeros((gx, gy), dtype=np.float32)
    for lo, hi in zip(bmin, bmax):
        # Conservative: every cell the footprint touches gets the building's height.
        i0, j0 = np.floor((lo[:2] + half) / cell).astype(int)
        i1, j1 = np.floor((hi[:2] + half) / cell).astype(int)
        i0, j0 = max(i0, 0), max(j0, 0)
        sub = hm[i0 : i1 + 1, j0 : j1 + 1]
        np.maximum(sub, np.float32(hi[2]), out=sub)
    return hm
