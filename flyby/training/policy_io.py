"""Load a trained policy bundle (SB3 model zip + observation normaliser + summary) for evaluation.

A pipeline run saves its policy as three files in one folder (``output/runs/<NAME>/training/``)::

    model.zip           stable-baselines3 PPO or SAC, saved by ``model.save()``
    vecnormalize.pkl    SB3 ``VecNormalize`` statistics (observation normalisation), ``VecNormalize.save()``
    model.json          training summary: {"algorithm": "PPO"|"SAC", "observation_space": {...},
                        "action_space": {...}, "normalize": {"obs": true, "clip_obs": 10.0,
                        "epsilon": 1e-8}, "env_steps": int, ...}

Training checkpoints (``ckpt_<steps>.zip``) have ``ckpt_<steps>.vecnormalize.pkl`` and
``ckpt_<steps>.json`` beside them; those are used when present. Older zips written by
:func:`flyby.training.train.save_model` have ``<stem>.json`` beside them (for
``model.zip`` that is ``model.json`` too) and no normaliser; they still load, with
``obs_rms=None`` (observations are passed to the network unchanged).

:func:`load_policy` refuses, with a :class:`~flyby.errors.ModelLoadError` that names the file, what
failed and the fix (never a raw traceback):

- a missing file, a file that is not a zip, a corrupt or truncated zip, a zip that is not an SB3
  model, or a model / normaliser that does not unpickle;
- a model trained on other observation or action spaces than the evaluation env's (default:
  ``flyby/PX4ISR-v0``'s ``Box(-1.0, 1.0, (64,), float32)`` observations and
  ``Box(-1.0, 1.0, (4,), float32)`` actions); the message names both spaces;
- ``model.json`` saying the observations were normalised (``normalize.obs: true``) while
  ``vecnormalize.pkl`` is missing, or a normaliser whose statistics do not have the observation's
  shape. A loaded model always gets its normaliser: evaluating a normalised policy on raw
  observations would score a different policy.

The normaliser is applied exactly as SB3's ``VecNormalize.normalize_obs`` does:
``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` as float32.

Security note: SB3 zips and ``vecnormalize.pkl`` contain pickles; load only files you trust.

Example::

    from flyby.training.policy_io import load_policy

    policy = load_policy("output/runs/demo/training/model.zip")
    action = policy(obs)                      # (64,) float32 -> (4,) float32, normalised first
    actions, _ = policy.predict(obs_batch)    # (N, 64) -> (N, 4), as SB3's predict
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from flyby.errors import ModelLoadError

__all__ = [
    "ALGORITHMS",
    "EVAL_ENV_ID",
    "MODEL_JSON",
    "VECNORMALIZE_PKL",
    "LoadedPolicy",
    "ModelLoadError",
    "describe_space",
    "eval_spaces",
    "load_policy",
]

logger = logging.getLogger(__name__)

EVAL_ENV_ID = "flyby/PX4ISR-v0"  # the env evaluation runs in; its spaces are the default check
MODEL_JSON = "model.json"  # training summary beside the zip (older zips: <stem>.json, the same for model.zip)
VECNORMALIZE_PKL = "vecnormalize.pkl"  # VecNormalize statistics beside the zip
ALGORITHMS = ("PPO", "SAC")  # stable-baselines3 algorithms a bundle may hold
# Inference needs none of the training schedules; replacing them avoids unpickling lambdas saved by
# another Python version (SB3's documented way to load a model for prediction only).
_INFERENCE_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
_FIX_RETRAIN = (
    "train and save it again with `flyby train` (model.zip, vecnormalize.pkl and model.json together)"
)
_CORRUPT_FIX = f"it is not a flyby/SB3 model as it stands; {_FIX_RETRAIN}"


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``"<Type>: <first line of the message>"``, at most ``limit`` characters: library errors (torch's
    unpickler, zipfile) span many lines, and flyby's messages are one line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def eval_spaces(env_cfg=None) -> tuple[Any, Any]:
    """The observation and action spaces of ``flyby/PX4ISR-v0``, without building the env.

    They are what :class:`flyby.envs.px4_env.PX4ISREnv` declares: ``Box(-1, 1, (obs_dim,), float32)``
    with ``obs_dim`` from :func:`flyby.envs.isr_task.observation_layout` (73 for the packaged config,
    more with observation terms of your own) and
    ``Box(-1, 1, (4,), float32)`` (:data:`flyby.mdp.actions.ACTION_DIM`).

    Args:
        env_cfg: ``PX4EnvCfg`` (default: ``px4_env`` of the packaged ``evaluation_config.yaml``).

    Returns:
        (observation_space, action_space), ``gymnasium.spaces.Box``.
    """
    import gymnasium as gym

    from flyby.envs.isr_task import observation_layout
    from flyby.mdp.actions import ACTION_DIM

    if env_cfg is None:
        from flyby.config.evaluation import load_evaluation_cfg

        env_cfg = load_evaluation_cfg().px4_env
    obs_dim = observation_layout(env_cfg).dim
    return (
        gym.spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32),
        gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32),
    )


def describe_space(space: Any) -> str:
    """A space on one line: its ``repr`` (``Box(-1.0, 1.0, (64,), float32)``, ``Discrete(2)``) with
    numpy's line breaks folded; a Box whose per-element bounds make that longer than 160 characters
    as ``Box(low -4.8..-inf, high ..., (shape), dtype)`` (the range of its bounds); ``"unknown"`` for None."""
    if space is None:
        return "unknown"
    text = " ".join(repr(space).split())
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if len(text) > 160 and low is not None and high is not None:
        text = (
            f"Box(low {np.min(low):g}..{np.max(low):g}, high {np.min(high):g}..{np.max(high):g}, "
            f"{tuple(space.shape)}, {np.dtype(space.dtype).name})"
        )
    return text


def _spaces_equal(a: Any, b: Any) -> bool:
    """Same kind, shape and bounds (the dtype may differ: observations are cast before the network)."""
    import gymnasium as gym

    if isinstance(a, gym.spaces.Box) and isinstance(b, gym.spaces.Box):
        return a.shape == b.shape and np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)
    return type(a) is type(b) and a == b


class LoadedPolicy:
    """A trained SB3 policy with its observation normaliser: ``obs -> action`` for evaluation.

    Build it with :func:`load_policy`. It acts like an SB3 model (``predict``) and like a flyby
    callable policy (``__call__``); both apply the normaliser before the network, so callers pass
    the env's raw observations.

    It pickles as its files' bytes (model zip, normaliser pickle, ``model.json``) and is rebuilt on
    unpickling, so parallel evaluation workers each get their own copy
    (:func:`flyby.training.evaluate.policy_payload`).

    Attributes:
        model: the ``stable_baselines3.PPO`` or ``SAC`` (device cpu, no env).
        algorithm: ``"PPO"`` or ``"SAC"``.
        obs_rms: SB3 ``RunningMeanStd`` of the observations (``mean``, ``var``: (obs_dim,) float64),
            or None when the model was trained on raw observations.
        clip_obs: normalised observations are clipped to [-clip_obs, clip_obs].
        epsilon: added to the variance before the square root.
        info: the ``model.json`` summary (empty dict when there is none).
        label: name in reports (``model.json``'s ``"label"``, else the zip's stem, or for the
            generic ``model.zip`` the run's folder name: ``runs/<NAME>/training/model.zip`` -> NAME).
        path: the model zip it was loaded from.
        observation_space, action_space: the spaces the model was trained on.
    """

    def __init__(
        self,
        *,
        model: Any,
        algorithm: str,
        obs_rms: Any,
        clip_obs: float,
        epsilon: float,
        info: dict[str, Any],
        label: str,
        path: Path | None,
        zip_bytes: bytes,
        pkl_bytes: bytes | None,
    ) -> None:
        self.model = model
        self.algorithm = algorithm
        self.obs_rms = obs_rms
        self.clip_obs = float(clip_obs)
        self.epsilon = float(epsilon)
        self.info = info
        self.label = label
        self.path = path
        self._zip_bytes = zip_bytes
        self._pkl_bytes = pkl_bytes
        self.observation_space = model.observation_space
        self.action_space = model.action_space

    @property
    def normalized(self) -> bool:
        """True when observations are normalised before the network."""
        return self.obs_rms is not None

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the network saw them in training.

        Args:
            obs: (obs_dim,) or (N, obs_dim) raw observations.

        Returns:
            float32 array of the same shape: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs,
            clip_obs)``, or ``obs`` as float32 without a normaliser.

        Raises:
            ValueError: the last dimension is not the model's observation size.
        """
        obs = np.asarray(obs)
        dim = self.observation_space.shape[-1]
        if obs.ndim not in (1, 2) or obs.shape[-1] != dim:
            raise ValueError(
                f"{self.label}: observations must have shape ({dim},) or (N, {dim}), got {obs.shape}"
            )
        if self.obs_rms is None:
            return obs.astype(np.float32, copy=False)
        norm = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(norm, -self.clip_obs, self.clip_obs).astype(np.float32)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on the normalised observation.

        Args:
            observation: (obs_dim,) or (N, obs_dim) raw observations.
            deterministic: the mean action (True, the default here) or a sampled one.

        Returns:
            (actions (4,) or (N, 4) float32 in the action box, state) as SB3 returns them.
        """
        return self.model.predict(
            self.normalize_obs(observation),
            state=state,
            episode_start=episode_start,
            deterministic=deterministic,
        )

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action for one observation: (obs_dim,) -> (4,) float32."""
        action, _ = self.predict(obs, deterministic=True)
        return np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)

    def to_bytes(self) -> tuple[bytes, bytes | None, dict[str, Any], str, str | None]:
        """What rebuilds this policy elsewhere: (zip bytes, normaliser bytes or None, info, label, path)."""
        return (
            self._zip_bytes,
            self._pkl_bytes,
            dict(self.info),
            self.label,
            None if self.path is None else str(self.path),
        )

    @classmethod
    def from_bytes(
        cls,
        zip_bytes: bytes,
        pkl_bytes: bytes | None,
        info: dict[str, Any],
        label: str,
        path: str | None = None,
    ) -> LoadedPolicy:
        """Inverse of :meth:`to_bytes` (spaces are not checked again: they were at :func:`load_policy`).

        Raises:
            ModelLoadError: the bytes do not load (as in :func:`load_policy`).
        """
        where = Path(path) if path else Path("<bytes>")
        data = _read_zip(zip_bytes, where)
        algorithm = _algorithm(info, data, where)
        norm = _normaliser(pkl_bytes, _normaliser_path(where), info, data.get("observation_space"))
        model = _load_model(algorithm, zip_bytes, where)
        return cls(
            model=model,
            algorithm=algorithm,
            obs_rms=norm[0],
            clip_obs=norm[1],
            epsilon=norm[2],
            info=info,
            label=label,
            path=None if path is None else Path(path),
            zip_bytes=zip_bytes,
            pkl_bytes=pkl_bytes,
        )

    def __reduce__(self):
        return _restore, self.to_bytes()

    def __repr__(self) -> str:
        norm = "normalised observations" if self.normalized else "raw observations"
        return f"LoadedPolicy({self.label!r}, {self.algorithm}, {norm}, from {self.path})"


def _restore(
    zip_bytes: bytes, pkl_bytes: bytes | None, info: dict[str, Any], label: str, path: str | None
) -> LoadedPolicy:
    return LoadedPolicy.from_bytes(zip_bytes, pkl_bytes, info, label, path)


def load_policy(
    path: str | Path,
    *,
    observation_space: Any = None,
    action_space: Any = None,
    env_id: str = EVAL_ENV_ID,
    actions: Any = None,
) -> LoadedPolicy:
    """Load a trained policy bundle for evaluation: the model zip, its normaliser and its summary.

    Args:
        path: the model zip (``training/model.zip``), or a folder holding ``model.zip`` or
            ``training/model.zip`` (a run folder). ``vecnormalize.pkl`` and ``model.json`` (or
            ``<stem>.json``) are read from beside the zip.
        observation_space, action_space: the spaces the policy must have been trained on
            (default: ``flyby/PX4ISR-v0``'s, :func:`eval_spaces`).
        env_id: the env those spaces belong to, for messages.
        actions: the env's :class:`~flyby.mdp.actions.ActionCfg` (default: ``px4_env.actions`` of the
            packaged ``evaluation_config.yaml``). A ``model.json`` that records another
            ``action_scale`` is refused: the same outputs would command other velocities.

    Returns:
        :class:`LoadedPolicy` on cpu, with its normaliser (None only when the bundle has none and
        ``model.json`` does not ask for one).

    Raises:
        ModelLoadError: missing file; not a zip, a corrupt or truncated zip, or not an SB3 model;
            an unknown algorithm; spaces that differ from the env's (both named); an action scale
            in ``model.json`` that differs from ``actions`` (both named); ``model.json``
            says ``normalize.obs`` but ``vecnormalize.pkl`` is missing; a normaliser that does not
            unpickle or whose shape differs from the observation space. Each message names the
            file, the value and the fix.
        DependencyNotInstalled: stable-baselines3/torch are missing (the ``train`` extra).
    """
    from flyby.training.train import require_sb3

    require_sb3()
    path = _resolve_zip(Path(path))
    try:
        zip_bytes = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read the model {str(path)!r}: {_one_line(exc)}; check the file's permissions", path
        ) from exc
    data = _read_zip(zip_bytes, path)
    info = _read_info(path)
    algorithm = _algorithm(info, data, path)

    if observation_space is None or action_space is None:
        default_obs, default_act = eval_spaces()
        observation_space = default_obs if observation_space is None else observation_space
        action_space = default_act if action_space is None else action_space
    model_obs, model_act = data.get("observation_space"), data.get("action_space")
    problems = []
    if model_obs is None or not _spaces_equal(model_obs, observation_space):
        problems.append(
            f"observation space {describe_space(model_obs)}{_guess(model_obs, model_act)} but "
            f"{env_id} has {describe_space(observation_space)}"
        )
    if model_act is None or not _spaces_equal(model_act, action_space):
        problems.append(
            f"action space {describe_space(model_act)} but {env_id} has {describe_space(action_space)}"
        )
    if problems:
        raise ModelLoadError(
            f"model {str(path)!r} ({algorithm}) was trained on another env, not {env_id}: it was trained on "
            + "; and on ".join(problems)
            + f". Evaluate a policy trained on flyby's ISR envs (flyby/MultiDroneISR-v0, flyby/DirectISR-v0 "
            f"or {env_id}), e.g. one from `flyby train`",
            path,
        )

    _check_action_scale(info, actions, path, env_id)
    pkl_path = _normaliser_path(path)
    pkl_bytes = None
    if pkl_path.is_file():
        try:
            pkl_bytes = pkl_path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"cannot read the normaliser {str(pkl_path)!r}: {_one_line(exc)}", pkl_path
            ) from exc
    obs_rms, clip_obs, epsilon = _normaliser(pkl_bytes, pkl_path, info, model_obs)
    model = _load_model(algorithm, zip_bytes, path)
    label = str(info.get("label") or (path.stem if path.stem != "model" else _run_name(path)))
    policy = LoadedPolicy(
        model=model,
        algorithm=algorithm,
        obs_rms=obs_rms,
        clip_obs=clip_obs,
        epsilon=epsilon,
        info=info,
        label=label,
        path=path,
        zip_bytes=zip_bytes,
        pkl_bytes=pkl_bytes,
    )
    logger.info("loaded %r", policy)
    return policy


def _normaliser_path(path: Path) -> Path:
    """The normaliser file of the model zip ``path``.

    ``<stem>.vecnormalize.pkl`` (training checkpoints) when present, else ``vecnormalize.pkl`` beside the zip.
    """
    own = path.with_suffix(".vecnormalize.pkl")
    return own if own.is_file() else path.parent / VECNORMALIZE_PKL


def _resolve_zip(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / "model.zip", path / "training" / "model.zip"):
            if candidate.is_file():
                return candidate
        raise ModelLoadError(
            f"no model at {str(path)!r}: the folder holds neither model.zip nor training/model.zip; "
            "pass the model zip written by `flyby train`",
            path,
        )
    if not path.is_file():
        with_zip = path.with_name(path.name + ".zip")
        hint = f" (there is {str(with_zip)!r})" if path.suffix != ".zip" and with_zip.is_file() else ""
        raise ModelLoadError(
            f"no model at {str(path)!r}: the file does not exist{hint}; train one with `flyby train` "
            "or pass the path of a model zip (output/runs/<NAME>/training/model.zip)",
            path,
        )
    return path


def _read_zip(zip_bytes: bytes, path: Path) -> dict[str, Any]:
    """The SB3 ``data`` of a model zip, every zip and unpickling failure as a ModelLoadError."""
    from stable_baselines3.common.save_util import load_from_zip_file

    head = zip_bytes[:8]
    if not zipfile.is_zipfile(io.BytesIO(zip_bytes)):
        raise ModelLoadError(
            f"model {str(path)!r} is not a zip file ({len(zip_bytes)} bytes starting {head!r}; an SB3 model "
            f"zip starts b'PK\\x03\\x04'): the file is corrupt, truncated or something else; {_CORRUPT_FIX}",
            path,
        )
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            names = archive.namelist()
            bad = archive.testzip()  # reads every member and checks its CRC
    except Exception as exc:  # zipfile raises several types for damaged archives
        raise ModelLoadError(
            f"model {str(path)!r} is a damaged zip ({_one_line(exc)}); {_CORRUPT_FIX}", path
        ) from exc
    if bad is not None:
        raise ModelLoadError(
            f"model {str(path)!r} is a damaged zip: member {bad!r} fails its CRC check; {_CORRUPT_FIX}", path
        )
    first = _first_member_name(zip_bytes)
    if first is not None and first not in names:
        # A cut-off SB3 zip still holds the torch .pth zips nested inside it, whose directory zipfile
        # then finds: the directory no longer describes the file's first member.
        raise ModelLoadError(
            f"model {str(path)!r} is a truncated or damaged zip ({len(zip_bytes)} bytes): "
            f"it starts with member {first!r} but its directory lists {sorted(names)[:4]}...; {_CORRUPT_FIX}",
            path,
        )
    if "data" not in names or "policy.pth" not in names:
        raise ModelLoadError(
            f"{str(path)!r} is a zip but not a stable-baselines3 model "
            f"(it holds {sorted(names)[:8]}, no 'data' and 'policy.pth'), so not a flyby/SB3 model; "
            "pass the model.zip written by model.save() / `flyby train`",
            path,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data, _, _ = load_from_zip_file(
                io.BytesIO(zip_bytes), device="cpu", custom_objects=_INFERENCE_OBJECTS
            )
        except Exception as exc:  # JSON, pickle and torch errors all mean "cannot read it"
            raise ModelLoadError(
                f"model {str(path)!r} cannot be read by stable-baselines3 ({_one_line(exc)}); {_CORRUPT_FIX}",
                path,
            ) from exc
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"model {str(path)!r} holds no SB3 class parameters ('data' is empty); {_CORRUPT_FIX}", path
        )
    for key in ("observation_space", "action_space"):
        if key not in data:
            why = (
                "; ".join(str(w.message).splitlines()[0] for w in caught if key in str(w.message))
                or "not saved"
            )
            raise ModelLoadError(
                f"model {str(path)!r}: cannot read the {key.replace('_', ' ')} it was trained on ({why}); "
                f"it was probably saved by other gymnasium/stable-baselines3 versions; {_FIX_RETRAIN}",
                path,
            )
    return data


def _first_member_name(zip_bytes: bytes) -> str | None:
    """Name in the zip's first local file header (``PK\\x03\\x04``, name length at byte 26, name at 30)."""
    if len(zip_bytes) < 30 or not zip_bytes.startswith(b"PK\x03\x04"):
        return None
    n = int.from_bytes(zip_bytes[26:28], "little")
    return zip_bytes[30 : 30 + n].decode("utf-8", errors="replace") if len(zip_bytes) >= 30 + n else None


def _check_action_scale(info: dict[str, Any], actions: Any, path: Path, env_id: str) -> None:
    """Refuse a model trained under another action scale than the env's (``model.json``'s ``action_scale``).

    Models whose summary has no ``action_scale`` (trained before it was recorded) load unchecked.
    """
    trained = info.get("action_scale")
    if trained is None:
        return
    if actions is None:
        from flyby.config.evaluation import load_evaluation_cfg

        actions = load_evaluation_cfg().px4_env.actions
    here = actions.as_dict()
    if not isinstance(trained, dict) or set(trained) != set(here):
        raise ModelLoadError(
            f"model.json beside {str(path)!r} has action_scale {trained!r}; expected a mapping of "
            f"{', '.join(sorted(here))}; train and save the model again with `flyby train`",
            path,
        )
    differ = [k for k in sorted(here) if not math.isclose(float(trained[k]), here[k], rel_tol=1e-9)]
    if differ:
        both = "; ".join(f"{k} {trained[k]} when trained, {here[k]} in {env_id}" for k in differ)
        raise ModelLoadError(
            f"model {str(path)!r} was trained under another action scale ({both}): the same outputs "
            "would command other velocities. Evaluate with the training scale (the env config's "
            "actions, e.g. px4_env.actions in evaluation_config.yaml) or train again under this one",
            path,
        )


def _read_info(path: Path) -> dict[str, Any]:
    """``model.json`` (``<stem>.json``) beside the zip, or {} when there is none."""
    info_path = path.with_suffix(".json")
    if not info_path.is_file():
        return {}
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(
            f"the training summary {str(info_path)!r} beside the model is not readable JSON "
            f"({exc}); fix or delete it",
            info_path,
        ) from exc
    if not isinstance(info, dict):
        raise ModelLoadError(
            f"the training summary {str(info_path)!r} must be a JSON object, got "
            f"{type(info).__name__}; fix or delete it",
            info_path,
        )
    return info


def _algorithm(info: dict[str, Any], data: dict[str, Any], path: Path) -> str:
    """``model.json``'s ``"algorithm"``, else what the zip's parameters say.

    The parameters that tell: PPO has clip_range, SAC has target_entropy.
    """
    algo = info.get("algorithm")
    if algo is not None:
        if str(algo).upper() not in ALGORITHMS:
            raise ModelLoadError(
                f"{str(path.with_suffix('.json'))!r} says algorithm {algo!r}; flyby evaluates "
                f"{' and '.join(ALGORITHMS)} models",
                path,
            )
        return str(algo).upper()
    policy_cls = data.get("policy_class")
    module = getattr(policy_cls, "__module__", "") or ""
    if ".sac." in module or ("target_entropy" in data and "tau" in data):
        return "SAC"
    if ".ppo." in module or ("clip_range" in data and "n_epochs" in data):
        return "PPO"
    raise ModelLoadError(
        f"model {str(path)!r}: cannot tell its algorithm "
        f"(policy class {getattr(policy_cls, '__name__', policy_cls)!r}); "
        f"flyby evaluates {' and '.join(ALGORITHMS)} models; if it is one of them, write "
        f'{{"algorithm": "PPO"}} or {{"algorithm": "SAC"}} into {path.with_suffix(".json").name} beside it',
        path,
    )


def _normaliser(
    pkl_bytes: bytes | None, pkl_path: Path, info: dict[str, Any], obs_space: Any
) -> tuple[Any, float, float]:
    """(obs_rms or None, clip_obs, epsilon) from ``vecnormalize.pkl``, checked against ``model.json``."""
    norm_cfg = info.get("normalize") if isinstance(info.get("normalize"), dict) else {}
    clip_obs = float(norm_cfg.get("clip_obs", 10.0))
    epsilon = float(norm_cfg.get("epsilon", 1e-8))
    wants = norm_cfg.get("obs")
    if pkl_bytes is None:
        if wants:
            raise ModelLoadError(
                f"the model's model.json says its observations were normalised (normalize.obs: true) "
                f"but the normaliser {str(pkl_path)!r} is missing; "
                "copy vecnormalize.pkl from the training run next to the "
                "model (without it the policy would see unnormalised observations)",
                pkl_path,
            )
        return None, clip_obs, epsilon
    if wants is False:
        logger.info("%s: model.json says normalize.obs false; the normaliser beside it is not used", pkl_path)
        return None, clip_obs, epsilon
    try:
        from stable_baselines3.common.vec_env import VecNormalize

        vec_norm = pickle.loads(pkl_bytes)  # SB3's own format; see the module's security note
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise ModelLoadError(
            f"the normaliser {str(pkl_path)!r} cannot be unpickled ({_one_line(exc)}); "
            f"it is corrupt or from other versions; {_FIX_RETRAIN}",
            pkl_path,
        ) from exc
    if not isinstance(vec_norm, VecNormalize):
        raise ModelLoadError(
            f"{str(pkl_path)!r} holds a {type(vec_norm).__name__}, not SB3 VecNormalize statistics; "
            "save them with VecNormalize.save()",
            pkl_path,
        )
    if not getattr(vec_norm, "norm_obs", False):
        return None, clip_obs, epsilon
    rms = vec_norm.obs_rms
    expected = tuple(getattr(obs_space, "shape", ()) or ())
    shape = tuple(np.shape(getattr(rms, "mean", None))) if not isinstance(rms, dict) else None
    if shape != expected or np.shape(getattr(rms, "var", None)) != expected:
        raise ModelLoadError(
            f"the normaliser {str(pkl_path)!r} has statistics of shape "
            f"{shape if shape is not None else 'dict'} but the model's observation space is "
            f"{describe_space(obs_space)} (shape {expected}); it belongs to another "
            f"model: copy the vecnormalize.pkl saved with this model",
            pkl_path,
        )
    if not (np.isfinite(rms.mean).all() and np.isfinite(rms.var).all() and (rms.var >= 0).all()):
        raise ModelLoadError(
            f"the normaliser {str(pkl_path)!r} holds non-finite or negative statistics; {_FIX_RETRAIN}",
            pkl_path,
        )
    return rms, float(vec_norm.clip_obs), float(vec_norm.epsilon)


def _load_model(algorithm: str, zip_bytes: bytes, path: Path) -> Any:
    import stable_baselines3 as sb3

    cls = getattr(sb3, algorithm)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls.load(io.BytesIO(zip_bytes), device="cpu", custom_objects=_INFERENCE_OBJECTS)
    except Exception as exc:  # torch/state-dict errors: the zip is not a loadable model
        raise ModelLoadError(
            f"model {str(path)!r} does not load as {algorithm} ({_one_line(exc)}); {_CORRUPT_FIX}",
            path,
        ) from exc


def _run_name(path: Path) -> str:
    """``output/runs/<NAME>/training/model.zip`` -> NAME; else the zip's folder name."""
    parent = path.resolve().parent
    return parent.parent.name if parent.name == "training" else parent.name


def _guess(obs: Any, act: Any) -> str:
    """A hint for well-known foreign models (CartPole's Box(4,) / Discrete(2))."""
    import gymnasium as gym

    if (
        isinstance(obs, gym.spaces.Box)
        and obs.shape == (4,)
        and isinstance(act, gym.spaces.Discrete)
        and act.n == 2
    ):
        return " (an SB3 CartPole model?)"
    return ""
