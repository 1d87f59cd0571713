"""Compiled (numba) direct dynamics: :meth:`flyby.dynamics.direct.DirectDynamics.step`, one drone per loop.

The batched numpy code in :mod:`flyby.dynamics.direct` is the reference; with
``$FLYBY_KERNEL=numba`` (:mod:`flyby.kernels`) ``DirectDynamics.step`` calls :func:`direct_step_into`
instead. It does the reference's IEEE operations in the reference's order (no fast-math, so no fused
multiply-add), so both give the same numbers bit for bit (``tests/dynamics/test_direct.py`` runs
both on every model variant, with and without noise). The noise is drawn by the caller from the
model's numpy generator, the same draws in the same order as the reference.

The model's constants travel as one float64 vector, indexed by the ``P_*`` names below: a
switched-off term is NaN (limits) or 0 (gains of optional terms), which is how the reference's
``None`` and ``> 0`` checks read here.
"""

from __future__ import annotations

import math

from flyby.kernels import configure_numba_cache

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)

from flyby.geometry import wrap_pi_scalar  # noqa: E402

_wrap = numba.njit(cache=True, nogil=True)(wrap_pi_scalar)  # the one wrap, compiled

__all__ = ["NUM_PARAMS", "direct_step_into"]

# Indices of the parameter vector (see DirectDynamics._kernel_params).
P_VEL_SCALE = 0  # m/s at action +1, horizontal
P_VZ_SCALE = 1  # m/s at action +1, vertical
P_YAW_SCALE = 2  # rad/s at action +1
P_MAX_SPEED = 3  # m/s, horizontal speed limit (NaN: none)
P_GAIN_XY = 4  # velocity gains (NaN: both 1, not applied)
P_GAIN_Z = 5
P_Z_LO = 6  # m/s, vertical setpoint limits (NaN: none)
P_Z_HI = 7
P_YAW_GAIN = 8  # yaw-rate gain
P_KEEP_XY = 9  # velocity retention per step, horizontal and vertical
P_KEEP_Z = 10
P_LAG = 11  # 1 - attitude-lag retention per step
P_KEEP_YAW = 12  # yaw-rate retention per step
P_NOISE_SCALE = 13  # sqrt(dt / dt_ref)
P_KEEP_INT = 14  # anti-windup integrator retention per step
P_AZ_LO = 15  # m/s^2, downward acceleration limit (NaN: none)
P_DRAG = 16  # 1/s, linear drag (0: none)
P_K_AW = 17  # 1/s, anti-windup gain (0: none)
P_MAX_ACC = 18  # m/s^2, horizontal thrust limit (NaN: none)
P_THRUST_G = 19  # thrust coupling / g, s^2/m (0: none)
P_MAX_JERK = 20  # m/s^3, tilt-rate limit (NaN: none)
P_YAW_COUPLING = 21  # s, yaw coupling (0: none)
P_SIGMA_V = 22  # m/s, velocity noise std (before the noise scale)
P_SIGMA_P = 23  # m, position noise std
P_SHAPED = 24  # 1: the extended model, 0: the seed model's update
P_ACC_STATE = 25  # 1: the lagged thrust acceleration is a state
NUM_PARAMS = 26


@numba.njit(cache=True, nogil=True)
def _clip_norm(x, y, limit):
    """(x, y) scaled so its norm is at most ``limit`` (the reference's ``_clip_norm``, one row)."""
    scale = min(limit / max(math.sqrt(x * x + y * y), 1e-12), 1.0)
    return x * scale, y * scale


@numba.njit(cache=True, nogil=True)
def direct_step_into(a, dt, p, noise, pos, vel, yaw, yaw_rate, acc, vel_int):
    """Advance drones by ``dt`` seconds in place (the reference's ``DirectDynamics._step_batch``).

    Args:
        a: (N, 4) float64 validated, clipped normalised actions.
        dt: step length, seconds (> 0, checked by the caller).
        p: (NUM_PARAMS,) float64 model constants for this ``dt``.
        noise: (N, 6) float64 standard normal draws (velocity xyz, position xyz), or (0, 6)
            when the model has no noise.
        pos, vel: (N, 3) float64 m and m/s, world ENU; yaw: (N,) rad; yaw_rate: (N,) rad/s;
            acc: (N, 3) m/s^2 lagged thrust acceleration; vel_int: (N, 2) m/s^2 integrator.
    """
    shaped = p[P_SHAPED] != 0.0
    acc_state = p[P_ACC_STATE] != 0.0
    noisy = noise.shape[0] > 0
    c_xy = 1.0 - p[P_KEEP_XY]
    c_z = 1.0 - p[P_KEEP_Z]
    keep_yaw = p[P_KEEP_YAW]
    inv_dt = 1.0 / dt
    sv = p[P_SIGMA_V] * p[P_NOISE_SCALE]
    sp = p[P_SIGMA_P] * p[P_NOISE_SCALE]
    drag = p[P_DRAG]
    k_aw = p[P_K_AW]
    tg = p[P_THRUST_G]
    for i in range(a.shape[0]):
        tx = a[i, 0] * p[P_VEL_SCALE]
        ty = a[i, 1] * p[P_VEL_SCALE]
        tz = a[i, 2] * p[P_VZ_SCALE]
        w_cmd = a[i, 3] * p[P_YAW_SCALE]
        if not math.isnan(p[P_MAX_SPEED]):
            tx, ty = _clip_norm(tx, ty, p[P_MAX_SPEED])
        if not math.isnan(p[P_GAIN_XY]):
            tx, ty, tz = tx * p[P_GAIN_XY], ty * p[P_GAIN_XY], tz * p[P_GAIN_Z]
        if not math.isnan(p[P_Z_LO]):
            tz = min(max(tz, p[P_Z_LO]), p[P_Z_HI])
        if p[P_YAW_GAIN] != 1.0:
            w_cmd *= p[P_YAW_GAIN]
        vx, vy, vz = vel[i, 0], vel[i, 1], vel[i, 2]
        w = yaw_rate[i]
        if shaped:
            dx = (tx - vx) * c_xy
            dy = (ty - vy) * c_xy
            dz = (tz - vz) * c_z
            az = dz * inv_dt
            if not math.isnan(p[P_AZ_LO]):
                az = max(az, p[P_AZ_LO])
                dz = az * dt
            fx, fy = dx * inv_dt, dy * inv_dt  # thrust acceleration = change / dt + drag
            gx = gy = 0.0
            if drag > 0.0:
                gx, gy = drag * vx, drag * vy
                fx, fy = fx + gx, fy + gy
            wx = wy = 0.0
            if k_aw > 0.0:
                fx, fy = fx + vel_int[i, 0], fy + vel_int[i, 1]
                wx, wy = fx, fy
            if not math.isnan(p[P_MAX_ACC]):
                fx, fy = _clip_norm(fx, fy, p[P_MAX_ACC])
            scale = 1.0
            if tg > 0.0:
                scale = max(1.0 + tg * az, 0.0)
            if k_aw > 0.0:
                if tg > 0.0:
                    wx, wy = wx - scale * fx, wy - scale * fy
                else:
                    wx, wy = wx - fx, wy - fy
                wx, wy = wx * (k_aw * dt), wy * (k_aw * dt)
                vel_int[i, 0] = vel_int[i, 0] * p[P_KEEP_INT] - wx
                vel_int[i, 1] = vel_int[i, 1] * p[P_KEEP_INT] - wy
            if acc_state:
                cx, cy = fx - acc[i, 0], fy - acc[i, 1]  # the change of the lagged thrust acceleration
                if p[P_LAG] > 0.0:
                    cx, cy = cx * p[P_LAG], cy * p[P_LAG]
                if not math.isnan(p[P_MAX_JERK]):
                    cx, cy = _clip_norm(cx, cy, p[P_MAX_JERK] * dt)
                acc[i, 0] += cx
                acc[i, 1] += cy
                fx, fy = acc[i, 0], acc[i, 1]
            if tg > 0.0:
                fx, fy = fx * scale, fy * scale
            if p[P_YAW_COUPLING] > 0.0:
                angle = w * p[P_YAW_COUPLING]
                cos, sin = math.cos(angle), math.sin(angle)
                fx, fy = cos * fx - sin * fy, sin * fx + cos * fy
            if drag > 0.0:
                fx, fy = fx - gx, fy - gy
            vx, vy, vz = vx + fx * dt, vy + fy * dt, vz + dz
            px, py, pz = pos[i, 0] + vx * dt, pos[i, 1] + vy * dt, pos[i, 2] + vz * dt
            if noisy:
                nx, ny, nz = noise[i, 0] * sv, noise[i, 1] * sv, noise[i, 2] * sv
                vx, vy, vz = vx + nx, vy + ny, vz + nz
                px += nx * dt + noise[i, 3] * sp
                py += ny * dt + noise[i, 4] * sp
                pz += nz * dt + noise[i, 5] * sp
        else:  # the seed model's update
            vx = vx * p[P_KEEP_XY] + c_xy * tx
            vy = vy * p[P_KEEP_XY] + c_xy * ty
            vz = vz * p[P_KEEP_Z] + c_z * tz
            if noisy:
                vx, vy, vz = vx + noise[i, 0] * sv, vy + noise[i, 1] * sv, vz + noise[i, 2] * sv
                px = pos[i, 0] + (vx * dt + noise[i, 3] * sp)
                py = pos[i, 1] + (vy * dt + noise[i, 4] * sp)
                pz = pos[i, 2] + (vz * dt + noise[i, 5] * sp)
            else:
                px, py, pz = pos[i, 0] + vx * dt, pos[i, 1] + vy * dt, pos[i, 2] + vz * dt
        w = w * keep_yaw + (1.0 - keep_yaw) * w_cmd if keep_yaw > 0.0 else w_cmd
        vel[i, 0], vel[i, 1], vel[i, 2] = vx, vy, vz
        pos[i, 0], pos[i, 1], pos[i, 2] = px, py, pz
        yaw_rate[i] = w
        yaw[i] = _wrap(yaw[i] + w * dt)
