"""Flight scenarios shared by the test-double and the real-PX4 tests (same code, either flight stack)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class TakeoffHover(NamedTuple):
    """Result of :func:`takeoff_hover`: heights (steps, N) m over the whole hover, and wall seconds."""

    hover_heights: np.ndarray
    start_pos_w: np.ndarray
    final_pos_w: np.ndarray
    armed: np.ndarray
    wall_s: float


def takeoff_hover(
    stack, sim, *, climb_rate_mps: float = 1.0, climb_s: float = 2.0, hover_s: float = 4.0, dt: float = 0.004
):
    """Climb at ``climb_rate_mps`` for ``climb_s``, then command zero velocity for ``hover_s``.

    ``stack``: ``update(vel_sp_w, yaw_rate_sp, state, dt) -> u`` and ``armed`` (PX4FlightStack);
    ``sim``: :class:`px4_rig.RigidBodySim`. The first update runs the flight stack's start-up.
    """
    import time

    n = sim.n
    t0 = time.perf_counter()
    vel = np.zeros((n, 3))
    yaw_rate = np.zeros(n)
    heights = []
    start = sim.pos_w.copy()
    for k in range(round((climb_s + hover_s) / dt)):
        vel[:, 2] = climb_rate_mps if k * dt < climb_s else 0.0
        u = stack.update(vel, yaw_rate, sim.state(), dt)
        sim.step(u, stack.armed, dt)
        if k * dt >= climb_s:
            heights.append(sim.pos_w[:, 2].copy())
    return TakeoffHover(np.array(heights), start, sim.pos_w.copy(), stack.armed, time.perf_counter() - t0)


def assert_took_off_and_hovered(
    result: TakeoffHover, *, min_alt_m: float = 1.2, max_alt_m: float = 3.0, band_m: float = 0.25
):
    """Climbed to about ``climb_rate * climb_s`` and held it: last half of the hover within ``band_m``,
    less than 0.5 m from the start horizontally."""
    settled = result.hover_heights[len(result.hover_heights) // 2 :]
    assert np.all(result.armed), "the flight stack disarmed"
    assert np.all(settled.mean(axis=0) > min_alt_m) and np.all(settled.mean(axis=0) < max_alt_m), (
        settled.mean(axis=0)
    )
    assert np.all(np.ptp(settled, axis=0) < band_m), np.ptp(settled, axis=0)
    drift = np.linalg.norm(result.final_pos_w[:, :2] - result.start_pos_w[:, :2], axis=1)
    assert np.all(drift < 0.5), (drift, result.final_pos_w)
