"""Where the compiled step should start splitting drones over numba's threads.

Times ``MultiDroneISR-v0`` (the packaged training configuration, scripted patrol policy, no
render) at each drone count twice in the same process: perception on one thread
(``FLYBY_PARALLEL_MIN_DRONES`` above the count) and split over numba's threads (at or below it),
the median of ``--repeats`` alternating runs each. The default threshold in :mod:`flyby.kernels`
(64) comes from this table on the 2-core machine.

    python benchmarks/bench_parallel.py                          # about a minute on 2 cores
    python benchmarks/bench_parallel.py --drones 16,64,128,256,1024 --repeats 7

Prints figures only; changes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics

from flyby.bench import scaling_table
from flyby.kernels import PARALLEL_ENV


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drones", default="16,64,256,1024", help="comma-separated drone counts")
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    parser.add_argument(
        "--drone-steps", type=int, default=20_000, help="drone-steps per run (at least 50 env steps)"
    )
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.drones.split(",")]
    if args.repeats < 1 or args.drone_steps < 1 or min(counts) < 1:
        parser.error("--drones, --repeats and --drone-steps must be positive")
    import numba

    print(f"numba {numba.__version__}, {numba.config.NUMBA_NUM_THREADS} threads")
    print(
        f"{'drones':>7} {'one thread':>14} {'split':>14} {'ratio':>7}"
        f"   (drone-steps/s, median of {args.repeats}, alternating)"
    )
    before = os.environ.get(PARALLEL_ENV)
    scaling_table((counts[0],), steps=50, warmup=20)  # loads the compiled kernels, untimed
    try:
        for n in counts:
            runs: dict[int, list[float]] = {n + 1: [], n: []}  # threshold -> figures (one thread, split)
            for _ in range(args.repeats):  # alternating, so a slow spell of the machine hits both
                for threshold in runs:
                    os.environ[PARALLEL_ENV] = str(threshold)
                    steps = max(50, args.drone_steps // n)
                    runs[threshold].append(scaling_table((n,), steps=steps, warmup=20)[0].drone_steps_per_s)
            figures = [statistics.median(runs[n + 1]), statistics.median(runs[n])]
            print(f"{n:>7} {figures[0]:>14,.0f} {figures[1]:>14,.0f} {figures[1] / figures[0]:>7.2f}")
    finally:
        if before is None:
            os.environ.pop(PARALLEL_ENV, None)
        else:
            os.environ[PARALLEL_ENV] = before


if __name__ == "__main__":
    main()
