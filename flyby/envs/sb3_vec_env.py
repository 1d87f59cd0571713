"""Stable-Baselines3 adapter for flyby's Gymnasium ``VectorEnv``s.

SB3 wants its own ``VecEnv`` API: ``step`` returns ``(obs, rewards, dones,
infos)`` with ``infos`` a list of per-env dicts, auto-resets finished envs, and
expects the *true* last observation of a finished episode in
``infos[i]["terminal_observation"]`` (used to bootstrap the value of truncated
episodes). flyby's envs autoreset in ``SAME_STEP`` mode, so the true final
observation is ``infos["final_obs"][i]``; this adapter moves it across. (Do
not copy IsaacLab's SB3 wrapper here: it stores the reset observation instead.)

SB3 sub-env ``i`` is drone ``i``. All drones share one Gymnasium env, so the per-env calls
(``get_attr``, ``set_attr``, ``env_method``) take ``indices`` exactly as SB3's ``VecEnv`` does
(None: every drone, an int: one, an iterable of ints; an index out of range is an
``IndexError``, as in ``DummyVecEnv``) and mean:

- ``get_attr(name, indices)``: the shared env's attribute, once per index (the same object).
- ``set_attr(name, value, indices)``: sets the shared attribute when ``indices`` names every
  drone; a strict subset is ``NotImplementedError`` (one object cannot hold two values).
- ``env_method("reset", ..., indices=...)``: resets only those drones (Gymnasium's
  ``reset_mask``; the other drones fly on) and returns ``(obs_i, info_i)`` per index, as
  ``DummyVecEnv`` does. Single-drone ``options`` (``pos_w`` (3,), ``yaw_rad`` scalar) apply to
  every drone reset.
- ``env_method(other, ...)``: runs once on the shared env when ``indices`` names every drone and
  returns that result once per index; a strict subset is ``NotImplementedError``.

SB3 itself only calls ``get_attr("render_mode")`` / ``get_attr("metadata")`` and
``env_is_wrapped(Monitor)`` (PPO, SAC, VecNormalize, EvalCallback, evaluate_policy), all of which
work; ``set_options`` feeds the next ``reset`` per drone.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices
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
        """Reset every drone with the seed of :meth:`seed` and the options of ``set_options``.

        Both the seed and the options are used once.

        Raises:
            ValueError: ``set_options`` gave some drones an option others lack, or a bad option
                (see :meth:`flyby.envs.multi_drone_env.MultiDroneISREnv.reset`).
            TypeError: ``set_options`` gave something other than dicts.
        """
        options = self._batched_options()
        obs, _ = self.env.reset(seed=self._seed, options=options)
        self._seed = None
        self._reset_options()
        return obs

    def _batched_options(self) -> dict[str, Any] | None:
        """SB3's per-env options (``set_options``: one dict per drone) as the vector env's batched options."""
        per_env = self._options
        if not all(isinstance(o, dict) for o in per_env):
            raise TypeError(f"set_options: each drone's options must be a dict, got {per_env!r}")
        if len(per_env) != self.num_envs:
            raise ValueError(
                f"set_options: {len(per_env)} option dicts for {self.num_envs} drones; "
                "pass one dict or one per drone"
            )
        keys = set().union(*(o.keys() for o in per_env))
        if not keys:
            return None
        lacking = {k: [i for i, o in enumerate(per_env) if k not in o] for k in sorted(keys, key=str)}
        lacking = {k: v for k, v in lacking.items() if v}
        if lacking:
            raise ValueError(
                "set_options: every drone needs the same option keys (the drones reset together); "
                + "; ".join(f"{k!r} missing for drones {v}" for k, v in lacking.items())
            )
        return {k: [o[k] for o in per_env] for k in keys}

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

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The shared env's attribute ``attr_name``, once per index (SB3 ``indices`` semantics).

        Raises:
            AttributeError: the env has no such attribute (``has_attr`` relies on it).
            IndexError, TypeError: bad ``indices`` (see :meth:`_indices`).
        """
        idx = self._indices(indices, f"get_attr({attr_name!r})")
        value = getattr(self.env, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set ``attr_name`` on the shared env; ``indices`` must name every drone (or none: no-op).

        Raises:
            NotImplementedError: ``indices`` names some drones but not all.
            IndexError, TypeError: bad ``indices``.
        """
        idx = self._indices(indices, f"set_attr({attr_name!r})")
        if not idx:
            return
        self._require_all(
            idx, f"set_attr({attr_name!r})", "one shared attribute cannot hold a value per drone"
        )
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Call ``method_name`` for the drones ``indices``; one result per index.

        ``"reset"`` resets only those drones (Gymnasium ``reset_mask``) and returns
        ``(obs_i (obs_dim,) float32, info_i)`` per index, as ``DummyVecEnv`` does; single-drone
        options (``pos_w`` (3,) metres world ENU, ``yaw_rad`` radians) apply to each drone reset.
        Any other method runs once on the shared env and needs ``indices`` to name every drone.

        Raises:
            NotImplementedError: a method other than ``reset`` for some drones but not all.
            IndexError, TypeError: bad ``indices``.
        """
        idx = self._indices(indices, f"env_method({method_name!r})")
        if not idx:
            return []
        if method_name == "reset":
            return self._reset_drones(idx, *method_args, **method_kwargs)
        self._require_all(
            idx,
            f"env_method({method_name!r})",
            "it is a method of the one env all drones share; only 'reset' can act on some drones",
        )
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices, "env_is_wrapped")]

    def _reset_drones(self, idx: list[int], *args: Any, seed: int | None = None, options: dict | None = None):
        """``env_method("reset")``: reset drones ``idx`` (all of them: a full reset).

        Returns:
            ``(obs_i, info_i)`` for each drone in ``idx``.
        """
        n = self.num_envs
        batched: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if key == "pos_w":  # one drone's (3,) start, for every drone reset
                value = np.broadcast_to(np.asarray(value), (n, 3)) if np.shape(value) == (3,) else value
            elif key == "yaw_rad":
                value = np.full(n, value) if np.ndim(value) == 0 else value
            batched[key] = value
        if set(idx) != set(range(n)):
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
            batched["reset_mask"] = mask
        obs, _ = self.env.reset(*args, seed=seed, options=batched or None)
        return [(obs[i], {}) for i in idx]

    def _indices(self, indices: VecEnvIndices, what: str) -> list[int]:
        """SB3 ``indices`` (None: all, int: one, iterable of ints) as drone indices in [0, N).

        Negative indices count from the end, as ``DummyVecEnv``'s list indexing does.

        Raises:
            TypeError: ``indices`` is not None, an int or an iterable of ints.
            IndexError: an index outside [-N, N); the message names it and N.
        """
        n = self.num_envs
        idx = self._get_indices(indices)  # SB3's own reading of indices
        try:
            if not isinstance(idx, Iterable):
                raise TypeError
            out = [operator.index(i) for i in idx]
        except TypeError:
            raise TypeError(
                f"{what}: indices must be None, an int or an iterable of ints, got {indices!r}"
            ) from None
        bad = [i for i in out if not -n <= i < n]
        if bad:
            raise IndexError(f"{what}: indices {bad} out of range for {n} drones (0..{n - 1}, or -{n}..-1)")
        return [i % n for i in out]

    def _require_all(self, idx: list[int], what: str, why: str) -> None:
        if set(idx) != set(range(self.num_envs)):
            raise NotImplementedError(
                f"{what} with indices={idx}: {why}. The {self.num_envs} drones share one "
                f"{type(self.env).__name__}; pass indices=None (every drone)"
            )
