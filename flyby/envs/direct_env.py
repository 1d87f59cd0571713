"""``flyby/DirectISR-v0``: one ISR drone on the direct dynamics (no PX4 in the loop)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from flyby.config.envs import DirectEnvCfg
from flyby.enums import BackendKind
from flyby.envs.isr_task import ISRTask
from flyby.errors import InvalidAction
from flyby.mdp.actions import ACTION_DIM


class DirectISREnv(gym.Env):
    """Fly one drone over the ISR world; find targets and cover ground.

    ## Action Space
    ``Box(-1, 1, (4,), float32)``: normalised ``[vx, vy, vz, yaw_rate]``, scaled by
    the dynamics config to m/s (world ENU) and rad/s; see :mod:`flyby.mdp.actions`.
    Out-of-range values are clipped; NaN/inf, complex values or another shape raise ``InvalidAction``.
    ``step`` before the first ``reset`` or after ``close`` raises :class:`~flyby.errors.ResetNeeded`.

    ## Reset Options
    ``reset(options={"pos_w": (3,) metres world ENU, "yaw_rad": radians})``, either or both
    (default: a random spawn). A start below the ground, outside the geofence or inside a
    building (grown by ``terminations.drone_radius_m``), of another shape, or an unknown key
    raises ``ValueError`` naming the value and the allowed region
    (:func:`flyby.envs.isr_task.check_start_poses`).

    ## Observation Space
    ``Box(-1, 1, (obs_dim,), float32)``; slices (named in
    :class:`flyby.mdp.observations.ObsLayout`, 64 values with top_k=5):

    | slice          | size | content                                               |
    |----------------|------|-------------------------------------------------------|
    | pos            | 3    | position / (half area, half area, max altitude)       |
    | vel            | 3    | velocity / max velocity, world ENU                     |
    | yaw            | 2    | cos, sin of yaw                                        |
    | clearance      | 9    | height above buildings in a 3x3 patch / max altitude  |
    | detections     | 8*K  | top-K ground-truth detections                         |
    | progress       | 3    | coverage, targets seen, time used (fractions)          |
    | last_action    | 4    | previous normalised action                            |

    ## Rewards
    The weighted terms of ``cfg.rewards.terms`` (:class:`~flyby.mdp.terms.RewTerm`): events
    (new targets, new coverage, crash, geofence) pay ``weight`` each; energy and jerk cost
    ``weight * term * step_dt`` per step (:mod:`flyby.mdp.rewards`); a term of your own is one
    function and one config line. When an episode ends ``info["log"]`` carries, per term,
    ``Episode_Reward/<term>`` (Isaac Lab's meaning: episode sum / ``episode_length_s``) and
    ``Episode_Return/<term>`` (the episode sum).

    ## Episode End
    Terminated on a crash (building or ground) or leaving the geofence;
    truncated at ``episode_length_s`` (60 s = 1200 steps at 20 Hz by default).

    Args:
        cfg: env config; default: ``direct_env`` of the packaged
            ``training_config.yaml`` with ``dynamics_config.yaml``.
        render_mode: ``None`` or ``"rgb_array"`` (the drone camera image,
            re-rendered at most every ``render_interval`` steps).
        backend: simulator backend for rendering (default: automatic choice).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        cfg: DirectEnvCfg | None = None,
        render_mode: str | None = None,
        backend: BackendKind | str | None = None,
    ) -> None:
        if cfg is None:
            from flyby.config.training import load_training_cfg

            cfg = load_training_cfg().direct_env
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        self.cfg = cfg
        self.render_mode = render_mode
        self.task = ISRTask(cfg, num_envs=1)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (self.task.obs_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / cfg.step_dt)}
        self._backend_kind = backend
        self._renderer = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        pos_w, yaw_rad = self.task.start_poses(options)  # bad options raise before anything changes
        super().reset(seed=seed)
        self.task.seed(int(self.np_random.integers(2**63)))
        obs = self.task.reset_all(pos_w, yaw_rad)
        return obs[0], {}

    def step(self, action):
        a = np.asarray(action)
        if a.shape != (ACTION_DIM,):
            raise InvalidAction(f"action must have shape (4,) = [vx, vy, vz, yaw_rate], got {a.shape}")
        res = self.task.step(a[None], autoreset=False)
        info: dict[str, Any] = {
            "targets_seen": int(np.count_nonzero(self.task.seen[0])),
            "detections": int(np.count_nonzero(self.task.detections.visible[0])),
        }
        if res.log:
            info["log"] = res.log
        return res.obs[0], float(res.reward[0]), bool(res.terminated[0]), bool(res.truncated[0]), info

    def render(self) -> np.ndarray | None:
        """The drone camera image, (H, W, 3) uint8, or None when render_mode is None."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        return self.renderer.cameras()[0][0]

    @property
    def renderer(self):
        """The :class:`~flyby.envs.render.TaskRenderer` (built on first use)."""
        if self._renderer is None:
            from flyby.envs.render import TaskRenderer

            self._renderer = TaskRenderer(self.task, self._backend_kind, self.cfg.render_interval)
        return self._renderer

    def close(self) -> None:
        """Release the renderer; ``step`` then raises ``ResetNeeded`` until the next ``reset``."""
        self.task.mark_reset_needed("after close()")
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()
