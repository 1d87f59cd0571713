"""Compiled (numba) rotors: :meth:`flyby.dynamics.multirotor.RotorModel.step` and
:meth:`~flyby.dynamics.multirotor.RotorModel.wrench_b` for every drone, written into the simulator's
actuator inputs.

The numpy :class:`~flyby.dynamics.multirotor.RotorModel` is the reference. :func:`rotors_into`
does its motor lag in the same IEEE operations and order (the rotor speeds agree bit for bit) and
its wrench with sums in another order than numpy's matrix products (BLAS), so force and torque
agree to rounding (1e-12 relative, ``tests/dynamics/test_multirotor.py``), not bit for bit. The
body-frame velocity for the drag is ``R_wb^T v_w`` from the free joint's quaternion, as
:func:`flyby.geometry.rotate_inverse`.

The rotor constants travel as one float64 vector indexed by the ``R_*`` names below
(:meth:`RotorModel.kernel_params`).
"""

from __future__ import annotations

import math

from flyby.kernels import configure_numba_cache

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)

__all__ = ["NUM_ROTOR_PARAMS", "rotors_into"]

# Indices of the rotor parameter vector (see RotorModel.kernel_params).
R_OMEGA_PER_U = 0  # rad/s per unit command
R_OMEGA_IDLE = 1  # rad/s at u = 0 when armed
R_ALPHA_UP = 2  # 1, first-order lag factor for one step, speeding up
R_ALPHA_DOWN = 3  # 1, the same, slowing down
R_K_F = 4  # N/(rad/s)^2
R_DRAG = 5  # 3: N/(m/s), body x, y, z
NUM_ROTOR_PARAMS = 8


@numba.njit(cache=True, nogil=True)
def rotors_into(u, armed, omega, p, torque_per_thrust, qpos, qvel, ctrl):
    """Motor lag, then the rotor wrench and linear drag of every drone, into ``ctrl``.

    Args:
        u: (N, 4) float64 normalised motor commands, PX4 motor order; clipped to [0, 1].
        armed: (N,) bool; a disarmed drone's rotors spin down to 0.
        omega: (N, 4) float64 rotor speeds, rad/s, advanced in place by one step.
        p: (NUM_ROTOR_PARAMS,) float64 rotor constants, the lag factors for this step's length.
        torque_per_thrust: (4, 3) float64, N m per N of each rotor's thrust, body FLU.
        qpos: (N, 7) float64 free-joint positions [pos_w m ENU, quat_wxyz body FLU -> world].
        qvel: (N, 6) float64 free-joint velocities [lin_vel_w m/s ENU, ang_vel_b rad/s FLU].
        ctrl: (N, 6) float64 out: [force_b N, torque_b N m], body FLU, at the centre of mass.

    Returns:
        float: the largest ``|ctrl|`` written (inf when one is NaN), for the caller's
        simulator limit check.
    """
    worst = 0.0
    k_f = p[R_K_F]
    for n in range(u.shape[0]):
        on = 1.0 if armed[n] else 0.0
        for r in range(4):
            ref = min(max(u[n, r], 0.0), 1.0) * p[R_OMEGA_PER_U] + p[R_OMEGA_IDLE]
            err = ref * on - omega[n, r]
            omega[n, r] += err * (p[R_ALPHA_UP] if err > 0.0 else p[R_ALPHA_DOWN])
        qw, qx, qy, qz = qpos[n, 3], qpos[n, 4], qpos[n, 5], qpos[n, 6]
        vx, vy, vz = qvel[n, 0], qvel[n, 1], qvel[n, 2]
        # R_wb^T v_w, R_wb in the homogeneous quadratic form (as flyby.geometry.quat_wxyz_to_rot)
        ww, xx, yy, zz = qw * qw, qx * qx, qy * qy, qz * qz
        bx = (ww + xx - yy - zz) * vx + 2.0 * (qx * qy + qw * qz) * vy + 2.0 * (qx * qz - qw * qy) * vz
        by = 2.0 * (qx * qy - qw * qz) * vx + (ww - xx + yy - zz) * vy + 2.0 * (qy * qz + qw * qx) * vz
        bz = 2.0 * (qx * qz + qw * qy) * vx + 2.0 * (qy * qz - qw * qx) * vy + (ww - xx - yy + zz) * vz
        fz = 0.0
        tx = ty = tz = 0.0
        for r in range(4):
            thrust = k_f * omega[n, r] * omega[n, r]
            fz += thrust
            tx += thrust * torque_per_thrust[r, 0]
            ty += thrust * torque_per_thrust[r, 1]
            tz += thrust * torque_per_thrust[r, 2]
        ctrl[n, 0] = 0.0 - p[R_DRAG] * bx
        ctrl[n, 1] = 0.0 - p[R_DRAG + 1] * by
        ctrl[n, 2] = fz - p[R_DRAG + 2] * bz
        ctrl[n, 3], ctrl[n, 4], ctrl[n, 5] = tx, ty, tz
        for j in range(6):
            a = abs(ctrl[n, j])
            if not a <= worst:
                worst = a if a == a else math.inf
    return worst
