"""Physics timings of the full-fidelity path on the MuJoCo backend (dynamic mode).

For each drone count N, on the default ISR world (40 buildings with collision
boxes, 40 mocap targets), prints microseconds per call (median of ``--repeats``
timed blocks after a warm-up) for:

- one physics step: ``backend.step_physics(1)`` (one ``mj_step`` at 250 Hz, all N drones),
- the pieces of one physics substep: ``drone_state()``, ``CascadeController.update``,
  ``RotorModel.step`` + ``wrench_b``, ``apply_body_wrench``,
- one control step: ``--substeps`` x (state -> controller -> rotor model ->
  wrench -> ``mj_step``), the inner loop of the full-fidelity env with the
  built-in cascade,

and the real-time factor of the control step (simulated seconds per wall second,
per drone and summed over the N drones). Nothing is rendered.

    python benchmarks/bench_physics.py
    python benchmarks/bench_physics.py --num-drones 1 4 16 64 --substeps 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np


def _time_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` blocks of the mean microseconds per call in a block of ``calls``."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(samples)


def bench(num_drones: int, substeps: int, calls: int, repeats: int, world_seed: int) -> dict[str, float]:
    from flyby.control import CascadeCfg, CascadeController
    from flyby.dynamics.multirotor import MultirotorCfg, RotorModel
    from flyby.enums import ResolutionPreset
    from flyby.geometry import STANDARD_GRAVITY, rotate_inverse, yaw_quat_wxyz
    from flyby.perception.camera import CameraCfg
    from flyby.sim.mujoco_backend import MujocoBackend
    from flyby.world import generate_world

    airframe = MultirotorCfg()
    world = generate_world(seed=world_seed)
    backend = MujocoBackend(
        world, num_drones, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(64, 48), dynamic=airframe
    )
    n = num_drones
    dt = backend.physics_dt
    rng = np.random.default_rng(0)
    pos = np.c_[rng.uniform(-80, 80, (n, 2)), np.full(n, 45.0)]  # above the tallest building
    rotors = RotorModel(airframe, n)
    controller = CascadeController(CascadeCfg(), airframe, n)
    vel_sp = rng.uniform(-2.0, 2.0, (n, 3))
    yaw_rate = rng.uniform(-0.5, 0.5, n)
    armed = np.ones(n, dtype=bool)

    def substep() -> None:
        state = backend.drone_state()
        u = controller.update(vel_sp, yaw_rate, state, dt)
        omega = rotors.step(u, armed, dt)
        backend.apply_body_wrench(*rotors.wrench_b(omega, rotate_inverse(state.quat_wxyz, state.lin_vel_w)))
        backend.step_physics(1)

    def control_step() -> None:
        for _ in range(substeps):
            substep()

    def start() -> None:
        """Drones at rest above the tallest building, rotors at hover, then 1 s of forward flight."""
        backend.reset_drone_states(pos, yaw_quat_wxyz(yaw0))
        rotors.reset(omega=airframe.hover_omega)
        controller.reset()
        for _ in range(250):
            substep()

    yaw0 = rng.uniform(-np.pi, np.pi, n)
    start()
    state = backend.drone_state()
    u = controller.update(vel_sp, yaw_rate, state, dt)
    omega = rotors.step(u, armed, dt)
    force, torque = rotors.wrench_b(omega)
    hover_force = np.tile([0.0, 0.0, airframe.mass_kg * STANDARD_GRAVITY], (n, 1))
    backend.apply_body_wrench(hover_force, np.zeros((n, 3)))  # no torque: no spin-up while timing mj_step
    out = {"physics_step_us": _time_us(lambda: backend.step_physics(1), calls, repeats)}
    out["drone_state_us"] = _time_us(backend.drone_state, calls, repeats)
    out["controller_us"] = _time_us(lambda: controller.update(vel_sp, yaw_rate, state, dt), calls, repeats)
    out["rotor_model_us"] = _time_us(lambda: rotors.wrench_b(rotors.step(u, armed, dt)), calls, repeats)
    out["apply_wrench_us"] = _time_us(lambda: backend.apply_body_wrench(force, torque), calls, repeats)
    start()  # the isolated timings left stale integrators and wrenches behind
    out["control_step_us"] = _time_us(control_step, max(1, calls // substeps), repeats)
    backend.close()
    sim_s = substeps * dt
    out["real_time_factor"] = sim_s / (out["control_step_us"] * 1e-6)
    out["drone_real_time_factor"] = n * out["real_time_factor"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the MuJoCo dynamic mode: physics step, cascade controller, rotor model and a "
        "control step of physics substeps (no rendering)."
    )
    parser.add_argument(
        "--num-drones", type=int, nargs="+", default=[1, 16], help="drone counts (default: 1 16)"
    )
    parser.add_argument(
        "--substeps", type=int, default=10, help="physics steps per control step (default: 10)"
    )
    parser.add_argument("--calls", type=int, default=500, help="calls per timed block (default: 500)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed blocks; the median is printed (default: 5)"
    )
    parser.add_argument("--world-seed", type=int, default=0, help="ISR world seed (default: 0)")
    args = parser.parse_args(argv)
    if args.substeps < 1 or args.calls < 1 or args.repeats < 1 or min(args.num_drones) < 1:
        parser.error("--num-drones, --substeps, --calls and --repeats must be >= 1")

    from flyby.sim.mujoco_backend import mujoco  # flyby picks the GL platform before mujoco loads

    print(
        f"mujoco {mujoco.__version__}, physics_dt 0.004 s (250 Hz), control step = {args.substeps} substeps"
    )
    header = (
        f"{'drones':>6} {'mj_step us':>10} {'state us':>9} {'ctrl us':>8} {'rotor us':>9} {'wrench us':>9} "
        f"{'control step us':>15} {'RTF':>7} {'drone RTF':>9}"
    )
    print(header)
    for n in args.num_drones:
        r = bench(n, args.substeps, args.calls, args.repeats, args.world_seed)
        print(
            f"{n:>6} {r['physics_step_us']:>10.1f} {r['drone_state_us']:>9.1f} {r['controller_us']:>8.1f} "
            f"{r['rotor_model_us']:>9.1f} {r['apply_wrench_us']:>9.1f} {r['control_step_us']:>15.1f} "
            f"{r['real_time_factor']:>7.1f} {r['drone_real_time_factor']:>9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
