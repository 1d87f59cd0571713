"""``flyby/MultiDroneISR-v0``: N drones in one shared ISR world, as a Gymnasium ``VectorEnv``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from flyby.enums import BackendKind
from flyby.envs.isr_task import ISRTask
from flyby.envs.multi_drone_env_cfg import MultiDroneEnvCfg
from flyby.errors import ConfigError
from flyby.mdp.actions import ACTION_DIM


class MultiDroneISREnv(VectorEnv):
    """Many ISR drones sharing one world (shared buildings, roads, moving targets).

    Each drone is one sub-env with its own episode: its own spawn, targets-seen
    and coverage bookkeeping, time limit, and autoreset. The world clock (moving
    vehicles) is shared. Action, observation and reward per drone are exactly
    those of ``flyby/DirectISR-v0`` (see :class:`~flyby.envs.direct_env.DirectISREnv`).

    Autoreset mode is ``SAME_STEP``: when drone i's episode ends, ``step``
    returns its reset observation in ``obs[i]`` and the true last observation
    in ``infos["final_obs"][i]`` (mask ``infos["_final_obs"]``).
    ``infos["log"]`` holds ``Episode_Reward/<term>`` means of the episodes that
    ended this step.

    Args:
        num_drones: number of drones N (default: ``multi_drone_env.num_drones``
            of the packaged training config, 16).
        cfg: env config (default: the packaged ``multi_drone_env`` section).
        render_mode: ``None`` or ``"rgb_array"``; ``render()`` returns the
            tiled grid of all drone cameras, refreshed at most every
            ``render_interval`` steps.
        backend: simulator backend for rendering (default: automatic choice).
        num_envs: alias of ``num_drones`` (what ``gymnasium.make_vec`` passes).

    Raises:
        ConfigError: bad config, or ``num_drones`` and ``num_envs`` disagree.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_drones: int | None = None,
        cfg: MultiDroneEnvCfg | None = None,
        render_mode: str | None = None,
        backend: BackendKind | str | None = None,
        num_envs: int | None = None,
    ) -> None:
        if cfg is None:
            from flyby.training.training_cfg import load_training_cfg

            cfg = load_training_cfg().multi_drone_env
        if num_drones is not None and num_envs is not None and num_drones != num_envs:
            raise ConfigError([f"num_drones: {num_drones} disagrees with num_envs={num_envs}; pass one of them"])
        n = num_drones if num_drones is not None else num_envs
        n = cfg.num_drones if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 4096:
            raise ConfigError([f"num_drones: {n!r} must be an integer in [1, 4096]"])
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.cfg = cfg
        self.num_envs = int(n)
        self.render_mode = render_mode
        self.task = ISRTask(cfg, num_envs=self.num_envs)
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (self.task.obs_dim,), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / cfg.step_dt)}
        self._backend_kind = backend
        self._renderer = None
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every drone and the world clock; returns (obs (N, obs_dim) float32, {})."""
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # otherwise continue the current random streams
            self._seeded = True
            self.task.seed(int(self.np_random.integers(2**63)))
        return self.task.reset_all(), {}

    def step(self, actions):
        """Step all drones; returns (obs, rewards, terminations, truncations, infos), batched (N, ...)."""
        res = self.task.step(actions, autoreset=True)
        infos: dict[str, Any] = {}
        if res.done_ids.size:
            final_obs = np.full(self.num_envs, None, dtype=object)
            mask = np.zeros(self.num_envs, dtype=bool)
            for row, i in enumerate(res.done_ids):
                final_obs[i] = res.final_obs[row]
            mask[res.done_ids] = True
            infos["final_obs"] = final_obs
            infos["_final_obs"] = mask
            infos["log"] = res.log
        return res.obs, res.reward, res.terminated, res.truncated, infos

    def render(self) -> np.ndarray | None:
        """Tiled grid of all drone cameras, (H_grid, W_grid, 3) uint8 (None without render_mode)."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass render_mode='rgb_array'")
            return None
        from flyby.sim.tiling import tile_images

        frames, _ = self.renderer.cameras()
        return tile_images(frames)[0]

    @property
    def renderer(self):
        """The :class:`~flyby.envs.render.TaskRenderer` (built on first use)."""
        if self._renderer is None:
            from flyby.envs.render import TaskRenderer

            self._renderer = TaskRenderer(self.task, self._backend_kind, self.cfg.render_interval)
        return self._renderer

    def close_extras(self, **kwargs: Any) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
