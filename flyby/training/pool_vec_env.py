"""SB3 ``VecEnv`` over an :class:`~flyby.training.parallel.EnvPool`: one env per worker process.

What :class:`stable_baselines3.common.vec_env.SubprocVecEnv` does (the same step, autoreset
and ``terminal_observation`` semantics), on flyby's worker pool, whose workers stop their env
(and so their PX4 SITL instance) on close, on errors, on Ctrl-C and when the parent dies (see
:mod:`flyby.training.parallel`). ``train --env full`` trains on it when PX4 flies, one PX4
instance per env.

Needs the ``train`` extra (stable-baselines3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from flyby.training.parallel import EnvPool


class PoolVecEnv(VecEnv):
    """SB3 ``VecEnv`` of the pool's envs; closing it closes the pool (every worker and PX4).

    Args:
        pool: a started :class:`EnvPool` (e.g. :func:`flyby.training.parallel.make_px4_pool`); the
            VecEnv owns it from now on.

    Attributes:
        flight_stack: ``"px4"`` or ``"cascade"`` (from the first worker's env).
        flight_stack_label: the same in words.
    """

    def __init__(self, pool: EnvPool) -> None:
        self.pool = pool
        self.flight_stack = pool.infos[0].get("flight_stack")
        self.flight_stack_label = pool.infos[0].get("flight_stack_label")
        super().__init__(pool.num_envs, pool.observation_space, pool.action_space)

    def reset(self) -> np.ndarray:
        for j in range(self.num_envs):
            self.pool.send(j, "reset", self._seeds[j], self._options[j] or None)
        results = [self.pool.recv(j) for j in range(self.num_envs)]
        obs = [r[0] for r in results]
        self.reset_infos = [r[1] for r in results]
        self._reset_seeds()
        self._reset_options()
        return np.stack(obs)

    def step_async(self, actions: np.ndarray) -> None:
        for j, action in enumerate(actions):
            self.pool.send(j, "step", action, True)

    def step_wait(self):
        results = [self.pool.recv(j) for j in range(self.num_envs)]
        obs, rewards, dones, infos, reset_infos = zip(*results, strict=True)
        self.reset_infos = list(reset_infos)
        return (
            np.stack(obs),
            np.asarray(rewards, dtype=np.float32),
            np.asarray(dones, dtype=bool),
            list(infos),
        )

    def close(self) -> None:
        self.pool.close()

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [self.pool.call(j, "get_attr", attr_name) for j in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for j in self._indices(indices):
            self.pool.call(j, "set_attr", attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        return [
            self.pool.call(j, "env_method", method_name, method_args, method_kwargs)
            for j in self._indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return [self.pool.call(j, "is_wrapped", wrapper_class) for j in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return self.env_method("render")
