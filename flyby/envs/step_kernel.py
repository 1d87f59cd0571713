"""The compiled ISR step in one call, for 1-63 level-flying drones.

``ISRTask.step`` on the compiled path runs five stage kernels (dynamics, target poses,
perception, dones and rewards, observations). At a few drones the Python around them cost more
than their arithmetic: 2026-12-08 on the 2-core machine, one drone, the five calls' ~120
arguments took ~19 us to type-check and unbox, and building their argument lists another
~20 us, against ~12 us of arithmetic. So below :func:`flyby.kernels.parallel_min_drones` drones
the task calls :func:`step_into` once instead, with a :class:`StepState`: a numba ``StructRef``
that holds references to the task's arrays and its constants, built once and unboxed as one
pointer. :func:`step_into` calls the same stage functions with the same arguments as the
multi-call path, so the results are the same bit for bit (``tests/envs/test_isr_kernels.py``).

A :class:`StepState` shares its arrays' memory with the task (writes on either side are seen by
the other) but not the Python names: when the task rebinds one of them (the numpy reference
path does), the state must be rebuilt. ``ISRTask`` checks the arrays any path rebinds before
each step (``ISRTask._one_call_state``).
"""

from __future__ import annotations

from flyby.kernels import configure_numba_cache

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)
from numba.core import types  # noqa: E402
from numba.experimental import structref  # noqa: E402

from flyby.dynamics.direct_kernel import direct_step_into  # noqa: E402
from flyby.mdp.kernels import (  # noqa: E402
    dones_rewards_into,
    observe_into,
    perceive_into,
    target_poses_into,
)

__all__ = ["FIELDS", "StepState", "make_step_state", "step_into"]

# The fields of a StepState, grouped by the stage that reads them first (see ISRTask._one_call_state
# for where each comes from). Arrays are the task's own; scalars are constants.
FIELDS = (
    # direct dynamics: step length (s), constants, state (world ENU)
    "dt", "dyn_p", "pos", "vel", "yaw", "yaw_rate", "acc", "vel_int",
    # episode counters (N, 3) int64 and the steps column, the step limit
    "counters", "episode_step", "max_steps",
    # target motion (ISRWorld.target_motion) and the poses written each perception step
    "pos0", "yaw0", "mov", "along", "across", "half", "length", "loop", "u0", "speed", "going",
    "back", "tpos", "tyaw",
    # perception: camera mount, detector constants, detections, seen targets
    "offset_b", "rot_bc", "tsize", "dirs_c", "q_offset", "q_radius", "near", "min_box", "fxy", "cxy",
    "wh", "sphere_slack", "tiny", "bmin", "bmax", "boxes", "visible", "depth", "in_frustum",
    "occluded", "seen", "newly_seen",
    # coverage: footprint and grid constants, the covered cells, scratch, counts
    "tan_half_fov", "far_m", "max_radius_m", "clip_t", "covered", "rows", "cell_m", "half_x",
    "half_y", "gx", "gy", "r_cells", "cam_pos", "rot_wc", "ground", "radius_sq", "new_cells",
    "num_covered",
    # dones and rewards: grown building boxes, geofence limits, flags, built-in terms, sums
    "box_lo", "box_hi", "limits", "airborne", "terms", "term_scales", "term_dts", "crashed",
    "outside", "term_sums",
    # observations: classes, image divisors, grids, scales, column starts, scratch, output
    "target_class", "classes", "image", "den", "cov_grid", "block", "heights", "height_grid",
    "clear_cell_m", "obs_scales", "starts", "idx", "valid", "det_enc", "cell_xy", "cov", "progress",
    "obs",
)  # fmt: skip


@structref.register
class StepStateType(types.StructRef):
    """numba's type of :class:`StepState` (fields typed as passed, literals widened)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class StepState(structref.StructRefProxy):
    """Everything :func:`step_into` reads besides the per-step values (:data:`FIELDS`).

    Build it with :func:`make_step_state` (compiled and cached; the proxy's own constructor
    compiles anew in every process).
    """


structref.define_proxy(StepState, StepStateType, list(FIELDS))


@numba.njit(cache=True)
def make_step_state(*values):
    """A :class:`StepState` of ``values``, one per name of :data:`FIELDS`, in that order."""
    return StepState(*values)


@numba.njit(cache=True, nogil=True)
def step_into(s, actions, prev_actions, noise, perceive, time_s, reward, terminated, truncated, time_out):
    """``ISRTask.step`` after its action check, in one call: the stage kernels in the reference's
    order, each with the multi-call path's arguments.

    1. :func:`flyby.dynamics.direct_kernel.direct_step_into`;
    2. ``episode_step += 1``;
    3. on a perception step: :func:`flyby.mdp.kernels.target_poses_into` at ``time_s``,
       :func:`flyby.mdp.kernels.perceive_into` and ``num_covered += new_cells``; otherwise
       ``newly_seen`` and ``new_cells`` are cleared and the last detections stay;
    4. :func:`flyby.mdp.kernels.dones_rewards_into`;
    5. :func:`flyby.mdp.kernels.observe_into`.

    Args:
        s: the task's :class:`StepState`.
        actions, prev_actions: (N, 4) float64 checked and clipped actions, this step's and the last.
        noise: (N, 6) float64 dynamics noise draws, or (0, 6) (``DirectDynamics.kernel_noise``).
        perceive: whether this is a perception step.
        time_s: world clock after this step, seconds.
        reward: (N,) float64; terminated, truncated, time_out: (N,) bool; outputs.

    Returns:
        The number of envs that ended (terminated or truncated) in this step.
    """
    direct_step_into(actions, s.dt, s.dyn_p, noise, s.pos, s.vel, s.yaw, s.yaw_rate, s.acc, s.vel_int)
    episode_step = s.episode_step
    for i in range(episode_step.shape[0]):
        episode_step[i] += 1
    if perceive:
        target_poses_into(
            time_s, s.pos0, s.yaw0, s.mov, s.along, s.across, s.half, s.length, s.loop, s.u0, s.speed,
            s.going, s.back, s.tpos, s.tyaw,
        )  # fmt: skip
        perceive_into(
            s.pos, s.yaw, s.offset_b, s.rot_bc, s.tpos, s.tyaw, s.tsize, s.dirs_c, s.q_offset, s.q_radius,
            s.near, s.min_box, s.fxy, s.cxy, s.wh, s.sphere_slack, s.tiny, s.bmin, s.bmax, s.boxes,
            s.visible, s.depth, s.in_frustum, s.occluded, s.seen, s.newly_seen, s.tan_half_fov, s.far_m,
            s.max_radius_m, s.clip_t, s.covered, s.rows, s.cell_m, s.half_x, s.half_y, s.gx, s.gy,
            s.r_cells, s.cam_pos, s.rot_wc, s.ground, s.radius_sq, s.new_cells,
        )  # fmt: skip
        num_covered, new_cells = s.num_covered, s.new_cells
        for i in range(new_cells.shape[0]):
            num_covered[i] += new_cells[i]
    else:
        s.newly_seen[:] = False
        s.new_cells[:] = 0
    dones_rewards_into(
        s.pos, s.box_lo, s.box_hi, s.limits, s.airborne, episode_step, s.max_steps, s.newly_seen,
        s.new_cells, actions, prev_actions, s.terms, s.term_scales, s.term_dts, s.crashed, s.outside,
        time_out, s.term_sums, reward, terminated, truncated,
    )  # fmt: skip
    observe_into(
        s.visible, s.boxes, s.newly_seen, s.target_class, s.classes, s.image, s.pos, s.vel, s.yaw,
        actions, s.seen, s.counters, s.den, s.covered, s.cov_grid, s.gx, s.gy, s.block, s.heights,
        s.height_grid, s.clear_cell_m, s.obs_scales, s.starts, s.idx, s.valid, s.det_enc, s.cell_xy,
        s.cov, s.progress, s.obs,
    )  # fmt: skip
    num_done = 0
    for i in range(terminated.shape[0]):
        if terminated[i] or truncated[i]:
            num_done += 1
    return num_done
