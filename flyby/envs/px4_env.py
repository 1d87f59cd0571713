"""``flyby/PX4ISR-v0``: the full-fidelity ISR env (flight stack -> rotors -> rigid-body physics)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from flyby.config.envs import PX4Cfg, PX4EnvCfg
from flyby.enums import BackendKind, FlightStack, PerceptionMode
from flyby.envs.isr_task import ISRTask
from flyby.errors import InvalidAction, PX4Unavailable
from flyby.mdp.actions import ACTION_DIM
from flyby.world.world import generate_world

FLIGHT_STACK_LABELS = {
    FlightStack.CASCADE: "built-in cascade (PX4 default gains), no PX4",
    FlightStack.PX4: "PX4 SITL (lockstep over MAVLink)",
}


def resolve_flight_stack(requested: FlightStack | str, px4: PX4Cfg) -> FlightStack:
    """``auto`` -> PX4 when a PX4 binary is found, else the cascade.

    Raises:
        PX4Unavailable: ``px4`` was requested and no binary is found
            (the message says how to set ``PX4_DIR``).
        ValueError: an unknown flight stack name.
    """
    try:
        stack = FlightStack(requested)
    except ValueError:
        raise ValueError(f"flight_stack must be one of 'px4', 'cascade', 'auto', got {requested!r}") from None
    if stack is FlightStack.DIRECT:
        raise ValueError(
            "flight_stack 'direct' is the training envs' model; PX4ISR-v0 takes 'px4', 'cascade' or 'auto'"
        )
    if stack is FlightStack.CASCADE:
        return stack
    from flyby.px4.launcher import find_px4

    try:
        find_px4(px4.px4_dir or None)
    except PX4Unavailable:
        if stack is FlightStack.PX4:
            raise
        return FlightStack.CASCADE
    return FlightStack.PX4


class PX4ISREnv(gym.Env):
    """The ISR task on a rotor-level drone flown by a real flight stack.

    Same action space, observation encoding, rewards and terminations as
    ``flyby/DirectISR-v0`` (all from :mod:`flyby.mdp`): a policy trained on the
    direct or multi-drone env runs here unchanged. Each control step
    (``step_dt = physics_dt * decimation``, 25 Hz by default) holds the
    velocity + yaw-rate setpoint while the flight stack, the rotor model and
    MuJoCo physics advance ``decimation`` substeps (250 Hz).

    Flight stack (``flight_stack``): ``"cascade"`` the built-in PX4-style cascade,
    ``"px4"`` PX4 SITL over MAVLink lockstep (``PX4Unavailable`` at construction
    when PX4 is not found), ``"auto"`` PX4 when found, else the cascade.
    ``self.flight_stack`` says which one runs; ``info["flight_stack"]`` carries it.

    Rendering (``render_mode="rgb_array"``): the drone camera is rendered every
    ``render_interval`` control steps at the ``render.preset`` resolution
    (``training`` 128x128, ``evaluation`` 320x240, ``full`` 640x480). On a
    rendered step ``info["camera"]`` holds the (H, W, 3) uint8 image and
    ``info["rendered"]`` is True; on skipped steps only the state observation
    is produced. Observations never depend on rendering: ground-truth
    detections use the perception camera (``cfg.camera``).

    Perception (``cfg.perception.mode``): ``ground_truth`` (default) detects analytically;
    ``yolo`` renders the camera at the render preset on every perception step and takes the
    detections that feed the observation and the found targets from YOLO
    (:mod:`flyby.perception.yolo_env`: a YOLO box counts as a target only when it matches
    the target's ground-truth box). Then ``info`` also carries ``yolo_boxes``,
    ``gt_boxes``, ``gt_cls`` (render-camera pixels), ``detection_counts`` and
    ``perception_fresh`` (:meth:`flyby.perception.yolo_env.YoloISRTask.perception_info`).

    Args:
        cfg: env config (default: ``px4_env`` of the packaged ``evaluation_config.yaml``).
        flight_stack: ``"px4"``, ``"cascade"`` or ``"auto"``.
        render_mode: ``None`` or ``"rgb_array"``.
        px4_kwargs: extra keyword arguments for :class:`flyby.px4.flight_stack.PX4FlightStack`
            (e.g. ``launcher_factory`` and ``ephemeral_ports`` to fly against a MAVLink test
            double instead of a PX4 binary; then ``flight_stack="px4"`` needs no PX4 build).
        backend: the simulator backend for physics and cameras, ``"mujoco"`` or ``"isaac"``;
            None chooses as :func:`flyby.sim.base.select_backend_kind` (``FLYBY_BACKEND``, then
            Isaac Sim where it runs, else MuJoCo).

    With PX4, every reset restarts PX4 (its estimator cannot follow a teleported
    drone) with the drone at rest on the surface below the start pose; PX4 boots
    and arms there. A start within ``px4.takeoff.ground_start_below_m`` of the
    surface is a ground start: the episode begins on the ground, armed, and PX4's
    own take-off logic lifts it when the policy commands a climb (no crash is
    counted before the drone first reaches ``terminations.min_altitude_m``). A
    higher start is reached by an automatic take-off and climb
    (:class:`flyby.config.envs.TakeoffCfg`) that is not part of the episode:
    not in its return, length or terminations; ``info["takeoff_s"]`` says how long
    it took in sim time. The cascade starts at the pose directly.

    Reset options and the errors of ``step`` (``ResetNeeded`` before the first ``reset`` or after
    ``close``; ``InvalidAction`` for NaN/inf, complex or misshaped actions) are those of
    ``flyby/DirectISR-v0``: a start pose below the ground, outside the geofence or inside a
    building raises ``ValueError`` before anything (PX4 included) is restarted.

    Raises:
        PX4Unavailable: PX4 requested but not found or not starting.
        BackendUnavailable: the chosen backend cannot run here (Isaac Sim outside its container).
        ConfigError: invalid config, or ``backend`` not a backend name.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        cfg: PX4EnvCfg | None = None,
        flight_stack: FlightStack | str = FlightStack.AUTO,
        render_mode: str | None = None,
        px4_kwargs: dict[str, Any] | None = None,
        backend: BackendKind | str | None = None,
    ) -> None:
        if cfg is None:
            from flyby.config.evaluation import load_evaluation_cfg

            cfg = load_evaluation_cfg().px4_env
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        from flyby.config import check

        self.cfg = check(cfg)
        self.render_mode = render_mode
        self._px4_kwargs = dict(px4_kwargs or {})
        if (
            self._px4_kwargs.get("launcher_factory") is not None
            and FlightStack(flight_stack) is FlightStack.PX4
        ):
            self.flight_stack = FlightStack.PX4  # a stand-in launcher: no binary to find
        else:
            self.flight_stack = resolve_flight_stack(flight_stack, cfg.px4)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / cfg.step_dt)}

        from flyby.dynamics.flight_stack_motion import FlightStackMotion
        from flyby.dynamics.multirotor import RotorModel
        from flyby.sim.base import make_backend

        world = generate_world(cfg.world, cfg.world_seed)
        render_camera = replace(cfg.camera, preset=cfg.render.preset)
        self.backend = make_backend(
            backend,  # None: FLYBY_BACKEND, else Isaac Sim where it runs, else MuJoCo
            world,
            1,
            render_camera,
            dynamic=cfg.multirotor,
            physics_dt=cfg.physics_dt,
            shadows=cfg.render.shadows,
            antialias=cfg.render.antialias,
        )
        try:
            controller = self._make_flight_stack()
        except BaseException:
            self.backend.close()
            raise
        self._controller = controller
        motion = FlightStackMotion(
            self.backend, controller, RotorModel(cfg.multirotor, 1), cfg.actions,
            cfg.physics_dt, cfg.decimation,
            takeoff=cfg.px4.takeoff, surface_height=world.height_at,
            rest_height_m=cfg.multirotor.collision_half_extent_m[2],
        )  # fmt: skip
        if cfg.perception.mode is PerceptionMode.YOLO:  # detections from YOLO on rendered frames
            from flyby.perception.yolo_env import YoloISRTask

            try:
                self.task = YoloISRTask(
                    cfg, 1, world=world, motion=motion,
                    backend=self.backend, render_camera=render_camera, perception=cfg.perception,
                )  # fmt: skip
            except BaseException:
                self.close()
                raise
        else:
            self.task = ISRTask(cfg, num_envs=1, world=world, motion=motion)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (self.task.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        from flyby.envs.render import TaskRenderer

        self.renderer = TaskRenderer(self.task, self.backend, cfg.render_interval)
        self._frame: np.ndarray | None = None

    @property
    def flight_stack_label(self) -> str:
        """Human-readable flight stack, for video headers and reports."""
        return FLIGHT_STACK_LABELS[self.flight_stack]

    def _make_flight_stack(self):
        cfg = self.cfg
        if self.flight_stack is FlightStack.CASCADE:
            from flyby.control.cascade import CascadeController

            return CascadeController(cfg.cascade, cfg.multirotor, 1)
        from flyby.px4.flight_stack import PX4FlightStack
        from flyby.px4.params import sitl_params

        kwargs = {"params": sitl_params(cfg.multirotor), **self._px4_kwargs}  # MPC_THR_HOVER of this airframe
        return PX4FlightStack(
            num_drones=1, px4=cfg.px4, sensors=cfg.sensors, physics_dt=cfg.physics_dt, **kwargs
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        pos_w, yaw_rad = self.task.start_poses(options)  # bad options raise before anything changes
        super().reset(seed=seed)
        self.task.seed(int(self.np_random.integers(2**63)))
        obs = self.task.reset_all(pos_w, yaw_rad)
        info = self._render_info(force=True)
        info["takeoff_s"] = self.task.dynamics.last_takeoff_s
        if self.cfg.perception.mode is PerceptionMode.YOLO:
            info.update(self.task.perception_info(0))
        return obs[0], info

    def step(self, action):
        a = np.asarray(action)
        if a.shape != (ACTION_DIM,):
            raise InvalidAction(f"action must have shape (4,) = [vx, vy, vz, yaw_rate], got {a.shape}")
        res = self.task.step(a[None], autoreset=False)
        info = self._render_info()
        if self.cfg.perception.mode is PerceptionMode.YOLO:
            info.update(self.task.perception_info(0))
        if res.log:
            info["log"] = res.log
        return res.obs[0], float(res.reward[0]), bool(res.terminated[0]), bool(res.truncated[0]), info

    def _render_info(self, force: bool = False) -> dict[str, Any]:
        info: dict[str, Any] = {
            "flight_stack": self.flight_stack.value,
            "sim_time_s": self.task.world_time_s,
            "rendered": False,
        }
        if self.render_mode is not None:
            due = force or self.task.global_step % self.cfg.render_interval == 0
            if due:
                fresh = getattr(self.task, "fresh_frame", lambda i: None)(0)  # yolo mode rendered it already
                self._frame = fresh if fresh is not None else self.renderer.cameras(force=True)[0][0]
                info["camera"] = self._frame
                info["rendered"] = True
        return info

    def render(self) -> np.ndarray | None:
        """The latest rendered camera image, or None without render_mode.

        Returns:
            (H, W, 3) uint8 at the render preset, or None without render_mode.
        """
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        if self._frame is None:
            self._frame = self.renderer.cameras(force=True)[0][0]
        return self._frame

    def close(self) -> None:
        """Stop the flight stack and the simulator.

        ``step`` then raises ``ResetNeeded`` until the next ``reset``.
        """
        task = getattr(self, "task", None)  # absent when __init__ failed
        if task is not None:
            task.mark_reset_needed("after close()")
        closer = getattr(getattr(self, "_controller", None), "close", None)
        if callable(closer):
            closer()
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
            self.backend = None
        super().close()
