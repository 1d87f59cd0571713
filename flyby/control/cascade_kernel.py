"""Compiled (numba) PX4-style cascade: :meth:`flyby.control.cascade.CascadeController.update`, one
drone per loop.

The batched numpy code in :mod:`flyby.control.cascade` is the reference; with ``$FLYBY_KERNEL=numba``
(the default, :mod:`flyby.kernels`) ``CascadeController.update`` calls :func:`cascade_update_into`
for any number of drones. The stages, limits and anti-windup rules are the reference's, one
drone's scalars at a time; sums of three products and the mixer's reductions run in another
order than numpy's, so the two agree to rounding (1e-12 on the motor commands,
``tests/control/test_cascade.py``), not bit for bit.

The controller's gains travel as one float64 vector indexed by the ``K_*`` names below; the
state is the controller's (N, 20) memory array, laid out as ``CascadeController`` documents it.
"""

from __future__ import annotations

import math

from flyby.kernels import configure_numba_cache

configure_numba_cache()

import numba  # noqa: E402  (the cache folder must be set first)
import numpy as np  # noqa: E402

from flyby.dynamics.multirotor_kernel import rotors_into  # noqa: E402
from flyby.geometry import STANDARD_GRAVITY, wrap_pi_scalar  # noqa: E402

__all__ = ["NUM_GAINS", "cascade_rotors_into", "cascade_update_into"]

_wrap = numba.njit(cache=True, nogil=True)(wrap_pi_scalar)

# Indices of the gain vector (see CascadeController._kernel_gains).
K_VEL_P_XY, K_VEL_P_Z, K_VEL_I_XY, K_VEL_I_Z, K_VEL_D_XY, K_VEL_D_Z = range(6)
K_COS_TILT, K_SIN_TILT = 6, 7
K_ATT_P = 8  # 3: roll, pitch, yaw / yaw weight
K_RATE_MAX = 11  # 3, rad/s
K_RATE_P, K_RATE_I, K_RATE_D, K_RATE_INT_LIM = 14, 17, 20, 23  # 3 each
K_XY_VEL_MAX, K_Z_VEL_UP, K_Z_VEL_DN = 26, 27, 28  # m/s
K_VELD_LP = 29  # Hz, velocity derivative low-pass
K_LIMIT_ACC, K_ACC_HOR = 30, 31  # flag, m/s^2
K_HOVER, K_THR_MIN, K_THR_MAX, K_THR_XY_MARG = 32, 33, 34, 35
K_XY_VEL_P_ACC = 36  # the horizontal P gain of the Rundqvist anti-windup
K_INTEGRATE_YAW, K_YAW_ERR_MAX, K_YAW_WEIGHT = 37, 38, 39
K_DGYRO_CUTOFF, K_INV_RATE_400, K_YAW_TQ_CUTOFF, K_THR_MDL_FAC = 40, 41, 42, 43
NUM_GAINS = 44


@numba.njit(cache=True, nogil=True)
def cascade_update_into(
    vel_sp_w, yaw_rate_sp, quat_wxyz, lin_vel_w, ang_vel_b, k, mix, memory, fresh, dt, out
):
    """One control step of every drone: velocity setpoint -> motor commands, into ``out``.

    Args:
        vel_sp_w: (N, 3) float64 velocity setpoints, m/s, world ENU.
        yaw_rate_sp: (N,) float64 yaw-rate setpoints, rad/s.
        quat_wxyz, lin_vel_w, ang_vel_b: (N, 4), (N, 3) m/s world ENU, (N, 3) rad/s body FLU.
        k: (NUM_GAINS,) float64 gains and limits.
        mix: (4, 4) float64 mixer columns per rotor: roll, pitch, yaw, thrust.
        memory: (N, 20) float64 controller state, updated; fresh: (N,) bool, cleared.
        dt: seconds since the last update (> 0, checked by the caller).
        out: (N, 4) float64 normalised motor commands in [0, 1], PX4 motor order.
    """
    g = STANDARD_GRAVITY
    alpha_v = 1.0 - math.exp(-2.0 * math.pi * k[K_VELD_LP] * dt)
    alpha_w = 1.0 - math.exp(-2.0 * math.pi * k[K_DGYRO_CUTOFF] * dt)
    alpha_y = 1.0 - math.exp(-2.0 * math.pi * k[K_YAW_TQ_CUTOFF] * dt)
    hover = k[K_HOVER]
    thr_max = k[K_THR_MAX]
    torque = np.empty(3)
    errs = np.empty(3)
    base = np.empty(4)
    rp = np.empty(4)
    t = np.empty(4)
    y = np.empty(4)
    for n in range(vel_sp_w.shape[0]):
        m = memory[n]
        sx, sy, sz = vel_sp_w[n, 0], vel_sp_w[n, 1], vel_sp_w[n, 2]
        yr = yaw_rate_sp[n]
        qw, qx, qy, qz = quat_wxyz[n, 0], quat_wxyz[n, 1], quat_wxyz[n, 2], quat_wxyz[n, 3]
        vx, vy, vz = lin_vel_w[n, 0], lin_vel_w[n, 1], lin_vel_w[n, 2]
        wx, wy, wz = ang_vel_b[n, 0], ang_vel_b[n, 1], ang_vel_b[n, 2]
        # R_wb, homogeneous quadratic form (as flyby.geometry.quat_wxyz_to_rot)
        ww, xx, yy, zz = qw * qw, qx * qx, qy * qy, qz * qz
        r00 = ww + xx - yy - zz
        r10 = 2.0 * (qx * qy + qw * qz)
        r20 = 2.0 * (qx * qz - qw * qy)
        r01 = 2.0 * (qx * qy - qw * qz)
        r11 = ww - xx + yy - zz
        r21 = 2.0 * (qy * qz + qw * qx)
        r02 = 2.0 * (qx * qz + qw * qy)
        r12 = 2.0 * (qy * qz - qw * qx)
        r22 = ww - xx - yy + zz
        yaw = math.atan2(r10, r00)
        if fresh[n]:
            m[14], m[15], m[16] = vx, vy, vz
            m[17], m[18], m[19] = wx, wy, wz
            m[13] = yaw
            fresh[n] = False

        # 1. velocity setpoint limits, velocity derivative low-pass
        speed_xy = math.hypot(sx, sy)
        if speed_xy > k[K_XY_VEL_MAX]:
            f = min(k[K_XY_VEL_MAX] / max(speed_xy, 1e-9), 1.0)
            sx *= f
            sy *= f
        sz = max(min(sz, k[K_Z_VEL_UP]), -k[K_Z_VEL_DN])
        m[3] += alpha_v * ((vx - m[14]) / dt - m[3])
        m[4] += alpha_v * ((vy - m[15]) / dt - m[4])
        m[5] += alpha_v * ((vz - m[16]) / dt - m[5])
        m[14], m[15], m[16] = vx, vy, vz

        # 2. velocity PID -> acceleration -> thrust vector
        ex, ey, ez = sx - vx, sy - vy, sz - vz
        ax = ex * k[K_VEL_P_XY] + m[0] - m[3] * k[K_VEL_D_XY]
        ay = ey * k[K_VEL_P_XY] + m[1] - m[4] * k[K_VEL_D_XY]
        az = ez * k[K_VEL_P_Z] + m[2] - m[5] * k[K_VEL_D_Z]
        if k[K_LIMIT_ACC] != 0.0:
            f = min(k[K_ACC_HOR] / max(math.hypot(ax, ay), 1e-9), 1.0)
            ax *= f
            ay *= f
        norm = math.sqrt(ax * ax + ay * ay + g * g)
        bx, by, bz = ax / norm, ay / norm, g / norm
        if bz < k[K_COS_TILT]:
            f = k[K_SIN_TILT] / math.hypot(bx, by)
            bx *= f
            by *= f
            bz = k[K_COS_TILT]
        collective = max((az + g) * (hover / g) / bz, k[K_THR_MIN])
        tx, ty, tz = bx * collective, by * collective, bz * collective
        if (tz <= k[K_THR_MIN] and ez <= 0.0) or (tz >= thr_max and ez >= 0.0):
            ez = 0.0
        thr_xy2 = tx * tx + ty * ty
        tz = min(tz, math.sqrt(thr_max * thr_max - min(thr_xy2, k[K_THR_XY_MARG] ** 2)))
        thr_max_xy2 = thr_max * thr_max - tz * tz
        if thr_xy2 > thr_max_xy2:
            f = math.sqrt(max(thr_max_xy2, 0.0) / thr_xy2)
            tx *= f
            ty *= f
        px, py = tx * (g / hover), ty * (g / hover)
        if ax * ax + ay * ay > px * px + py * py:
            ex -= (2.0 / k[K_XY_VEL_P_ACC]) * (ax - px)
            ey -= (2.0 / k[K_XY_VEL_P_ACC]) * (ay - py)
        m[0] += ex * k[K_VEL_I_XY] * dt
        m[1] += ey * k[K_VEL_I_XY] * dt
        m[2] = max(min(m[2] + ez * k[K_VEL_I_Z] * dt, g), -g)

        # 3. attitude setpoint: thrust direction + integrated yaw
        yr = max(min(yr, k[K_RATE_MAX + 2]), -k[K_RATE_MAX + 2])
        if k[K_INTEGRATE_YAW] != 0.0:
            yaw_err = _wrap(m[13] + yr * dt - yaw)
            yaw_err = max(min(yaw_err, k[K_YAW_ERR_MAX]), -k[K_YAW_ERR_MAX])
            m[13] = _wrap(yaw + yaw_err)
        else:
            m[13] = yaw
        collective = math.sqrt(tx * tx + ty * ty + tz * tz)
        z0, z1, z2 = tx / collective, ty / collective, tz / collective
        cy, sy_ = math.cos(m[13]), math.sin(m[13])
        x2 = -(sy_ * z1 + cy * z0)
        nx = math.sqrt(z2 * z2 + x2 * x2)
        x0, x1, x2 = cy * z2 / nx, sy_ * z2 / nx, x2 / nx

        # 4. attitude control (closed form, see CascadeController._update_batch)
        v0 = r00 * x0 + r10 * x1 + r20 * x2
        v1 = r01 * x0 + r11 * x1 + r21 * x2
        v2 = r02 * x0 + r12 * x1 + r22 * x2
        zb0 = r00 * z0 + r10 * z1 + r20 * z2
        zb1 = r01 * z0 + r11 * z1 + r21 * z2
        zb2 = r02 * z0 + r12 * z1 + r22 * z2
        one_c = max(1.0 + zb2, 1e-9)
        uv = (zb1 * v0 - zb0 * v1) / one_c
        xp0 = zb2 * v0 - zb0 * v2 + zb1 * uv
        xp1 = zb2 * v1 - zb1 * v2 - zb0 * uv
        half_yaw = (0.5 * k[K_YAW_WEIGHT]) * math.atan2(xp1, xp0)
        cos_h, sin_h = math.cos(half_yaw), math.sin(half_yaw)
        inv_norm = 2.0 / math.sqrt(2.0 * one_c)
        rsx = (zb0 * sin_h - zb1 * cos_h) * inv_norm * k[K_ATT_P] + r20 * yr
        rsy = (zb0 * cos_h + zb1 * sin_h) * inv_norm * k[K_ATT_P + 1] + r21 * yr
        rsz = one_c * sin_h * inv_norm * k[K_ATT_P + 2] + r22 * yr
        rsx = max(min(rsx, k[K_RATE_MAX]), -k[K_RATE_MAX])
        rsy = max(min(rsy, k[K_RATE_MAX + 1]), -k[K_RATE_MAX + 1])
        rsz = max(min(rsz, k[K_RATE_MAX + 2]), -k[K_RATE_MAX + 2])

        # 5. rate control
        m[9] += alpha_w * ((wx - m[17]) / dt - m[9])
        m[10] += alpha_w * ((wy - m[18]) / dt - m[10])
        m[11] += alpha_w * ((wz - m[19]) / dt - m[11])
        m[17], m[18], m[19] = wx, wy, wz
        errs[0], errs[1], errs[2] = rsx - wx, rsy - wy, rsz - wz
        for j in range(3):
            torque[j] = errs[j] * k[K_RATE_P + j] + m[6 + j] - m[9 + j] * k[K_RATE_D + j]
        for j in range(3):
            fi = errs[j] * k[K_INV_RATE_400]
            fi = max(1.0 - fi * fi, 0.0) * errs[j] * (k[K_RATE_I + j] * dt)
            lim = k[K_RATE_INT_LIM + j]
            m[6 + j] = max(min(m[6 + j] + fi, lim), -lim)
        if k[K_YAW_TQ_CUTOFF] > 0.0:
            m[12] += alpha_y * (torque[2] - m[12])
            torque[2] = m[12]
        t0 = max(min(torque[0], 1.0), -1.0)
        t1 = max(min(torque[1], 1.0), -1.0)
        t2 = max(min(torque[2], 1.0), -1.0)

        # 6. mixer (as CascadeController._mix): airmode off
        over = False
        for r in range(4):
            base[r] = collective * mix[r, 3]
            rp[r] = t0 * mix[r, 0] + t1 * mix[r, 1]
            t[r] = base[r] + rp[r]
            over = over or t[r] > 1.0 or t[r] < 0.0
        if over:
            rp_max, rp_min = rp.max(), rp.min()
            span = max(rp_max - rp_min, 1.0)
            rp_max /= span
            rp_min /= span
            shift = max(base[0] + rp_max - 1.0, 0.0)
            for r in range(4):
                rp[r] /= span
                base[r] -= shift
            k_rp = base[0] / -rp_min if base[0] + rp_min < 0.0 else 1.0
            for r in range(4):
                t[r] = base[r] + rp[r] * k_rp
        over = False
        for r in range(4):
            y[r] = t2 * mix[r, 2]
            out[n, r] = t[r] + y[r]
            over = over or out[n, r] > 1.0 or out[n, r] < 0.0
        if over:
            room = math.inf
            for r in range(4):
                if y[r] > 0.0:
                    room = min(room, (1.0 - t[r]) / y[r])
                elif y[r] < 0.0:
                    room = min(room, t[r] / -y[r])
            k_y = min(max(room, 0.0), 1.0)
            for r in range(4):
                out[n, r] = t[r] + y[r] * k_y
        fac = k[K_THR_MDL_FAC]
        for r in range(4):
            o = max(min(out[n, r], 1.0), 0.0)
            if fac > 0.0:  # invert rotor thrust = f u^2 + (1 - f) u
                o = (math.sqrt((1.0 - fac) ** 2 + 4.0 * fac * o) - (1.0 - fac)) / (2.0 * fac)
            out[n, r] = o


@numba.njit(cache=True, nogil=True)
def cascade_rotors_into(
    vel_sp_w, yaw_rate_sp, qpos, qvel, k, mix, memory, fresh, dt,
    u, armed, omega, rotor, torque_per_thrust, ctrl,
):  # fmt: skip
    """One physics step's control of every drone in one call: state -> cascade -> rotors -> wrench.

    Reads the drones' state straight from the simulator's free-joint arrays, runs
    :func:`cascade_update_into`, then :func:`flyby.dynamics.multirotor_kernel.rotors_into`, and
    writes the body wrench into the simulator's actuator inputs: what
    :meth:`flyby.dynamics.flight_stack_motion.FlightStackMotion` does with the cascade in one
    physics substep, before ``mj_step``.

    Args:
        vel_sp_w, yaw_rate_sp, k, mix, memory, fresh, dt: as :func:`cascade_update_into`.
        qpos: (N, 7) float64 free-joint positions [pos_w m ENU, quat_wxyz body FLU -> world].
        qvel: (N, 6) float64 free-joint velocities [lin_vel_w m/s ENU, ang_vel_b rad/s FLU].
        u: (N, 4) float64 out: the motor commands in [0, 1].
        armed, omega, rotor, torque_per_thrust, ctrl: as :func:`rotors_into`.

    Returns:
        float: the largest ``|ctrl|`` written (inf for NaN).
    """
    cascade_update_into(
        vel_sp_w, yaw_rate_sp, qpos[:, 3:7], qvel[:, 0:3], qvel[:, 3:6], k, mix, memory, fresh, dt, u
    )
    return rotors_into(u, armed, omega, rotor, torque_per_thrust, qpos, qvel, ctrl)
