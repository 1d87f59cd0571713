"""The batched ISR task shared by every flyby env.

One :class:`ISRTask` holds ``num_envs`` drones in one shared world and runs the
IsaacLab ``DirectRLEnv`` step template, batch-first::

    step(actions)
      _pre_physics_step(actions)      validate, clip, remember the previous action
      _apply_action()                 the motion model (direct dynamics or flight stack + physics)
      _update_perception()            ground-truth detections, every perception_interval steps
      _get_dones()                    (terminated, truncated)
      _get_rewards()                  events x weight + rate terms x weight x step_dt
      _reset_idx(done ids)            only when autoreset is on
      _get_observations()

The Gymnasium envs are thin shells around it: ``DirectISR-v0`` is a task with
``num_envs=1``, ``MultiDroneISR-v0`` a task with ``num_envs=num_drones``. No
simulator is touched on this path; pixels come from a backend only when a
caller renders.

Rewards, terminations and observations are named terms of the config (``rewards.terms``,
``terminations.terms``, ``observations.terms``; :mod:`flyby.mdp.terms`): flyby's own are computed
together in one batched call each, a term you add is one function ``func(task, **params)`` run
beside them. When episodes end, ``StepResult.log`` (the envs' ``info["log"]``) holds, over the envs
that ended:

- ``Episode_Reward/<k>``: the mean episode sum of term ``k`` (weighted, as added to the reward)
  divided by ``episode_length_s``, reward per second of the episode time limit (IsaacLab's
  ``RewardManager`` logs this, so its readers compare like with like);
- ``Episode_Return/<k>``: the mean episode sum itself (what flyby logged as ``Episode_Reward/<k>``
  before: summed over ``k`` it is the episode return);
- ``Episode_Termination/<k>``: how many of them ended by termination term ``k``;
- ``Episode/targets_seen``, ``Episode/coverage``: mean targets seen, mean covered fraction of the ground.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from flyby.config import check
from flyby.config.envs import ISREnvCfg
from flyby.dynamics.direct import DirectDynamics
from flyby.dynamics.motion import MotionModel
from flyby.enums import KernelBackend, TargetClass
from flyby.errors import ResetNeeded
from flyby.kernels import kernel_backend, parallel_min_drones
from flyby.mdp import coverage as cov_mdp
from flyby.mdp import observations as obs_mdp
from flyby.mdp import rewards as rew_mdp
from flyby.mdp import terminations as term_mdp
from flyby.mdp.actions import ACTION_DIM, validate_actions
from flyby.mdp.terminations import TerminationCfg
from flyby.mdp.terms import resolve_func
from flyby.perception.camera import camera_mount_rotation, camera_poses_w
from flyby.perception.gt import Detections, GroundTruthDetector
from flyby.world.world import ISRWorld, generate_world


@dataclass
class StepResult:
    """What :meth:`ISRTask.step` returns; arrays are (num_envs, ...) and owned by the caller.

    ``final_obs`` holds the true last observation of each env that ended this
    step (rows ``done_ids``), taken before the autoreset.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    done_ids: np.ndarray
    final_obs: np.ndarray | None
    log: dict[str, float] = field(default_factory=dict)


class ISRTask:
    """Batched ISR surveillance task on any motion model.

    Args:
        cfg: task configuration (validated here).
        num_envs: number of drones N >= 1 (each one an env with its own episode).
        world: the shared world; generated from ``cfg.world`` and
            ``cfg.world_seed`` when None.
        motion: how actions move the drones (see :mod:`flyby.dynamics.motion`);
            default: :class:`~flyby.dynamics.direct.DirectDynamics` from ``cfg.dynamics``.

    Until :meth:`reset_all` has run (and again after :meth:`mark_reset_needed`, e.g. on close),
    :meth:`step` raises :class:`~flyby.errors.ResetNeeded`.

    Raises:
        ConfigError: ``cfg`` is invalid.
    """

    def __init__(
        self, cfg: ISREnvCfg, num_envs: int, world: ISRWorld | None = None, motion: MotionModel | None = None
    ) -> None:
        self.cfg = check(cfg)
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = n = int(num_envs)
        self.world = world if world is not None else generate_world(cfg.world, cfg.world_seed)
        self.step_dt = cfg.step_dt
        self.max_episode_length = cfg.max_episode_length
        self.dynamics: MotionModel = (
            motion if motion is not None else DirectDynamics(cfg.dynamics, n, cfg.actions)
        )
        if self.dynamics.num_drones != n:
            raise ValueError(f"motion model has {self.dynamics.num_drones} drones, the task {n}")
        self.detector = GroundTruthDetector.from_world(cfg.camera, self.world)
        self.layout = obs_mdp.ObsLayout(cfg.observations.top_k)
        self.rng = np.random.default_rng()
        # Why step() must not run now (None: it may): set until reset_all() completes.
        self._reset_needed: str | None = "before its first reset()"

        t = self.world.num_targets
        self.actions = np.zeros((n, ACTION_DIM))
        self.prev_actions = np.zeros((n, ACTION_DIM))
        # Progress counters (N, 3) int64: cells covered, targets seen, steps this episode;
        # the observation's progress is counters / (cells, targets, max steps) in one call.
        self._counters = np.zeros((n, 3), dtype=np.int64)
        self.episode_step = self._counters[:, 2]  # a view: update in place only
        self.world_time_s = 0.0
        self.global_step = 0
        self.seen = np.zeros((n, t), dtype=bool)
        self.newly_seen = np.zeros((n, t), dtype=bool)
        self.new_cells = np.zeros(n, dtype=np.int64)
        self.detections = Detections(
            boxes_px=np.zeros((n, t, 4), dtype=np.float32),
            visible=np.zeros((n, t), dtype=bool),
            depth_m=np.full((n, t), np.inf, dtype=np.float32),
            in_frustum=np.zeros((n, t), dtype=bool),
            occluded=np.zeros((n, t), dtype=bool),
        )
        self.target_pos_w, self.target_yaw_rad = self.world.target_poses(0.0)

        # Coverage grid (flyby.mdp.coverage): (gx, gy) cells of coverage_cell_m over the area.
        self.coverage_grid = cov_mdp.make_grid(
            self.world.half_extent,
            cfg.rewards.coverage_cell_m,
            cfg.rewards.max_footprint_radius_m,
            cfg.camera.fovy_deg,
            cfg.camera.far_m,
        )
        gx, gy = self._grid_shape_xy = self.coverage_grid.shape
        half = self.world.half_extent
        self.covered = np.zeros((n, gx * gy), dtype=bool)
        self._num_covered = self._counters[:, 0]  # covered.sum(axis=1), kept up to date by _cover

        # Reward terms (flyby.mdp.rewards, flyby.mdp.terms): weight per event, or per second for rate terms.
        rterms = cfg.rewards.terms
        self.scales = {k: float(t.weight) for k, t in rterms.items()}
        self.episode_sums = {k: np.zeros(n) for k in rterms}
        # Terms with a non-zero weight, in the order of rewards.terms, are weighted and summed as one
        # (A, N) array; their episode sums are the rows of _term_sums (viewed by episode_sums). The
        # built-ins among them come from one batched call, the user's terms (func given) beside it.
        self._active_terms = tuple(k for k in rterms if self.scales[k])
        self._builtin_terms = tuple(k for k in self._active_terms if rterms[k].func is None)
        self._builtin_rows = np.array(
            [row for row, k in enumerate(self._active_terms) if rterms[k].func is None], dtype=np.intp
        )
        self._user_terms = tuple(
            (row, k, resolve_func(rterms[k].func, f"rewards.terms.{k}.func"), dict(rterms[k].params))
            for row, k in enumerate(self._active_terms)
            if rterms[k].func is not None
        )
        per_second = {
            k: (t.per_second if t.per_second is not None else k in rew_mdp.RATE_TERMS)
            for k, t in rterms.items()
        }
        self._term_scales = np.array([self.scales[k] for k in self._active_terms])[:, None]
        self._term_dts = np.array([self.step_dt if per_second[k] else 1.0 for k in self._active_terms])[
            :, None
        ]
        self._term_sums = np.zeros((len(self._active_terms), n))
        for row, k in enumerate(self._active_terms):
            self.episode_sums[k] = self._term_sums[row]
        # Termination terms of the user's own (flyby.mdp.terminations): (name, func, params, time_out).
        dterms = cfg.terminations.terms
        self._user_dones = tuple(
            (k, resolve_func(t.func, f"terminations.terms.{k}.func"), dict(t.params), bool(t.time_out))
            for k, t in dterms.items()
            if t.func is not None
        )
        self._done_values: dict[str, np.ndarray] = {}  # the user terms' last (N,) bool results
        self._time_out = np.zeros(n, dtype=bool)
        self._crashed = np.zeros(n, dtype=bool)
        # Been at or above min_altitude_m this episode: a ground start is no crash until it took off.
        self._airborne = np.ones(n, dtype=bool)
        self._outside = np.zeros(n, dtype=bool)
        self._obs = np.zeros((n, self.layout.dim), dtype=np.float32)
        # Whether the compiled kernels run ($FLYBY_KERNEL): read once per step() and reset.
        self._compiled = kernel_backend() is KernelBackend.NUMBA
        self._obs_kernel_args: dict | None = None  # built on the first compiled observation
        self._dones_kernel_args: dict | None = None  # built on the first compiled dones and rewards
        self._perceive_kernel_args: dict | None = None  # built on the first compiled perception step
        self._one_call: tuple | None = None  # (arrays it was built on, StepState), see _one_call_state
        # Whether a compiled step may run as one call (step_into): the direct model itself (a
        # subclass may override step(), which that call would skip), built-in reward and done
        # terms only (checked again per step: compiled, below the thread split).
        self._one_call_ok = type(self.dynamics) is DirectDynamics and not (
            self._user_dones or self._user_terms
        )
        self._progress = np.zeros((n, 3))
        self._progress_den = np.array([gx * gy, max(t, 1), self.max_episode_length], dtype=np.int64)
        self._pos_scale = np.array([half[0], half[1], cfg.terminations.max_altitude_m])
        self._vel_scale = cfg.actions.vel_scale
        # Observation terms of the user's own, appended after the built-in groups: (name, func, params).
        self._user_obs = tuple(
            (k, resolve_func(t.func, f"observations.terms.{k}.func"), dict(t.params))
            for k, t in cfg.observations.terms.items()
            if t.func is not None
        )
        if self._user_obs:
            # Their widths, from one call on the state as built (IsaacLab's ObservationManager does the same).
            widths = tuple((k, self._user_obs_value(k, f, p).shape[1]) for k, f, p in self._user_obs)
            self.layout = obs_mdp.ObsLayout(cfg.observations.top_k, extra=widths)
            self._obs = np.zeros((n, self.layout.dim), dtype=np.float32)

    # ------------------------------------------------------------------ public API

    @property
    def obs_dim(self) -> int:
        return self.layout.dim

    def seed(self, seed: int | None) -> None:
        """Reseed spawns and dynamics noise (None draws fresh OS entropy)."""
        ss = np.random.SeedSequence(seed)
        spawn_ss, dyn_ss = ss.spawn(2)
        self.rng = np.random.default_rng(spawn_ss)
        self.dynamics.seed(dyn_ss)

    def reset_all(self, pos_w: np.ndarray | None = None, yaw_rad: np.ndarray | None = None) -> np.ndarray:
        """Reset every env and the world clock; return observations (N, obs_dim) float32 (a copy).

        Args:
            pos_w: optional (N, 3) start positions, metres, world ENU (default: random spawns);
                (3,) is accepted when N = 1.
            yaw_rad: optional (N,) start yaw angles, radians (default: random); a scalar when N = 1.

        Raises:
            ValueError: a start pose of the wrong shape, not finite, or outside the allowed region
                (see :func:`check_start_poses`); nothing is reset then.
        """
        n = self.num_envs
        start_pos, start_yaw = check_start_poses(pos_w, yaw_rad, n, self.world, self.cfg.terminations)
        self._reset_needed = "after a reset() that failed"  # until this reset completes
        self._compiled = kernel_backend() is KernelBackend.NUMBA
        self.world_time_s = 0.0
        self.global_step = 0
        self.target_pos_w, self.target_yaw_rad = self.world.target_poses(0.0)
        self.actions[:] = 0.0
        self._reset_idx(np.arange(n), start_pos, start_yaw)
        self._reset_needed = None
        return self._get_observations().copy()

    def start_poses(
        self, options: dict | None, ids: np.ndarray | None = None, extra: tuple[str, ...] = ()
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Start poses from Gymnasium ``reset(options=...)``, checked against this task's world.

        Envs call this before they reseed or restart anything, so a bad option changes nothing.

        Args:
            options: see :func:`start_pose_options`.
            ids: check only these envs' rows (a partial reset); None: all.
            extra: further option keys the caller handles itself.

        Returns:
            (pos_w (N, 3) float64 metres world ENU or None, yaw_rad (N,) float64 radians or None).

        Raises:
            TypeError, ValueError: see :func:`start_pose_options` and :func:`check_start_poses`.
        """
        pos, yaw = start_pose_options(options, self.num_envs, extra)
        return check_start_poses(pos, yaw, self.num_envs, self.world, self.cfg.terminations, ids=ids)

    def reset_some(
        self, ids: np.ndarray, pos_w: np.ndarray | None = None, yaw_rad: np.ndarray | None = None
    ) -> np.ndarray:
        """Start a new episode for envs ``ids`` only (what autoreset does); the world clock runs on.

        Args:
            ids: (k,) distinct env indices in [0, N).
            pos_w: optional (N, 3) start positions, metres, world ENU; only rows ``ids`` are
                read and checked (default: random spawns).
            yaw_rad: optional (N,) start yaw angles, radians; only entries ``ids`` are read.

        Returns:
            (N, obs_dim) float32 observations of every env (a copy); rows not in ``ids`` are
            their current observations.

        Raises:
            ResetNeeded: the task was never reset as a whole (or was closed): the other envs
                have no episode to continue.
            ValueError: bad ``ids`` or start poses (see :func:`check_start_poses`).
        """
        if self._reset_needed is not None:
            raise ResetNeeded(
                f"a partial reset of envs {np.asarray(ids).tolist()} was asked {self._reset_needed}: "
                "the other envs have no episode to continue; reset every env first"
            )
        ids = np.asarray(ids)
        n = self.num_envs
        if (
            ids.ndim != 1
            or ids.size == 0
            or ids.dtype.kind not in "iu"
            or (ids < 0).any()
            or (ids >= n).any()
            or np.unique(ids).size != ids.size
        ):
            raise ValueError(
                f"ids must be distinct env indices in [0, {n}), at least one, got {ids.tolist()!r}"
            )
        start_pos, start_yaw = check_start_poses(
            pos_w, yaw_rad, n, self.world, self.cfg.terminations, ids=ids
        )
        self._compiled = kernel_backend() is KernelBackend.NUMBA
        self._reset_idx(
            ids, None if start_pos is None else start_pos[ids], None if start_yaw is None else start_yaw[ids]
        )
        return self._get_observations().copy()

    def mark_reset_needed(self, why: str) -> None:
        """Make :meth:`step` raise :class:`~flyby.errors.ResetNeeded` until the next :meth:`reset_all`.

        Args:
            why: when it happened, for the message (e.g. ``"after close()"``).
        """
        self._reset_needed = why

    def step(self, actions: np.ndarray, *, autoreset: bool = True) -> StepResult:
        """Advance every env by one control step of ``step_dt`` seconds.

        Args:
            actions: (N, 4) normalised actions (see :mod:`flyby.mdp.actions`).
            autoreset: reset envs that ended, returning their reset observation
                in ``obs`` and the pre-reset one in ``final_obs``.

        Raises:
            ResetNeeded: before the first :meth:`reset_all`, or after :meth:`mark_reset_needed`.
            InvalidAction: wrong shape, complex or non-numeric, or NaN/inf.
        """
        if self._reset_needed is not None:
            raise ResetNeeded(f"step() was called {self._reset_needed}; call reset() first")
        self._compiled = kernel_backend() is KernelBackend.NUMBA  # read once per step
        self._pre_physics_step(actions)
        one_call = self._compiled and self._one_call_ok and self.num_envs < parallel_min_drones()
        if one_call:
            self.world_time_s += self.step_dt
            self.global_step += 1
            terminated, truncated, reward, num_done = self._step_one_call()
        else:
            self._apply_action()
            self.world_time_s += self.step_dt
            self.global_step += 1
            self.episode_step += 1
            self._update_perception()
            if self._compiled and not (self._user_dones or self._user_terms):
                terminated, truncated, reward = self._get_dones_rewards_kernel()
            else:
                terminated, truncated = self._get_dones()
                reward = self._get_rewards()
            num_done = None  # not counted on this path
        if num_done == 0:
            done_ids = np.empty(0, dtype=np.intp)
        else:
            done_ids = (terminated | truncated).nonzero()[0]
        final_obs = None
        log: dict[str, float] = {}
        obs = self._obs if one_call else None  # this step's observations, if already computed
        if done_ids.size:
            log = self._episode_log(done_ids, terminated, truncated)
            if autoreset:
                final_obs = (self._get_observations() if obs is None else obs)[done_ids].copy()
                self._reset_idx(done_ids)
                obs = None
        obs = (self._get_observations() if obs is None else obs).copy()
        return StepResult(obs, reward, terminated, truncated, done_ids, final_obs, log)

    def _step_one_call(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The rest of :meth:`step` after the action check, in one compiled call
        (:func:`flyby.envs.step_kernel.step_into`): the multi-call path's stages and results.

        Taken for the direct model on the compiled path below
        :func:`flyby.kernels.parallel_min_drones` drones, without user reward or done terms
        (user observation terms are written after it, as on the multi-call path).

        Returns:
            (terminated, truncated, reward, number of envs that ended).
        """
        from flyby.envs.step_kernel import step_into

        n = self.num_envs
        reward, time_out = np.empty(n), np.empty(n, dtype=bool)
        terminated, truncated = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
        perceive = self.global_step % self.cfg.perception_interval == 0
        if perceive:  # as _update_perception_kernel: the poses and detections of this path's buffers
            k = self._perceive_kernel_args
            if k is None:
                k = self._perceive_kernel_args = self._make_perceive_kernel_args()
            self.target_pos_w, self.target_yaw_rad = k["target_pos_w"], k["target_yaw_rad"]
            self.detections = k["detections"]
        num_done = step_into(
            self._one_call_state(), self.actions, self.prev_actions, self.dynamics.kernel_noise(), perceive,
            self.world_time_s, reward, terminated, truncated, time_out,
        )  # fmt: skip
        self._time_out = time_out
        if self._user_obs:
            self._write_user_obs()
        return terminated, truncated, reward, num_done

    def _one_call_state(self):
        """The :class:`~flyby.envs.step_kernel.StepState` of this task, rebuilt when an array it
        refers to was rebound (the numpy reference path rebinds the ones checked here; the
        others are only ever written in place)."""
        dyn = self.dynamics
        key = (dyn.yaw_rad, dyn.yaw_rate, self.detections, self._crashed, self._outside)
        cached = self._one_call
        if cached is not None:
            old = cached[0]
            if (
                old[0] is key[0]
                and old[1] is key[1]
                and old[2] is key[2]
                and old[3] is key[3]
                and old[4] is key[4]
            ):
                return cached[1]
        from flyby.envs.step_kernel import make_step_state

        k = self._perceive_kernel_args
        if k is None:
            k = self._perceive_kernel_args = self._make_perceive_kernel_args()
        o = self._obs_kernel_args
        if o is None:
            o = self._obs_kernel_args = self._make_obs_kernel_args()
        d = self._dones_kernel_args
        if d is None:
            d = self._dones_kernel_args = self._make_dones_kernel_args()
        det = self.detections
        image = o["image"].get(det.boxes_px.dtype)
        if image is None:
            image = self._image_divisors(det.boxes_px.dtype)
        dt = float(self.step_dt)
        motion, camera, detector, grid, cover = k["motion"], k["camera"], k["detector"], k["grid"], k["cover"]
        values = (
            dt, dyn.kernel_params(dt), dyn.pos_w, dyn.lin_vel_w, dyn.yaw_rad, dyn.yaw_rate, dyn.lin_acc_w,
            dyn.vel_int_w,
            self._counters, self.episode_step, int(self.max_episode_length),
            *motion, k["target_pos_w"], k["target_yaw_rad"],
            *camera, *detector, *det, self.seen, self.newly_seen,
            *grid, self.covered, *cover, self.new_cells, self._num_covered,
            *d["world"][:3], self._airborne, *d["terms"], self._crashed, self._outside, self._term_sums,
            *o["classes"], image, self._progress_den, *o["grids"][:1], o["grids"][3], *o["grids"][4:],
            *o["scratch"], self._progress, self._obs,
        )  # fmt: skip
        state = make_step_state(*values)
        self._one_call = (key, state)
        return state

    @property
    def pos_w(self) -> np.ndarray:
        """(N, 3) float64 drone positions, metres, world ENU."""
        return self.dynamics.pos_w

    @property
    def yaw_rad(self) -> np.ndarray:
        """(N,) float64 drone yaw angles, radians."""
        return self.dynamics.yaw_rad

    def camera_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(cam_pos_w (N, 3), rot_wc (N, 3, 3)) of every drone camera."""
        return camera_poses_w(self.dynamics.pos_w, self.dynamics.rot_wb, self.cfg.camera)

    # ------------------------------------------------------------- step template

    def _pre_physics_step(self, actions: np.ndarray) -> None:
        # validate_actions returns a new array: keep it, no copies.
        self.prev_actions, self.actions = (
            self.actions,
            validate_actions(actions, self.num_envs, compiled=self._compiled),
        )

    def _apply_action(self) -> None:
        self.dynamics.step(self.actions, self.step_dt)

    def _update_perception(self, ids: np.ndarray | None = None) -> None:
        """Detections for envs ``ids`` (all when None), if this is a perception step or a reset."""
        if ids is None and self.global_step % self.cfg.perception_interval != 0:
            self.newly_seen[:] = False
            self.new_cells[:] = 0
            return  # reuse the last detections between perception steps
        dyn = self.dynamics
        if ids is None and self._compiled and isinstance(dyn, DirectDynamics):
            self._update_perception_kernel()
            return
        self.target_pos_w, self.target_yaw_rad = self.world.target_poses(self.world_time_s)
        if ids is None:
            cam_pos, rot_wc = camera_poses_w(dyn.pos_w, dyn.rot_wb, self.cfg.camera)
        else:
            cam_pos, rot_wc = camera_poses_w(dyn.pos_w[ids], dyn.rot_wb[ids], self.cfg.camera)
        det = self.detector.detect(
            cam_pos, rot_wc, self.target_pos_w, self.target_yaw_rad, self.world.target_size_m
        )
        self._record_detections(ids, det, cam_pos, rot_wc)

    def _update_perception_kernel(self) -> None:
        """A perception step of every drone in two compiled calls: the target poses
        (:func:`flyby.mdp.kernels.target_poses_into`) and :func:`flyby.mdp.kernels.perceive_into`.
        The direct model flies level, so the camera poses come from the yaw alone.

        The target poses and detections are written in place, into arrays this path owns: a
        caller that keeps ``detections`` or ``target_pos_w`` past the next step keeps a copy.
        """
        from flyby.mdp.kernels import perceive_into, perceive_into_parallel, target_poses_into

        k = self._perceive_kernel_args
        if k is None:
            k = self._perceive_kernel_args = self._make_perceive_kernel_args()
        pos_w, yaw = k["target_pos_w"], k["target_yaw_rad"]
        target_poses_into(self.world_time_s, *k["motion"], pos_w, yaw)
        self.target_pos_w, self.target_yaw_rad = pos_w, yaw
        dyn, det = self.dynamics, k["detections"]
        perceive = perceive_into_parallel if self.num_envs >= parallel_min_drones() else perceive_into
        perceive(
            dyn.pos_w, dyn.yaw_rad, *k["camera"], pos_w, yaw, *k["detector"], *det, self.seen,
            self.newly_seen, *k["grid"], self.covered, *k["cover"], self.new_cells,
        )  # fmt: skip
        self.detections = det
        self._num_covered += self.new_cells

    def _make_perceive_kernel_args(self) -> dict:
        """The constants and buffers of :meth:`_update_perception_kernel`, built once, grouped in
        the order :func:`~flyby.mdp.kernels.perceive_into` takes them."""
        n, t, cam, world, grid = (
            self.num_envs,
            self.world.num_targets,
            self.cfg.camera,
            self.world,
            self.coverage_grid,
        )
        gx, gy = self._grid_shape_xy
        half = grid.half_extent
        return {
            "motion": (world.target_pos0_w, world.target_yaw0_rad, *world.target_motion),
            "target_pos_w": np.empty((t, 3)),
            "target_yaw_rad": np.empty(t),
            "camera": (
                np.asarray(cam.offset_b, dtype=np.float64),
                np.ascontiguousarray(camera_mount_rotation(cam.pitch_deg), dtype=np.float64),
            ),
            "detector": (
                np.ascontiguousarray(world.target_size_m, dtype=np.float64),
                *self.detector.kernel_consts,
            ),
            "detections": Detections(
                boxes_px=np.zeros((n, t, 4), dtype=np.float32),
                visible=np.zeros((n, t), dtype=bool),
                depth_m=np.full((n, t), np.inf, dtype=np.float32),
                in_frustum=np.zeros((n, t), dtype=bool),
                occluded=np.zeros((n, t), dtype=bool),
            ),
            "grid": (grid.tan_half_fov, grid.far_m, grid.max_radius_m, grid.clip_t),
            "cover": (
                np.arange(n, dtype=np.intp),
                grid.cell_m,
                float(half[0]),
                float(half[1]),
                gx,
                gy,
                grid.r_cells,
                np.empty((n, 3)),
                np.empty((n, 3, 3)),
                np.empty((n, 2)),
                np.empty(n),
            ),  # fmt: skip
        }

    def _record_detections(
        self, ids: np.ndarray | None, det: Detections, cam_pos: np.ndarray, rot_wc: np.ndarray
    ) -> None:
        """Store fresh detections of envs ``ids`` (all when None): seen / newly seen targets and coverage.

        ``det`` holds one row per env of ``ids``; its arrays become the task's when ``ids`` is None.
        Shared by every perception source (analytic here, YOLO in :mod:`flyby.perception.yolo_env`).
        """
        vis = det.visible
        if ids is None:
            self.detections = det  # fresh arrays that belong to the caller: no copy needed
            np.greater(vis, self.seen, out=self.newly_seen)  # visible and not seen before
            self.seen |= vis
            self.new_cells[:] = self._cover(None, cam_pos, rot_wc)
            return
        for mine, fresh in zip(self.detections, det):
            mine[ids] = fresh
        self.newly_seen[ids] = vis & ~self.seen[ids]
        self.seen[ids] |= vis
        self.new_cells[ids] = self._cover(ids, cam_pos, rot_wc)

    def _cover(self, ids: np.ndarray | None, cam_pos: np.ndarray, rot_wc: np.ndarray) -> np.ndarray:
        """Mark the cells in the footprints of cameras ``ids`` (all when None) covered.

        Returns:
            (k,) int64 counts of newly covered cells.
        """
        ground, radius_sq = cov_mdp.footprints(self.coverage_grid, cam_pos, rot_wc)
        new = cov_mdp.mark_covered(self.coverage_grid, self.covered, ids, ground, radius_sq)
        if ids is None:
            self._num_covered += new
        else:
            self._num_covered[ids] += new
        return new

    def _get_dones(self) -> tuple[np.ndarray, np.ndarray]:
        pos = self.dynamics.pos_w
        tcfg = self.cfg.terminations
        in_building = self.world.points_in_buildings(pos, tcfg.drone_radius_m)
        self._airborne |= pos[:, 2] >= tcfg.min_altitude_m
        self._crashed = term_mdp.crashed(pos, in_building, tcfg, self._airborne)
        outside = term_mdp.outside_geofence(pos, self.world.half_extent, tcfg)
        self._outside = outside > self._crashed  # outside and not crashed (bools: a > b is a & ~b)
        terminated = self._crashed | self._outside
        self._time_out = time_out = term_mdp.time_out(self.episode_step, self.max_episode_length)
        for name, func, params, truncates in self._user_dones:
            value = self._user_value(func(self, **params), name, "terminations", (self.num_envs,))
            if value.dtype != bool:
                raise ValueError(
                    f"terminations.terms.{name}.func returned dtype {value.dtype}, expected bool"
                )
            self._done_values[name] = value
            if truncates:
                time_out = time_out | value
            else:
                terminated = terminated | value
        truncated = time_out > terminated
        return terminated, truncated

    def _get_rewards(self) -> np.ndarray:
        """(N,) float64 step reward: sum over the active terms of weight * term (* step_dt if per second)."""
        values = rew_mdp.builtin_terms(
            self._builtin_terms,
            newly_seen=self.newly_seen,
            new_cells=self.new_cells,
            crashed=self._crashed,
            outside=self._outside,
            actions=self.actions,
            prev_actions=self.prev_actions,
        )
        if self._user_terms:
            builtin, values = values, np.empty((len(self._active_terms), self.num_envs))
            values[self._builtin_rows] = builtin
            for row, name, func, params in self._user_terms:
                values[row] = self._user_value(func(self, **params), name, "rewards", (self.num_envs,))
        # weight * term * dt for every active term at once (x * 1.0 == x for the event terms).
        values *= self._term_scales
        values *= self._term_dts
        self._term_sums += values
        # Sum over the terms in order, starting from 0.0 (what reward += value per term gives).
        return np.add.reduce(values, axis=0, initial=0.0)

    def _get_dones_rewards_kernel(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_get_dones` and :meth:`_get_rewards` in one compiled call, bit-identical
        (:func:`flyby.mdp.kernels.dones_rewards_into`); only without user reward or done terms."""
        from flyby.mdp.kernels import dones_rewards_into

        k = self._dones_kernel_args
        if k is None:
            k = self._dones_kernel_args = self._make_dones_kernel_args()
        n = self.num_envs
        reward, time_out = np.empty(n), np.empty(n, dtype=bool)
        terminated, truncated = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
        dones_rewards_into(
            self.dynamics.pos_w, *k["world"], self._airborne, self.episode_step, self.max_episode_length,
            self.newly_seen, self.new_cells, self.actions, self.prev_actions, *k["terms"], self._crashed,
            self._outside, time_out, self._term_sums, reward, terminated, truncated,
        )  # fmt: skip
        self._time_out = time_out
        return terminated, truncated, reward

    def _make_dones_kernel_args(self) -> dict:
        """The constants and scratch of :meth:`_get_dones_rewards_kernel`, built once."""
        tcfg = self.cfg.terminations
        half = self.world.half_extent
        lim = half - tcfg.geofence_margin_m if tcfg.geofence_margin_m else half
        if self.world.num_buildings:
            box_lo, box_hi = self.world.grown_boxes(float(tcfg.drone_radius_m))
        else:
            box_lo = box_hi = np.zeros((3, 1, 0))
        return {
            "world": (box_lo, box_hi, np.array([lim[0], lim[1], tcfg.max_altitude_m, tcfg.min_altitude_m])),
            "terms": (
                np.array([rew_mdp.REWARD_TERMS.index(t) for t in self._builtin_terms], dtype=np.int64),
                self._term_scales[:, 0].copy(),
                self._term_dts[:, 0].copy(),
            ),
        }

    def _user_obs_value(self, name: str, func, params: dict) -> np.ndarray:
        """A user observation term's (N, d) values, d >= 1; ValueError naming the term otherwise."""
        arr = np.asarray(func(self, **params))
        n = self.num_envs
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
            raise ValueError(
                f"observations.terms.{name}.func returned shape {arr.shape}, expected ({n}, d) with d >= 1"
            )
        if self.layout.extra:  # built: the width is fixed
            sl = self.layout.term(name)
            if arr.shape[1] != sl.stop - sl.start:
                raise ValueError(
                    f"observations.terms.{name}.func returned shape {arr.shape}, "
                    f"expected ({n}, {sl.stop - sl.start}) as when the env was built"
                )
        return arr

    @staticmethod
    def _user_value(value, name: str, group: str, shape: tuple[int, ...]) -> np.ndarray:
        """A user term's result as an array of ``shape``; ValueError naming the term otherwise."""
        arr = np.asarray(value)
        if arr.shape != shape:
            raise ValueError(f"{group}.terms.{name}.func returned shape {arr.shape}, expected {shape}")
        return arr

    def _reset_idx(
        self, ids: np.ndarray, start_pos: np.ndarray | None = None, start_yaw: np.ndarray | None = None
    ) -> None:
        k = ids.size
        half = self.world.half_extent
        scfg = self.cfg.spawn
        margin = min(scfg.edge_margin_m, float(half.min()) - 1.0)
        xy = self.rng.uniform(-half + margin, half - margin, size=(k, 2))
        alt = self.rng.uniform(*scfg.altitude_m, size=k)
        floor = self._tallest_near(xy, scfg.clearance_radius_m) + scfg.building_clearance_m
        z = np.minimum(np.maximum(alt, floor), self.cfg.terminations.max_altitude_m - 1.0)
        yaw = self.rng.uniform(-np.pi, np.pi, size=k)  # drawn even when overridden: same stream either way
        pos = np.column_stack([xy, z]) if start_pos is None else start_pos
        self.dynamics.reset(pos, yaw if start_yaw is None else start_yaw, ids)
        self._airborne[ids] = self.dynamics.pos_w[ids, 2] >= self.cfg.terminations.min_altitude_m
        self.actions[ids] = 0.0
        self.prev_actions[ids] = 0.0
        self.episode_step[ids] = 0
        self.seen[ids] = False
        self.covered[ids] = False
        self._num_covered[ids] = 0
        for sums in self.episode_sums.values():
            sums[ids] = 0.0
        self._update_perception(ids)
        # Detections at the spawn are not rewarded; they only mark what is already in view.
        self.newly_seen[ids] = False
        self.new_cells[ids] = 0

    def _tallest_near(self, xy: np.ndarray, radius_m: float) -> np.ndarray:
        """(k,) metres: the tallest surface within ``radius_m`` of each (k, 2) point (5 x 5 samples)."""
        if radius_m <= 0:
            return self.world.height_at(xy)
        offsets = np.stack(np.meshgrid(*[np.linspace(-radius_m, radius_m, 5)] * 2), axis=-1).reshape(1, 25, 2)
        return self.world.height_at(xy[:, None, :] + offsets).max(axis=1)

    def _get_observations(self) -> np.ndarray:
        if self._compiled:
            return self._get_observations_kernel()
        d = self.detections
        idx, valid = obs_mdp.select_top_k(d.visible, d.boxes_px, self.newly_seen, self.layout.top_k)
        cam = self.cfg.camera
        det_enc = obs_mdp.encode_detections(
            idx, valid, d.boxes_px, self.newly_seen, self.world.target_class, cam.width, cam.height
        )
        pos = self.dynamics.pos_w
        self.seen.sum(axis=1, out=self._counters[:, 1])
        progress = np.divide(self._counters, self._progress_den, out=self._progress)
        return obs_mdp.build_observation(
            self.layout,
            pos_w=pos,
            lin_vel_w=self.dynamics.lin_vel_w,
            yaw_rad=self.dynamics.yaw_rad,
            clearance_m=obs_mdp.clearance_patch(
                pos, self.world.height_at, self.cfg.observations.clearance_cell_m
            ),
            detections=det_enc,
            progress=progress,
            last_action=self.actions,
            pos_scale=self._pos_scale,
            vel_scale=self._vel_scale,
            max_altitude_m=self.cfg.terminations.max_altitude_m,
            coverage=obs_mdp.coverage_patch(
                self.covered,
                self._grid_shape_xy,
                cov_mdp.cell_index(self.coverage_grid, pos[:, :2]),
                self.cfg.observations.coverage_block_cells,
            ),
            extra=[self._user_obs_value(k, f, p) for k, f, p in self._user_obs] if self._user_obs else (),
            out=self._obs,
        )

    def _get_observations_kernel(self) -> np.ndarray:
        """:meth:`_get_observations` in one compiled call (:func:`flyby.mdp.kernels.observe_into`)."""
        from flyby.mdp.kernels import observe_into, observe_into_parallel

        k = self._obs_kernel_args
        if k is None:
            k = self._obs_kernel_args = self._make_obs_kernel_args()
        d, dyn = self.detections, self.dynamics
        image = k["image"].get(d.boxes_px.dtype)
        if image is None:
            image = self._image_divisors(d.boxes_px.dtype)
        observe = observe_into_parallel if self.num_envs >= parallel_min_drones() else observe_into
        observe(
            d.visible, d.boxes_px, self.newly_seen, *k["classes"], image, dyn.pos_w, dyn.lin_vel_w,
            dyn.yaw_rad, self.actions, self.seen, self._counters, self._progress_den, self.covered,
            *k["grids"], *k["scratch"], self._progress, self._obs,
        )  # fmt: skip
        if self._user_obs:
            self._write_user_obs()
        return self._obs

    def _image_divisors(self, dtype: np.dtype) -> np.ndarray:
        """The (3,) divisors of boxes of ``dtype`` in the dtype the reference divides them in (cached)."""
        image = self._obs_kernel_args["image"][dtype] = obs_mdp.image_divisors(
            dtype, self.cfg.camera.width, self.cfg.camera.height
        )
        return image

    def _write_user_obs(self) -> None:
        """Write the user observation terms into their columns of ``self._obs``, clipped to [-1, 1]."""
        layout, obs = self.layout, self._obs
        for sl, (name, func, params) in zip(layout.extra_slices, self._user_obs, strict=True):
            obs[:, sl] = np.clip(self._user_obs_value(name, func, params), -1.0, 1.0)

    def _make_obs_kernel_args(self) -> dict:
        """The constants and scratch buffers of :meth:`_get_observations_kernel`, built once,
        grouped in the order :func:`~flyby.mdp.kernels.observe_into` takes them."""
        n, lay, grid, world = self.num_envs, self.layout, self.coverage_grid, self.world
        k, gx, gy = lay.top_k, *self._grid_shape_xy
        slices = (lay.pos, lay.vel, lay.yaw, lay.clearance, lay.detections, lay.progress, lay.last_action)
        return {
            "classes": (world.target_class, np.array([int(TargetClass.VEHICLE), int(TargetClass.PERSON)])),
            "image": {},  # boxes dtype -> (3,) divisors
            "grids": (
                np.array([grid.half_extent[0], grid.half_extent[1], grid.cell_m]),
                gx,
                gy,
                int(self.cfg.observations.coverage_block_cells),
                world.padded_height_map,
                np.array([world.half_extent[0], world.half_extent[1], world.height_map_cell_m]),
                float(self.cfg.observations.clearance_cell_m),
                np.concatenate([self._pos_scale, self._vel_scale, [self.cfg.terminations.max_altitude_m]]),
                np.array([s.start for s in (*slices, lay.coverage)], dtype=np.int64),
            ),
            "scratch": (
                np.empty((n, k), dtype=np.intp),
                np.empty((n, k), dtype=bool),
                np.empty((n, k, obs_mdp.DET_FIELDS)),
                np.empty((n, 2), dtype=np.intp),
                np.empty((n, 9)),
            ),
        }

    def _episode_log(
        self, ids: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
    ) -> dict[str, float]:
        """Per-term episode logs over the envs ``ids`` that ended (see the class docstring)."""
        log = {}
        max_episode_length_s = self.cfg.episode_length_s
        for k, v in self.episode_sums.items():
            episode_return = float(v[ids].mean())
            log[f"Episode_Reward/{k}"] = episode_return / max_episode_length_s
            log[f"Episode_Return/{k}"] = episode_return
        log["Episode_Termination/crash"] = int(self._crashed[ids].sum())
        log["Episode_Termination/geofence"] = int(self._outside[ids].sum())
        log["Episode_Termination/time_out"] = int((self._time_out[ids] & truncated[ids]).sum())
        for name, value in self._done_values.items():
            log[f"Episode_Termination/{name}"] = int(value[ids].sum())
        log["Episode/targets_seen"] = float(self.seen[ids].sum(axis=1).mean())
        log["Episode/coverage"] = float(self.covered[ids].mean())
        return log


RESET_OPTIONS = ("pos_w", "yaw_rad")
"""Keys of ``reset(options=...)`` every flyby env accepts (the multi-drone env also takes ``reset_mask``)."""


def start_pose_options(
    options: dict | None, num_envs: int, extra: tuple[str, ...] = ()
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The start poses of Gymnasium ``reset(options=...)``, as given (checked by :func:`check_start_poses`).

    Args:
        options: None or a dict with optional ``pos_w`` ((num_envs, 3) metres, world ENU; (3,) when
            num_envs = 1) and ``yaw_rad`` ((num_envs,) radians; a scalar when num_envs = 1).
        num_envs: number of drones N the options are for.
        extra: further keys the caller handles itself (e.g. ``"reset_mask"``).

    Returns:
        (pos_w, yaw_rad), each None when not given.

    Raises:
        TypeError: ``options`` is not a dict.
        ValueError: an unknown key (the message names it and the supported keys).
    """
    if options is None:
        return None, None
    if not isinstance(options, dict):
        raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}: {options!r}")
    unknown = sorted(set(options) - set(RESET_OPTIONS) - set(extra), key=str)
    if unknown:
        shape = "(3,)" if num_envs == 1 else f"({num_envs}, 3)"
        yaw = "()" if num_envs == 1 else f"({num_envs},)"
        supported = [f"'pos_w' {shape} m world ENU", f"'yaw_rad' {yaw} rad", *(repr(k) for k in extra)]
        raise ValueError(f"unknown reset options {unknown}; supported: {', '.join(supported)}")
    return options.get("pos_w"), options.get("yaw_rad")


def check_start_poses(
    pos_w,
    yaw_rad,
    num_envs: int,
    world: ISRWorld,
    terminations: TerminationCfg,
    ids: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check requested start poses: the one place every flyby env checks them.

    A start position must be finite, at or above the ground (z >= 0 m), inside the geofence
    (``|x| <= half_extent_x - geofence_margin_m``, the same for y, ``z <= max_altitude_m``) and
    outside every building grown by ``drone_radius_m`` (the collision volume a crash is judged
    by): anything else would end the episode at its first step, or put the drone in a wall. A
    start on the ground (below ``min_altitude_m``) is allowed: it is a ground start.

    Args:
        pos_w: None, or (num_envs, 3) metres, world ENU; (3,) is accepted when num_envs = 1.
        yaw_rad: None, or (num_envs,) radians (any finite angle); a scalar when num_envs = 1.
        num_envs: number of drones N.
        world: the world the drones start in (buildings, area).
        terminations: the geofence and collision limits.
        ids: check only these rows (a partial reset); None: every row.

    Returns:
        (pos_w (N, 3) float64 or None, yaw_rad (N,) float64 or None), new arrays.

    Raises:
        ValueError: wrong shape or dtype, not finite, or outside the allowed region; the message
            names each bad drone, its value and the region (several at once).
    """
    pos = None if pos_w is None else _as_real(pos_w, (num_envs, 3), "pos_w", "metres, world ENU")
    yaw = None if yaw_rad is None else _as_real(yaw_rad, (num_envs,), "yaw_rad", "radians")
    if pos is None:
        return pos, yaw
    rows = np.arange(num_envs) if ids is None else np.asarray(ids)
    p = pos[rows]
    r = terminations.drone_radius_m
    lim = world.half_extent - terminations.geofence_margin_m
    top = terminations.max_altitude_m
    region = (
        f"allowed: z >= 0 m (the ground), |x| <= {lim[0]:g} m, |y| <= {lim[1]:g} m, z <= {top:g} m "
        f"(the geofence), and outside every building grown by terminations.drone_radius_m = {r:g} m"
    )
    below = p[:, 2] < 0.0
    outside = term_mdp.outside_geofence(p, world.half_extent, terminations)
    in_building = world.points_in_buildings(p, r)
    problems = []
    for row in np.flatnonzero(below | outside | in_building):
        where = f"drone {int(rows[row])} start {np.round(p[row], 3).tolist()} m"
        if below[row]:
            problems.append(f"{where} is below the ground (z < 0 m)")
        elif outside[row]:
            problems.append(f"{where} is outside the geofence")
        else:
            lo = world.building_min_w - r
            hi = world.building_max_w + r
            b = int(np.flatnonzero(((p[row] >= lo) & (p[row] <= hi)).all(axis=1))[0])
            bx, by, bz = zip(
                world.building_min_w[b].round(2).tolist(), world.building_max_w[b].round(2).tolist()
            )
            problems.append(
                f"{where} is inside building {b} (x {bx[0]:g}..{bx[1]:g}, y {by[0]:g}..{by[1]:g}, "
                f"z {bz[0]:g}..{bz[1]:g} m)"
            )
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ValueError("reset option pos_w: " + "; ".join(shown) + f". {region}")
    return pos, yaw


def _as_real(value, shape: tuple[int, ...], name: str, unit: str) -> np.ndarray:
    """``value`` as a new float64 array of ``shape`` (a single env's unbatched shape is accepted too).

    Raises:
        ValueError: non-numeric, complex, another shape, or NaN/inf (the message names the value).
    """
    single = shape[1:]  # the shape of one env's value: (3,) or ()
    try:
        arr = np.array(value)
        ok_dtype = arr.dtype.kind in "biuf"
    except (TypeError, ValueError):  # ragged nested lists
        arr, ok_dtype = None, False
    expected = f"{shape}" + (f" or {single}" if shape[0] == 1 else "")
    if not ok_dtype or not (arr.shape == shape or (shape[0] == 1 and arr.shape == single)):
        got = f"dtype {arr.dtype}, shape {arr.shape}" if arr is not None else "a ragged sequence"
        raise ValueError(
            f"reset option {name} must be real numbers of shape {expected} ({unit}), got {got}: {value!r}"
        )
    arr = arr.astype(np.float64).reshape(shape)
    if not np.isfinite(arr).all():
        raise ValueError(f"reset option {name} must be finite with shape {expected} ({unit}), got {value!r}")
    return arr


def observation_layout(cfg: ISREnvCfg) -> obs_mdp.ObsLayout:
    """The observation layout of an env built from ``cfg``, without building the env.

    The built-in groups depend on ``cfg.observations.top_k`` alone. A term of the user's own
    (``observations.terms``) has the width its function returns, measured as the env measures it:
    by one call on a one-drone task built from ``cfg`` (direct dynamics, no simulator, no PX4).

    Raises:
        ConfigError: ``cfg`` is invalid, or a term's function does not resolve.
        ValueError: a term's function returns another shape than (N, d).
    """
    if all(t.func is None for t in cfg.observations.terms.values()):
        return obs_mdp.ObsLayout(cfg.observations.top_k)
    return ISRTask(cfg, 1).layout
