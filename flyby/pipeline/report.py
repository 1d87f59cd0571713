"""The HTML report of one pipeline run: ``output/reports/<NAME>_report.html``, readable offline.

It reads the artefacts of a run folder ``output/runs/<NAME>/`` (formats below) and writes one HTML
file with:

1. a header: run name, dates, flight stack, simulator backend, and the verdict line (targets found by
   the trained policy against the patrol baseline, with 95 % confidence intervals);
2. training curves over env steps (mean return, episode length, targets found, throughput, and one
   panel per ``Episode_Return/<term>`` column of ``training/progress.csv``: a term's mean episode
   sum; its ``Episode_Reward/<term>`` column is the same divided by ``episode_length_s``, as IsaacLab
   logs it);
3. the evaluation table (every policy with its interval beside the baselines) and a bar plot of
   mean return and targets found with 95 % CI error bars;
4. the detection metrics (precision, recall, tp/fp/fn, mode);
5. a top-down plot of the evaluation tracks over the map (buildings, targets by class, one colour per
   policy, found targets ringed);
6. the validation video;
7. the manifest: stages with status and wall time, versions, machine, git, and the config.

Offline by construction: figures are PNG data URIs, the CSS is inline, there is no script and no
link outside the report's folder. The video is the one exception to embedding (a base64 video makes
big reports crash browsers): it is copied, atomically, to ``<NAME>_report_assets/validation.mp4``
beside the report and referenced relatively. The HTML itself is written atomically too (a temporary
file, then ``os.replace``), so a reader never sees half a report.

A missing optional artefact (no video yet, no detection block, a CSV with no rows, no tracks) gives a
visible "not available: <why>" section; a malformed one raises :class:`RunArtefactError` naming the
file and listing every problem found in it. Only ``manifest.json`` is required: it is what makes a
folder a run.

Artefacts read (paths relative to the run folder)::

    manifest.json               schema "flyby.run/1": name, created_utc, stages, config, versions, ...
    training/progress.csv       env_steps,wall_s,fps,ep_rew_mean,ep_len_mean,targets_found_mean,
                                Episode_Reward/<term>,...,Episode_Return/<term>,...
                                (empty cell = not logged at that row)
    training/model.json         training summary: algorithm, env_id, env_steps, ...
    evaluation/metrics.json     schema "flyby.evaluation/1": policies, detection
    evaluation/tracks.json      half_extent_m, buildings, targets, episodes (world ENU, metres)
    video/validation.mp4        H.264 MP4

Example::

    from flyby.pipeline.report import write_report

    path = write_report(Path("output/runs/demo"))   # -> output/reports/demo_report.html

or ``flyby report output/runs/demo [--out PATH]``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import html
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from flyby.errors import DependencyNotInstalled, FlybyError
from flyby.pipeline import plots  # matplotlib itself is imported only when a figure is drawn
from flyby.utils.atomic import atomic_write_bytes

__all__ = [
    "EVALUATION_SCHEMA",
    "RUN_SCHEMA",
    "EvaluationMetrics",
    "PolicyMetrics",
    "RunArtefactError",
    "RunManifest",
    "TrainingProgress",
    "Tracks",
    "add_report_parser",
    "default_report_path",
    "read_manifest",
    "read_metrics",
    "read_progress",
    "read_tracks",
    "write_report",
]

log = logging.getLogger(__name__)

RUN_SCHEMA = "flyby.run/1"
EVALUATION_SCHEMA = "flyby.evaluation/1"
# The four of the run format, plus what flyby.pipeline.run writes while a stage runs or after Ctrl-C:
# a report of an interrupted run shows that rather than refusing the manifest.
STAGE_STATUSES = ("done", "skipped", "failed", "pending", "running", "interrupted")
REWARD_PREFIX = "Episode_Return/"  # per-term mean episode sums (flyby.envs.isr_task.ISRTask)
REQUIRED_CSV_COLUMNS = ("env_steps", "ep_rew_mean", "ep_len_mean")
MANIFEST = "manifest.json"
PROGRESS_CSV = "training/progress.csv"
MODEL_JSON = "training/model.json"
METRICS_JSON = "evaluation/metrics.json"
TRACKS_JSON = "evaluation/tracks.json"
VIDEO_MP4 = "video/validation.mp4"
_MAX_LISTED_PROBLEMS = 12  # a broken CSV can have thousands; list the first ones and count the rest


class RunArtefactError(FlybyError, ValueError):
    """An artefact of a pipeline run is missing where it is required, unreadable or not in its format.

    The message names the file, lists every problem found in it (dotted JSON path or CSV line and
    column, the value received, what was expected) and says which stage rewrites it.

    Attributes:
        path: the file (or run folder) at fault.
        problems: one line per problem.
    """

    def __init__(self, path: str | os.PathLike[str], problems: list[str] | str, fix: str = "") -> None:
        self.path = Path(path)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.fix = fix
        shown = self.problems[:_MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = "\n".join(f"  - {p}" for p in shown) + (f"\n  ... and {more} more" if more > 0 else "")
        tail = f"\n{fix}" if fix else ""
        super().__init__(f"{self.path}: {len(self.problems)} problem(s):\n{lines}{tail}")

    def __reduce__(self):  # picklable across processes with its attributes
        return type(self), (self.path, self.problems, self.fix)


MANIFEST_STAGE = "manifest"  # not a stage: the pipeline writes the manifest before its first stage


def _rerun(stage: str) -> str:
    if stage == MANIFEST_STAGE:
        return "Fix: re-run `flyby pipeline NAME`, which rewrites the manifest first (or restore the file)."
    return (
        f"Fix: re-run the pipeline's {stage!r} stage to rewrite it "
        "(or restore the file from the run that made it)."
    )


# --------------------------------------------------------------------------------------------------
# Reading and checking the artefacts
# --------------------------------------------------------------------------------------------------

_MISSING = object()


class _Checker:
    """Typed access to a parsed JSON document that collects every problem before raising."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = path
        self.stage = stage
        self.problems: list[str] = []

    def get(
        self,
        obj: Any,
        key: str,
        kind: str,
        where: str,
        *,
        required: bool = True,
        nullable: bool = False,
        default: Any = None,
    ) -> Any:
        """``obj[key]`` if it has ``kind`` (str, int, number, bool, dict, list), else ``default``
        with a problem recorded (a missing optional key or an allowed null records none)."""
        path = f"{where}.{key}" if where else key
        if not isinstance(obj, dict):
            return default
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            if required:
                self.problems.append(f"{path}: missing (expected {_KIND_WORDS[kind]})")
            return default
        if value is None and nullable:
            return None
        if not _is_kind(value, kind):
            self.problems.append(f"{path}: expected {_KIND_WORDS[kind]}, got {_show(value)}")
            return default
        return value

    def number_pair(self, obj: Any, key: str, where: str, *, allow_nan: bool = False) -> tuple[float, float]:
        """``obj[key]`` as two numbers ``[lo, hi]``; with ``allow_nan`` a null pair or null/NaN bounds
        read as NaN (an interval of one episode)."""
        path = f"{where}.{key}" if where else key
        if not isinstance(obj, dict):
            return (math.nan, math.nan)
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            self.problems.append(f"{path}: missing (expected two numbers [lo, hi])")
            return (math.nan, math.nan)
        if value is None and allow_nan:  # JSON has no NaN: an interval of one episode is written as null
            return (math.nan, math.nan)
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(
                (_is_kind(v, "number") and (allow_nan or math.isfinite(v))) or (allow_nan and v is None)
                for v in value
            )
        )
        if not ok:
            expected = (
                "two numbers [lo, hi] (null or NaN for one episode)" if allow_nan else "two finite numbers"
            )
            self.problems.append(f"{path}: expected {expected}, got {_show(value)}")
            return (math.nan, math.nan)
        return tuple(math.nan if v is None else float(v) for v in value)  # type: ignore[return-value]

    def finite(
        self,
        obj: Any,
        key: str,
        where: str,
        *,
        required: bool = True,
        lo: float | None = None,
        hi: float | None = None,
    ) -> float:
        """``obj[key]`` as a finite float within [lo, hi] when given; NaN (and a problem) otherwise."""
        value = self.get(obj, key, "number", where, required=required, default=None)
        if value is None:
            return math.nan
        path = f"{where}.{key}" if where else key
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = (
                f" in [{lo}, {hi}]"
                if lo is not None and hi is not None
                else (f" >= {lo}" if lo is not None else "")
            )
            self.problems.append(f"{path}: expected a finite number{bounds}, got {_show(value)}")
            return math.nan
        return float(value)

    def count(self, obj: Any, key: str, where: str, *, required: bool = True) -> int:
        """``obj[key]`` as a non-negative integer; 0 (and a problem) otherwise."""
        value = self.get(obj, key, "int", where, required=required, default=None)
        if value is None:
            return 0
        if value < 0:
            self.problems.append(
                f"{(where + '.') if where else ''}{key}: expected a non-negative integer, got {value}"
            )
            return 0
        return int(value)

    def check(self) -> None:
        """Raise :class:`RunArtefactError` with every problem recorded, if any."""
        if self.problems:
            raise RunArtefactError(self.path, self.problems, _rerun(self.stage))


_KIND_WORDS = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "dict": "an object",
    "list": "a list",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "bool": bool, "dict": dict, "list": list}[kind])


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_json(path: Path, stage: str) -> dict[str, Any]:
    """Parse ``path`` as a JSON object.

    Raises:
        RunArtefactError: missing, unreadable, not JSON or not an object (names the line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunArtefactError(path, "does not exist", _rerun(stage)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunArtefactError(path, f"cannot be read: {exc}", _rerun(stage)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunArtefactError(
            path, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", _rerun(stage)
        ) from exc
    if not isinstance(data, dict):
        raise RunArtefactError(
            path, f"expected a JSON object at the top level, got {type(data).__name__}", _rerun(stage)
        )
    return data


def _check_schema(checker: _Checker, data: dict[str, Any], expected: str) -> None:
    schema = checker.get(data, "schema", "str", "")
    if schema is not None and schema != expected:
        checker.problems.append(f"schema: expected {expected!r}, got {schema!r}")


@dataclass(kw_only=True)
class RunManifest:
    """``manifest.json`` of a run (schema ``flyby.run/1``); optional blocks absent from the file are empty."""

    name: str  # run name, the folder's name under output/runs/
    created_utc: str  # ISO 8601, UTC
    stages: dict[str, dict[str, Any]]  # stage -> {"status": done|skipped|failed|pending, "wall_s": s, ...}
    config: dict[str, Any] = field(default_factory=dict)  # the pipeline config, as run
    config_hash: str = ""
    git: dict[str, Any] = field(default_factory=dict)  # {"commit": str, "dirty": bool}
    versions: dict[str, Any] = field(default_factory=dict)  # package -> version (None: not installed)
    backend: str = ""  # simulator backend, e.g. "mujoco"
    flight_stack: str = ""  # "px4" or "cascade"
    flight_stack_label: str = ""  # the flight stack in words
    px4_version: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)  # cpu, cores, memory_gb, gpu


def read_manifest(path: str | os.PathLike[str]) -> RunManifest:
    """Read and check a run's ``manifest.json``.

    Raises:
        RunArtefactError: missing, not JSON, wrong schema, or a field of the wrong type (all listed).
    """
    path = Path(path)
    data = _load_json(path, MANIFEST_STAGE)
    c = _Checker(path, MANIFEST_STAGE)
    _check_schema(c, data, RUN_SCHEMA)
    stages = c.get(data, "stages", "dict", "", default={})
    for stage, info in stages.items():
        if not isinstance(info, dict):
            c.problems.append(f"stages.{stage}: expected an object with a status, got {_show(info)}")
            continue
        status = c.get(info, "status", "str", f"stages.{stage}")
        if status is not None and status not in STAGE_STATUSES:
            c.problems.append(
                f"stages.{stage}.status: expected one of {list(STAGE_STATUSES)}, got {status!r}"
            )
        c.finite(info, "wall_s", f"stages.{stage}", required=False, lo=0.0)
        for key in ("started_utc", "finished_utc"):
            c.get(info, key, "str", f"stages.{stage}", required=False, nullable=True)
    manifest = RunManifest(
        name=c.get(data, "name", "str", "", default=""),
        created_utc=c.get(data, "created_utc", "str", "", default=""),
        stages=stages,
        config=c.get(data, "config", "dict", "", required=False, default={}),
        config_hash=c.get(data, "config_hash", "str", "", required=False, default=""),
        git=c.get(data, "git", "dict", "", required=False, default={}),
        versions=c.get(data, "versions", "dict", "", required=False, default={}),
        backend=c.get(data, "backend", "str", "", required=False, default=""),
        flight_stack=c.get(data, "flight_stack", "str", "", required=False, default=""),
        flight_stack_label=c.get(data, "flight_stack_label", "str", "", required=False, default=""),
        px4_version=c.get(data, "px4_version", "str", "", required=False, nullable=True),
        machine=c.get(data, "machine", "dict", "", required=False, default={}),
    )
    c.get(manifest.git, "commit", "str", "git", required=False)
    c.get(manifest.git, "dirty", "bool", "git", required=False)
    c.check()
    return manifest


@dataclass(kw_only=True)
class TrainingProgress:
    """``training/progress.csv``: one row per log point, every column as float64 (NaN = empty cell)."""

    env_steps: np.ndarray  # (T,) float64 env steps at each log point
    columns: dict[str, np.ndarray]  # column name -> (T,) float64, in the file's column order

    @property
    def rows(self) -> int:
        """Number of log points T."""
        return int(self.env_steps.size)

    @property
    def reward_terms(self) -> dict[str, np.ndarray]:
        """``Episode_Return/<term>`` columns (mean episode sums), keyed by ``<term>``, in the file's order."""
        return {k[len(REWARD_PREFIX) :]: v for k, v in self.columns.items() if k.startswith(REWARD_PREFIX)}

    def column(self, name: str) -> np.ndarray:
        """Column ``name``, or all NaN when the file has no such column."""
        return self.columns.get(name, np.full(self.rows, np.nan))


def read_progress(path: str | os.PathLike[str]) -> TrainingProgress:
    """Read ``training/progress.csv``.

    An empty file or a header with no rows is a valid progress log with zero rows (training has
    not logged yet). Empty cells read as NaN.

    Raises:
        RunArtefactError: missing or unreadable; a required column (``env_steps``, ``ep_rew_mean``,
            ``ep_len_mean``) absent or repeated; a row with another cell count than the header; a
            cell that is not a number; an empty or non-finite ``env_steps``. All problems at once.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except FileNotFoundError:
        raise RunArtefactError(path, "does not exist", _rerun("train")) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunArtefactError(path, f"cannot be read as CSV: {exc}", _rerun("train")) from exc
    lines = [line for line in lines if line]  # blank lines (a trailing newline) carry nothing
    if not lines:
        return TrainingProgress(env_steps=np.zeros(0), columns={})
    header = [h.strip() for h in lines[0]]
    problems = []
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header]
    if missing:
        problems.append(f"header: missing column(s) {missing}; the header is {header}")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        problems.append(f"header: column(s) {repeated} appear more than once")
    if problems:
        raise RunArtefactError(path, problems, _rerun("train"))
    values = np.full((len(lines) - 1, len(header)), np.nan)
    for i, row in enumerate(lines[1:]):
        line_no = i + 2
        if len(row) != len(header):
            problems.append(f"line {line_no}: {len(row)} cells, the header has {len(header)}")
            continue
        for j, cell in enumerate(row):
            cell = cell.strip()
            if not cell:
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                problems.append(f"line {line_no}, column {header[j]}: {_show(cell)} is not a number")
    steps = values[:, header.index("env_steps")]
    for i in np.flatnonzero(~np.isfinite(steps)):
        if len(lines[i + 1]) == len(header):
            problems.append(f"line {i + 2}, column env_steps: empty or not finite (env_steps is the x axis)")
    if problems:
        raise RunArtefactError(path, problems, _rerun("train"))
    return TrainingProgress(env_steps=steps, columns={h: values[:, j] for j, h in enumerate(header)})


@dataclass(kw_only=True)
class PolicyMetrics:
    """One policy's evaluation figures (a ``policies.<key>`` block of ``metrics.json``)."""

    key: str  # "trained", "zero", "random", "patrol", ...
    label: str  # name in reports
    n: int  # episodes
    mean_return: float
    ci95: tuple[float, float]  # Student-t 95 % CI of the mean return (NaN for n = 1)
    success_rate: float  # [0, 1]
    targets_mean: float  # mean targets found per episode
    targets_ci95: tuple[float, float]  # 95 % CI of targets_mean (NaN for n = 1)
    coverage_mean: float  # mean covered fraction of the ground, [0, 1]
    crashes: int  # episodes ended by a crash
    geofence_exits: int  # episodes ended by leaving the geofence


@dataclass(kw_only=True)
class EvaluationMetrics:
    """``evaluation/metrics.json`` (schema ``flyby.evaluation/1``)."""

    env_id: str
    flight_stack: str  # "px4" or "cascade"
    flight_stack_label: str
    px4_version: str | None
    perception_mode: str  # "ground_truth" or "yolo"
    seeds: list[int]
    episode_length_s: float  # s
    success_definition: str
    policies: list[PolicyMetrics]  # "trained" first, then the file's order
    # mode, precision, recall, tp, fp, fn, frames, iou_threshold; None: no detector was scored
    detection: dict[str, Any] | None
    detection_note: str = ""  # why there is no detection block, when the file says (optional key)

    def policy(self, key: str) -> PolicyMetrics | None:
        """The policy with ``key``, or None."""
        return next((p for p in self.policies if p.key == key), None)


def read_metrics(path: str | os.PathLike[str]) -> EvaluationMetrics:
    """Read and check ``evaluation/metrics.json``.

    Raises:
        RunArtefactError: missing, not JSON, wrong schema, no policies, or a field of the wrong
            type or out of range (rates in [0, 1], counts >= 0), all listed.
    """
    path = Path(path)
    data = _load_json(path, "evaluate")
    c = _Checker(path, "evaluate")
    _check_schema(c, data, EVALUATION_SCHEMA)
    seeds = c.get(data, "seeds", "list", "", default=[])
    if not all(_is_kind(s, "int") for s in seeds):
        c.problems.append(f"seeds: expected a list of integers, got {_show(seeds)}")
        seeds = []
    raw = c.get(data, "policies", "dict", "", default={})
    if "policies" in data and isinstance(raw, dict) and not raw:
        c.problems.append("policies: empty; expected at least the 'trained' policy")
    policies = []
    for key in sorted(raw, key=lambda k: k != "trained"):  # stable: trained first, then the file's order
        block, where = raw[key], f"policies.{key}"
        if not isinstance(block, dict):
            c.problems.append(f"{where}: expected an object, got {_show(block)}")
            continue
        targets = c.get(block, "targets_found", "dict", where, default={})
        coverage = c.get(block, "coverage", "dict", where, default={})
        policies.append(
            PolicyMetrics(
                key=key,
                label=c.get(block, "label", "str", where, default=key),
                n=c.count(block, "n", where),
                mean_return=c.finite(block, "mean_return", where),
                ci95=c.number_pair(block, "ci95", where, allow_nan=True),
                success_rate=c.finite(block, "success_rate", where, lo=0.0, hi=1.0),
                targets_mean=c.finite(targets, "mean", f"{where}.targets_found", lo=0.0),
                targets_ci95=c.number_pair(targets, "ci95", f"{where}.targets_found", allow_nan=True),
                coverage_mean=c.finite(coverage, "mean", f"{where}.coverage", lo=0.0, hi=1.0),
                crashes=c.count(block, "crashes", where),
                geofence_exits=c.count(block, "geofence_exits", where),
            )
        )
    detection = c.get(data, "detection", "dict", "", required=False, nullable=True)
    if detection is not None:
        c.get(detection, "mode", "str", "detection")
        for key in ("precision", "recall"):
            c.finite(detection, key, "detection", lo=0.0, hi=1.0)
        for key in ("tp", "fp", "fn"):
            c.count(detection, key, "detection")
        c.count(detection, "frames", "detection", required=False)
        c.finite(detection, "iou_threshold", "detection", required=False, lo=0.0, hi=1.0)
    metrics = EvaluationMetrics(
        env_id=c.get(data, "env_id", "str", "", default=""),
        flight_stack=c.get(data, "flight_stack", "str", "", default=""),
        flight_stack_label=c.get(data, "flight_stack_label", "str", "", default=""),
        px4_version=c.get(data, "px4_version", "str", "", required=False, nullable=True),
        perception_mode=c.get(data, "perception_mode", "str", "", default=""),
        seeds=[int(s) for s in seeds],
        episode_length_s=c.finite(data, "episode_length_s", "", lo=0.0),
        success_definition=c.get(data, "success_definition", "str", "", required=False, default=""),
        policies=policies,
        detection=detection,
        detection_note=c.get(data, "detection_note", "str", "", required=False, nullable=True) or "",
    )
    c.check()
    return metrics


@dataclass(kw_only=True)
class Tracks:
    """``evaluation/tracks.json``: the map and every evaluation episode's ground track, world ENU, metres."""

    half_extent_m: tuple[float, float]  # (hx, hy): the map spans [-hx, hx] x [-hy, hy]
    buildings: np.ndarray  # (B, 4) float64 [xmin, ymin, xmax, ymax]
    targets_xy: np.ndarray  # (K, 2) float64
    targets_cls: list[str]  # K class names ("vehicle", "person")
    episodes: list[tuple[str, int, np.ndarray, np.ndarray]]  # (policy, seed, xy (T, 2), found (F, 2))


def _points(c: _Checker, obj: Any, key: str, where: str) -> np.ndarray:
    """``obj[key]`` as an (N, 2) float64 array of finite [x, y] pairs."""
    value = c.get(obj, key, "list", where, default=[])
    ok = all(
        isinstance(p, list) and len(p) == 2 and all(_is_kind(v, "number") and math.isfinite(v) for v in p)
        for p in value
    )
    if not ok:
        bad = next(
            p
            for p in value
            if not (
                isinstance(p, list)
                and len(p) == 2
                and all(_is_kind(v, "number") and math.isfinite(v) for v in p)
            )
        )
        c.problems.append(f"{where}.{key}: expected a list of finite [x, y] pairs, got {_show(bad)} in it")
        return np.zeros((0, 2))
    return np.asarray(value, dtype=np.float64).reshape(-1, 2)


def read_tracks(path: str | os.PathLike[str]) -> Tracks:
    """Read and check ``evaluation/tracks.json``.

    Raises:
        RunArtefactError: missing, not JSON, a non-positive half extent, a building that is not
            ``[xmin, ymin, xmax, ymax]`` with min < max, a target without ``xy``/``cls``, an episode
            whose ``xy``/``found`` are not lists of [x, y] pairs; all listed.
    """
    path = Path(path)
    data = _load_json(path, "evaluate")
    c = _Checker(path, "evaluate")
    half = c.number_pair(data, "half_extent_m", "")
    if all(math.isfinite(h) for h in half) and min(half) <= 0:
        c.problems.append(f"half_extent_m: expected two positive numbers (m), got {list(half)}")
    buildings = []
    for i, b in enumerate(c.get(data, "buildings", "list", "", default=[])):
        ok = (
            isinstance(b, list) and len(b) == 4 and all(_is_kind(v, "number") and math.isfinite(v) for v in b)
        )
        if not ok or not (b[0] < b[2] and b[1] < b[3]):
            c.problems.append(
                f"buildings[{i}]: expected [xmin, ymin, xmax, ymax] with min < max (m), got {_show(b)}"
            )
            continue
        buildings.append(b)
    targets_xy, targets_cls = [], []
    for i, t in enumerate(c.get(data, "targets", "list", "", default=[])):
        if not isinstance(t, dict):
            c.problems.append(f"targets[{i}]: expected an object with xy and cls, got {_show(t)}")
            continue
        xy = c.number_pair(t, "xy", f"targets[{i}]")
        cls = c.get(t, "cls", "str", f"targets[{i}]", default="")
        targets_xy.append(xy)
        targets_cls.append(cls)
    episodes = []
    for i, e in enumerate(c.get(data, "episodes", "list", "", default=[])):
        where = f"episodes[{i}]"
        if not isinstance(e, dict):
            c.problems.append(f"{where}: expected an object, got {_show(e)}")
            continue
        policy = c.get(e, "policy", "str", where, default="")
        seed = c.get(e, "seed", "int", where, default=-1)
        episodes.append((policy, seed, _points(c, e, "xy", where), _points(c, e, "found", where)))
    c.check()
    return Tracks(
        half_extent_m=(float(half[0]), float(half[1])),
        buildings=np.asarray(buildings, dtype=np.float64).reshape(-1, 4),
        targets_xy=np.asarray(targets_xy, dtype=np.float64).reshape(-1, 2),
        targets_cls=targets_cls,
        episodes=episodes,
    )


def _check_mp4(path: Path) -> int:
    """Size of ``path`` in bytes after checking it starts like an MP4 (an ``ftyp`` box).

    Raises:
        RunArtefactError: unreadable, empty, or not an MP4.
    """
    try:
        with path.open("rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except OSError as exc:
        raise RunArtefactError(path, f"cannot be read: {exc}", _rerun("video")) from exc
    if len(head) < 12 or head[4:8] != b"ftyp":
        what = (
            "is empty" if size == 0 else f"is not an MP4 (no 'ftyp' box at the start; first bytes {head!r})"
        )
        raise RunArtefactError(path, what, _rerun("video"))
    return size


# --------------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------------


def default_report_path(run_dir: str | os.PathLike[str]) -> Path:
    """``output/reports/<NAME>_report.html`` for ``run_dir = output/runs/<NAME>``
    (output/ = ``run_dir.parents[1]``)."""
    run_dir = Path(os.path.abspath(run_dir))
    return run_dir.parents[1] / "reports" / f"{run_dir.name}_report.html"


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1240px; padding: 0 24px 48px; color: #1d2329; line-height: 1.45; }
h1 { margin: 24px 0 4px; font-size: 26px; }
h2 { margin-top: 36px; padding-bottom: 4px; border-bottom: 2px solid #d8dee4; font-size: 20px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
nav a { margin-right: 14px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
table.kv th { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.highlight td { background: #eef6ff; font-weight: 600; }
img { max-width: 100%; height: auto; border: 1px solid #e1e4e8; }
video { max-width: 100%; background: #000; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12.5px; }
.meta { color: #57606a; font-size: 14px; }
.na { background: #fff8e1; border-left: 4px solid #e0a800; padding: 8px 12px; margin: 8px 0; }
.verdict { font-size: 17px; padding: 10px 14px; margin: 12px 0; border-left: 6px solid #8c959f;
           background: #f6f8fa; }
.verdict.better { border-color: #1a7f37; background: #edf9f0; }
.verdict.worse { border-color: #cf222e; background: #fdf0f0; }
.status-done { color: #1a7f37; font-weight: 600; }
.status-failed, .status-interrupted { color: #cf222e; font-weight: 600; }
.status-skipped, .status-pending, .status-running { color: #8c959f; font-weight: 600; }
details summary { cursor: pointer; margin: 8px 0; }
"""


def _e(value: Any) -> str:
    """``value`` as escaped HTML text (every string that came from a file goes through here)."""
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _interval(lo: float, hi: float, spec: str = ".2f") -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "[— (n = 1)]"
    return f"[{format(lo, spec)}, {format(hi, spec)}]"


def _na(why: str) -> str:
    return f'<p class="na">not available: {_e(why)}</p>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></p>'


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[int] = (),
    raw: bool = False,
    highlight: Sequence[bool] = (),
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(
            f"<td{' class=num' if j in numeric else ''}>{cell if raw else _e(cell)}</td>"
            for j, cell in enumerate(row)
        )
        css = ' class="highlight"' if i < len(highlight) and highlight[i] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(rows: Iterable[Sequence[str]]) -> str:
    """A two-column name/value table without a header row; cells are escaped."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _seed_ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0..2, 5"`` (order kept)."""
    parts: list[str] = []
    start = prev = None
    for s in seeds:
        if prev is not None and s == prev + 1:
            prev = s
            continue
        if start is not None:
            parts.append(f"{start}..{prev}" if prev != start else str(start))
        start = prev = s
    if start is not None:
        parts.append(f"{start}..{prev}" if prev != start else str(start))
    return ", ".join(parts) or "none"


def _stage_note(manifest: RunManifest, stage: str) -> str:
    """``" (stage 'video': failed: <error>)"`` from the manifest, or ``""`` when it says nothing."""
    info = manifest.stages.get(stage)
    if not isinstance(info, dict):
        return ""
    extra = next((str(info[k]) for k in ("error", "reason", "message") if info.get(k)), "")
    return f" (stage {stage!r}: {info.get('status', '?')}{': ' + extra if extra else ''})"


def _plot_or_na(draw: Callable[[], bytes], alt: str) -> str:
    """The figure ``draw`` returns as an ``<img>``, or "not available" when matplotlib is missing."""
    try:
        return _img(draw(), alt)
    except DependencyNotInstalled as exc:
        return _na(f"{alt}: {exc}")


@dataclass(kw_only=True)
class _Run:
    """Everything read from one run folder; None where an optional artefact is absent (see ``why``)."""

    run_dir: Path
    manifest: RunManifest
    progress: TrainingProgress | None
    model: dict[str, Any] | None
    metrics: EvaluationMetrics | None
    tracks: Tracks | None
    video: Path | None
    why: dict[str, str]  # artefact -> why it is not available


def _read_run(run_dir: Path) -> _Run:
    if not run_dir.is_dir():
        raise RunArtefactError(run_dir, "is not a folder; pass a run folder, output/runs/<NAME>/")
    manifest_path = run_dir / MANIFEST
    if not manifest_path.is_file():
        raise RunArtefactError(
            manifest_path,
            "does not exist: a run folder holds the manifest.json the pipeline writes first",
            "Fix: pass a run folder output/runs/<NAME>/ made by the pipeline.",
        )
    manifest = read_manifest(manifest_path)
    if manifest.name and manifest.name != run_dir.name:
        log.warning(
            "manifest name %r differs from the run folder's name %r; the report is named after the folder",
            manifest.name,
            run_dir.name,
        )
    why: dict[str, str] = {}

    def optional(rel: str, stage: str, read: Callable[[Path], Any]) -> Any:
        path = run_dir / rel
        if not path.is_file():
            why[rel] = f"{rel} does not exist in {run_dir}{_stage_note(manifest, stage)}"
            return None
        return read(path)

    progress = optional(PROGRESS_CSV, "train", read_progress)
    model = optional(MODEL_JSON, "train", lambda p: _load_json(p, "train"))
    metrics = optional(METRICS_JSON, "evaluate", read_metrics)
    tracks = optional(TRACKS_JSON, "evaluate", read_tracks)
    video = optional(VIDEO_MP4, "video", lambda p: p if _check_mp4(p) else None)
    return _Run(
        run_dir=run_dir,
        manifest=manifest,
        progress=progress,
        model=model,
        metrics=metrics,
        tracks=tracks,
        video=video,
        why=why,
    )


def _verdict(metrics: EvaluationMetrics | None, why: str) -> str:
    """The header's verdict line: targets found by the trained policy against the patrol baseline."""
    if metrics is None:
        return f'<p class="verdict">Verdict not available: {_e(why)}</p>'
    trained, patrol = metrics.policy("trained"), metrics.policy("patrol")
    if trained is None or patrol is None:
        missing = " and ".join(k for k, p in (("trained", trained), ("patrol", patrol)) if p is None)
        return (
            f'<p class="verdict">Verdict not available: {METRICS_JSON} has no {_e(missing)} policy '
            f"(policies: {_e(', '.join(p.key for p in metrics.policies))})</p>"
        )
    diff = trained.targets_mean - patrol.targets_mean
    word, css = ("more", "better") if diff > 0 else (("fewer", "worse") if diff < 0 else ("as many", ""))
    resolved = all(math.isfinite(v) for v in (*trained.targets_ci95, *patrol.targets_ci95))
    if not resolved:
        spread = "no interval with one episode, so the difference is not resolved"
        css = ""
    elif trained.targets_ci95[0] > patrol.targets_ci95[1] or patrol.targets_ci95[0] > trained.targets_ci95[1]:
        spread = "the 95 % intervals do not overlap"
    else:
        spread = "the 95 % intervals overlap, so the difference is not resolved at this number of episodes"
        css = ""
    than = " than" if word != "as many" else " as"
    stack = metrics.flight_stack_label or metrics.flight_stack
    return (
        f'<p class="verdict {css}">Trained policy finds {_fmt(trained.targets_mean)} targets per episode '
        f"{_interval(*trained.targets_ci95)}, "
        f"patrol {_fmt(patrol.targets_mean)} {_interval(*patrol.targets_ci95)}: "
        f"<b>{word}{than} the patrol</b> ({_fmt(diff, '+.2f')}); {spread}. "
        f"{trained.n} vs {patrol.n} episodes under {_e(stack)}.</p>"
    )


def _header(run: _Run, title: str) -> str:
    m = run.manifest
    stack = m.flight_stack_label or m.flight_stack or (run.metrics.flight_stack_label if run.metrics else "")
    px4 = m.px4_version or (run.metrics.px4_version if run.metrics else None)
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows = [
        ("run", m.name or run.run_dir.name),
        ("created", m.created_utc or "not recorded"),
        ("report written", written),
        ("flight stack", (stack or "not recorded") + (f" (PX4 {px4})" if px4 else "")),
        ("simulator backend", m.backend or "not recorded"),
        ("run folder", str(run.run_dir)),
    ]
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("training", "Training"),
            ("evaluation", "Evaluation"),
            ("detection", "Detection"),
            ("tracks", "Tracks"),
            ("video", "Video"),
            ("manifest", "Manifest"),
        )
    )
    return (
        f"<h1>{_e(title)}</h1>\n"
        f"{_kv_table(rows)}\n"
        f"{_verdict(run.metrics, run.why.get(METRICS_JSON, ''))}\n<nav>{nav}</nav>"
    )


def _training_section(run: _Run) -> str:
    out = ['<h2 id="training">Training curves</h2>']
    if run.model is not None:
        model = run.model
        facts = [f"{k}: {model[k]}" for k in ("algorithm", "env_id", "env_steps") if k in model]
        if facts:
            out.append(f'<p class="meta">{_e("; ".join(facts))}</p>')
    p = run.progress
    if p is None:
        out.append(_na(run.why[PROGRESS_CSV]))
        return "\n".join(out)
    if p.rows == 0:
        out.append(_na(f"{PROGRESS_CSV} has no rows yet (training has not logged a rollout)"))
        return "\n".join(out)
    wall = p.column("wall_s")
    finite_wall = wall[np.isfinite(wall)]
    summary = f"{p.rows} log points up to {int(np.nanmax(p.env_steps)):,} env steps"
    if finite_wall.size:
        summary += f" in {finite_wall.max():.0f} s wall time"
    out.append(f'<p class="meta">{_e(summary)}. x axis: env steps (agent transitions, all drones).</p>')
    curves = {
        "mean episode return": p.column("ep_rew_mean"),
        "mean episode length, steps": p.column("ep_len_mean"),
    }
    if "targets_found_mean" in p.columns:
        curves["targets found per episode"] = p.columns["targets_found_mean"]
    if "fps" in p.columns:
        curves["throughput, env steps/s"] = p.columns["fps"]
    terms = p.reward_terms
    if not terms:
        out.append(_na(f"{PROGRESS_CSV} has no {REWARD_PREFIX}* columns (per-term rewards)"))
    out.append(
        _plot_or_na(
            lambda: plots.training_curves_png(p.env_steps, curves, terms),
            "training curves: return, episode length and per-term rewards over env steps",
        )
    )
    return "\n".join(out)


def _evaluation_section(run: _Run) -> str:
    out = ['<h2 id="evaluation">Evaluation</h2>']
    m = run.metrics
    if m is None:
        out.append(_na(run.why[METRICS_JSON]))
        return "\n".join(out)
    facts = [
        ("env", m.env_id),
        (
            "flight stack",
            (m.flight_stack_label or m.flight_stack) + (f" (PX4 {m.px4_version})" if m.px4_version else ""),
        ),
        ("perception", m.perception_mode),
        ("seeds", f"{_seed_ranges(m.seeds)} ({len(m.seeds)} episodes per policy)"),
        ("episode length", f"{_fmt(m.episode_length_s, 'g')} s"),
        ("success", m.success_definition or "not stated"),
    ]
    out.append(_kv_table(facts))
    rows = []
    for p in m.policies:
        rows.append(
            [
                f"{p.label} ({p.key})" if p.label != p.key else p.key,
                f"{_fmt(p.mean_return, '+.2f')} {_interval(*p.ci95, '+.2f')}",
                f"{_fmt(p.targets_mean)} {_interval(*p.targets_ci95)}",
                f"{_fmt(100 * p.coverage_mean, '.1f')} %",
                f"{_fmt(100 * p.success_rate, '.0f')} %",
                str(p.crashes),
                str(p.geofence_exits),
                str(p.n),
            ]
        )
    out.append(
        _table(
            [
                "policy",
                "mean return [95 % CI]",
                "targets found [95 % CI]",
                "coverage",
                "success rate",
                "crashes",
                "geofence exits",
                "episodes",
            ],
            rows,
            numeric=range(1, 8),
            highlight=[p.key == "trained" for p in m.policies],
        )
    )
    out.append(
        _plot_or_na(
            lambda: plots.evaluation_png(
                [p.key for p in m.policies],
                [p.label for p in m.policies],
                [p.mean_return for p in m.policies],
                [p.ci95 for p in m.policies],
                [p.targets_mean for p in m.policies],
                [p.targets_ci95 for p in m.policies],
            ),
            "mean return and targets found per policy with 95 % CI error bars",
        )
    )
    return "\n".join(out)


def _detection_section(run: _Run) -> str:
    out = ['<h2 id="detection">Detection</h2>']
    m = run.metrics
    if m is None:
        out.append(_na(run.why[METRICS_JSON]))
    elif m.detection is None:
        why = m.detection_note or "no detector was scored in this run"
        out.append(_na(f"{METRICS_JSON} has no detection block (detection: null): {why}"))
    else:
        d = m.detection
        rows = [
            [
                d["mode"],
                _fmt(d["precision"], ".3f"),
                _fmt(d["recall"], ".3f"),
                str(d["tp"]),
                str(d["fp"]),
                str(d["fn"]),
                str(d.get("frames", "—")),
                _fmt(d.get("iou_threshold"), "g"),
            ]
        ]
        out.append(
            _table(
                ["mode", "precision", "recall", "tp", "fp", "fn", "frames", "IoU threshold"],
                rows,
                numeric=range(1, 8),
            )
        )
    return "\n".join(out)


def _tracks_section(run: _Run) -> str:
    out = ['<h2 id="tracks">Evaluation tracks, top-down</h2>']
    t = run.tracks
    if t is None:
        out.append(_na(run.why[TRACKS_JSON]))
        return "\n".join(out)
    labels = {p.key: p.label for p in run.metrics.policies} if run.metrics else {}
    per_policy: dict[str, list[int]] = {}
    for policy, seed, _, _ in t.episodes:
        per_policy.setdefault(policy, []).append(seed)
    lines = "; ".join(
        f"{labels.get(k, k)}: {len(s)} episode(s), seeds {_seed_ranges(s)}" for k, s in per_policy.items()
    )
    out.append(
        f'<p class="meta">{_e(lines or "no episodes recorded")}. '
        f"{len(t.buildings)} buildings, {len(t.targets_cls)} targets; world ENU, metres.</p>"
    )
    if not t.episodes:
        out.append(_na(f"{TRACKS_JSON} holds no episodes; the map is drawn without tracks"))
    out.append(
        _plot_or_na(
            lambda: plots.tracks_png(
                t.half_extent_m,
                t.buildings,
                t.targets_xy,
                t.targets_cls,
                [(policy, xy, found) for policy, _, xy, found in t.episodes],
                policy_labels=labels,
            ),
            "top-down evaluation tracks over the map with found targets marked",
        )
    )
    return "\n".join(out)


def _video_section(run: _Run, video_src: str | None) -> str:
    out = ['<h2 id="video">Validation video</h2>']
    if run.video is None or video_src is None:
        out.append(_na(run.why.get(VIDEO_MP4, f"{VIDEO_MP4} could not be copied")))
        return "\n".join(out)
    size_mb = run.video.stat().st_size / 1e6
    src = _e(video_src)
    out.append(
        f'<video controls muted playsinline preload="auto" width="960" src="{src}">'
        f'Your browser cannot play this H.264 MP4: <a href="{src}">download it</a>.</video>'
        f'<p class="meta">{_e(VIDEO_MP4)} ({size_mb:.2f} MB), copied to <a href="{src}">{src}</a>.</p>'
    )
    return "\n".join(out)


def _kv_rows(mapping: dict[str, Any], missing: str = "not recorded") -> list[list[str]]:
    return [[str(k), missing if v is None else str(v)] for k, v in mapping.items()]


def _manifest_section(run: _Run) -> str:
    m = run.manifest
    out = ['<h2 id="manifest">Manifest</h2>', "<h3>Stages</h3>"]
    if m.stages:
        rows = []
        for stage, info in m.stages.items():
            status = str(info.get("status", "?"))
            extra = {
                k: v
                for k, v in info.items()
                if k not in ("status", "wall_s", "started_utc", "finished_utc") and v is not None
            }
            details = "; ".join(
                f"{k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in extra.items()
            )
            rows.append(
                [
                    _e(stage),
                    f'<span class="status-{_e(status)}">{_e(status)}</span>',
                    _e(_fmt(info.get("wall_s"), ".1f") + (" s" if info.get("wall_s") is not None else "")),
                    _e(info.get("started_utc") or "—"),
                    _e(info.get("finished_utc") or "—"),
                    _e(details),
                ]
            )
        out.append(
            _table(
                ["stage", "status", "wall time", "started (UTC)", "finished (UTC)", "details"],
                rows,
                numeric=(2,),
                raw=True,
            )
        )
    else:
        out.append(_na(f"{MANIFEST} lists no stages"))
    git = m.git
    dirty = git.get("dirty")
    git_line = f"{git.get('commit', 'not recorded')}" + (
        " (dirty: uncommitted changes)" if dirty else " (clean)" if dirty is False else ""
    )
    out.append("<h3>Code and config</h3>")
    out.append(
        _kv_table(
            [
                ["git commit", git_line],
                ["config hash", m.config_hash or "not recorded"],
                ["created (UTC)", m.created_utc or "not recorded"],
            ]
        )
    )
    out.append("<h3>Versions</h3>")
    out.append(
        _table(["package", "version"], _kv_rows(m.versions, "not installed"))
        if m.versions
        else _na(f"{MANIFEST} records no versions")
    )
    out.append("<h3>Machine</h3>")
    out.append(_kv_table(_kv_rows(m.machine)) if m.machine else _na(f"{MANIFEST} records no machine"))
    config = json.dumps(m.config, indent=2, ensure_ascii=False, default=str)
    out.append(
        f"<details><summary>Config ({len(m.config)} top-level keys, as run)</summary>"
        f"<pre>{_e(config)}</pre></details>"
    )
    return "\n".join(out)


def _render_html(run: _Run, video_src: str | None) -> str:
    """The whole report page as a string (no file is written)."""
    name = run.run_dir.name
    title = f"flyby run {name}"
    body = "\n".join(
        (
            _header(run, title),
            _training_section(run),
            _evaluation_section(run),
            _detection_section(run),
            _tracks_section(run),
            _video_section(run, video_src),
            _manifest_section(run),
        )
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report of the pipeline run in ``run_dir``.

    Args:
        run_dir: the run folder ``output/runs/<NAME>/`` (must hold ``manifest.json``).
        out_path: HTML file to write; default :func:`default_report_path`,
            ``output/reports/<NAME>_report.html`` with ``output/ = run_dir.parents[1]``. The video is
            copied to ``<out_path stem>_assets/validation.mp4`` beside it.

    Returns:
        The report's path.

    Raises:
        RunArtefactError: ``run_dir`` is not a folder or has no ``manifest.json``, or an artefact is
            malformed (the message names the file and every problem in it). Missing optional
            artefacts never raise: their sections read "not available: <why>".
        OutputError: the report or its assets folder cannot be written (names the path; an
            earlier report there is left intact).
    """
    start = time.perf_counter()
    run_dir = Path(os.path.abspath(run_dir))
    out = default_report_path(run_dir) if out_path is None else Path(os.path.abspath(out_path))
    run = _read_run(run_dir)
    video_src = None
    if run.video is not None:
        assets = f"{out.stem}_assets"
        atomic_write_bytes(out.parent / assets / "validation.mp4", run.video.read_bytes())
        video_src = f"{quote(assets)}/validation.mp4"
    page = _render_html(run, video_src).encode("utf-8")
    atomic_write_bytes(out, page)
    log.info(
        "wrote %s (%.1f kB, %s) in %.1f s",
        out,
        len(page) / 1e3,
        "video linked" if video_src else "no video",
        time.perf_counter() - start,
    )
    return out


def _cmd_report(args: argparse.Namespace) -> int:
    path = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"wrote {path}")
    return 0


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``flyby report RUN_DIR [--out PATH]`` to the CLI's ``subparsers`` (from ``add_subparsers``).

    The command writes the report and prints its path; a malformed artefact ends it with the
    :class:`RunArtefactError` message (the CLI's ``main`` prints ``FlybyError`` s and exits 2).
    """
    parser = subparsers.add_parser(
        "report",
        help="write the HTML report of a pipeline run (curves, evaluation, tracks, video; opens offline)",
    )
    parser.add_argument("run_dir", help="the run folder, output/runs/<NAME>")
    parser.add_argument(
        "--out",
        default=None,
        help="HTML file to write (default: output/reports/<NAME>_report.html, output/ being "
        "RUN_DIR/../..); the video goes to <stem>_assets/ beside it",
    )
    parser.set_defaults(func=_cmd_report)
    return parser
