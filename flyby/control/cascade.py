"""Built-in cascade flight controller: PX4's multicopter control chain, batched in numpy.

Used by the full-fidelity env when PX4 SITL is absent. It takes the same
offboard input PX4 takes from the policy (a world velocity setpoint and a yaw
rate, SET_POSITION_TARGET_LOCAL_NED type_mask 1479) and returns normalised
motor commands in PX4 motor order, like PX4's HIL_ACTUATOR_CONTROLS. Per call
(one physics step, 250 Hz):

1. **Velocity** (PX4 ``mc_pos_control`` ``PositionControl``): setpoint clamped
   to ``MPC_XY_VEL_MAX`` / ``MPC_Z_VEL_MAX_UP`` / ``MPC_Z_VEL_MAX_DN``; PID with
   ``MPC_XY_VEL_P/I/D_ACC``, ``MPC_Z_VEL_P/I/D_ACC`` (D on the measured
   velocity derivative, low-passed at ``MPC_VELD_LP``) -> acceleration setpoint.
2. **Acceleration -> thrust vector**: body z along ``(a_x, a_y, g)``, tilt
   limited to ``MPC_TILTMAX_AIR``; collective thrust
   ``(a_z + g) * MPC_THR_HOVER / g / cos(tilt)`` limited by ``MPC_THR_MIN``,
   ``MPC_THR_MAX`` with the horizontal margin ``MPC_THR_XY_MARG``; PX4's
   vertical anti-windup and horizontal tracking anti-windup.
3. **Attitude setpoint**: from the thrust direction and the yaw setpoint. As in
   PX4 offboard with a yaw-rate setpoint (yaw NaN), the yaw setpoint is the
   current heading and the yaw rate (clamped to ``MC_YAWRATE_MAX``) is fed
   forward; ``integrate_yaw_sp=True`` holds an integrated yaw setpoint instead.
4. **Attitude** (PX4 ``mc_att_control`` ``AttitudeControl``): quaternion
   error with yaw de-prioritised by ``MC_YAW_WEIGHT``, P gains ``MC_ROLL_P``,
   ``MC_PITCH_P``, ``MC_YAW_P``, yaw-rate feed-forward, rates limited by
   ``MC_ROLLRATE_MAX`` / ``MC_PITCHRATE_MAX`` / ``MC_YAWRATE_MAX``.
5. **Rate** (PX4 ``mc_rate_control`` ``RateControl``): PID ``MC_*RATE_P/I/D``
   (D on the measured angular acceleration, low-passed at
   ``IMU_DGYRO_CUTOFF``), integrator limits ``MC_RR/PR/YR_INT_LIM`` and PX4's
   I-factor; yaw torque low-passed at ``MC_YAW_TQ_CUTOFF``.
6. **Mixer** (PX4 ``control_allocator``, pseudo-inverse with PX4's
   normalisation): normalised torque and collective thrust -> per-rotor
   thrust in [0, 1] with airmode-off desaturation (thrust is only ever
   reduced; roll/pitch, then yaw, are scaled back to fit), then the thrust
   model ``THR_MDL_FAC`` -> motor command ``u``.

Differences from PX4 (documented rather than hidden): no EKF (the controller
reads the true state), no land detector or takeoff ramp, no hover-thrust
estimator (``MPC_THR_HOVER`` defaults to the exact value from mass and
``k_f``), first-order instead of second-order derivative filters, a simplified
desaturation, and no mixer-saturation feedback into the rate integrator.
``MPC_ACC_HOR`` does not limit offboard velocity control in PX4 (it shapes
the auto/position-mode trajectory generators); it is applied here only with
``limit_acc_hor=True``.

Gains and limits are PX4 defaults (``src/modules/mc_pos_control``,
``mc_att_control``, ``mc_rate_control`` parameter files; MC_ROLL_P/MC_PITCH_P
6.5 as in the PX4 v1.14-v1.16 releases).

Frames: world ENU, body FLU, quaternions wxyz body -> world. PX4's maths is
frame-agnostic once written with "up" thrust, so ENU/FLU is used throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flyby.config import cfg_field, check
from flyby.dynamics.multirotor import DroneState, MultirotorCfg
from flyby.enums import KernelBackend
from flyby.geometry import STANDARD_GRAVITY, quat_wxyz_to_rot, wrap_pi
from flyby.kernels import kernel_backend

__all__ = ["CascadeCfg", "CascadeController", "px4_mixer_matrix"]

_MEMORY_SIZE = 20  # floats of controller state per drone


@dataclass(kw_only=True)
class CascadeCfg:
    """PX4 default gains and limits; field names are the lower-case PX4 parameter names."""

    # mc_pos_control: velocity PID (multicopter_position_control_gain_params)
    mpc_xy_vel_p_acc: float = cfg_field(1.8, gt=0.0)  # (m/s^2)/(m/s), MPC_XY_VEL_P_ACC
    mpc_xy_vel_i_acc: float = cfg_field(0.4, ge=0.0)  # (m/s^2)/m, MPC_XY_VEL_I_ACC
    mpc_xy_vel_d_acc: float = cfg_field(0.2, ge=0.0)  # (m/s^2)/(m/s^2), MPC_XY_VEL_D_ACC
    mpc_z_vel_p_acc: float = cfg_field(4.0, gt=0.0)  # (m/s^2)/(m/s), MPC_Z_VEL_P_ACC
    mpc_z_vel_i_acc: float = cfg_field(2.0, ge=0.0)  # (m/s^2)/m, MPC_Z_VEL_I_ACC
    mpc_z_vel_d_acc: float = cfg_field(0.0, ge=0.0)  # (m/s^2)/(m/s^2), MPC_Z_VEL_D_ACC
    mpc_veld_lp: float = cfg_field(5.0, gt=0.0)  # Hz, MPC_VELD_LP, velocity derivative low-pass
    # mc_pos_control: limits (multicopter_position_control_limits_params)
    mpc_xy_vel_max: float = cfg_field(12.0, gt=0.0)  # m/s, MPC_XY_VEL_MAX, horizontal setpoint limit
    mpc_z_vel_max_up: float = cfg_field(3.0, gt=0.0)  # m/s, MPC_Z_VEL_MAX_UP, climb setpoint limit
    mpc_z_vel_max_dn: float = cfg_field(1.5, gt=0.0)  # m/s, MPC_Z_VEL_MAX_DN, descent setpoint limit
    mpc_tiltmax_air: float = cfg_field(45.0, gt=0.0, lt=89.0)  # deg, MPC_TILTMAX_AIR
    mpc_acc_hor: float = cfg_field(3.0, gt=0.0)  # m/s^2, MPC_ACC_HOR (only with limit_acc_hor)
    limit_acc_hor: bool = False  # clamp the xy acceleration setpoint to mpc_acc_hor (PX4 offboard: no)
    mpc_thr_hover: float | None = cfg_field(None, gt=0.0, lt=1.0)  # 1, MPC_THR_HOVER; None: from mass, k_f
    mpc_thr_min: float = cfg_field(0.12, ge=0.0, lt=1.0)  # 1, MPC_THR_MIN, collective thrust floor
    mpc_thr_max: float = cfg_field(1.0, gt=0.0, le=1.0)  # 1, MPC_THR_MAX, collective thrust ceiling
    mpc_thr_xy_marg: float = cfg_field(0.3, ge=0.0, le=0.5)  # 1, MPC_THR_XY_MARG, thrust kept for xy
    # mc_att_control (mc_att_control_params)
    mc_roll_p: float = cfg_field(6.5, ge=0.0)  # (rad/s)/rad, MC_ROLL_P
    mc_pitch_p: float = cfg_field(6.5, ge=0.0)  # (rad/s)/rad, MC_PITCH_P
    mc_yaw_p: float = cfg_field(2.8, ge=0.0)  # (rad/s)/rad, MC_YAW_P
    mc_yaw_weight: float = cfg_field(0.4, gt=0.0, le=1.0)  # 1, MC_YAW_WEIGHT, yaw vs roll/pitch priority
    mc_rollrate_max: float = cfg_field(220.0, gt=0.0)  # deg/s, MC_ROLLRATE_MAX
    mc_pitchrate_max: float = cfg_field(220.0, gt=0.0)  # deg/s, MC_PITCHRATE_MAX
    mc_yawrate_max: float = cfg_field(200.0, gt=0.0)  # deg/s, MC_YAWRATE_MAX (also the yaw-rate setpoint)
    # mc_rate_control (mc_rate_control_params); MC_*RATE_K = 1, MC_*RATE_FF = 0
    mc_rollrate_p: float = cfg_field(0.15, ge=0.0)  # 1/(rad/s), MC_ROLLRATE_P
    mc_rollrate_i: float = cfg_field(0.2, ge=0.0)  # 1/rad, MC_ROLLRATE_I
    mc_rollrate_d: float = cfg_field(0.003, ge=0.0)  # 1/(rad/s^2), MC_ROLLRATE_D
    mc_rr_int_lim: float = cfg_field(0.3, ge=0.0)  # 1, MC_RR_INT_LIM
    mc_pitchrate_p: float = cfg_field(0.15, ge=0.0)  # 1/(rad/s), MC_PITCHRATE_P
    mc_pitchrate_i: float = cfg_field(0.2, ge=0.0)  # 1/rad, MC_PITCHRATE_I
    mc_pitchrate_d: float = cfg_field(0.003, ge=0.0)  # 1/(rad/s^2), MC_PITCHRATE_D
    mc_pr_int_lim: float = cfg_field(0.3, ge=0.0)  # 1, MC_PR_INT_LIM
    mc_yawrate_p: float = cfg_field(0.2, ge=0.0)  # 1/(rad/s), MC_YAWRATE_P
    mc_yawrate_i: float = cfg_field(0.1, ge=0.0)  # 1/rad, MC_YAWRATE_I
    mc_yawrate_d: float = cfg_field(0.0, ge=0.0)  # 1/(rad/s^2), MC_YAWRATE_D
    mc_yr_int_lim: float = cfg_field(0.3, ge=0.0)  # 1, MC_YR_INT_LIM
    mc_yaw_tq_cutoff: float = cfg_field(2.0, ge=0.0)  # Hz, MC_YAW_TQ_CUTOFF, yaw torque low-pass (0: off)
    imu_dgyro_cutoff: float = cfg_field(20.0, gt=0.0)  # Hz, IMU_DGYRO_CUTOFF, angular accel. low-pass
    # control_allocator
    thr_mdl_fac: float = cfg_field(0.0, ge=0.0, le=1.0)  # 1, THR_MDL_FAC: rotor thrust = f u^2 + (1 - f) u
    # flyby: yaw setpoint handling (not PX4 parameters)
    integrate_yaw_sp: bool = False  # hold a yaw setpoint integrated from the rate (PX4 offboard: no)
    yaw_error_max_rad: float = cfg_field(0.5, gt=0.0, le=math.pi)  # rad, integrated setpoint's error bound


def px4_mixer_matrix(multirotor: MultirotorCfg) -> np.ndarray:
    """PX4's normalised allocation matrix for the airframe's rotor geometry.

    The effectiveness of each rotor (rows roll, pitch, yaw torque and thrust in
    the body FLU frame, per unit rotor thrust) is inverted by pseudo-inverse and
    normalised as PX4's ``ControlAllocationPseudoInverse`` does: roll and pitch
    columns share one scale (``sqrt(|col|^2 / (nonzero / 2))``), yaw is scaled
    by its largest entry and thrust by the mean rotor thrust norm.

    Returns:
        (4, 4) float64: per-rotor normalised thrust = matrix @ (roll, pitch, yaw, thrust).
    """
    pos = np.asarray(multirotor.rotor_pos_b, dtype=np.float64)
    spin = np.asarray(multirotor.rotor_dir, dtype=np.float64)
    effectiveness = np.stack([pos[:, 1], -pos[:, 0], -spin * multirotor.k_m, np.ones(4)])
    mix = np.linalg.pinv(effectiveness)
    nonzero_r = np.count_nonzero(np.abs(mix[:, 0]) > 1e-3)
    nonzero_p = np.count_nonzero(np.abs(mix[:, 1]) > 1e-3)
    rp_scale = max(
        math.sqrt(float(mix[:, 0] @ mix[:, 0]) / (nonzero_r / 2.0)),
        math.sqrt(float(mix[:, 1] @ mix[:, 1]) / (nonzero_p / 2.0)),
    )
    mix[:, :2] /= rp_scale
    mix[:, 2] /= mix[:, 2].max()
    mix[:, 3] /= np.abs(mix[:, 3]).mean()
    mix[np.abs(mix) < 1e-3] = 0.0
    return mix


class CascadeController:
    """Batched PX4-style cascade for ``num_drones`` multirotors (see the module docstring).

    Args:
        cfg: gains and limits (PX4 defaults).
        multirotor: the airframe (mass and ``k_f`` give the hover thrust, rotor
            geometry the mixer).
        num_drones: N >= 1.

    Raises:
        ConfigError: invalid ``cfg`` or ``multirotor``.
        ValueError: ``num_drones`` < 1.
    """

    def __init__(self, cfg: CascadeCfg, multirotor: MultirotorCfg, num_drones: int) -> None:
        self.cfg = check(cfg)
        self.multirotor = check(multirotor)
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        n = self.num_drones = int(num_drones)
        c = cfg
        if c.mpc_thr_hover is None:
            u = multirotor.hover_u
            self.thr_hover = c.thr_mdl_fac * u * u + (1.0 - c.thr_mdl_fac) * u
        else:
            self.thr_hover = float(c.mpc_thr_hover)
        self._vel_p = np.array([c.mpc_xy_vel_p_acc, c.mpc_xy_vel_p_acc, c.mpc_z_vel_p_acc])
        self._vel_i = np.array([c.mpc_xy_vel_i_acc, c.mpc_xy_vel_i_acc, c.mpc_z_vel_i_acc])
        self._vel_d = np.array([c.mpc_xy_vel_d_acc, c.mpc_xy_vel_d_acc, c.mpc_z_vel_d_acc])
        self._att_p = np.array([c.mc_roll_p, c.mc_pitch_p, c.mc_yaw_p / c.mc_yaw_weight])
        self._rate_max = np.radians([c.mc_rollrate_max, c.mc_pitchrate_max, c.mc_yawrate_max])
        self._rate_p = np.array([c.mc_rollrate_p, c.mc_pitchrate_p, c.mc_yawrate_p])
        self._rate_i = np.array([c.mc_rollrate_i, c.mc_pitchrate_i, c.mc_yawrate_i])
        self._rate_d = np.array([c.mc_rollrate_d, c.mc_pitchrate_d, c.mc_yawrate_d])
        self._rate_int_lim = np.array([c.mc_rr_int_lim, c.mc_pr_int_lim, c.mc_yr_int_lim])
        self._vel_sp_hi = np.array([np.inf, np.inf, c.mpc_z_vel_max_up])
        self._vel_sp_lo = np.array([-np.inf, -np.inf, -c.mpc_z_vel_max_dn])
        self._inv_rate_400 = 1.0 / math.radians(400.0)  # PX4 RateControl I-factor scale
        self._cos_tilt_max = math.cos(math.radians(c.mpc_tiltmax_air))
        self._sin_tilt_max = math.sin(math.radians(c.mpc_tiltmax_air))
        mix = px4_mixer_matrix(multirotor)
        self._mix_rp = np.ascontiguousarray(mix[:, :2].T)  # (2, 4)
        self._mix_yaw = mix[:, 2].copy()  # (4,)
        self._mix_thrust = mix[:, 3].copy()  # (4,)

        # Controller state: one (N, 20) float64 array (one read and one write per call on the
        # single-drone path), exposed as (N, ...) views.
        self._memory = np.zeros((n, _MEMORY_SIZE))
        mem = self._memory
        self.vel_int = mem[:, 0:3]  # m/s^2, velocity integrator (PX4 _vel_int)
        self.vel_dot = mem[:, 3:6]  # m/s^2, filtered velocity derivative
        self.rate_int = mem[:, 6:9]  # 1, rate integrator (PX4 _rate_int)
        self.ang_acc = mem[:, 9:12]  # rad/s^2, filtered angular acceleration
        self.yaw_torque = mem[:, 12]  # 1, low-passed yaw torque
        self.yaw_sp = mem[:, 13]  # rad, yaw setpoint of the last update
        self._vel_prev = mem[:, 14:17]  # m/s, velocity of the last update
        self._rate_prev = mem[:, 17:20]  # rad/s, body rate of the last update
        self._fresh = np.ones(n, dtype=bool)  # take the first state as "previous" after a reset
        self._kernel_gains: np.ndarray | None = None  # built on the first compiled update
        self._mix_matrix = np.ascontiguousarray(mix)  # (4 rotors, roll / pitch / yaw / thrust)

    def reset(self, ids: np.ndarray | None = None) -> None:
        """Clear integrators and filters of drones ``ids`` (all when None).

        The next :meth:`update` takes their state as the filters' previous value
        and their current heading as the yaw setpoint.
        """
        idx = slice(None) if ids is None else np.asarray(ids)
        self._memory[idx] = 0.0
        self._fresh[idx] = True

    def update(
        self, vel_sp_w: np.ndarray, yaw_rate_sp: np.ndarray, state: DroneState, dt: float
    ) -> np.ndarray:
        """One control step: velocity setpoint -> motor commands.

        ``FLYBY_KERNEL=numba`` (the default) runs the compiled loop of
        :mod:`flyby.control.cascade_kernel`, ``numpy`` the batched reference below; the two
        agree to rounding (tests/control/test_cascade.py checks it).

        Args:
            vel_sp_w: (N, 3) velocity setpoint, m/s, world ENU (clamped to the MPC_* limits).
            yaw_rate_sp: (N,) yaw-rate setpoint, rad/s, counter-clockwise seen from above
                (clamped to MC_YAWRATE_MAX).
            state: the drones' state (true state; PX4 would use its EKF's estimate).
            dt: seconds since the last update, > 0 (call once per physics step: 0.004 s).

        Returns:
            (N, 4) float64 normalised motor commands in [0, 1], PX4 motor order.

        Raises:
            ValueError: wrong shapes or ``dt`` <= 0.
        """
        n = self.num_drones
        vel_sp = np.asarray(vel_sp_w, dtype=np.float64)
        yaw_rate = np.asarray(yaw_rate_sp, dtype=np.float64)
        if vel_sp.shape != (n, 3) or yaw_rate.shape != (n,):
            raise ValueError(
                f"expected vel_sp_w ({n}, 3) and yaw_rate_sp ({n},); got {vel_sp.shape} and {yaw_rate.shape}"
            )
        if not dt > 0:
            raise ValueError(f"dt must be > 0 seconds, got {dt}")
        if kernel_backend() is KernelBackend.NUMBA:
            return self._update_kernel(vel_sp, yaw_rate, state, dt)
        return self._update_batch(vel_sp.copy(), yaw_rate, state, dt)  # a copy: clamped in place

    def _update_kernel(
        self, vel_sp: np.ndarray, yaw_rate: np.ndarray, state: DroneState, dt: float
    ) -> np.ndarray:
        """:meth:`update` in the compiled kernel (:mod:`flyby.control.cascade_kernel`), any N;
        ``vel_sp`` (N, 3) and ``yaw_rate`` (N,) float64, checked by :meth:`update`."""
        from flyby.control.cascade_kernel import cascade_update_into

        out = np.empty((self.num_drones, 4))
        cascade_update_into(
            vel_sp, yaw_rate, np.asarray(state.quat_wxyz, dtype=np.float64),
            np.asarray(state.lin_vel_w, dtype=np.float64), np.asarray(state.ang_vel_b, dtype=np.float64),
            *self.kernel_args(), float(dt), out,
        )  # fmt: skip
        return out

    def kernel_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The compiled cascade's arguments (:func:`flyby.control.cascade_kernel.cascade_update_into`).

        Returns:
            ``(gains, mix, memory, fresh)``: (NUM_GAINS,) float64 gains and limits, (4, 4) float64
            mixer, and this controller's own (N, 20) float64 memory and (N,) bool reset flags (the
            arrays themselves: the kernel updates them in place, :meth:`reset` clears them).
        """
        if self._kernel_gains is None:
            self._kernel_gains = self._make_kernel_gains()
        return self._kernel_gains, self._mix_matrix, self._memory, self._fresh

    def _make_kernel_gains(self) -> np.ndarray:
        """The kernel's (NUM_GAINS,) float64 gains and limits (see :mod:`flyby.control.cascade_kernel`)."""
        from flyby.control import cascade_kernel as kk

        c = self.cfg
        k = np.zeros(kk.NUM_GAINS)
        k[kk.K_VEL_P_XY], k[kk.K_VEL_P_Z] = self._vel_p[0], self._vel_p[2]
        k[kk.K_VEL_I_XY], k[kk.K_VEL_I_Z] = self._vel_i[0], self._vel_i[2]
        k[kk.K_VEL_D_XY], k[kk.K_VEL_D_Z] = self._vel_d[0], self._vel_d[2]
        k[kk.K_COS_TILT], k[kk.K_SIN_TILT] = self._cos_tilt_max, self._sin_tilt_max
        k[kk.K_ATT_P : kk.K_ATT_P + 3] = self._att_p
        k[kk.K_RATE_MAX : kk.K_RATE_MAX + 3] = self._rate_max
        k[kk.K_RATE_P : kk.K_RATE_P + 3] = self._rate_p
        k[kk.K_RATE_I : kk.K_RATE_I + 3] = self._rate_i
        k[kk.K_RATE_D : kk.K_RATE_D + 3] = self._rate_d
        k[kk.K_RATE_INT_LIM : kk.K_RATE_INT_LIM + 3] = self._rate_int_lim
        k[kk.K_XY_VEL_MAX], k[kk.K_Z_VEL_UP], k[kk.K_Z_VEL_DN] = (
            c.mpc_xy_vel_max, c.mpc_z_vel_max_up, c.mpc_z_vel_max_dn,
        )  # fmt: skip
        k[kk.K_VELD_LP] = c.mpc_veld_lp
        k[kk.K_LIMIT_ACC], k[kk.K_ACC_HOR] = float(c.limit_acc_hor), c.mpc_acc_hor
        k[kk.K_HOVER], k[kk.K_THR_MIN], k[kk.K_THR_MAX] = self.thr_hover, c.mpc_thr_min, c.mpc_thr_max
        k[kk.K_THR_XY_MARG], k[kk.K_XY_VEL_P_ACC] = c.mpc_thr_xy_marg, c.mpc_xy_vel_p_acc
        k[kk.K_INTEGRATE_YAW], k[kk.K_YAW_ERR_MAX] = float(c.integrate_yaw_sp), c.yaw_error_max_rad
        k[kk.K_YAW_WEIGHT], k[kk.K_DGYRO_CUTOFF] = c.mc_yaw_weight, c.imu_dgyro_cutoff
        k[kk.K_INV_RATE_400], k[kk.K_YAW_TQ_CUTOFF] = self._inv_rate_400, c.mc_yaw_tq_cutoff
        k[kk.K_THR_MDL_FAC] = c.thr_mdl_fac
        return k

    def _update_batch(
        self, vel_sp: np.ndarray, yaw_rate: np.ndarray, state: DroneState, dt: float
    ) -> np.ndarray:
        """Batched numpy implementation of :meth:`update` (the reference): ``vel_sp`` (N, 3) float64,
        the caller's copy (clamped in place), and ``yaw_rate`` (N,), checked by :meth:`update`."""
        # Written for few, large numpy operations: at N = 1 the cost is the number of calls.
        n = self.num_drones
        c = self.cfg
        g = STANDARD_GRAVITY
        vel = state.lin_vel_w
        rate = state.ang_vel_b
        rot = quat_wxyz_to_rot(state.quat_wxyz)  # (N, 3, 3) R_wb
        yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
        if self._fresh.any():
            f = self._fresh
            self._vel_prev[f] = vel[f]
            self._rate_prev[f] = rate[f]
            self.yaw_sp[f] = yaw[f]
            f[:] = False

        # ---- 1. velocity setpoint limits (PositionControl::_positionControl)
        speed_xy = np.hypot(vel_sp[:, 0], vel_sp[:, 1])
        if (speed_xy > c.mpc_xy_vel_max).any():
            vel_sp[:, :2] *= np.minimum(c.mpc_xy_vel_max / np.maximum(speed_xy, 1e-9), 1.0)[:, None]
        np.minimum(vel_sp, self._vel_sp_hi, out=vel_sp)
        np.maximum(vel_sp, self._vel_sp_lo, out=vel_sp)

        # velocity derivative, first-order low-pass at MPC_VELD_LP
        vel_dot = self.vel_dot
        vel_dot += (1.0 - math.exp(-2.0 * math.pi * c.mpc_veld_lp * dt)) * (
            (vel - self._vel_prev) / dt - vel_dot
        )
        self._vel_prev[:] = vel

        # ---- 2. velocity PID -> acceleration (PositionControl::_velocityControl)
        vel_err = vel_sp - vel
        acc_sp = vel_err * self._vel_p
        acc_sp += self.vel_int
        acc_sp -= vel_dot * self._vel_d
        if c.limit_acc_hor:
            acc_xy = np.hypot(acc_sp[:, 0], acc_sp[:, 1])
            acc_sp[:, :2] *= np.minimum(c.mpc_acc_hor / np.maximum(acc_xy, 1e-9), 1.0)[:, None]

        # acceleration -> thrust vector (PositionControl::_accelerationControl)
        body_z = acc_sp.copy()
        body_z[:, 2] = g
        body_z /= np.sqrt(np.einsum("ij,ij->i", body_z, body_z))[:, None]
        tilted = body_z[:, 2] < self._cos_tilt_max  # ControlMath::limitTilt
        if tilted.any():
            h = body_z[tilted, :2]
            h *= (self._sin_tilt_max / np.hypot(h[:, 0], h[:, 1]))[:, None]
            body_z[tilted, :2] = h
            body_z[tilted, 2] = self._cos_tilt_max
        hover = self.thr_hover
        collective = acc_sp[:, 2] + g
        collective *= hover / g
        collective /= body_z[:, 2]
        np.maximum(collective, c.mpc_thr_min, out=collective)
        thr = body_z * collective[:, None]

        # vertical integrator anti-windup
        thr_max = c.mpc_thr_max
        thr_z = thr[:, 2]
        stop_z = ((thr_z <= c.mpc_thr_min) & (vel_err[:, 2] <= 0.0)) | (
            (thr_z >= thr_max) & (vel_err[:, 2] >= 0.0)
        )
        if stop_z.any():
            vel_err[stop_z, 2] = 0.0
        # vertical priority with a horizontal margin
        thr_xy2 = np.einsum("ij,ij->i", thr[:, :2], thr[:, :2])
        allocated_xy = np.minimum(thr_xy2, c.mpc_thr_xy_marg**2)
        np.minimum(thr_z, np.sqrt(thr_max * thr_max - allocated_xy), out=thr_z)
        thr_max_xy2 = thr_max * thr_max - thr_z * thr_z
        sat_xy = thr_xy2 > thr_max_xy2
        if sat_xy.any():
            thr[sat_xy, :2] *= np.sqrt(np.maximum(thr_max_xy2[sat_xy], 0.0) / thr_xy2[sat_xy])[:, None]
        # horizontal tracking anti-windup (Rundqwist): only where the output saturated
        acc_prod_xy = thr[:, :2] * (g / hover)
        acc_sp_xy = acc_sp[:, :2]
        limited = np.einsum("ij,ij->i", acc_sp_xy, acc_sp_xy) > np.einsum(
            "ij,ij->i", acc_prod_xy, acc_prod_xy
        )
        if limited.any():
            vel_err[limited, :2] -= (2.0 / c.mpc_xy_vel_p_acc) * (acc_sp_xy[limited] - acc_prod_xy[limited])
        vel_err *= self._vel_i
        vel_err *= dt
        self.vel_int += vel_err
        vel_int_z = self.vel_int[:, 2]
        np.minimum(vel_int_z, g, out=vel_int_z)
        np.maximum(vel_int_z, -g, out=vel_int_z)

        # ---- 3. attitude setpoint: thrust direction + integrated yaw (PX4 bodyzToAttitude)
        rate_max = self._rate_max
        yaw_rate = np.minimum(np.maximum(yaw_rate, -rate_max[2]), rate_max[2])
        if c.integrate_yaw_sp:
            yaw_err = wrap_pi(self.yaw_sp + yaw_rate * dt - yaw)
            np.minimum(yaw_err, c.yaw_error_max_rad, out=yaw_err)
            np.maximum(yaw_err, -c.yaw_error_max_rad, out=yaw_err)
            yaw_sp = wrap_pi(yaw + yaw_err)
        else:  # PX4 offboard with yaw = NaN: yaw setpoint = current heading, the rate is feed-forward
            yaw_sp = yaw
        self.yaw_sp[:] = yaw_sp
        collective = np.sqrt(np.einsum("ij,ij->i", thr, thr))
        z_d = thr / collective[:, None]
        # x_d = normalise(y_C x z_d), y_C = (-sin yaw, cos yaw, 0); columns [x_d, z_d] in (N, 3, 2)
        cy, sy = np.cos(yaw_sp), np.sin(yaw_sp)
        xz = np.empty((n, 3, 2))
        xz[:, 0, 0] = cy * z_d[:, 2]
        xz[:, 1, 0] = sy * z_d[:, 2]
        xz[:, 2, 0] = -(sy * z_d[:, 1] + cy * z_d[:, 0])
        xz[:, :, 0] /= np.sqrt(z_d[:, 2] * z_d[:, 2] + xz[:, 2, 0] * xz[:, 2, 0])[:, None]
        xz[:, :, 1] = z_d

        # ---- 4. attitude control (AttitudeControl::update with MC_REF_FF = 0), in closed form:
        # x_e, z_b: desired x and z axes in the body frame. The tilt error q_tb takes e_z to
        # z_b; the remaining rotation about z (angle delta) is weighted by MC_YAW_WEIGHT:
        # q_err = q_tb * (cos(w delta / 2), 0, 0, sin(w delta / 2)), rate_sp = 2 q_err.xyz * P.
        e = np.matmul(rot.transpose(0, 2, 1), xz)
        zb0, zb1, zb2 = e[:, 0, 1], e[:, 1, 1], e[:, 2, 1]
        v0, v1, v2 = e[:, 0, 0], e[:, 1, 0], e[:, 2, 0]
        one_c = np.maximum(1.0 + zb2, 1e-9)
        # R_tb^T x_e by Rodrigues with u = z_b x e_z = (zb1, -zb0, 0), cos = zb2
        uv = (zb1 * v0 - zb0 * v1) / one_c
        xp0 = zb2 * v0 - zb0 * v2 + zb1 * uv
        xp1 = zb2 * v1 - zb1 * v2 - zb0 * uv
        half_yaw = (0.5 * c.mc_yaw_weight) * np.arctan2(xp1, xp0)
        cos_h, sin_h = np.cos(half_yaw), np.sin(half_yaw)
        inv_norm = 2.0 / np.sqrt(2.0 * one_c)  # 2 / |q_tb| before normalisation
        rate_sp = np.empty((n, 3))
        rate_sp[:, 0] = (zb0 * sin_h - zb1 * cos_h) * inv_norm
        rate_sp[:, 1] = (zb0 * cos_h + zb1 * sin_h) * inv_norm
        rate_sp[:, 2] = one_c * sin_h * inv_norm
        rate_sp *= self._att_p
        # yaw-rate feed-forward: world z in the body frame is the third row of R_wb
        rate_sp += rot[:, 2, :] * yaw_rate[:, None]
        np.minimum(rate_sp, rate_max, out=rate_sp)
        np.maximum(rate_sp, -rate_max, out=rate_sp)

        # ---- 5. rate control (RateControl::update)
        ang_acc = self.ang_acc
        ang_acc += (1.0 - math.exp(-2.0 * math.pi * c.imu_dgyro_cutoff * dt)) * (
            (rate - self._rate_prev) / dt - ang_acc
        )
        self._rate_prev[:] = rate
        rate_err = rate_sp - rate
        torque = rate_err * self._rate_p
        torque += self.rate_int
        torque -= ang_acc * self._rate_d
        i_factor = rate_err * self._inv_rate_400
        i_factor *= i_factor
        np.maximum(1.0 - i_factor, 0.0, out=i_factor)
        i_factor *= rate_err
        i_factor *= self._rate_i * dt
        rate_int = self.rate_int
        rate_int += i_factor
        np.minimum(rate_int, self._rate_int_lim, out=rate_int)
        np.maximum(rate_int, -self._rate_int_lim, out=rate_int)
        if c.mc_yaw_tq_cutoff > 0.0:
            self.yaw_torque += (1.0 - math.exp(-2.0 * math.pi * c.mc_yaw_tq_cutoff * dt)) * (
                torque[:, 2] - self.yaw_torque
            )
            torque[:, 2] = self.yaw_torque
        np.minimum(torque, 1.0, out=torque)
        np.maximum(torque, -1.0, out=torque)

        return self._mix(torque, collective)

    def _mix(self, torque: np.ndarray, collective: np.ndarray) -> np.ndarray:
        """Normalised torque (N, 3) and collective thrust (N,) -> motor commands (N, 4) in [0, 1].

        Airmode off (PX4's default): roll/pitch spread at most the full range, thrust is
        reduced (never raised) to fit the top, roll/pitch are scaled back to fit the
        bottom, then yaw is scaled to the head-room left.
        """
        base = collective[:, None] * self._mix_thrust  # (N, 4)
        rp = torque[:, :2] @ self._mix_rp  # (N, 4)
        t = base + rp
        if ((t > 1.0) | (t < 0.0)).any():
            rp_max, rp_min = rp.max(axis=1), rp.min(axis=1)
            span = np.maximum(rp_max - rp_min, 1.0)
            rp /= span[:, None]
            rp_max /= span
            rp_min /= span
            base = base - np.maximum(base[:, 0] + rp_max - 1.0, 0.0)[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                k_rp = np.where(base[:, 0] + rp_min < 0.0, base[:, 0] / -rp_min, 1.0)
            rp *= k_rp[:, None]
            t = base + rp
        y = torque[:, 2:3] * self._mix_yaw  # (N, 4)
        out = t + y
        if ((out > 1.0) | (out < 0.0)).any():
            with np.errstate(divide="ignore", invalid="ignore"):
                room = np.where(y > 0.0, (1.0 - t) / y, np.where(y < 0.0, t / -y, np.inf))
            k_y = np.minimum(np.maximum(room.min(axis=1), 0.0), 1.0)
            out = t + y * k_y[:, None]
        np.minimum(out, 1.0, out=out)
        np.maximum(out, 0.0, out=out)
        f = self.cfg.thr_mdl_fac
        if f > 0.0:  # invert rotor thrust = f u^2 + (1 - f) u
            out = (np.sqrt((1.0 - f) ** 2 + 4.0 * f * out) - (1.0 - f)) / (2.0 * f)
        return out
