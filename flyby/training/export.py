"""Policy export for deployment: ``policy.onnx`` with the observation normaliser folded in, and its contract.

A trained SB3 policy is written as one ONNX graph that a flight computer runs
with ``onnxruntime`` and nothing of flyby, SB3 or torch:

    obs (batch, obs_dim) float32, the RAW env observation (as the env returns it; obs_dim = ObsLayout.dim)
      -> clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)   (VecNormalize, when trained with it;
                                                                         computed in float64 as SB3 does)
      -> the policy's deterministic action: PPO the Gaussian mean, SAC tanh(mean)
      -> SAC: unscaled from [-1, 1] to the action box (identity here); then clipped to the box [-1, 1]
         (SB3's predict clips PPO's action; SAC's is inside already, up to onnxruntime's tanh rounding)
    action (batch, 4) float32 in [-1, 1] = what ``model.predict(vec_normalize.normalize_obs(obs),
    deterministic=True)`` returns.

The action is the *normalised* ``[vx, vy, vz, yaw_rate]`` of :mod:`flyby.mdp.actions`; the deployment
multiplies it by the action scale stated in the contract (m/s world ENU, rad/s), exactly as every flyby
env does. The batch dimension is dynamic.

Beside the graph, ``policy_contract.json`` (schema :data:`CONTRACT_SCHEMA`) states the input and output
names, dtypes and shapes; the observation layout as named slices (from
:class:`flyby.mdp.observations.ObsLayout` and that module's docstring table) with the scales that turn
them back into metres and m/s; the folded normaliser; the action channels, units and scale numbers; the
control rate of the env the policy will fly in; the algorithm, opset, library versions and the sha256
of the ONNX file.

Every export is checked before anything is written: the ONNX file is run by ``onnxruntime`` on random
and edge observations and must match SB3's actions to :data:`TOLERANCE` (``ExportResult.max_abs_diff``).
Both files are written atomically (a temporary file in ``out_dir``, then ``os.replace``); a failed export
leaves no file behind.

Example::

    from flyby.training.export import export_policy_onnx
    from flyby.training.policy_io import load_policy

    policy = load_policy("output/runs/r1/training/model.zip")   # + vecnormalize.pkl, model.json beside it
    result = export_policy_onnx(policy.model, "output/runs/r1/export", obs_rms=policy.obs_rms,
                                clip_obs=policy.clip_obs, epsilon=policy.epsilon)

or ``flyby export output/runs/r1/training/model.zip --out output/runs/r1/export``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from flyby.errors import DependencyNotInstalled, FlybyError

logger = logging.getLogger(__name__)

CONTRACT_VERSION = 1
CONTRACT_SCHEMA = f"flyby.policy_contract/{CONTRACT_VERSION}"
ONNX_NAME = "policy.onnx"
CONTRACT_NAME = "policy_contract.json"
INPUT_NAME = "obs"
OUTPUT_NAME = "action"
TOLERANCE = 1e-5  # max |onnxruntime action - SB3 action| an export may have (the figure)
MIN_OPSET = 13  # Clip with tensor bounds on float64 (the folded normaliser) needs opset >= 13
SUPPORTED_ALGORITHMS = ("PPO", "SAC")


class ExportError(FlybyError, RuntimeError):
    """A policy cannot be exported: unsupported model or spaces, an unwritable folder, or an ONNX graph
    whose actions differ from SB3's by more than :data:`TOLERANCE`. The message names the value and
    the fix."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_policy_onnx` wrote.

    Attributes:
        onnx_path: ``out_dir / "policy.onnx"``.
        contract_path: ``out_dir / "policy_contract.json"``.
        max_abs_diff: max |onnxruntime - SB3| over the check batch, in normalised action units (<= 1e-5).
    """

    onnx_path: Path
    contract_path: Path
    max_abs_diff: float


# ---------------------------------------------------------------------------------------------- checks


def _require_onnx():
    """``(onnx, onnxruntime)``; raises DependencyNotInstalled naming both when either is missing."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise DependencyNotInstalled("onnx and onnxruntime", "export") from exc
    return onnx, onnxruntime


def _require_torch_sb3():
    from flyby.training.train import require_sb3

    return require_sb3()


def _algorithm_name(model: Any) -> str:
    """``"PPO"`` or ``"SAC"`` from the model's class (subclasses count as their base)."""
    for cls in type(model).__mro__:
        if cls.__name__ in SUPPORTED_ALGORITHMS:
            return cls.__name__
    return type(model).__name__


def _check_model(model: Any, obs_dim: int | None = None) -> tuple[Any, Any]:
    """Check ``model`` is an SB3 PPO/SAC MlpPolicy on flat Box spaces; returns ``(obs_space, action_space)``.

    Args:
        obs_dim: the observation size the env config expects (None: not checked).

    Raises:
        ExportError: another algorithm or policy, a non-Box or non-flat space, an action box other
            than [-1, 1]^4, or an observation size other than ``obs_dim``.
    """
    _require_torch_sb3()
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    from flyby.mdp.actions import ACTION_DIM

    policy = getattr(model, "policy", None)
    if policy is None or not isinstance(policy, (ActorCriticPolicy, SACPolicy)):
        raise ExportError(
            f"expected a stable-baselines3 PPO or SAC model with an MlpPolicy, got {type(model).__name__} "
            f"(policy {type(policy).__name__}); load it with PPO.load(...) or SAC.load(...)"
        )
    obs_space, act_space = policy.observation_space, policy.action_space
    for what, space in (("observation", obs_space), ("action", act_space)):
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ExportError(
                f"the model's {what} space is {space}; export supports flat Box spaces only "
                "(flyby envs: Box(-1, 1, (obs_dim,)) observations, Box(-1, 1, (4,)) actions)"
            )
    unit_box = np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)
    if act_space.shape != (ACTION_DIM,) or not unit_box:
        raise ExportError(
            f"the model's action space is {act_space}; a flyby policy acts in Box(-1, 1, ({ACTION_DIM},)) "
            "(normalised [vx, vy, vz, yaw_rate]); train it on a flyby env"
        )
    if obs_dim is not None and obs_space.shape != (obs_dim,):
        raise ExportError(
            f"the model observes {obs_space.shape[0]} values, the env config's layout has {obs_dim}; "
            "pass the env_cfg the policy was trained for (observations.top_k sets the size)"
        )
    return obs_space, act_space


def _normalizer_arrays(obs_rms: Any, obs_shape: tuple[int, ...], clip_obs: float, epsilon: float):
    """``(mean, std)``, float64, of ``obs_rms``: ``std = sqrt(var + epsilon)`` as VecNormalize computes it.

    Raises:
        ExportError: ``obs_rms`` lacks ``mean``/``var``, has the wrong shape or non-finite values, or
            ``clip_obs``/``epsilon`` are not positive.
    """
    if not (isinstance(clip_obs, (int, float)) and clip_obs > 0 and math.isfinite(clip_obs)):
        raise ExportError(
            f"clip_obs must be a positive finite number, got {clip_obs!r} (VecNormalize default 10.0)"
        )
    if not (isinstance(epsilon, (int, float)) and epsilon >= 0 and math.isfinite(epsilon)):
        raise ExportError(
            f"epsilon must be a finite number >= 0, got {epsilon!r} (VecNormalize default 1e-8)"
        )
    if not (hasattr(obs_rms, "mean") and hasattr(obs_rms, "var")):
        hint = " (pass vec_normalize.obs_rms, not the VecNormalize)" if hasattr(obs_rms, "obs_rms") else ""
        raise ExportError(
            f"obs_rms must be an SB3 RunningMeanStd with .mean and .var, got {type(obs_rms).__name__}{hint}"
        )
    mean = np.asarray(obs_rms.mean, dtype=np.float64)
    var = np.asarray(obs_rms.var, dtype=np.float64)
    if mean.shape != obs_shape or var.shape != obs_shape:
        raise ExportError(
            f"obs_rms has mean {mean.shape} and var {var.shape}, the model observes {obs_shape}; "
            "pass the VecNormalize statistics saved with this model"
        )
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise ExportError(
            "obs_rms holds NaN/inf or negative variances; the VecNormalize statistics are corrupt"
        )
    return mean, np.sqrt(var + epsilon)


def normalize_observations(obs: np.ndarray, obs_rms: Any, *, clip_obs: float = 10.0, epsilon: float = 1e-8):
    """SB3 ``VecNormalize.normalize_obs``: ``clip((obs - mean) / sqrt(var + epsilon), ±clip_obs)``, float32.

    Args:
        obs: (batch, obs_dim) raw observations.
        obs_rms: ``RunningMeanStd`` or None (returns ``obs`` as float32 unchanged).

    Returns:
        (batch, obs_dim) float32.
    """
    obs = np.asarray(obs, dtype=np.float32)
    if obs_rms is None:
        return obs
    mean, std = _normalizer_arrays(obs_rms, obs.shape[1:], clip_obs, epsilon)
    return np.clip((obs - mean) / std, -clip_obs, clip_obs).astype(np.float32)


# -------------------------------------------------------------------------------------- the torch graph


def _deterministic_policy_module(
    model: Any, mean: np.ndarray | None, std: np.ndarray | None, clip_obs: float
) -> Any:
    """A ``torch.nn.Module`` mapping raw obs (B, D) float32 to SB3's deterministic action (B, A) float32.

    Mirrors ``BasePolicy.predict(deterministic=True)`` step by step: features (``preprocess_obs`` +
    the actor's features extractor), the actor's latent net, the mean action, the distribution's mode
    (tanh for squashed distributions), ``unscale_action`` when the policy squashes, then a clip to the
    action box. Works on a CPU copy of the policy when it lives elsewhere.

    Raises:
        ExportError: an action distribution other than (squashed) diagonal Gaussian or gSDE.
    """
    _, torch = _require_torch_sb3()
    from stable_baselines3.common.distributions import (
        DiagGaussianDistribution,
        SquashedDiagGaussianDistribution,
        StateDependentNoiseDistribution,
    )
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.preprocessing import preprocess_obs

    policy = model.policy
    if policy.device.type != "cpu":
        policy = copy.deepcopy(policy).to("cpu")
    policy.set_training_mode(False)
    if isinstance(policy, ActorCriticPolicy):  # PPO (and A2C): ActorCriticPolicy.get_distribution
        dist, extractor = policy.action_dist, policy.pi_features_extractor
        body, head, body_is_mlp_extractor = policy.mlp_extractor, policy.action_net, True
    else:  # SAC: Actor.get_action_dist_params; the actor holds its own features extractor
        actor = policy.actor
        dist, extractor, body, head = actor.action_dist, actor.features_extractor, actor.latent_pi, actor.mu
        body_is_mlp_extractor = False
    if isinstance(dist, SquashedDiagGaussianDistribution):
        tanh_mode = True
    elif isinstance(dist, StateDependentNoiseDistribution):
        tanh_mode = dist.bijector is not None
    elif isinstance(dist, DiagGaussianDistribution):
        tanh_mode = False
    else:
        raise ExportError(
            f"action distribution {type(dist).__name__} is not supported; export handles Gaussian "
            "(PPO), squashed Gaussian (SAC) and gSDE policies"
        )
    obs_space, normalize_images = policy.observation_space, policy.normalize_images
    squash_output = policy.squash_output
    low = torch.as_tensor(policy.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(policy.action_space.high, dtype=torch.float32)

    class DeterministicPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractor, self.body, self.head = extractor, body, head
            self.normalise = mean is not None
            if self.normalise:
                self.register_buffer("obs_mean", torch.as_tensor(mean, dtype=torch.float64))
                self.register_buffer("obs_std", torch.as_tensor(std, dtype=torch.float64))
            self.register_buffer("act_low", low)
            self.register_buffer("act_high", high)

        def forward(self, obs):
            x = obs
            if self.normalise:  # float64 like VecNormalize (float32 obs - float64 mean), then float32
                x = torch.clamp((obs.double() - self.obs_mean) / self.obs_std, -clip_obs, clip_obs).float()
            features = self.extractor(preprocess_obs(x, obs_space, normalize_images=normalize_images))
            latent = self.body.forward_actor(features) if body_is_mlp_extractor else self.body(features)
            action = self.head(latent)
            if tanh_mode:
                action = torch.tanh(action)
            if squash_output:  # BasePolicy.unscale_action
                action = self.act_low + 0.5 * (action + 1.0) * (self.act_high - self.act_low)
            # PPO: np.clip in predict. SAC: in the box already in SB3, but onnxruntime's tanh may round to
            # 1 + 1.2e-7; the clip keeps the graph's promise (|action| <= 1) and only moves it towards SB3.
            return torch.minimum(torch.maximum(action, self.act_low), self.act_high)

    return DeterministicPolicy().eval()


def _max_opset() -> int:
    """The highest opset this torch's TorchScript exporter writes (20 for torch 2.14)."""
    _require_torch_sb3()
    try:
        from torch.onnx import _constants
    except ImportError:  # a private module: fall back to the figure of the torch versions flyby pins
        return 20
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def _export_graph(module: Any, obs_dim: int, path: Path, opset: int) -> None:
    """``torch.onnx.export`` of ``module`` to ``path``: input ``obs`` (batch, obs_dim), output ``action``.

    Uses the TorchScript exporter (``dynamo=False``): the dynamo exporter of this torch needs
    ``onnxscript``, which flyby does not depend on, and the graph here is a plain MLP.
    """
    _, torch = _require_torch_sb3()
    dummy = torch.zeros((2, obs_dim), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript-based ONNX export"
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            torch.onnx.export(
                module,
                (dummy,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # torch raises a variety of types for an unsupported opset / op
            raise ExportError(
                f"torch.onnx.export failed at opset {opset}: {exc}; the default opset 17 is the tested one"
            ) from exc


def _check_batch(
    obs_space: Any, obs_rms: Any, clip_obs: float, epsilon: float, n: int, seed: int
) -> np.ndarray:
    """(n + edges, obs_dim) float32 raw observations: random rows, then edge rows.

    Random: half uniform in the observation box, half N(0, 3^2). Edges: zeros, the box bounds,
    alternating signs and, with a normaliser, ±1e3, its mean (normalises to 0) and mean ± 2 clip_obs
    std (hits the clip). Without a normaliser every row is clipped to the box: the env clips its
    observation there, and far outside it float32 rounding (torch's and onnxruntime's matmuls sum in
    different orders) grows with the input's size, not with any difference in the graph.
    """
    rng = np.random.default_rng(seed)
    dim = obs_space.shape[0]
    low = np.where(np.isfinite(obs_space.low), obs_space.low, -10.0)
    high = np.where(np.isfinite(obs_space.high), obs_space.high, 10.0)
    half = n // 2
    rows = [rng.uniform(low, high, (half, dim)), rng.normal(0.0, 3.0, (n - half, dim))]
    sign = np.where(np.arange(dim) % 2 == 0, 1.0, -1.0)
    edges = [np.zeros(dim), low, high, sign, -sign]
    if obs_rms is not None:
        mean, std = _normalizer_arrays(obs_rms, (dim,), clip_obs, epsilon)
        edges += [
            np.full(dim, 1e3),
            np.full(dim, -1e3),
            mean,
            mean + 2 * clip_obs * std * sign,
            mean - 2 * clip_obs * std * sign,
        ]
    rows.append(np.stack(edges))
    obs = np.concatenate(rows)
    if obs_rms is None:
        obs = np.clip(obs, low, high)
    return obs.astype(np.float32)


def check_onnx_policy(
    onnx_path: str | Path,
    model: Any,
    obs_rms: Any = None,
    *,
    clip_obs: float = 10.0,
    epsilon: float = 1e-8,
    n: int = 256,
    seed: int = 0,
) -> float:
    """Max |onnxruntime action - SB3 action| of an exported policy on random and edge observations.

    SB3's action is ``model.predict(normalize(obs), deterministic=True)`` with VecNormalize's formula
    (:func:`normalize_observations`); the ONNX graph gets the raw ``obs``. The graph is also run on a
    batch of one (its batch dimension must be dynamic) and that row counts too.

    Args:
        onnx_path: the ``policy.onnx`` to check.
        model: the SB3 model it was exported from.
        obs_rms: the ``RunningMeanStd`` folded into the graph, or None.
        n: random observations (edge rows come on top).
        seed: seed of the random observations.

    Returns:
        max abs difference in normalised action units (inf when either side gave NaN).

    Raises:
        DependencyNotInstalled: onnx or onnxruntime is missing.
        ExportError: the file is missing or not an ONNX model, its input/output names or output shape
            differ from the contract's, or ``n`` < 1.
    """
    _, ort = _require_onnx()
    if n < 1:
        raise ExportError(f"n must be >= 1 random observations, got {n}")
    obs_space, act_space = _check_model(model)
    path = Path(onnx_path)
    if not path.is_file():
        raise ExportError(f"no ONNX file at {str(path)!r}; write one with export_policy_onnx (flyby export)")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise ExportError(f"onnxruntime cannot load {str(path)!r}: {exc}") from exc
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ExportError(
            f"{str(path)!r} has inputs {names[0]} and outputs {names[1]}; a flyby policy has "
            f"[{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]: re-export it with export_policy_onnx"
        )
    obs = _check_batch(obs_space, obs_rms, clip_obs, epsilon, n, seed)
    expected, _ = model.predict(
        normalize_observations(obs, obs_rms, clip_obs=clip_obs, epsilon=epsilon), deterministic=True
    )
    got = session.run([OUTPUT_NAME], {INPUT_NAME: obs})[0]
    single = session.run([OUTPUT_NAME], {INPUT_NAME: obs[:1]})[0]
    want_shape = (obs.shape[0], act_space.shape[0])
    if got.shape != want_shape or single.shape != (1, act_space.shape[0]) or got.dtype != np.float32:
        raise ExportError(
            f"{str(path)!r} returned {got.dtype} {got.shape} for {obs.shape[0]} observations (and "
            f"{single.shape} for 1); expected float32 {want_shape}: re-export it with export_policy_onnx"
        )
    diff = np.abs(np.concatenate([got, single]) - np.concatenate([expected, expected[:1]]))
    return float("inf") if np.isnan(diff).any() else float(diff.max())


# ------------------------------------------------------------------------------------------ the contract


def _doc_table(doc: str, first_cell: str) -> list[list[str]]:
    """Rows (cells stripped) of the Markdown table in ``doc`` whose header starts with ``first_cell``.

    Continuation rows (empty first cell) are kept; the separator row is dropped.
    """
    rows, inside = [], False
    for line in doc.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if inside:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not inside:
            inside = cells[0] == first_cell
            continue
        if all(set(c) <= set("-") for c in cells):
            continue
        rows.append(cells)
    return rows


def observation_slices(layout: Any) -> list[tuple[str, slice]]:
    """The named slices of an :class:`~flyby.mdp.observations.ObsLayout`, in observation order."""
    from flyby.mdp.observations import ObsLayout

    named = []
    for name, attr in vars(ObsLayout).items():
        if isinstance(attr, cached_property):
            value = getattr(layout, name)
            if isinstance(value, slice):
                named.append((name, value))
    return sorted(named, key=lambda item: item[1].start)


def _observation_contract(env_cfg: Any) -> dict[str, Any]:
    """The ``observation`` section: named slices with content, normalisation and scales."""
    import flyby.mdp.observations as obs_mdp
    from flyby.envs.isr_task import observation_layout

    layout = observation_layout(env_cfg)
    table: dict[str, dict[str, str]] = {}
    last = None
    for name, _size, content, norm in _doc_table(obs_mdp.__doc__, "slice"):
        if name.startswith("layout."):
            last = name.removeprefix("layout.")
            table[last] = {"content": content, "normalised_by": norm}
        elif not name and last is not None:  # continuation line of the row above
            row = table[last]
            row["content"] = f"{row['content']} {content}".strip()
            row["normalised_by"] = f"{row['normalised_by']} {norm}".strip()
    # Scales turning a normalised entry back into SI units (flyby.envs.isr_task: pos_scale, vel_scale).
    half_x, half_y = (0.5 * float(s) for s in env_cfg.world.size_m)
    max_alt = float(env_cfg.terminations.max_altitude_m)
    scales = {
        "pos": ([half_x, half_y, max_alt], "m"),
        "vel": ([float(v) for v in env_cfg.actions.vel_scale], "m/s"),
        "clearance": ([max_alt] * 9, "m"),
    }
    match = re.search(r"Each detection slot holds ``\[([^\]]+)\]``", obs_mdp.__doc__)
    det_fields = [f.strip() for f in match.group(1).split(",")] if match else []
    slot_note = " ".join(obs_mdp.__doc__[match.start() :].split("\n\n")[0].split()) if match else ""
    if len(det_fields) != obs_mdp.DET_FIELDS:
        raise ExportError(
            f"flyby.mdp.observations' docstring lists detection fields {det_fields}, "
            f"DET_FIELDS is {obs_mdp.DET_FIELDS}: fix the docstring"
        )
    slices = []
    for name, sl in observation_slices(layout):
        if name not in table:
            raise ExportError(
                f"ObsLayout.{name} has no row in flyby.mdp.observations' docstring table: add one"
            )
        entry = {"name": name, "start": sl.start, "stop": sl.stop, "size": sl.stop - sl.start, **table[name]}
        if name in scales:
            entry["scale"], entry["scale_unit"] = scales[name]
            entry["to_si"] = f"obs[{sl.start}:{sl.stop}] * scale = {name} in {scales[name][1]}"
        if name == "detections":
            entry.update(slots=layout.top_k, fields_per_slot=det_fields, slot_note=slot_note)
        slices.append(entry)
    for name, width in layout.extra:  # observation terms of the user's own, after the built-in groups
        sl = layout.term(name)
        slices.append(
            {
                "name": name,
                "start": sl.start,
                "stop": sl.stop,
                "size": width,
                "content": f"observation term {name!r} of the env config (observations.terms)",
                "normalised_by": "the term's own function (clipped to [-1, 1] by the env)",
            }
        )
    return {
        "dim": layout.dim,
        "top_k": layout.top_k,
        "range": [-1.0, 1.0],
        "unit": "dimensionless: every entry is normalised and clipped to [-1, 1] by the env",
        "frame": "world ENU (x east, y north, z up); yaw counter-clockwise from east (+x), about +z",
        "source": "flyby.mdp.observations.build_observation",
        "slices": slices,
    }


def _action_contract(env_cfg: Any) -> dict[str, Any]:
    """The ``action`` section: channel names, units, frames and scale numbers of the shared action."""
    import flyby.mdp.actions as act_mdp

    act = env_cfg.actions
    vel_w, yaw_rate = act.scale(np.eye(act_mdp.ACTION_DIM))
    scale = [float(vel_w[i, i]) for i in range(3)] + [float(yaw_rate[act_mdp.ACT_YAW_RATE])]
    rows = _doc_table(act_mdp.__doc__, "index")
    if [int(r[0]) for r in rows] != list(range(act_mdp.ACTION_DIM)):
        raise ExportError(
            f"flyby.mdp.actions' docstring table has rows {[r[0] for r in rows]}, "
            f"expected 0..{act_mdp.ACTION_DIM - 1}: fix the docstring"
        )
    channels = [
        {
            "index": int(idx),
            "name": name,
            "scaled_by": how,
            "scale": scale[int(idx)],
            "unit": unit,
            "frame": frame,
        }
        for idx, name, how, unit, frame in rows
    ]
    return {
        "dim": act_mdp.ACTION_DIM,
        "names": [c["name"] for c in channels],
        "range": [-1.0, 1.0],
        "clipped_in_graph": True,
        "meaning": "normalised velocity + yaw-rate setpoint; setpoint = action * scale (per channel). "
        "Velocity in world ENU; yaw rate counter-clockwise positive (about +z up). PX4 offboard: "
        "SET_POSITION_TARGET_LOCAL_NED type_mask 1479 after ENU -> NED (vx_ned = vy, vy_ned = vx, "
        "vz_ned = -vz, yaw_rate_ned = -yaw_rate; flyby.px4.frames)",
        "channels": channels,
        "scale_source": {
            "config": "flyby.mdp.actions.ActionCfg (the env config's actions)",
            "function": "flyby.mdp.actions.ActionCfg.scale",
            "max_velocity_m_s": float(act.max_velocity),
            "max_vertical_velocity_m_s": float(act.max_vertical_velocity),
            "max_yaw_rate_deg_s": float(act.max_yaw_rate),
        },
    }


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("flyby", "torch", "stable_baselines3", "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            out[name] = None
    return out


def build_contract(
    model: Any,
    *,
    env_cfg: Any,
    env_label: str,
    normalizer: dict[str, Any],
    opset: int,
    sha256: str,
    max_abs_diff: float,
) -> dict[str, Any]:
    """The ``policy_contract.json`` content (schema ``flyby.policy_contract`` version 1) as a dict.

    Raises:
        ExportError: ``env_cfg`` lacks a field the contract states (step_dt, observations, dynamics,
            world, terminations).
    """
    try:
        step_dt = float(env_cfg.step_dt)
        observation = _observation_contract(env_cfg)
        action = _action_contract(env_cfg)
    except AttributeError as exc:
        raise ExportError(
            f"env_cfg {type(env_cfg).__name__} lacks {exc.name!r}; pass a flyby env config "
            "(e.g. load_evaluation_cfg().px4_env)"
        ) from exc
    obs_dim = model.policy.observation_space.shape[0]
    return {
        "schema": CONTRACT_SCHEMA,
        "version": CONTRACT_VERSION,
        "onnx": {"file": ONNX_NAME, "sha256": sha256, "opset": opset, "exporter": "torch.onnx (TorchScript)"},
        "algorithm": _algorithm_name(model),
        "deterministic": True,
        "inputs": [
            {
                "name": INPUT_NAME,
                "dtype": "float32",
                "shape": ["batch", obs_dim],
                "description": "raw env observation, exactly as the env returns it (the normaliser is "
                "inside the graph)",
            }
        ],
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "dtype": "float32",
                "shape": ["batch", action["dim"]],
                "description": "deterministic normalised action in [-1, 1]; multiply by action.channels"
                "[i].scale for the setpoint",
            }
        ],
        "observation": observation,
        "normalizer": normalizer,
        "action": action,
        "control": {
            "rate_hz": 1.0 / step_dt,
            "step_dt_s": step_dt,
            "env": env_label,
            "note": "one action per control step; the setpoint is held until the next one",
        },
        "check": {
            "max_abs_diff": max_abs_diff,
            "tolerance": TOLERANCE,
            "runtime": "onnxruntime (CPU)",
            "against": "stable_baselines3 model.predict(normalized_obs, deterministic=True)",
        },
        "versions": _versions(),
    }


# ---------------------------------------------------------------------------------------------- export


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _make_out_dir(out_dir: Path) -> bool:
    """Create ``out_dir`` (and parents); True when this call created it.

    Raises:
        ExportError: it cannot be created or written (names the path and the OS error).
    """
    existed = out_dir.is_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=out_dir)
        probe.close()
    except OSError as exc:
        raise ExportError(
            f"cannot write to export folder {str(out_dir)!r}: {exc.strerror or exc}; pass a writable --out"
        ) from exc
    return not existed


def export_policy_onnx(
    model: Any,
    out_dir: str | Path,
    *,
    obs_rms: Any = None,
    clip_obs: float = 10.0,
    epsilon: float = 1e-8,
    env_cfg: Any = None,
    opset: int = 17,
) -> ExportResult:
    """Write ``policy.onnx`` (normaliser folded in) and ``policy_contract.json`` into ``out_dir``.

    The graph maps the raw observation ``obs`` (batch, obs_dim) float32 to ``action`` (batch, 4)
    float32, SB3's deterministic action in [-1, 1] (module docstring). It is checked with
    onnxruntime against ``model.predict`` (:func:`check_onnx_policy`) before either file is
    written; both are written atomically (temporary file + ``os.replace``).

    Args:
        model: SB3 ``PPO`` or ``SAC`` with an MlpPolicy on Box spaces (any device; exported on CPU).
        out_dir: folder to write into (created with parents).
        obs_rms: the ``VecNormalize.obs_rms`` (``RunningMeanStd``) the policy was trained with, or
            None (no normaliser); :func:`flyby.training.policy_io.load_policy` reads it from a run.
        clip_obs: ``VecNormalize.clip_obs``.
        epsilon: ``VecNormalize.epsilon``.
        env_cfg: config of the env the policy will fly in (step_dt gives the control rate; its
            dynamics the action scale; its observations the layout); default: the packaged
            evaluation config's ``px4_env`` (flyby/PX4ISR-v0).
        opset: ONNX opset, 13 .. the exporter's maximum (20 for this torch).

    Returns:
        :class:`ExportResult` with both paths and the checked max abs difference.

    Raises:
        ExportError: unsupported model or spaces, observation size not the env's, bad normaliser,
            unwritable ``out_dir``, an export torch cannot do, or a check difference > 1e-5.
        DependencyNotInstalled: torch/stable-baselines3 (``flyby[train]``) or onnx/onnxruntime missing.
    """
    onnx, _ = _require_onnx()
    max_opset = _max_opset()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset:
        raise ExportError(
            f"opset must be an int in {MIN_OPSET}..{max_opset} (this torch's TorchScript "
            f"exporter), got {opset!r}; the default 17 is read by every onnxruntime since 1.13"
        )
    if env_cfg is not None:
        env_label = f"{type(env_cfg).__module__}.{type(env_cfg).__qualname__} (given)"
    else:
        from flyby.config.evaluation import load_evaluation_cfg

        env_cfg = load_evaluation_cfg().px4_env
        env_label = "flyby/PX4ISR-v0 (packaged evaluation_config.yaml)"
    try:
        from flyby.envs.isr_task import observation_layout

        obs_dim = observation_layout(env_cfg).dim
    except AttributeError as exc:
        raise ExportError(
            f"env_cfg {type(env_cfg).__name__} has no observations.top_k; pass a flyby env "
            "config (e.g. load_evaluation_cfg().px4_env)"
        ) from exc
    obs_space, _ = _check_model(model, obs_dim)
    mean = std = None
    if obs_rms is not None:
        mean, std = _normalizer_arrays(obs_rms, obs_space.shape, clip_obs, epsilon)
    module = _deterministic_policy_module(model, mean, std, float(clip_obs))

    out_dir = Path(out_dir)
    created = _make_out_dir(out_dir)
    onnx_path, contract_path = out_dir / ONNX_NAME, out_dir / CONTRACT_NAME
    tmp_onnx = Path(tempfile.mkstemp(prefix=f".{ONNX_NAME}.", suffix=".tmp", dir=out_dir)[1])
    tmp_contract = Path(tempfile.mkstemp(prefix=f".{CONTRACT_NAME}.", suffix=".tmp", dir=out_dir)[1])
    try:
        _export_graph(module, obs_dim, tmp_onnx, opset)
        try:
            onnx.checker.check_model(str(tmp_onnx))
        except Exception as exc:  # onnx.checker.ValidationError and friends
            raise ExportError(f"the exported graph is not valid ONNX: {exc}") from exc
        diff = check_onnx_policy(tmp_onnx, model, obs_rms, clip_obs=clip_obs, epsilon=epsilon)
        if not diff <= TOLERANCE:
            raise ExportError(
                f"onnxruntime's actions differ from SB3's by up to {diff:.3g} (> {TOLERANCE:g}) on the check "
                "batch; nothing was written. Report this with the model: the graph does not match "
                "model.predict(deterministic=True)"
            )
        normalizer = {
            "folded": obs_rms is not None,
            "kind": "stable_baselines3 VecNormalize (observations)" if obs_rms is not None else None,
            "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs), in float64"
            if obs_rms is not None
            else "none: the policy takes the raw observation",
            "clip_obs": float(clip_obs) if obs_rms is not None else None,
            "epsilon": float(epsilon) if obs_rms is not None else None,
            "note": "inside policy.onnx: feed the raw observation, do not normalise it again",
        }
        contract = build_contract(
            model,
            env_cfg=env_cfg,
            env_label=env_label,
            normalizer=normalizer,
            opset=opset,
            sha256=_sha256(tmp_onnx),
            max_abs_diff=diff,
        )
        tmp_contract.write_text(json.dumps(contract, indent=2) + "\n")
        for tmp in (tmp_onnx, tmp_contract):
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp_onnx, onnx_path)
        os.replace(tmp_contract, contract_path)
    except BaseException:
        tmp_onnx.unlink(missing_ok=True)
        tmp_contract.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty: an existing folder and its files are never touched
        raise
    logger.info(
        "wrote %s and %s (%s, max |onnxruntime - SB3| %.2g)",
        onnx_path,
        contract_path,
        contract["algorithm"],
        diff,
    )
    return ExportResult(onnx_path=onnx_path, contract_path=contract_path, max_abs_diff=diff)


# ---------------------------------------------------------------------------------------------- CLI


def load_policy_bundle(model_zip: str | Path, vecnormalize: str | Path | None = None) -> Any:
    """The :class:`~flyby.training.policy_io.LoadedPolicy` of a model zip, optionally with another normaliser.

    Without ``vecnormalize`` this is :func:`flyby.training.policy_io.load_policy` (``vecnormalize.pkl``
    and ``model.json`` beside the zip). With it, the zip (and its ``model.json``) are loaded as a bundle
    with that file as ``vecnormalize.pkl``, so every check of ``load_policy`` applies to it too.

    Raises:
        ModelLoadError: what :func:`~flyby.training.policy_io.load_policy` raises (missing or foreign
            model, a normaliser that is missing, corrupt or of another shape); the message names the file.
    """
    import shutil

    from flyby.errors import ModelLoadError
    from flyby.training.policy_io import MODEL_JSON, VECNORMALIZE_PKL, load_policy

    if vecnormalize is None:
        return load_policy(model_zip)
    zip_path, pkl_path = Path(model_zip), Path(vecnormalize)
    for path, what in ((zip_path, "model"), (pkl_path, "VecNormalize statistics")):
        if not path.is_file():
            raise ModelLoadError(f"no {what} at {str(path)!r}; pass the file written by `flyby train`", path)
    with tempfile.TemporaryDirectory(prefix="flyby_export_") as tmp:
        bundle = Path(tmp)
        shutil.copyfile(zip_path, bundle / "model.zip")
        shutil.copyfile(pkl_path, bundle / VECNORMALIZE_PKL)
        summary = zip_path.with_suffix(".json")  # <stem>.json: model.json for model.zip
        if summary.is_file():
            shutil.copyfile(summary, bundle / MODEL_JSON)
        try:
            return load_policy(bundle / "model.zip")
        except ModelLoadError as exc:  # name the user's files, not the temporary copies
            real = {
                str(bundle / "model.zip"): zip_path,
                str(bundle / VECNORMALIZE_PKL): pkl_path,
                str(bundle / MODEL_JSON): summary,
            }
            message = str(exc)
            for copy_path, original in real.items():
                message = message.replace(copy_path, str(original))
            raise ModelLoadError(message, real.get(str(exc.path), exc.path)) from exc


def _cmd_export(args: argparse.Namespace) -> int:
    policy = load_policy_bundle(args.model, args.vecnormalize)
    result = export_policy_onnx(
        policy.model,
        args.out,
        obs_rms=policy.obs_rms,
        clip_obs=policy.clip_obs,
        epsilon=policy.epsilon,
        opset=args.opset,
    )
    contract = json.loads(result.contract_path.read_text())
    folded = "no normaliser"
    if policy.obs_rms is not None:
        folded = f"normaliser folded in (clip_obs {policy.clip_obs:g})"
    print(
        f"{contract['algorithm']} policy {args.model} -> {result.onnx_path} ({folded}; "
        f"opset {args.opset}); contract {result.contract_path}"
    )
    scales = ", ".join(f"{c['name']} {c['scale']:.4g} {c['unit']}" for c in contract["action"]["channels"])
    print(
        f"onnxruntime vs SB3: max |diff| {result.max_abs_diff:.2g} (tolerance {TOLERANCE:g}); control "
        f"{contract['control']['rate_hz']:g} Hz; action scale {scales}"
    )
    return 0


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``flyby export MODEL_ZIP --out DIR [--vecnormalize PKL] [--opset N]`` to argparse subparsers."""
    p = subparsers.add_parser(
        "export", help="write policy.onnx (normaliser folded in) and policy_contract.json for deployment"
    )
    p.add_argument(
        "model",
        help="SB3 model zip (PPO or SAC, from `flyby train`); without --vecnormalize "
        "also a run folder holding training/model.zip",
    )
    p.add_argument("--out", required=True, help="folder for policy.onnx and policy_contract.json")
    p.add_argument(
        "--vecnormalize",
        default=None,
        help="VecNormalize statistics (VecNormalize.save()); default: vecnormalize.pkl beside the "
        "model, when model.json or the file says it normalised observations",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=17,
        help=f"ONNX opset, {MIN_OPSET} to the torch exporter's maximum (20 for torch 2.14; default 17)",
    )
    p.set_defaults(func=_cmd_export)
    return p
