"""Benchmark the ground-truth detector (flyby/perception/gt.py), the fast envs' hot path.

For each drone count N it places N drones at random positions over a generated
ISR world (15-60 m altitude, random headings), advances the targets 0.05 s per
call (the moving vehicles move), and times ``GroundTruthDetector.detect``.
It prints the mean time per call, drone-steps per second (N / mean), the
mean of the fastest of five equal blocks of calls (less sensitive to other
processes on a shared machine) and how many targets a drone sees on average.

The perception budget in the multi-drone env is about 0.4 ms per call at
N = 16, T = 40, B = 40 on one CPU core (DESIGN.md, "Ground-truth perception
cost"). BLAS runs single-threaded by default so the numbers are one core's;
``--blas-threads 0`` leaves the BLAS library's own default.

    python benchmarks/bench_perception.py
    python benchmarks/bench_perception.py --drones 16 --targets 200 --buildings 80 --repeats 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time

DEFAULT_DRONES = (1, 4, 16, 32, 256, 1024)
BLOCKS = 5  # timed calls are split into this many blocks; the fastest block is reported too


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time GroundTruthDetector.detect on a generated ISR world.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--drones", type=int, nargs="+", default=list(DEFAULT_DRONES), help="drone counts N to time"
    )
    p.add_argument("--seed", type=int, default=0, help="world seed (generate_world) and drone placement seed")
    p.add_argument(
        "--targets",
        type=int,
        default=None,
        help="targets T, 60%% vehicles and 40%% people (None: WorldCfg's 24 vehicles + 16 people)",
    )
    p.add_argument("--buildings", type=int, default=None, help="buildings to place (None: WorldCfg's 40)")
    p.add_argument(
        "--repeats", type=int, default=200, help="timed calls per drone count (after 10 warm-up calls)"
    )
    p.add_argument(
        "--preset",
        default="multi",
        choices=("training", "evaluation", "full", "multi"),
        help="camera resolution preset (multi = 80x80, the multi-drone env's tiles)",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads (OPENBLAS/OMP/MKL_NUM_THREADS); 0 = library default",
    )
    args = p.parse_args(argv)
    if any(n < 1 for n in args.drones) or args.repeats < BLOCKS:
        p.error(f"--drones must be >= 1 and --repeats >= {BLOCKS}")
    if args.targets is not None and args.targets < 0 or args.buildings is not None and args.buildings < 0:
        p.error("--targets and --buildings must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.blas_threads > 0:  # must be set before numpy loads its BLAS
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)

    import numpy as np

    from flyby.enums import ResolutionPreset
    from flyby.geometry import yaw_rotation
    from flyby.perception import CameraCfg, GroundTruthDetector, camera_poses_w
    from flyby.world import WorldCfg, generate_world

    world_cfg = WorldCfg()
    if args.targets is not None:
        world_cfg.num_vehicles = round(0.6 * args.targets)
        world_cfg.num_people = args.targets - world_cfg.num_vehicles
    if args.buildings is not None:
        world_cfg.num_buildings = args.buildings
    world = generate_world(world_cfg, seed=args.seed)
    camera = CameraCfg(preset=ResolutionPreset(args.preset))
    detector = GroundTruthDetector.from_world(camera, world)
    step_dt = 0.05
    warmup = 10
    steps = warmup + args.repeats
    target_poses = [world.target_poses(i * step_dt) for i in range(steps)]
    size = world.target_size_m

    print(
        f"flyby ground-truth perception: T={world.num_targets} targets, B={world.num_buildings} buildings, "
        f"camera {camera.width}x{camera.height} fovy {camera.fovy_deg} deg pitch {camera.pitch_deg} deg, "
        f"world seed {args.seed}"
    )
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, BLAS threads "
        f"{args.blas_threads or 'default'}, {os.cpu_count()} CPUs, {args.repeats} timed calls per N"
    )
    print(
        f"{'N':>6} {'mean us/call':>13} {'drone-steps/s':>14} {'best-block us':>14} {'drone-steps/s':>14} "
        f"{'visible/drone':>14} {'in view/drone':>14}"
    )
    rng = np.random.default_rng(args.seed)
    half = world.half_extent
    for n in args.drones:
        pos_w = np.c_[rng.uniform(-half, half, (n, 2)), rng.uniform(15.0, 60.0, n)]
        cam_pos_w, rot_wc = camera_poses_w(pos_w, yaw_rotation(rng.uniform(-np.pi, np.pi, n)), camera)
        for i in range(warmup):
            detector.detect(cam_pos_w, rot_wc, *target_poses[i], size)
        bounds = np.linspace(warmup, steps, BLOCKS + 1).round().astype(int)
        block_times = []
        visible = in_view = 0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            start = time.perf_counter()
            for i in range(lo, hi):
                det = detector.detect(cam_pos_w, rot_wc, *target_poses[i], size)
            block_times.append((time.perf_counter() - start, hi - lo))
            visible += int(det.visible.sum())
            in_view += int(det.in_frustum.sum())
        mean = sum(t for t, _ in block_times) / args.repeats
        best = min(t / k for t, k in block_times if k > 0)
        print(
            f"{n:>6} {mean * 1e6:>13.1f} {n / mean:>14,.0f} {best * 1e6:>14.1f} {n / best:>14,.0f} "
            f"{visible / (n * BLOCKS):>14.2f} {in_view / (n * BLOCKS):>14.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
