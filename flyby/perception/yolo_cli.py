"""``flyby yolo-dataset``, ``flyby yolo-train``, ``flyby yolo-eval``: the learned detector's command line.

Registered by :func:`flyby.cli.build_parser` through :func:`add_yolo_parsers`. Bad input
exits with status 2 and one message naming the value and the fix (argparse errors, and
every :class:`~flyby.errors.FlybyError`, which :func:`flyby.cli.main` turns into 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flyby.errors import ConfigError

__all__ = ["add_yolo_parsers"]

DEFAULT_DATASET = "output/yolo/dataset"
DEFAULT_WEIGHTS_OUT = "output/yolo/isr_yolo11n_320.pt"
DEFAULT_RUN_DIR = "output/yolo/runs"


def _cmd_dataset(args: argparse.Namespace) -> int:
    from flyby.config import check
    from flyby.perception.yolo_dataset import YoloDatasetCfg, export_dataset, parse_seeds

    cfg = check(
        YoloDatasetCfg(
            train_seeds=parse_seeds(args.train_seeds, "--train-seeds"),
            val_seeds=parse_seeds(args.val_seeds, "--val-seeds"),
            test_seeds=parse_seeds(args.test_seeds, "--test-seeds"),
            train_frames_per_seed=args.train_frames_per_seed,
            val_frames_per_seed=args.val_frames_per_seed,
            test_frames_per_seed=args.test_frames_per_seed,
            seed=args.seed,
        )
    )
    ds = export_dataset(args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {ds.root} (train on {ds.data_yaml})")
    for split, c in ds.counts.items():
        seeds = ", ".join(str(s) for s in cfg.seeds(split))
        print(
            f"  {split:5s}: worlds {seeds}: {c['images']} images ({c['background']} background), "
            f"{c['boxes']} boxes ({c['vehicle']} vehicle, {c['person']} person)"
        )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from flyby.config import check
    from flyby.perception.yolo_train import YoloTrainCfg, train_yolo

    cfg = check(
        YoloTrainCfg(
            model=args.model,
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            workers=args.workers,
            close_mosaic=args.close_mosaic,
            patience=args.patience,
            seed=args.seed,
            device=args.device,
        )
    )
    card = train_yolo(args.data, args.out, cfg, run_dir=args.run_dir, evaluate=not args.no_eval)
    print(f"wrote {args.out} ({card['size_bytes'] / 1e6:.1f} MB) and {Path(args.out).with_suffix('.json')}")
    if card["metrics"]:
        _print_metrics(card["metrics"])
    print(f"reproduce: {card['reproduce']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from flyby.perception.yolo import DEFAULT_WEIGHTS
    from flyby.perception.yolo_train import evaluate_yolo

    problems = []
    if args.timing_frames < 0:
        problems.append(f"--timing-frames: {args.timing_frames} must be >= 0")
    if args.imgsz < 32 or args.imgsz % 32:
        problems.append(
            f"--imgsz: {args.imgsz} must be a positive multiple of 32 (YOLO's largest stride); try 320"
        )
    if problems:
        raise ConfigError(problems)
    weights = Path(args.weights) if args.weights else DEFAULT_WEIGHTS
    result = evaluate_yolo(
        weights,
        args.data,
        split=args.split,
        imgsz=args.imgsz,
        timing_frames=args.timing_frames,
        device=args.device,
    )
    size = weights.stat().st_size / 1e6
    print(f"weights: {weights} ({size:.1f} MB)")
    _print_metrics(result.as_dict())
    if args.json:
        from flyby.perception.yolo_train import _atomic_write_text

        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(out, json.dumps({"weights": str(weights), **result.as_dict()}, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


def _print_metrics(m: dict) -> None:
    seeds = ", ".join(str(s) for s in m.get("seeds", [])) or "?"
    print(f"{m['split']} split (held-out worlds {seeds}): {m['images']} images, {m['instances']} boxes")
    print(f"  mAP50    : {m['map50']:.3f}")
    print(f"  mAP50-95 : {m['map50_95']:.3f}")
    per = ", ".join(f"{k} {v:.3f}" for k, v in m.get("per_class_map50", {}).items())
    if per:
        print(f"  mAP50 per class: {per}")
    print(f"  precision {m['precision']:.3f}, recall {m['recall']:.3f} (at ultralytics' best-F1 confidence)")
    if m.get("cpu_ms_per_frame") is not None:
        print(
            f"  CPU inference: {m['cpu_ms_per_frame']:.1f} ms/frame at {m.get('timing_frame_size', '?')} "
            "(median, one frame per call, "
            f"torch threads {m.get('cpu_threads')})"
        )


def add_yolo_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``yolo-dataset``, ``yolo-train`` and ``yolo-eval`` to ``flyby``'s subcommands."""
    ds = subparsers.add_parser(
        "yolo-dataset",
        help="render a YOLO dataset from the simulator (frames + ground-truth boxes)",
        description="Render frames with the evaluation env's render camera (320x240) over several worlds "
        "and label them with the ground-truth detector; train, val and test splits are disjoint world seeds. "
        "Writes the standard YOLO layout (images/, labels/, data.yaml) atomically.",
    )
    ds.add_argument("--out", default=DEFAULT_DATASET, help=f"dataset folder (default {DEFAULT_DATASET})")
    ds.add_argument(
        "--train-seeds",
        default="0..5",
        help="training world seeds: '0..5' (inclusive) or '0,3,7' (default 0..5)",
    )
    ds.add_argument(
        "--val-seeds", default="100,101", help="held-out world seeds for model selection (default 100,101)"
    )
    ds.add_argument(
        "--test-seeds",
        default="200,201",
        help="held-out world seeds for the reported metrics (default 200,201)",
    )
    ds.add_argument(
        "--train-frames-per-seed", type=int, default=100, help="frames per training world (default 100)"
    )
    ds.add_argument(
        "--val-frames-per-seed", type=int, default=40, help="frames per validation world (default 40)"
    )
    ds.add_argument("--test-frames-per-seed", type=int, default=60, help="frames per test world (default 60)")
    ds.add_argument("--seed", type=int, default=0, help="camera-pose sampling seed (default 0)")
    ds.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    ds.add_argument("--no-progress", action="store_true", help="no progress bar")
    ds.set_defaults(func=_cmd_dataset)

    tr = subparsers.add_parser(
        "yolo-train",
        help="train the YOLO detector from its YAML on a flyby dataset (offline, CPU by default)",
        description="Build the detector from an ultralytics architecture YAML (random weights; nothing is "
        "downloaded), train it on a `flyby yolo-dataset` folder, copy the best checkpoint to --out, "
        "score it on the held-out test worlds and write a JSON card beside it.",
    )
    tr.add_argument(
        "--data",
        default=f"{DEFAULT_DATASET}/data.yaml",
        help=f"dataset data.yaml or folder (default {DEFAULT_DATASET}/data.yaml)",
    )
    tr.add_argument(
        "--out", default=DEFAULT_WEIGHTS_OUT, help=f"weights file to write (default {DEFAULT_WEIGHTS_OUT})"
    )
    tr.add_argument("--model", default="yolo11n.yaml", help="architecture YAML (default yolo11n.yaml)")
    tr.add_argument("--epochs", type=int, default=15, help="epochs (default 15)")
    tr.add_argument(
        "--imgsz", type=int, default=320, help="training image size, multiple of 32 (default 320)"
    )
    tr.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    tr.add_argument("--workers", type=int, default=0, help="data-loader worker processes (default 0)")
    tr.add_argument(
        "--close-mosaic", type=int, default=3, help="last epochs without mosaic augmentation (default 3)"
    )
    tr.add_argument(
        "--patience", type=int, default=100, help="early-stopping patience in epochs (default 100)"
    )
    tr.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    tr.add_argument("--device", default="cpu", help="torch device: cpu (default) or a GPU index such as 0")
    tr.add_argument(
        "--run-dir", default=DEFAULT_RUN_DIR, help=f"ultralytics run folder (default {DEFAULT_RUN_DIR})"
    )
    tr.add_argument("--no-eval", action="store_true", help="skip the held-out test scoring and timing")
    tr.set_defaults(func=_cmd_train)

    ev = subparsers.add_parser(
        "yolo-eval",
        help="score YOLO weights on held-out worlds: mAP50, mAP50-95, CPU ms/frame at 320x240",
        description="Score weights (default: the shipped ones) on a dataset split of held-out worlds "
        "(default: test) and time CPU inference one 320x240 frame at a time.",
    )
    ev.add_argument(
        "--weights",
        default=None,
        help="weights .pt (default: the shipped flyby/perception/weights/isr_yolo11n_320.pt)",
    )
    ev.add_argument(
        "--data",
        default=f"{DEFAULT_DATASET}/data.yaml",
        help=f"dataset data.yaml or folder (default {DEFAULT_DATASET}/data.yaml; make it with flyby "
        f"yolo-dataset)",
    )
    ev.add_argument(
        "--split", default="test", choices=("test", "val", "train"), help="split to score (default test)"
    )
    ev.add_argument("--imgsz", type=int, default=320, help="inference size (default 320)")
    ev.add_argument(
        "--timing-frames", type=int, default=30, help="frames timed for ms/frame, 0 to skip (default 30)"
    )
    ev.add_argument(
        "--device", default="cpu", help="torch device of the mAP pass (timing is always CPU; default cpu)"
    )
    ev.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ev.set_defaults(func=_cmd_eval)
