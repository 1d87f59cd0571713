"""Full-fidelity motion (flyby.dynamics.flight_stack_motion) on the cascade: the compiled substep.

With ``FLYBY_KERNEL=numba`` and the built-in cascade and rotor model, one compiled call per physics
step (:func:`flyby.control.cascade_kernel.cascade_rotors_into`) reads the state from MjData, runs
the cascade and the rotors and writes the wrench; the numpy reference runs
``CascadeController.update``, ``RotorModel.step``/``wrench_b`` and ``apply_body_wrench``. The two
sum in different orders (BLAS against scalar loops), so they agree to rounding, stated here as
1e-9 m and 1e-9 m/s after 150 control steps (measured: below 1e-13).
"""

from __future__ import annotations

import numpy as np
import pytest

from flyby.control import CascadeCfg, CascadeController
from flyby.dynamics.flight_stack_motion import FlightStackMotion
from flyby.dynamics.multirotor import MultirotorCfg, RotorModel
from flyby.enums import ResolutionPreset
from flyby.mdp.actions import ActionCfg
from flyby.perception.camera import CameraCfg
from flyby.world import WorldCfg, generate_world

mb = pytest.importorskip(
    "flyby.sim.mujoco_backend", reason="MuJoCo offscreen rendering (EGL/OSMesa) is unavailable"
)

PHYSICS_DT, DECIMATION, N = 0.004, 10, 3
STEP_DT = PHYSICS_DT * DECIMATION


def make_motion(controller_type=CascadeController) -> FlightStackMotion:
    world = generate_world(WorldCfg(num_buildings=4, num_vehicles=0, num_people=0), seed=1)
    airframe = MultirotorCfg()
    backend = mb.MujocoBackend(
        world, N, CameraCfg(preset=ResolutionPreset.MULTI), overview_size=(64, 48), dynamic=airframe
    )
    return FlightStackMotion(
        backend, controller_type(CascadeCfg(), airframe, N), RotorModel(airframe, N), ActionCfg(),
        PHYSICS_DT, DECIMATION,
    )  # fmt: skip


def fly(motion: FlightStackMotion, seed: int, steps: int = 150) -> list[tuple[np.ndarray, ...]]:
    """Random actions (saturating ones too) from a start at 20-40 m; drone 1 restarts at step 60."""
    rng = np.random.default_rng(seed)
    start = np.array([[0.0, 0.0, 30.0], [10.0, 5.0, 20.0], [-8.0, 3.0, 40.0]])
    motion.reset(start, np.array([0.0, 1.0, -2.0]))
    out = []
    for step in range(steps):
        if step == 60:
            motion.reset(np.array([[12.0, -4.0, 25.0]]), np.array([0.5]), ids=np.array([1]))
        motion.step(rng.uniform(-1.0, 1.0, (N, 4)), STEP_DT)
        s = motion.state
        out.append((s.pos_w, s.quat_wxyz, s.lin_vel_w, s.ang_vel_b, s.specific_force_b, s.contact))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_substep_agrees_with_the_reference(monkeypatch, seed):
    runs = {}
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        motion = make_motion()
        try:
            runs[kernel] = fly(motion, seed)
            assert (motion._compiled_args is not None) == (kernel == "numba")
        finally:
            motion.backend.close()
    for ref, fast in zip(runs["numpy"], runs["numba"], strict=True):
        names = ("pos_w", "quat_wxyz", "lin_vel_w", "ang_vel_b", "specific_force_b")
        for name, a, b in zip(names, ref, fast, strict=False):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9, err_msg=name)
        assert (ref[5] == fast[5]).all()
    assert np.ptp([s[0][:, :2] for s in runs["numba"]], axis=0).max() > 5.0  # the drones did fly


def test_a_subclass_of_the_cascade_keeps_its_own_update(monkeypatch):
    """The compiled substep skips CascadeController.update; a subclass that overrides it is honoured."""
    calls = []

    class Counting(CascadeController):
        def update(self, vel_sp_w, yaw_rate_sp, state, dt):
            calls.append(dt)
            return super().update(vel_sp_w, yaw_rate_sp, state, dt)

    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    motion = make_motion(Counting)
    try:
        fly(motion, 0, steps=3)
        assert motion._compiled_args is None and len(calls) == 3 * DECIMATION
    finally:
        motion.backend.close()


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_a_wrench_beyond_mujoco_s_limit_is_the_backend_s_error(monkeypatch, kernel):
    """Rotor speeds that make the wrench exceed MuJoCo's 1e10 raise the backend's own error, on both
    paths, with the wrench cleared; a wrong setpoint shape names both shapes."""
    monkeypatch.setenv("FLYBY_KERNEL", kernel)
    motion = make_motion()
    try:
        fly(motion, 0, steps=2)
        motion.rotors.omega[2] = 1e8  # 5.84e-6 x 1e16 N of thrust
        with pytest.raises(ValueError, match="must be finite and below 1e\\+10"):
            motion.step(np.zeros((N, 4)), STEP_DT)
        assert (motion.backend.free_body_views().ctrl == 0.0).all()
        shapes = r"expected vel_sp_w \(3, 3\) and yaw_rate_sp \(3,\); got \(2, 3\)"
        with pytest.raises(ValueError, match=shapes):
            motion._control_step(np.zeros((2, 3)), np.zeros(3))
    finally:
        motion.backend.close()
