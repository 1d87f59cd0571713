"""Render timings of the MuJoCo backend.

Prints milliseconds per call (median and mean over ``--repeats`` after
``--warmup`` calls) for:

- one ``render_cameras()`` of N drones at 80x80 (the multi-drone tile; N=16 by default),
- one 640x480 overview,
- one drone camera at 128x128 (training preset) and at 640x480 (full preset),

on the default ISR world, with the GL platform and renderer printed first.

    python benchmarks/bench_render.py
    python benchmarks/bench_render.py --num-drones 64 --shadows --antialias
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def _time_ms(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), statistics.fmean(samples)


def _poses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from flyby.geometry import yaw_quat_wxyz

    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(-70.0, 70.0, (n, 2)), rng.uniform(25.0, 45.0, n)]
    return pos, yaw_quat_wxyz(rng.uniform(-np.pi, np.pi, n))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--num-drones", type=int, default=16, help="drones in the multi-camera grid (default 16)"
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per case (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="world and pose seed (default 0)")
    parser.add_argument("--shadows", action="store_true", help="render the sun's shadows")
    parser.add_argument("--antialias", action="store_true", help="4x multisample anti-aliasing")
    args = parser.parse_args(argv)

    from flyby.enums import ResolutionPreset
    from flyby.perception.camera import CameraCfg
    from flyby.sim.gl import ensure_gl_platform
    from flyby.sim.mujoco_backend import MujocoBackend
    from flyby.world import generate_world

    world = generate_world(seed=args.seed)
    opts = {"shadows": args.shadows, "antialias": args.antialias}
    print(f"GL platform: {ensure_gl_platform()}")
    print(
        f"world: {world.size_m[0]:.0f}x{world.size_m[1]:.0f} m, {world.num_buildings} buildings, "
        f"{world.num_targets} targets; shadows={args.shadows}, antialias={args.antialias}; "
        f"median / mean of {args.repeats} calls"
    )
    rows = []
    n = args.num_drones
    with MujocoBackend(world, n, CameraCfg(preset=ResolutionPreset.MULTI), **opts) as backend:
        print(f"backend: {backend.description}")
        backend.set_drone_poses(*_poses(n, args.seed))
        rows.append(
            (
                f"{n} cameras 80x80, one render_cameras()",
                _time_ms(backend.render_cameras, args.warmup, args.repeats),
            )
        )
        rows.append(("overview 640x480", _time_ms(backend.render_overview, args.warmup, args.repeats)))
    for preset in (ResolutionPreset.TRAINING, ResolutionPreset.FULL):
        with MujocoBackend(world, 1, CameraCfg(preset=preset), overview_size=(64, 48), **opts) as backend:
            backend.set_drone_poses(*_poses(1, args.seed))
            w, h = preset.size
            rows.append((f"1 camera {w}x{h}", _time_ms(backend.render_cameras, args.warmup, args.repeats)))
    width = max(len(name) for name, _ in rows)
    for name, (median, mean) in rows:
        print(f"  {name:<{width}}  {median:7.2f} ms  (mean {mean:7.2f} ms)")


if __name__ == "__main__":
    main()
