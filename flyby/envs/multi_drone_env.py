"""``flyby/MultiDroneISR-v0``: N drones in one shared ISR world, as a Gymnasium ``VectorEnv``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from flyby.config.envs import MultiDroneEnvCfg
from flyby.enums import BackendKind
from flyby.envs.isr_task import ISRTask
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
    ``infos["log"]`` holds ``Episode_Reward/<term>`` (episode sum / ``episode_length_s``,
    Isaac Lab's meaning) and ``Episode_Return/<term>`` (episode sum) means of the episodes
    that ended this step.

    ``reset(options=...)`` takes the single-drone options per drone (``pos_w`` (N, 3),
    ``yaw_rad`` (N,)) and Gymnasium's ``reset_mask``; see :meth:`reset`. ``step`` before the
    first ``reset`` or after ``close`` raises :class:`~flyby.errors.ResetNeeded`.

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
            from flyby.config.training import load_training_cfg

            cfg = load_training_cfg().multi_drone_env
        if num_drones is not None and num_envs is not None and num_drones != num_envs:
            raise ConfigError(
                [f"num_drones: {num_drones} disagrees with num_envs={num_envs}; pass one of them"]
            )
        n = num_drones if num_drones is not None else num_envs
        n = cfg.num_drones if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 4096:
            raise ConfigError([f"num_drones: {n!r} must be an integer in [1, 4096]"])
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
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
        """Reset every drone and the world clock, or only the drones of ``options["reset_mask"]``.

        Args:
            seed: reseeds the spawns and dynamics noise of every drone (they share one stream);
                None continues the current streams.
            options: None or a dict of, each optional:

                - ``pos_w``: (N, 3) start positions, metres, world ENU (default: random spawns).
                - ``yaw_rad``: (N,) start yaw angles, radians (default: random).
                - ``reset_mask``: (N,) bool ndarray, Gymnasium's partial reset: only those drones
                  start a new episode (as autoreset does) and the world clock runs on; only their
                  rows of ``pos_w`` / ``yaw_rad`` are read. Needs a full reset first.

        Returns:
            (obs (N, obs_dim) float32, {}); with ``reset_mask`` the other rows are current observations.

        Raises:
            ValueError: an unknown option key (the message names it and the supported ones), a start
                pose of the wrong shape, below the ground, outside the geofence or inside a building
                (:func:`flyby.envs.isr_task.check_start_poses`); nothing is reset then.
            TypeError: ``options`` is not a dict, or ``reset_mask`` is not a bool ndarray.
            ResetNeeded: ``reset_mask`` before any full reset (or after ``close``).
        """
        ids = None
        if options is not None and isinstance(options, dict) and "reset_mask" in options:
            ids = self._mask_ids(options["reset_mask"])
        pos_w, yaw_rad = self.task.start_poses(options, ids=ids, extra=("reset_mask",))
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # otherwise continue the current random streams
            self._seeded = True
            self.task.seed(int(self.np_random.integers(2**63)))
        if ids is not None:
            return self.task.reset_some(ids, pos_w, yaw_rad), {}
        return self.task.reset_all(pos_w, yaw_rad), {}

    def _mask_ids(self, mask: Any) -> np.ndarray:
        """Drone indices of a Gymnasium ``reset_mask`` (checked as ``SyncVectorEnv`` checks it)."""
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            what = type(mask).__name__ if not isinstance(mask, np.ndarray) else f"dtype {mask.dtype}"
            raise TypeError(
                f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},), got {what}"
            )
        if mask.shape != (self.num_envs,) or not mask.any():
            raise ValueError(
                f"options['reset_mask'] must have shape ({self.num_envs},) with at least one True, "
                f"got shape {mask.shape}: {mask.tolist()}"
            )
        return np.flatnonzero(mask)

    def step(self, actions):
        """Step all drones; returns (obs, rewards, terminations, truncations, infos), batched (N, ...).

        Raises:
            ResetNeeded: before the first ``reset`` or after ``close``.
            InvalidAction: actions not (N, 4), complex or non-numeric, or NaN/inf.
        """
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
        self.task.mark_reset_needed("after close()")
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
