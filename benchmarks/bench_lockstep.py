"""Benchmark the PX4 lockstep round trip against the MAVLink test double (no PX4 needed).

One lockstep step is what :class:`flyby.px4.flight_stack.PX4FlightStack` does per physics
step: HIL_STATE_QUATERNION, HIL_GPS (10 Hz), an offboard setpoint (50 Hz) and HIL_SENSOR
out over loopback, then the wait for HIL_ACTUATOR_CONTROLS. The round-trip time is
measured by the bridge from sending HIL_SENSOR to parsing its reply; it includes the
double's own work per reply (decode, checks and, with ``--controller cascade``, one
built-in cascade controller update, as PX4 would run its controllers). The drone is
brought up (parameters, OFFBOARD, armed), climbs to about 2 m and hovers while timed.

It prints mean / p50 / p99 round trip in microseconds and lockstep steps per second
(including the rigid body and sensors in this process). By default the double runs in
its own process, as PX4 does; ``--double thread`` runs it in a thread of this process
(as the CI tests do), where both sides share the GIL.

    python benchmarks/bench_lockstep.py
    python benchmarks/bench_lockstep.py --steps 5000 --controller hold --json output/metrics/lockstep.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Lockstep round-trip time (HIL_SENSOR -> HIL_ACTUATOR_CONTROLS) against the MAVLink test double."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--steps", type=int, default=2000, help="timed lockstep steps (after bring-up and a 1 s climb)"
    )
    p.add_argument(
        "--controller",
        choices=("cascade", "hold"),
        default="cascade",
        help="what the double computes per reply: the built-in cascade controller, or a constant hover "
        "command (transport and MAVLink cost only)",
    )
    p.add_argument(
        "--double",
        choices=("process", "thread"),
        default="process",
        help="run the test double in its own process (like PX4) or in a thread of this one",
    )
    p.add_argument("--timeout-s", type=float, default=0.5, help="bridge bound on each reply wait, s")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


class HoldController:
    """Constant hover command: isolates transport + MAVLink encode/decode from control work."""

    def __init__(self) -> None:
        from flyby.dynamics.multirotor import MultirotorCfg

        self.u = MultirotorCfg().hover_u

    def reset(self, ids=None) -> None:
        pass

    def update(self, vel_sp_w, yaw_rate_sp, state, dt):
        import numpy as np

        return np.full((1, 4), self.u)


def _double_process(sim_port: int, offboard_port: int, controller: str, stop, results) -> None:
    """Child process: run the double until ``stop`` is set, then report (violations, replies)."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "px4"))
    from mavlink_double import MavlinkDouble

    double = MavlinkDouble(
        sim_port,
        offboard_port,
        arm_after_s=0.2,
        controller=HoldController() if controller == "hold" else None,
    )
    double.start()
    stop.wait(300.0)
    double.stop()
    results.put((list(double.violations), double.replies_sent))


class _DoubleInProcess:
    """Launcher-like handle on the double's child process."""

    def __init__(self, sim_port: int, offboard_port: int, controller: str) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._results = ctx.Queue()
        self._proc = ctx.Process(
            target=_double_process,
            args=(sim_port, offboard_port, controller, self._stop, self._results),
            daemon=True,
        )
        self.violations: list[str] = []

    def start(self) -> None:
        self._proc.start()

    def poll(self) -> int | None:
        return self._proc.exitcode

    def describe(self) -> str:
        return f"MAVLink test double process {self._proc.pid} (exit code {self._proc.exitcode})"

    def stop(self) -> None:
        if self._proc.is_alive():
            self._stop.set()
            try:
                self.violations, _ = self._results.get(timeout=10.0)
            except Exception:  # the figures matter, the double's report is a bonus
                self.violations = ["the double process did not report"]
            self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "tests" / "px4"))
    import numpy as np
    from mavlink_double import MavlinkDouble
    from px4_rig import LockstepRig

    from flyby.px4.bridge import LockstepBridge
    from flyby.px4.offboard import OffboardClient

    bridge = LockstepBridge(0, args.timeout_s, port=0)
    client = OffboardClient(0, port=0, timeout_s=10.0)
    if args.double == "process":
        double = _DoubleInProcess(bridge.port, client.port, args.controller)
    else:
        controller = HoldController() if args.controller == "hold" else None
        double = MavlinkDouble(bridge.port, client.port, arm_after_s=0.2, controller=controller)
    bridge.process = double
    try:
        double.start()
        bridge.wait_for_connection(timeout_s=30.0)
        rig = LockstepRig(bridge, client)
        rig.bring_up()
        for _ in range(250):  # 1 s climb at 1 m/s, then hover while timed
            rig.step((0.0, 0.0, 1.0))
        bridge.rtt_s.clear()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            rig.step()
        wall_s = time.perf_counter() - t0
        rtt_us = np.asarray(bridge.rtt_s, dtype=np.float64) * 1e6
        result = {
            "controller": args.controller,
            "double": args.double,
            "steps": args.steps,
            "fresh_replies": int(rtt_us.size),
            "timeouts": bridge.timeouts,
            "rtt_mean_us": float(rtt_us.mean()),
            "rtt_p50_us": float(np.percentile(rtt_us, 50)),
            "rtt_p99_us": float(np.percentile(rtt_us, 99)),
            "lockstep_steps_per_s": args.steps / wall_s,
            "real_time_factor_250hz": args.steps * 0.004 / wall_s,
            "altitude_m": float(rig.sim.pos_w[0, 2]),
        }
    finally:
        double.stop()
        bridge.close()
        client.close()
    result["double_violations"] = len(double.violations)
    print(
        f"lockstep round trip vs MAVLink test double ({result['double']}), "
        f"controller={result['controller']}, {result['steps']} steps"
    )
    print(
        f"  round trip: mean {result['rtt_mean_us']:.0f} us, p50 {result['rtt_p50_us']:.0f} us, "
        f"p99 {result['rtt_p99_us']:.0f} us "
        f"({result['fresh_replies']} replies, {result['timeouts']} timeouts)"
    )
    print(
        f"  lockstep loop: {result['lockstep_steps_per_s']:.0f} steps/s "
        f"(real-time factor {result['real_time_factor_250hz']:.2f} at 250 Hz), "
        f"hovering at {result['altitude_m']:.2f} m, "
        f"{result['double_violations']} protocol violations"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["double_violations"] == 0 and result["fresh_replies"] == args.steps else 1


if __name__ == "__main__":
    raise SystemExit(main())
