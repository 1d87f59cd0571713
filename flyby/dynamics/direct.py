"""Direct dynamics: a batched velocity-response model (no PX4 in the loop).

The policy's normalised action ``a = [vx, vy, vz, yaw_rate]`` in ``[-1, 1]`` is a
velocity setpoint in the world ENU frame plus a yaw-rate setpoint, the same
quantities PX4 offboard control takes (SET_POSITION_TARGET_LOCAL_NED with
type_mask 1479), so a policy trained here drives the full-fidelity env
unchanged. Per drone and step of length ``dt``, with ``r = dt / dt_ref`` (a
retention ``x`` per reference step is ``x ** r`` for this step)::

    v_cmd    = a[:3] * (v_max, v_max, v_z_max)                      # m/s ENU: the shared action scale
    v_cmd[:2] *= min(1, v_xy_lim / |v_cmd[:2]|)                     # horizontal speed limit
    v_target = v_cmd * (k_xy, k_xy, k_z)                            # steady-state gains
    v_target[2] = clip(v_target[2], -v_down, v_up)                  # climb / descent limits
    dv     = (1 - (d_xy, d_xy, d_z) ** r) * (v_target - v)          # first-order response per axis
    # each line below active when its field is set:
    a_z    = max(dv_z / dt, -a_down)                                 # thrust floor (MPC_THR_MIN)
    dv_z   = a_z * dt
    f_w    = dv_xy / dt + c_drag * v_xy + i                          # horizontal thrust acceleration wanted
    f      = f_w * min(1, a_max / |f_w|)                             # tilt limit on thrust, not on drag
    s      = max(0, 1 + c_thr * a_z / g)                             # collective thrust scales the tilt
    i     <- d_i ** r * i - k_aw * (f_w - s * f) * dt                # leaky anti-windup integrator
    acc   <- acc + clip_norm((1 - d_a ** r) * (f - acc), j_max * dt) # attitude lag, tilt-rate (jerk) limit
    dv_xy  = (s * rot(w * t_yaw) @ acc - c_drag * v_xy) * dt         # yawing turns the thrust; drag
    v     <- v + dv + n_v                                            # n_v ~ N(0, s_v^2 * r)
    p     <- p + v * dt + n_p                                        # n_p ~ N(0, s_p^2 * r)
    w     <- d_w ** r * w + (1 - d_w ** r) * k_w * a[3] * w_max      # yaw rate, rad/s
    yaw   <- wrap(yaw + w * dt)                                      # rad, in [-pi, pi)

Noise variances scale with ``dt / dt_ref`` so the random walk per second does
not depend on the control rate. Noise is domain randomization, drawn from the
generator seeded by :meth:`DirectDynamics.reset`.

Source: the flyby seed plan's direct model (max_velocity 10 m/s,
max_vertical_velocity 5 m/s, max_yaw_rate 90 deg/s, velocity_damping 0.95,
position_noise_std 0.02 m, velocity_noise_std 0.1 m/s). The seed model is the
config defaults: ``k = 1``, ``d_z = d_xy``, no limits, ``c_drag = 0``,
``d_a = d_w = 0`` (no lag), ``t_yaw = 0``, ``c_thr = k_aw = 0``; then the seed's own update runs.

Phase-2 extensions, fitted by ``flyby tune`` (:mod:`flyby.training.tune_dynamics`)
to 300 s of excitation flight in the full-fidelity env (built-in cascade, PX4
default gains). Each one is there because the seed model's 5 s open-loop
rollouts showed the systematic error it removes, and refitting without it
raises the training error (``flyby tune --ablation``; mean position error over
282 windows at 1 s / 5 s: seed 0.60 / 3.00 m, tuned 0.17 / 0.78 m; "without"
figures below are the same refitted with that extension left out):

- *Vertical time constant* ``d_z``: PX4's vertical velocity loop
  (``MPC_Z_VEL_P_ACC`` 4.0, thrust acts at once) settles with tau about 0.18 s,
  the horizontal one (``MPC_XY_VEL_P_ACC`` 1.8 behind the attitude loop) with
  about 0.63 s. Without it: 0.27 / 1.06 m (vertical error at 5 s 0.54 m, not 0.24).
- *Climb / descent limits*: PX4 clamps the vertical setpoint to
  ``MPC_Z_VEL_MAX_UP`` 3 m/s and ``MPC_Z_VEL_MAX_DN`` 1.5 m/s, below the 5 m/s
  action scale; the fit finds 3.03 and 1.61 m/s. The seed model climbs and
  sinks at up to 5 m/s (its vertical error at 5 s: 1.77 m). Without: 0.32 / 1.25 m.
- *Horizontal speed limit*: ``MPC_XY_VEL_MAX`` (12 m/s) cuts the norm of
  diagonal setpoints (up to 14.1 m/s); in diagonal cruise the model ran ahead
  of the vehicle. Without: 0.18 / 0.80 m.
- *Velocity gains* ``k``: within a window the horizontal speed settles at about
  0.94 of its setpoint (drag, and the velocity integrator's slow tail); the
  effective maximum speed is ``k x action scale``, the action scale stays
  fixed. Without: 0.21 / 0.96 m.
- *Thrust limit with drag*: the tilt limit (``MPC_TILTMAX_AIR`` 45 deg) caps
  the horizontal thrust acceleration (fitted 8.4 m/s^2); linear drag (fitted
  0.41 1/s; the Iris's rotor drag is 0.56 N/(m/s) / 1.5 kg = 0.37 1/s) adds to
  braking and holds back speeding up. A first-order model follows full-scale
  steps and reversals much faster than the vehicle. Without: 0.27 / 1.25 m.
- *Attitude lag and jerk limit*: the attitude loop (``MC_*_P`` 6.5) and the
  tilt-rate limit (``MC_*RATE_MAX`` 220 deg/s) delay and ramp each change of
  thrust direction. Without the jerk limit: 0.20 / 0.93 m; without the lag:
  0.23 / 0.81 m. The lag state stands in for a command delay: a pure delay of
  2-4 control steps, tried on top, changed the held-out 5 s error by 2-5 %,
  so no command buffer is kept.
- *Yaw coupling*: while yawing, the attitude lag turns the thrust direction
  with the body (a full-speed step with full yaw rate drifts 0.7 m/s sideways
  in the full-fidelity env). Without: 0.20 / 0.84 m.
- *Thrust coupling and descent-acceleration limit*: PX4 (``MPC_ACC_DECOUPLE``,
  the default) tilts the thrust as for ``(a_x, a_y, g)`` and sets the collective
  thrust for ``a_z``, floored at ``MPC_THR_MIN`` (0.12); the horizontal
  acceleration delivered is then ``(1 + a_z / g)`` times the one asked for
  (``g``, ``flyby.geometry.STANDARD_GRAVITY``). Braking while the vertical loop cuts thrust to
  descend (a_z down to -7 m/s^2 in the excitation logs) brakes at a fraction of
  the rate a thrust-blind model assumes; the held-out windows with the largest
  errors (up to 8.5 m after 5 s) were all of this kind. The fit finds
  ``c_thr`` 0.45 rather than the physical 1 (the model's a_z is the first-order
  response's, which leads the vehicle's thrust change through the motor and
  attitude dynamics) and a floor of 9.4 m/s^2 against the physical
  ``g (1 - MPC_THR_MIN / MPC_THR_HOVER)`` = 8.1. An upward limit
  (``MPC_THR_MAX``) was tried and fitted to 24 m/s^2, out of reach: not kept.
  Without: 0.20 / 0.92 m.
- *Anti-windup integrator* ``i``: PX4's horizontal velocity integrator runs
  back-calculation anti-windup (``arw_gain = 2 / MPC_XY_VEL_P_ACC``) on the
  acceleration the thrust did not deliver. After braking against low thrust
  it has wound the other way, and the vehicle overshoots zero speed by up to
  2 m/s a second later. The model keeps that part of the integrator, with a
  leak ``d_i`` standing in for PX4's velocity-error term, which pulls the
  integrator back once the thrust delivers again (an explicit velocity-error
  term, fitted alongside, went to zero gain; without any leak the state kept
  a wound-up bias for as long as no limit was hit). Fitted: ``k_aw`` 0.30 1/s,
  leak time constant 2.8 s, so the tuner's teacher-forced burn-in is 3 s.
  Without: 0.20 / 0.88 m.
- *Yaw-rate gain and first-order yaw response*: the yaw rate follows its
  setpoint through the rate loop, not instantly (yaw error at 5 s 0.201 rad,
  0.212 without). It barely moves the position (0.17 / 0.78 m without).

Tried and not kept: a slow second velocity time constant (fitted to 18 s: no
effect in 5 s), a climb while tilting (no held-out gain), the upward
acceleration limit above. Like the seed model, the update is explicit once per
step: between 25 Hz (where it is fitted) and 20 Hz (the training envs) a 5 s
prediction moves by under 0.1 m.
"""

from __future__ import annotations

import math

import numpy as np

from flyby.config import check
from flyby.config.dynamics import DirectDynamicsCfg
from flyby.enums import KernelBackend
from flyby.geometry import STANDARD_GRAVITY, wrap_pi, yaw_rotation
from flyby.kernels import kernel_backend
from flyby.mdp.actions import ActionCfg

_NO_NOISE = np.zeros((0, 6))  # the kernel's "no noise" draws


class DirectDynamics:
    """Batched direct dynamics for ``num_drones`` drones.

    State (float64 internally, world ENU):
        pos_w: (N, 3) metres.
        lin_vel_w: (N, 3) m/s.
        yaw_rad: (N,) radians in [-pi, pi).
        lin_acc_w: (N, 3) m/s^2, the lagged horizontal thrust acceleration (z unused; only
            updated when ``acceleration_damping`` or ``max_horizontal_jerk`` is set).
        vel_int_w: (N, 2) m/s^2, the anti-windup integrator (only with ``antiwindup_gain``).
        yaw_rate: (N,) rad/s, the yaw rate of the last step.

    Args:
        cfg: model parameters.
        num_drones: batch size N >= 1.

    Raises:
        ConfigError: ``cfg`` has out-of-range values.
        ValueError: ``num_drones`` < 1.
    """

    def __init__(self, cfg: DirectDynamicsCfg, num_drones: int, actions: ActionCfg | None = None) -> None:
        self.cfg = check(cfg)
        self.actions = check(actions) if actions is not None else ActionCfg()
        if int(num_drones) < 1:
            raise ValueError(f"num_drones must be >= 1, got {num_drones}")
        self.num_drones = n = int(num_drones)
        self.pos_w = np.zeros((n, 3))
        self.lin_vel_w = np.zeros((n, 3))
        self.yaw_rad = np.zeros(n)
        self.lin_acc_w = np.zeros((n, 3))
        self.vel_int_w = np.zeros((n, 2))
        self.yaw_rate = np.zeros(n)
        self.rng = np.random.default_rng()
        c = cfg
        gains = (c.velocity_gain, c.velocity_gain, c.vertical_velocity_gain)
        self._gain = None if gains == (1.0, 1.0, 1.0) else np.array(gains)
        self._limit_z = c.max_climb_rate is not None or c.max_descent_rate is not None
        self._z_lo = -math.inf if c.max_descent_rate is None else -c.max_descent_rate
        self._z_hi = math.inf if c.max_climb_rate is None else c.max_climb_rate
        d_z = c.velocity_damping if c.vertical_velocity_damping is None else c.vertical_velocity_damping
        d_xy = c.velocity_damping
        self._damping = d_xy if d_z == d_xy else np.array([d_xy, d_xy, d_z])  # scalar: the seed's update
        self._acc_state = c.acceleration_damping > 0.0 or c.max_horizontal_jerk is not None
        self._limit_az = c.max_downward_acceleration is not None
        self._az_lo = -math.inf if c.max_downward_acceleration is None else -c.max_downward_acceleration
        self._shaped = (
            self._acc_state
            or self._limit_az
            or c.max_horizontal_acceleration is not None
            or c.yaw_coupling_s > 0.0
            or c.thrust_coupling > 0.0
            or c.antiwindup_gain > 0.0
        )
        self._cache_dt = math.nan
        self._cache: tuple = ()
        self._kernel_dt = math.nan
        self._kernel_p = np.empty(0)

    @property
    def rot_wb(self) -> np.ndarray:
        """(N, 3, 3) body-to-world rotations; the direct model flies level (yaw only)."""
        return yaw_rotation(self.yaw_rad)

    def seed(self, seed: int | np.random.SeedSequence | None) -> None:
        """Reseed the domain-randomization noise."""
        self.rng = np.random.default_rng(seed)

    def reset(
        self,
        pos_w: np.ndarray,
        yaw_rad: np.ndarray,
        ids: np.ndarray | None = None,
        *,
        lin_vel_w: np.ndarray | None = None,
        seed: int | None = None,
    ) -> None:
        """Place drones ``ids`` (all when None) at rest at ``pos_w`` (k, 3) with ``yaw_rad`` (k,).

        The lagged acceleration, the integrator and the yaw rate are zeroed (a vehicle hovering at rest).

        Args:
            seed: reseeds the noise generator (whole batch) when given.
        """
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        idx = slice(None) if ids is None else ids
        self.pos_w[idx] = pos_w
        self.yaw_rad[idx] = wrap_pi(np.asarray(yaw_rad, dtype=np.float64))
        self.lin_vel_w[idx] = 0.0 if lin_vel_w is None else lin_vel_w
        self.lin_acc_w[idx] = 0.0
        self.vel_int_w[idx] = 0.0
        self.yaw_rate[idx] = 0.0

    def _rates(self, dt: float) -> tuple:
        """Per-step values for ``dt``: velocity retention (scalar or (3,)), 1 - acceleration
        retention, yaw-rate retention, noise scale, anti-windup retention."""
        if dt != self._cache_dt:
            c = self.cfg
            ratio = dt / c.damping_reference_dt
            self._cache = (
                self._damping**ratio,
                1.0 - c.acceleration_damping**ratio,
                c.yaw_rate_damping**ratio,
                math.sqrt(ratio),
                c.antiwindup_damping**ratio,
            )
            self._cache_dt = dt
        return self._cache

    def step(self, actions: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Advance every drone by ``dt`` seconds.

        Args:
            actions: (N, 4) float64 normalised ``[vx, vy, vz, yaw_rate]`` already checked and
                clipped to [-1, 1] by :func:`flyby.mdp.actions.validate_actions` (the env does
                it once per step; this does not check them again), scaled by ``self.actions``.
            dt: step length, seconds, > 0.

        Returns:
            pos_w: (N, 3) float64 view of the new positions, metres, world ENU.
            yaw_rad: (N,) float64 view of the new yaw angles.

        Raises:
            ValueError: ``dt`` is not > 0.
        """
        if not dt > 0:
            raise ValueError(f"dt must be > 0 seconds, got {dt}")
        if kernel_backend() is KernelBackend.NUMBA:
            return self._step_kernel(actions, dt)
        return self._step_batch(actions, dt)

    def _step_kernel(self, a: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` in the compiled kernel (:mod:`flyby.dynamics.direct_kernel`), bit-identical."""
        from flyby.dynamics.direct_kernel import direct_step_into

        direct_step_into(
            a, dt, self.kernel_params(dt), self.kernel_noise(), self.pos_w, self.lin_vel_w, self.yaw_rad,
            self.yaw_rate, self.lin_acc_w, self.vel_int_w,
        )  # fmt: skip
        return self.pos_w, self.yaw_rad

    def kernel_params(self, dt: float) -> np.ndarray:
        """The (NUM_PARAMS,) float64 constants of :func:`~flyby.dynamics.direct_kernel.direct_step_into`
        for steps of ``dt`` seconds (> 0, the caller's to check); cached for the last ``dt``."""
        if dt != self._kernel_dt:
            self._kernel_p = self._kernel_params(dt)
            self._kernel_dt = dt
        return self._kernel_p

    def kernel_noise(self) -> np.ndarray:
        """One step's noise for :func:`~flyby.dynamics.direct_kernel.direct_step_into`: (N, 6)
        float64 standard normal draws (the reference's, in its order), or (0, 6) without noise.
        Each call draws: call it once per step."""
        cfg = self.cfg
        if cfg.velocity_noise_std > 0 or cfg.position_noise_std > 0:
            return self.rng.standard_normal((self.num_drones, 6))
        return _NO_NOISE

    def _kernel_params(self, dt: float) -> np.ndarray:
        """The kernel's (NUM_PARAMS,) float64 constants for steps of ``dt`` seconds (NaN: no limit)."""
        from flyby.dynamics import direct_kernel as k

        c, act = self.cfg, self.actions
        d, lag, d_yaw, noise_scale, d_int = self._rates(dt)
        d_xy, d_z = (d, d) if isinstance(d, float) else (float(d[0]), float(d[2]))
        nan = math.nan
        p = np.full(k.NUM_PARAMS, nan)
        p[k.P_VEL_SCALE], p[k.P_VZ_SCALE] = act.max_velocity, act.max_vertical_velocity
        p[k.P_YAW_SCALE] = math.radians(act.max_yaw_rate)
        p[k.P_MAX_SPEED] = nan if c.max_horizontal_speed is None else c.max_horizontal_speed
        if self._gain is not None:
            p[k.P_GAIN_XY], p[k.P_GAIN_Z] = c.velocity_gain, c.vertical_velocity_gain
        if self._limit_z:
            p[k.P_Z_LO], p[k.P_Z_HI] = self._z_lo, self._z_hi
        p[k.P_YAW_GAIN] = c.yaw_rate_gain
        p[k.P_KEEP_XY], p[k.P_KEEP_Z], p[k.P_LAG], p[k.P_KEEP_YAW] = d_xy, d_z, lag, d_yaw
        p[k.P_NOISE_SCALE], p[k.P_KEEP_INT] = noise_scale, d_int
        p[k.P_AZ_LO] = self._az_lo if self._limit_az else nan
        p[k.P_DRAG], p[k.P_K_AW] = c.drag_coefficient, c.antiwindup_gain
        p[k.P_MAX_ACC] = nan if c.max_horizontal_acceleration is None else c.max_horizontal_acceleration
        p[k.P_THRUST_G] = c.thrust_coupling / STANDARD_GRAVITY
        p[k.P_MAX_JERK] = nan if c.max_horizontal_jerk is None else c.max_horizontal_jerk
        p[k.P_YAW_COUPLING] = c.yaw_coupling_s
        p[k.P_SIGMA_V], p[k.P_SIGMA_P] = c.velocity_noise_std, c.position_noise_std
        p[k.P_SHAPED], p[k.P_ACC_STATE] = float(self._shaped), float(self._acc_state)
        return p

    def _step_batch(self, a: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`step` for validated, clipped actions ``a`` (N, 4), batched in numpy."""
        cfg = self.cfg
        d, lag, d_yaw, noise_scale, _ = self._rates(dt)
        v_target, yaw_cmd = self.actions.scale(a)
        if cfg.max_horizontal_speed is not None:
            _clip_norm(v_target[:, :2], cfg.max_horizontal_speed)
        if self._gain is not None:
            v_target *= self._gain
        if self._limit_z:
            z = v_target[:, 2]
            np.maximum(z, self._z_lo, out=z)
            np.minimum(z, self._z_hi, out=z)
        if cfg.yaw_rate_gain != 1.0:
            yaw_cmd *= cfg.yaw_rate_gain
        v = self.lin_vel_w
        noisy = cfg.velocity_noise_std > 0 or cfg.position_noise_std > 0
        if self._shaped:
            dv = v_target - v
            dv *= 1.0 - d
            az = dv[:, 2] * (1.0 / dt)  # vertical acceleration, m/s^2
            if self._limit_az:
                np.maximum(az, self._az_lo, out=az)
                np.multiply(az, dt, out=dv[:, 2])
            self._shape_horizontal(dv[:, :2], v[:, :2], az, lag, dt)
            v += dv
            self.pos_w += v * dt
            self._yaw_step(yaw_cmd, d_yaw, dt)
            if noisy:
                n = self.rng.standard_normal((self.num_drones, 6))
                n_v = n[:, :3] * (cfg.velocity_noise_std * noise_scale)
                v += n_v
                self.pos_w += n_v * dt + n[:, 3:] * (cfg.position_noise_std * noise_scale)
            self.yaw_rad = wrap_pi(self.yaw_rad)
            return self.pos_w, self.yaw_rad
        # The seed model's update, bit for bit (plus the first-order yaw response when set).
        v *= d
        v += (1.0 - d) * v_target
        if noisy:
            n = self.rng.standard_normal((self.num_drones, 6))
            v += n[:, :3] * (cfg.velocity_noise_std * noise_scale)
            self.pos_w += v * dt + n[:, 3:] * (cfg.position_noise_std * noise_scale)
        else:
            self.pos_w += v * dt
        self._yaw_step(yaw_cmd, d_yaw, dt)
        self.yaw_rad = wrap_pi(self.yaw_rad)
        return self.pos_w, self.yaw_rad

    def _yaw_step(self, yaw_cmd: np.ndarray, d_yaw: float, dt: float) -> None:
        """Yaw rate (first order when ``d_yaw`` > 0, else the command) and unwrapped yaw over ``dt``."""
        if d_yaw > 0.0:
            w = self.yaw_rate
            w *= d_yaw
            w += (1.0 - d_yaw) * yaw_cmd
        else:
            self.yaw_rate = yaw_cmd
        self.yaw_rad = self.yaw_rad + self.yaw_rate * dt

    def _shape_horizontal(
        self, dv_xy: np.ndarray, v_xy: np.ndarray, az: np.ndarray, lag: float, dt: float
    ) -> None:
        """Thrust limit, attitude lag, jerk limit, thrust and yaw coupling on the horizontal thrust
        acceleration, then drag; in place on ``dv_xy`` (N, 2), the velocity change over ``dt`` seconds.
        ``az`` (N,) is this step's vertical acceleration, m/s^2."""
        cfg = self.cfg
        thrust = dv_xy * (1.0 / dt)
        drag = None
        if cfg.drag_coefficient > 0.0:
            drag = cfg.drag_coefficient * v_xy
            thrust += drag
        k_aw = cfg.antiwindup_gain
        if k_aw > 0.0:
            thrust += self.vel_int_w
            wanted = thrust.copy()
        if cfg.max_horizontal_acceleration is not None:
            _clip_norm(thrust, cfg.max_horizontal_acceleration)
        scale = None
        if cfg.thrust_coupling > 0.0:
            scale = 1.0 + (cfg.thrust_coupling / STANDARD_GRAVITY) * az
            np.maximum(scale, 0.0, out=scale)
            scale = scale[:, None]
        if k_aw > 0.0:
            wanted -= thrust if scale is None else scale * thrust
            wanted *= k_aw * dt
            self.vel_int_w *= self._cache[4]
            self.vel_int_w -= wanted
        if self._acc_state:
            acc = self.lin_acc_w[:, :2]
            thrust -= acc  # the change of the lagged thrust acceleration
            if lag > 0.0:
                thrust *= lag
            if cfg.max_horizontal_jerk is not None:
                _clip_norm(thrust, cfg.max_horizontal_jerk * dt)
            acc += thrust
            thrust = acc.copy()
        if scale is not None:
            thrust *= scale
        if cfg.yaw_coupling_s > 0.0:
            angle = self.yaw_rate * cfg.yaw_coupling_s
            cos, sin = np.cos(angle), np.sin(angle)
            x = thrust[:, 0].copy()
            thrust[:, 0] = cos * x - sin * thrust[:, 1]
            thrust[:, 1] = sin * x + cos * thrust[:, 1]
        if drag is not None:
            thrust -= drag
        np.multiply(thrust, dt, out=dv_xy)


def _clip_norm(xy: np.ndarray, limit: float) -> None:
    """Scale rows of ``xy`` (N, 2) in place so their norm is at most ``limit``."""
    norm = np.sqrt(xy[:, 0] * xy[:, 0] + xy[:, 1] * xy[:, 1])
    xy *= np.minimum(limit / np.maximum(norm, 1e-12), 1.0)[:, None]
