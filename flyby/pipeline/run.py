"""``flyby pipeline NAME``: train fast -> evaluate at full fidelity -> validation video -> ONNX -> report.

One command from a fresh checkout to a trained policy, its evaluation under PX4 (when found; the
built-in cascade otherwise, and every artefact says which), a validation video and an HTML report.
Everything a run makes lives in one folder, ``output/runs/<NAME>/``::

    manifest.json        config, its fingerprint, git commit, versions, backend, flight stack, machine,
                         and per stage: status, start/finish time (UTC), wall time
    training/            flyby.training.trainer run folder (model.zip, vecnormalize.pkl, model.json,
                         progress.csv, eval.csv, tb/, checkpoints/)
    evaluation/          metrics.json (schema flyby.evaluation/1), tracks.json
    video/               validation.mp4 (H.264)
    export/              policy.onnx, policy_contract.json

and the report goes to ``output/reports/<NAME>_report.html``.

Stages run in order; a stage whose valid artefact exists is skipped (``skipped`` in the manifest),
so a rerun after an interruption (Ctrl-C, SIGTERM, a kill) picks up where it stopped: training
resumes from its newest checkpoint. A rerun with a different config is refused (exit code 3) and
never mixed into the old run; ``fresh=True`` moves the old folder aside (it is never deleted).

Exit codes of :func:`main_pipeline` (and ``flyby pipeline``): 0 done; 1 a stage failed (its error
is printed; earlier artefacts are intact); 2 bad input (config, output folder, model); 3 the run
folder holds a run with another config; 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flyby.errors import ConfigError, FlybyError
from flyby.utils.atomic import atomic_write_json, check_writable

logger = logging.getLogger(__name__)

STAGES = ("train", "evaluate", "video", "export", "report")
MANIFEST_SCHEMA = "flyby.run/1"
EXIT_OK, EXIT_STAGE_FAILED, EXIT_BAD_INPUT, EXIT_CONFIG_CHANGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class ConfigChanged(FlybyError):
    """The run folder holds a run made with another config (never mixed: use a new name or ``--fresh``)."""


@dataclass(kw_only=True)
class PipelineCfg:
    """What one pipeline run does. Everything here is recorded in the manifest and fingerprinted.

    Attributes:
        name: run name: ``output/runs/<name>/`` and ``output/reports/<name>_report.html``.
        training_config, dynamics_config: YAML paths or packaged names.
        total_steps: env steps to train (None: the training config's ``training.total_steps``).
        budget_s: s of training wall clock as well (None: the training config's ``training.budget_s``).
        eval_episodes: evaluation episodes per policy (trained and each baseline), seeds
            ``first_eval_seed .. first_eval_seed + eval_episodes - 1``.
        first_eval_seed: first evaluation seed (kept apart from training seeds).
        episode_length_s: s, episode length of training and evaluation. 30 s by default: the search
            must be efficient to score well. At 60 s the shipped patrol baseline already finds
            36.5 of 40 targets and covers 99 % of the area under PX4 SITL (seeds 1000-1001), so 60 s
            no longer tells a searching policy from a wandering one.
        flight_stack: ``"auto"`` (PX4 SITL when found, else the cascade), ``"px4"`` or ``"cascade"``.
        px4_instances: parallel evaluation envs (each with its own PX4 under PX4).
        video_seed: seed of the validation video episode (None: the first evaluation seed).
        perception_mode: where the evaluation episodes' detections come from, ``"ground_truth"`` or
            ``"yolo"`` (None: ``px4_env.perception.mode`` of evaluation_config.yaml, ground truth). YOLO on
            every control step costs about 30-40 ms of CPU per step, so a CI-sized evaluation of four
            policies stays analytic; the video shows the learned detector at work either way.
        video_perception_mode: the validation video's detections, ``"yolo"`` (default: YOLO boxes drawn
            beside the ground truth, detection precision and recall written to metrics.json) or
            ``"ground_truth"``. Without ultralytics or weights the video falls back to ground truth and
            says why.
    """

    name: str
    training_config: str = "training_config.yaml"
    dynamics_config: str = "dynamics_config.yaml"
    total_steps: int | None = None
    budget_s: float | None = None
    eval_episodes: int = 10
    first_eval_seed: int = 1000
    episode_length_s: float = 30.0
    flight_stack: str = "auto"
    px4_instances: int = 2
    video_seed: int | None = None
    perception_mode: str | None = None
    video_perception_mode: str = "yolo"

    def validate(self) -> list[str]:
        problems = []
        if not self.name or not set(self.name) <= _NAME_CHARS or self.name.startswith("."):
            problems.append(
                f"name: {self.name!r} must be letters, digits, '_', '-' or '.' (a folder name), "
                "not starting with '.'"
            )
        if self.total_steps is not None and self.total_steps < 1:
            problems.append(f"total_steps: {self.total_steps} must be >= 1")
        if self.budget_s is not None and not self.budget_s > 0:
            problems.append(f"budget_s: {self.budget_s} must be > 0 s")
        if self.eval_episodes < 2:
            problems.append(
                f"eval_episodes: {self.eval_episodes} must be >= 2 (a 95 % interval needs two episodes)"
            )
        if self.first_eval_seed < 0:
            problems.append(f"first_eval_seed: {self.first_eval_seed} must be >= 0")
        if self.flight_stack not in ("auto", "px4", "cascade"):
            problems.append(f"flight_stack: {self.flight_stack!r} is not one of 'auto', 'px4', 'cascade'")
        if not 1 <= self.px4_instances <= 10:
            problems.append(f"px4_instances: {self.px4_instances} must be in 1..10")
        if not self.episode_length_s > 0:
            problems.append(f"episode_length_s: {self.episode_length_s} must be > 0 s")
        for name in ("perception_mode", "video_perception_mode"):
            if getattr(self, name) not in (None, "ground_truth", "yolo"):
                problems.append(f"{name}: {getattr(self, name)!r} is not one of 'ground_truth', 'yolo'")
        return problems

    @property
    def eval_seeds(self) -> list[int]:
        return list(range(self.first_eval_seed, self.first_eval_seed + self.eval_episodes))


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` returns."""

    run_dir: Path
    report_path: Path | None
    manifest: dict[str, Any]
    metrics: dict[str, Any] | None


def _utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git_info() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in (
        "flyby",
        "numpy",
        "torch",
        "stable-baselines3",
        "gymnasium",
        "mujoco",
        "ultralytics",
        "onnxruntime",
        "pymavlink",
    ):
        try:
            out[dist.replace("-", "_")] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_")] = None
    return out


def _machine() -> dict[str, Any]:
    import psutil

    from flyby.utils.gpu import gpu_summary

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu_summary(),
        "os": platform.platform(),
    }


def resolve_training(cfg: PipelineCfg):
    """What this pipeline trains with: ``(TrainerCfg with the overrides, MultiDroneEnvCfg)``.

    The training env is the training config's multi-drone env with the evaluation env's perception
    camera and control rate (``training.match_eval_env``) and the pipeline's episode length.
    """
    from dataclasses import replace

    from flyby.config import check
    from flyby.config.training import load_training_cfg
    from flyby.training.trainer import training_env_cfg

    tcfg = load_training_cfg(cfg.training_config, cfg.dynamics_config)
    trainer = tcfg.training
    if cfg.total_steps is not None:
        trainer = replace(trainer, total_steps=int(cfg.total_steps))
    if cfg.budget_s is not None:
        trainer = replace(trainer, budget_s=float(cfg.budget_s))
    env_cfg = replace(training_env_cfg(tcfg), episode_length_s=float(cfg.episode_length_s))
    return check(trainer), check(env_cfg)


def config_record(cfg: PipelineCfg) -> dict[str, Any]:
    """The manifest's ``config``: the pipeline options plus the resolved training config."""
    from flyby.config import cfg_hash, to_dict

    trainer, env_cfg = resolve_training(cfg)
    record = {"pipeline": asdict(cfg), "training": to_dict(trainer), "multi_drone_env": to_dict(env_cfg)}
    fingerprint = dict(record)
    fingerprint["pipeline"] = {k: v for k, v in record["pipeline"].items() if k != "name"}
    return {"config": record, "config_hash": cfg_hash(fingerprint)}


class _Stages:
    """Runs the stages of one pipeline run and keeps the manifest current (written after every change)."""

    def __init__(self, cfg: PipelineCfg, run_dir: Path, reports_dir: Path, progress: bool) -> None:
        self.cfg, self.run_dir, self.reports_dir, self.progress = cfg, run_dir, reports_dir, progress
        self.manifest_path = run_dir / "manifest.json"
        self.manifest: dict[str, Any] = {}

    def save(self) -> None:
        atomic_write_json(self.manifest_path, self.manifest)

    def stage(
        self,
        name: str,
        valid: Callable[[], bool],
        work: Callable[[], dict[str, Any] | None],
        force: bool = False,
    ) -> None:
        entry = self.manifest["stages"].setdefault(name, {"status": "pending"})
        k = STAGES.index(name) + 1
        if not force and valid():
            if entry.get("status") != "done":
                entry["status"] = "skipped"
            print(f"[{k}/{len(STAGES)}] {name}: valid artefact found, skipped", flush=True)
            self.save()
            return
        print(f"[{k}/{len(STAGES)}] {name} ...", flush=True)
        entry.update(status="running", started_utc=_utc(), finished_utc=None, error=None)
        self.save()
        t0 = time.perf_counter()
        try:
            extra = work() or {}
        except KeyboardInterrupt:
            entry.update(status="interrupted", wall_s=round(time.perf_counter() - t0, 2), finished_utc=_utc())
            self.save()
            raise
        except BaseException as exc:
            entry.update(
                status="failed",
                wall_s=round(time.perf_counter() - t0, 2),
                finished_utc=_utc(),
                error=f"{type(exc).__name__}: {exc}",
            )
            self.save()
            raise
        entry.update(status="done", wall_s=round(time.perf_counter() - t0, 2), finished_utc=_utc(), **extra)
        self.save()
        print(f"[{k}/{len(STAGES)}] {name}: done in {entry['wall_s']:.1f} s", flush=True)


def _valid_training(train_dir: Path, trainer) -> bool:
    summary_path = train_dir / "model.json"
    if not (summary_path.is_file() and (train_dir / "model.zip").is_file()):
        return False
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if summary.get("normalize", {}).get("obs") and not (train_dir / "vecnormalize.pkl").is_file():
        return False
    return summary.get("env_steps", 0) >= trainer.total_steps or summary.get("stopped_by") == "budget_s"


def _valid_metrics(path: Path, cfg: PipelineCfg) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        data.get("schema") == "flyby.evaluation/1"
        and data.get("seeds") == cfg.eval_seeds
        and all(k in data.get("policies", {}) for k in ("trained", "zero", "random", "patrol"))
        and (path.parent / "tracks.json").is_file()
    )


def probe_mp4(path: Path) -> int:
    """Frames of an H.264 MP4 at ``path`` (0 when missing, unreadable or not H.264)."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                return 0
            return sum(1 for _ in container.demux(stream) if _.size)
    except Exception:  # any unreadable file is simply not a valid artefact
        return 0


def _valid_export(export_dir: Path) -> bool:
    import hashlib

    onnx, contract = export_dir / "policy.onnx", export_dir / "policy_contract.json"
    if not (onnx.is_file() and contract.is_file()):
        return False
    try:
        data = json.loads(contract.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    sha = data.get("onnx", {}).get("sha256") if isinstance(data.get("onnx"), dict) else None
    # the contract is this graph's
    return sha is not None and hashlib.sha256(onnx.read_bytes()).hexdigest() == sha


def run_pipeline(
    cfg: PipelineCfg, *, output_dir: str | Path = "output", fresh: bool = False, progress: bool = True
) -> PipelineResult:
    """Run (or resume) the pipeline ``cfg.name`` under ``output_dir``.

    Raises:
        ConfigError: ``cfg`` or the training config is invalid (every problem listed).
        OutputError: the run or report folder is not writable (checked before training).
        ConfigChanged: the run folder holds a run made with another config and ``fresh`` is False.

    ``fresh=True`` moves an existing run folder aside (``<NAME>.previous-<time>``, never deleted)
    and starts again; without it, a run with the same config continues where it stopped.
        ModelLoadError: the trained model cannot be loaded for evaluation.
        KeyboardInterrupt: interrupted; the manifest says which stage, rerun to resume.
    """
    from flyby.config import check

    cfg = check(cfg)
    record = config_record(cfg)  # loads and checks the training config before anything is written
    output_dir = Path(output_dir)
    run_dir = output_dir / "runs" / cfg.name
    reports_dir = output_dir / "reports"
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {"config_hash": None}
        if old.get("config_hash") != record["config_hash"] and not fresh:
            raise ConfigChanged(
                f"{run_dir} holds run {cfg.name!r} made with another config (fingerprint "
                f"{old.get('config_hash')} != {record['config_hash']}); it is kept as it is. Use another "
                f"NAME, "
                "the same options as before, or --fresh to move the old run aside and start again"
            )
    if fresh and run_dir.exists():
        aside = run_dir.with_name(f"{cfg.name}.previous-{_dt.datetime.now():%Y%m%d-%H%M%S-%f}")
        run_dir.rename(aside)
        print(f"moved the previous run to {aside} (kept)", flush=True)
    check_writable(run_dir)
    check_writable(reports_dir)
    st = _Stages(cfg, run_dir, reports_dir, progress)
    if manifest_path.exists():
        st.manifest = json.loads(manifest_path.read_text())
        st.manifest.update(git=_git_info(), versions=_versions(), machine=_machine())
    else:
        st.manifest = {
            "schema": MANIFEST_SCHEMA,
            "name": cfg.name,
            "created_utc": _utc(),
            **record,
            "git": _git_info(),
            "versions": _versions(),
            "machine": _machine(),
            "stages": {s: {"status": "pending"} for s in STAGES},
        }
    from flyby.sim.base import select_backend_kind
    from flyby.training.evaluate import eval_flight_stack

    stack, stack_label = eval_flight_stack(cfg.flight_stack)
    st.manifest.update(
        backend=select_backend_kind(None).value, flight_stack=stack, flight_stack_label=stack_label
    )
    st.save()
    print(f"pipeline {cfg.name}: {run_dir} ; evaluation flight stack: {stack_label}", flush=True)

    trainer_cfg, train_env_cfg = resolve_training(cfg)
    train_dir, eval_dir, video_dir, export_dir = (
        run_dir / d for d in ("training", "evaluation", "video", "export")
    )

    def do_train() -> dict[str, Any]:
        from flyby.training.trainer import train

        resume = (train_dir / "train_config.json").exists()
        run = train(trainer_cfg, train_dir, env_cfg=train_env_cfg, resume=resume, progress=progress)
        print(
            f"  {run.env_steps:,} env steps, {run.steps_per_s:,.0f} steps/s end to end, learner share "
            f"{100 * run.learner_share:.0f} %",
            flush=True,
        )
        return {
            "env_steps": run.env_steps,
            "steps_per_s": round(run.steps_per_s, 1),
            "learner_share": round(run.learner_share, 4),
            "env_s": run.env_s,
            "learner_s": run.learner_s,
            "resumed_from": run.resumed_from,
        }

    st.stage("train", lambda: _valid_training(train_dir, trainer_cfg), do_train)
    model_path = train_dir / "model.zip"

    def eval_env_cfg(mode: str | None):
        from dataclasses import replace

        from flyby.config.evaluation import load_evaluation_cfg
        from flyby.enums import PerceptionMode

        env = replace(load_evaluation_cfg().px4_env, episode_length_s=float(cfg.episode_length_s))
        if mode is not None:
            env = replace(env, perception=replace(env.perception, mode=PerceptionMode(mode)))
        return env

    def do_evaluate() -> dict[str, Any]:
        from flyby.training.evaluate import run_evaluation
        from flyby.training.policy_io import eval_spaces, load_policy

        env_cfg = eval_env_cfg(cfg.perception_mode)
        obs_space, act_space = eval_spaces(env_cfg)
        policy = load_policy(
            model_path, observation_space=obs_space, action_space=act_space, actions=env_cfg.actions
        )
        run = run_evaluation(
            policy,
            seeds=cfg.eval_seeds,
            flight_stack=stack,
            px4_instances=cfg.px4_instances,
            out_dir=eval_dir,
            progress=progress,
            env_cfg=env_cfg,
        )
        metrics = run.metrics
        print("  " + run.table().replace("\n", "\n  "), flush=True)
        st.manifest["px4_version"] = metrics.get("px4_version")
        t = metrics["policies"]["trained"]
        return {
            "mean_return": t["mean_return"],
            "targets_found_mean": t["targets_found"]["mean"],
            "flight_stack": metrics["flight_stack"],
            "perception_mode": metrics.get("perception_mode"),
        }

    st.stage("evaluate", lambda: _valid_metrics(eval_dir / "metrics.json", cfg), do_evaluate)

    def do_video() -> dict[str, Any]:
        from flyby.training.policy_io import load_policy
        from flyby.training.validation_video import record_validation_video

        seed = cfg.eval_seeds[0] if cfg.video_seed is None else cfg.video_seed
        video = record_validation_video(
            load_policy(model_path),
            seed,
            video_dir / "validation.mp4",
            flight_stack=stack,
            env_cfg=eval_env_cfg(None),
            perception_mode=cfg.video_perception_mode,
            progress=progress,
        )
        detection = getattr(video, "detection", None)
        metrics_path = eval_dir / "metrics.json"
        if detection is not None and metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            metrics["detection"] = detection
            metrics.pop("detection_note", None)  # the note said why there was no detection block
            atomic_write_json(metrics_path, metrics)
        if detection is not None:
            print(
                f"  detection ({video.perception_mode}) on the video episode: precision "
                f"{detection['precision']:.3f}, recall {detection['recall']:.3f} over {detection['frames']} "
                f"frames",
                flush=True,
            )
        elif video.detection_note:
            print(f"  detection: {video.detection_note}", flush=True)
        return {
            "frames": int(video.frames),
            "seed": seed,
            "perception_mode": video.perception_mode,
            "return": video.ret,
            "targets_found": video.targets_found,
        }

    st.stage("video", lambda: probe_mp4(video_dir / "validation.mp4") > 0, do_video)

    def do_export() -> dict[str, Any]:
        from flyby.training.export import export_policy_onnx
        from flyby.training.policy_io import load_policy

        policy = load_policy(model_path)
        result = export_policy_onnx(
            policy.model, export_dir, obs_rms=policy.obs_rms, clip_obs=policy.clip_obs, epsilon=policy.epsilon
        )
        print(f"  ONNX max |action difference| vs SB3: {result.max_abs_diff:.2e}", flush=True)
        return {"max_abs_diff": float(result.max_abs_diff)}

    st.stage("export", lambda: _valid_export(export_dir), do_export)

    report_path = reports_dir / f"{cfg.name}_report.html"

    def do_report() -> dict[str, Any]:
        from flyby.pipeline.report import write_report

        st.manifest["stages"]["report"].update(status="done", finished_utc=_utc())
        st.save()  # the report shows this manifest: the report stage as done
        path = write_report(run_dir, report_path)
        return {"path": str(path)}

    st.stage("report", lambda: False, do_report, force=True)
    metrics_path = eval_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return PipelineResult(run_dir=run_dir, report_path=report_path, manifest=st.manifest, metrics=metrics)


def summarize(result: PipelineResult) -> str:
    """Lines for the terminal: stage times, evaluation table, report path."""
    lines = [
        "stage wall times: "
        + ", ".join(
            f"{s} {result.manifest['stages'][s].get('wall_s', 0):.1f} s "
            f"({result.manifest['stages'][s]['status']})"
            for s in STAGES
        )
    ]
    m = result.metrics
    if m:
        lines.append(f"evaluation ({m.get('flight_stack_label')}, {len(m['seeds'])} seeds):")
        for key, p in m["policies"].items():
            lo, hi = p["ci95"]
            tf = p["targets_found"]
            lines.append(
                f"  {key:<8} return {p['mean_return']:+8.2f} [{lo:+.2f}, {hi:+.2f}]  targets found "
                f"{tf['mean']:5.1f} [{tf['ci95'][0]:.1f}, {tf['ci95'][1]:.1f}]  success "
                f"{100 * p['success_rate']:.0f} %  crashes {p['crashes']}  geofence exits "
                f"{p['geofence_exits']}"
            )
    lines.append(f"report: {result.report_path}")
    return "\n".join(lines)


def _sigterm_as_interrupt(signum, frame):  # pragma: no cover - exercised by the subprocess test
    raise KeyboardInterrupt(f"signal {signum}")


def main_pipeline(cfg: PipelineCfg, *, output_dir: str | Path = "output", fresh: bool = False) -> int:
    """Run the pipeline and map the outcome to an exit code (see the module docstring); prints as it goes."""
    old = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        result = run_pipeline(cfg, output_dir=output_dir, fresh=fresh)
    except KeyboardInterrupt:
        print(
            f"\nflyby pipeline {cfg.name}: interrupted; rerun the same command to resume "
            "(training continues from its newest checkpoint)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except ConfigChanged as exc:
        print(f"flyby pipeline: {exc}", file=sys.stderr)
        return EXIT_CONFIG_CHANGED
    except ConfigError as exc:
        print(f"flyby pipeline: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FlybyError as exc:
        from flyby.errors import OutputError

        code = (
            EXIT_BAD_INPUT
            if isinstance(exc, OutputError) or type(exc).__name__ == "ModelLoadError"
            else EXIT_STAGE_FAILED
        )
        print(f"flyby pipeline {cfg.name}: {exc}", file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, old)
    print(summarize(result))
    return EXIT_OK


def add_pipeline_parser(subparsers) -> None:
    """``flyby pipeline NAME ...``."""
    p = subparsers.add_parser(
        "pipeline",
        help="train -> evaluate (PX4 when found) -> validation video -> ONNX -> HTML report",
        description=__doc__.split("\n\n")[0].replace("``", "")
        + " Artefacts go to output/runs/NAME/, the report to "
        "output/reports/NAME_report.html. Stages with a valid artefact are skipped; rerun to resume. "
        "Exit codes: 0 done, 1 a stage failed, 2 bad input, 3 config differs from the existing run, "
        "130 interrupted.",
    )
    p.add_argument("name", help="run name (folder name: letters, digits, _ - .)")
    p.add_argument("--training-config", default="training_config.yaml", help="training config YAML")
    p.add_argument("--dynamics-config", default="dynamics_config.yaml", help="dynamics config YAML")
    p.add_argument(
        "--total-steps", type=int, default=None, help="training env steps (default: training config)"
    )
    p.add_argument("--budget-s", type=float, default=None, help="training wall-clock budget in s as well")
    p.add_argument(
        "--eval-episodes", type=int, default=10, help="evaluation episodes per policy (default 10)"
    )
    p.add_argument("--first-eval-seed", type=int, default=1000, help="first evaluation seed (default 1000)")
    p.add_argument(
        "--episode-length-s",
        type=float,
        default=30.0,
        help="episode length of training and evaluation in s (default 30)",
    )
    p.add_argument(
        "--flight-stack",
        default="auto",
        choices=("auto", "px4", "cascade"),
        help="evaluation flight stack (default auto: PX4 SITL when found, else the built-in cascade)",
    )
    p.add_argument(
        "--px4-instances", type=int, default=2, help="parallel evaluation envs / PX4 instances (1..10)"
    )
    p.add_argument(
        "--video-seed", type=int, default=None, help="validation video seed (default: first eval seed)"
    )
    p.add_argument(
        "--perception-mode",
        default=None,
        choices=("ground_truth", "yolo"),
        help="detections of the evaluation episodes (default: evaluation_config.yaml's, ground truth; "
        "yolo costs about 30-40 ms of CPU per control step)",
    )
    p.add_argument(
        "--video-perception-mode",
        default="yolo",
        choices=("ground_truth", "yolo"),
        help="detections drawn in the validation video and scored against ground truth (default yolo)",
    )
    p.add_argument("--output-dir", default="output", help="where runs/ and reports/ go (default output)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="move an existing run NAME aside (kept as NAME.previous-<time>) and start again; needed when "
        "NAME was made with another config",
    )

    def _run(args) -> int:
        from flyby.config import from_dict

        fields = {
            k: getattr(args, k)
            for k in (
                "name",
                "training_config",
                "dynamics_config",
                "total_steps",
                "budget_s",
                "eval_episodes",
                "first_eval_seed",
                "episode_length_s",
                "flight_stack",
                "px4_instances",
                "video_seed",
                "perception_mode",
                "video_perception_mode",
            )
        }
        try:
            cfg = from_dict(PipelineCfg, fields, source="flyby pipeline options")
        except ConfigError as exc:
            print(f"flyby pipeline: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return main_pipeline(cfg, output_dir=args.output_dir, fresh=args.fresh)

    p.set_defaults(func=_run)
