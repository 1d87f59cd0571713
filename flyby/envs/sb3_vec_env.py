"""Stable-Baselines3 adapter for flyby's Gymnasium ``VectorEnv``s.

SB3 wants its own ``VecEnv`` API: ``step`` returns ``(obs, rewards, dones,
infos)`` with ``infos`` a list of per-env dicts, auto-resets finished envs, and
expects the *true* last observation of a finished episode in
``infos[i]["terminal_observation"]`` (used to bootstrap the value of truncated
episodes). flyby's envs autoreset in ``SAME_STEP`` mode, so the true final
observation is ``infos["final_obs"][i]``; this adapter moves it across. (Do
not copy IsaacLab's SB3 wrapper here: it stores the reset observation instead.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from flyby.errors import DependencyNotInstalled

    raise DependencyNotInstalled("stable-baselines3", "train") from exc

from gymnasium.vector import AutoresetMode, VectorEnv


class SB3VecEnvAdapter(VecEnv):
    """Expose a ``SAME_STEP``-autoreset Gymnasium ``VectorEnv`` as an SB3 ``VecEnv``.

    Args:
        env: e.g. ``MultiDroneISREnv(num_drones=16)``.

    Raises:
        ValueError: the env does not autoreset in ``SAME_STEP`` mode.
    """

    def __init__(self, env: VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"SB3VecEnvAdapter needs autoreset_mode SAME_STEP, the env declares {mode!r}")
        self.env = env
        self.render_mode = env.render_mode
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        dones = terminated | truncated
        out: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = infos["final_obs"]
            for i in np.flatnonzero(dones):
                out[i]["terminal_observation"] = final[i]
                out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if "log" in infos:
                out[int(np.flatnonzero(dones)[0])]["log"] = infos["log"]
        return obs, rewards.astype(np.float32), dones, out

    def seed(self, seed: int | None = None):
        self._seed = seed
        return [seed] * self.num_envs

    def close(self) -> None:
        self.env.close()

    def get_images(self):
        frames = self.env.unwrapped.renderer.cameras()[0] if self.render_mode else None
        return list(frames) if frames is not None else [None] * self.num_envs

    def get_attr(self, attr_name: str, indices=None):
        value = getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
