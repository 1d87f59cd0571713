"""The ISR task on the compiled kernels (``FLYBY_KERNEL=numba``) against the numpy reference.

Whole rollouts with autoresets, drones driven into the geofence, buildings and the ground, and
the same seeds (so the same spawn, noise and action streams) on both paths. Stated tolerance:

- dynamics states, rewards, terminations, truncations, episode logs: equal bit for bit;
- observations: equal bit for bit, except the detection slots, which may differ by the float32
  rounding of the box corners (ground-truth boxes are float64 dot products summed in a
  different order, tests/perception/test_gt_kernel.py), and rows where two visible
  detections score the same (the reference keeps ``np.argpartition``'s order for ties, the
  kernel the target index).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flyby.config.training import load_training_cfg
from flyby.envs.isr_task import ISRTask
from flyby.mdp.terms import ObsTerm

DET_ATOL = 1e-6  # detection slots: centres and sizes are fractions of the image, in [-1, 1]


def altitude_and_speed(task) -> np.ndarray:
    """A user observation term, (N, 2): altitude and speed scaled to about [-1, 1]."""
    speed = np.linalg.norm(task.dynamics.lin_vel_w, axis=1)
    return np.c_[task.pos_w[:, 2] / 60.0 - 1.0, speed / 10.0]


def rollout(kernel: str, monkeypatch, cfg, n: int, steps: int, seed: int):
    """Steps of a task seeded with ``seed``: actions that sweep the area and dive now and then."""
    monkeypatch.setenv("FLYBY_KERNEL", kernel)
    task = ISRTask(cfg, num_envs=n)
    task.seed(seed)
    task.reset_all()
    rng = np.random.default_rng(seed)
    heading = rng.uniform(-1, 1, (n, 4))
    out = []
    for step in range(steps):
        if step % 40 == 0:
            heading = rng.uniform(-1, 1, (n, 4))
            heading[: n // 2, 2] = -1.0  # half dive: ground and building crashes
        a = np.clip(heading + rng.normal(0, 0.3, (n, 4)), -1.5, 1.5)  # out-of-range actions clip
        r = task.step(a)
        out.append((r, task.dynamics.pos_w.copy(), task.dynamics.yaw_rad.copy(), task.covered.copy()))
    return task, out


def tied_rows(task: ISRTask) -> np.ndarray:
    """(N,) bool: rows whose visible detections hold two equal top-k scores (order may differ)."""
    d = task.detections
    b = d.boxes_px.astype(np.float64)
    score = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) + task.newly_seen * 1e7
    tied = np.zeros(task.num_envs, dtype=bool)
    for i in range(task.num_envs):
        s = np.sort(score[i, d.visible[i]])
        tied[i] = bool((np.diff(s) == 0).any())
    return tied


@pytest.mark.parametrize(
    ("env", "n", "user_obs", "interval"),
    [
        ("direct_env", 1, False, 1),
        ("multi_drone_env", 16, False, 1),
        ("multi_drone_env", 5, True, 1),
        ("multi_drone_env", 3, False, 3),  # perception every third step: detections carried over
    ],
)
@pytest.mark.parametrize("seed", [0, 7])
def test_rollouts_on_the_kernels_equal_the_numpy_reference(monkeypatch, env, n, user_obs, interval, seed):
    cfg = dataclasses.replace(getattr(load_training_cfg(), env), perception_interval=interval)
    if user_obs:
        cfg.observations.terms = {**cfg.observations.terms, "alt_speed": ObsTerm(func=altitude_and_speed)}
    _, ref = rollout("numpy", monkeypatch, cfg, n, 300, seed)
    task, fast = rollout("numba", monkeypatch, cfg, n, 300, seed)
    det = task.layout.detections
    ends = resets = 0
    for (a, pos_a, yaw_a, cov_a), (b, pos_b, yaw_b, cov_b) in zip(ref, fast, strict=True):
        assert pos_a.tobytes() == pos_b.tobytes() and yaw_a.tobytes() == yaw_b.tobytes()
        assert cov_a.tobytes() == cov_b.tobytes()
        assert a.reward.tobytes() == b.reward.tobytes()
        assert (a.terminated == b.terminated).all() and (a.truncated == b.truncated).all()
        assert a.log == b.log
        other = np.ones(a.obs.shape[1], dtype=bool)
        other[det] = False
        assert a.obs[:, other].tobytes() == b.obs[:, other].tobytes()
        np.testing.assert_allclose(b.obs[:, det], a.obs[:, det], rtol=0, atol=DET_ATOL)
        assert a.done_ids.tolist() == b.done_ids.tolist()
        if a.done_ids.size:
            assert a.final_obs[:, other].tobytes() == b.final_obs[:, other].tobytes()
            np.testing.assert_allclose(b.final_obs[:, det], a.final_obs[:, det], rtol=0, atol=DET_ATOL)
        ends += int(a.terminated.sum())
        resets += a.done_ids.size
    assert ends > 0 and resets > 0  # the rollouts reached crashes and autoresets


@pytest.mark.parametrize("seed", [0, 7])
def test_parallel_step_equals_the_serial_step_bit_for_bit(monkeypatch, seed):
    """From FLYBY_PARALLEL_MIN_DRONES drones on, perception splits the drones over numba's threads:
    every output, detections and observations included, stays bit for bit the serial one's."""
    cfg = load_training_cfg().multi_drone_env
    runs = []
    for threshold in ("100000", "1"):
        monkeypatch.setenv("FLYBY_PARALLEL_MIN_DRONES", threshold)
        task, out = rollout("numba", monkeypatch, cfg, 48, 200, seed)
        runs.append((out, task.detections))
    (serial, det_s), (parallel, det_p) = runs
    for (a, pos_a, yaw_a, cov_a), (b, pos_b, yaw_b, cov_b) in zip(serial, parallel, strict=True):
        assert pos_a.tobytes() == pos_b.tobytes() and yaw_a.tobytes() == yaw_b.tobytes()
        assert cov_a.tobytes() == cov_b.tobytes()
        assert a.obs.tobytes() == b.obs.tobytes() and a.reward.tobytes() == b.reward.tobytes()
        assert (a.terminated == b.terminated).all() and a.log == b.log
    for x, y in zip(det_s, det_p, strict=True):
        assert x.tobytes() == y.tobytes()
    assert det_s.visible.any()


def switching_rollout(monkeypatch, cfg, n: int, one_call: bool, seed: int = 5):
    """A rollout that leaves the compiled path for a while (the numpy path rebinds some of the
    task's arrays) and comes back; ``one_call`` False keeps the compiled steps on the
    multi-call path."""
    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    task = ISRTask(cfg, num_envs=n)
    task._one_call_ok = task._one_call_ok and one_call
    task.seed(seed)
    task.reset_all(pos_w=np.tile([80.0, 0.0, 30.0], (n, 1)))  # near the geofence (100 m)
    rng = np.random.default_rng(seed)
    out = []
    for step in range(300):
        monkeypatch.setenv("FLYBY_KERNEL", "numpy" if 100 <= step < 130 else "numba")
        if step % 60 == 0:  # held headings: out of the geofence first, then anywhere
            heading = rng.uniform(-1, 1, (n, 4))
            heading[:, :2] /= np.abs(heading[:, :2]).max(axis=1, keepdims=True)
            heading[: (n + 1) // 2, 2] = -1.0
            if step == 0:
                heading[:, 0] = 1.0
        r = task.step(heading + rng.normal(0, 0.2, (n, 4)))
        d = task.detections
        out.append((r, task.pos_w.copy(), task.covered.copy(), d.boxes_px.copy(), d.visible.copy()))
    return task, out


@pytest.mark.parametrize(("n", "interval"), [(1, 1), (7, 1), (4, 2)])
def test_one_call_step_equals_the_multi_call_step_bit_for_bit(monkeypatch, n, interval):
    """Below the thread split the compiled step is one call (flyby.envs.step_kernel): every output
    equals the multi-call path's bit for bit, also after the numpy path rebound the arrays the
    one-call state refers to."""
    cfg = dataclasses.replace(load_training_cfg().multi_drone_env, perception_interval=interval)
    task, one = switching_rollout(monkeypatch, cfg, n, one_call=True)
    assert task._one_call is not None  # the one-call path ran
    _, multi = switching_rollout(monkeypatch, cfg, n, one_call=False)
    resets = 0
    for (a, *arrays_a), (b, *arrays_b) in zip(one, multi, strict=True):
        assert a.obs.tobytes() == b.obs.tobytes() and a.reward.tobytes() == b.reward.tobytes()
        assert a.terminated.tobytes() == b.terminated.tobytes()
        assert a.truncated.tobytes() == b.truncated.tobytes()
        assert a.done_ids.tolist() == b.done_ids.tolist() and a.log == b.log
        assert (a.final_obs is None) == (b.final_obs is None)
        if a.final_obs is not None:
            assert a.final_obs.tobytes() == b.final_obs.tobytes()
        for x, y in zip(arrays_a, arrays_b, strict=True):
            assert x.tobytes() == y.tobytes()
        resets += a.done_ids.size
    assert resets > 0


def test_one_call_step_leaves_no_trace_of_a_rejected_action(monkeypatch):
    """A NaN action raises before anything moves or any noise is drawn: the run goes on as if
    the bad step had never been asked."""
    from flyby.errors import InvalidAction

    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    cfg = load_training_cfg().multi_drone_env
    runs = []
    for reject in (False, True):
        task = ISRTask(cfg, num_envs=3)
        task.seed(2)
        task.reset_all()
        rng = np.random.default_rng(2)
        obs = []
        for step in range(30):
            if reject and step == 10:
                bad = np.zeros((3, 4))
                bad[1, 2] = np.nan
                with pytest.raises(InvalidAction, match=r"NaN/inf at \(env, channel\) \[\[1, 2\]\]"):
                    task.step(bad)
            obs.append(task.step(rng.uniform(-1, 1, (3, 4))).obs)
        runs.append(np.stack(obs))
    assert runs[0].tobytes() == runs[1].tobytes()


def test_parallel_kernels_have_cache_entries_of_their_own():
    """numba's on-disk cache names its entries by function, not by the ``parallel`` flag: an
    ``njit(parallel=True)`` of the serial kernel's own function would load the serial machine
    code (the same results, no threads; the bit-for-bit tests above cannot see it). Each parallel
    kernel must therefore be a function of its own, with its own cache index file (numba's
    ``FunctionCache``, read through its private attributes)."""
    import numba

    from flyby.mdp import kernels
    from flyby.perception import gt_kernel

    def index_file(dispatcher) -> str:
        return dispatcher._cache._cache_file._index_name

    pairs = [
        (kernels.perceive_into, kernels.perceive_into_parallel),
        (kernels.observe_into, kernels.observe_into_parallel),
        (gt_kernel.detect_kernel, gt_kernel.detect_kernel_parallel),
    ]
    for serial, parallel in pairs:
        assert parallel.targetoptions.get("parallel") is True and not serial.targetoptions.get("parallel")
        assert index_file(parallel) != index_file(serial), parallel.__name__
    # The trap itself: if numba ever keys on the flag, this fails and the separate functions can go.
    twin = numba.njit(cache=True, parallel=True)(kernels.perceive_into.py_func)
    assert index_file(twin) == index_file(kernels.perceive_into)


def test_parallel_threshold_rejects_a_bad_value(monkeypatch):
    from flyby.errors import ConfigError
    from flyby.kernels import parallel_min_drones

    monkeypatch.delenv("FLYBY_PARALLEL_MIN_DRONES", raising=False)
    assert parallel_min_drones() == 64
    monkeypatch.setenv("FLYBY_PARALLEL_MIN_DRONES", " 300 ")
    assert parallel_min_drones() == 300
    for bad in ("0", "-3", "many", "2.5"):
        monkeypatch.setenv("FLYBY_PARALLEL_MIN_DRONES", bad)
        with pytest.raises(
            ConfigError, match=rf"FLYBY_PARALLEL_MIN_DRONES='{bad}' is not a positive integer"
        ):
            parallel_min_drones()


def test_observation_kernel_equals_the_reference_on_the_same_state(monkeypatch):
    """The compiled observation of the reference's own state: equal, ties aside (bit for bit
    outside the detection slots)."""
    monkeypatch.setenv("FLYBY_KERNEL", "numpy")
    cfg = load_training_cfg().multi_drone_env
    task = ISRTask(cfg, num_envs=32)
    task.seed(3)
    task.reset_all()
    rng = np.random.default_rng(3)
    compared = visible = 0
    for _ in range(150):
        obs = task.step(rng.uniform(-1, 1, (32, 4))).obs
        fast = task._get_observations_kernel().copy()
        rows = ~tied_rows(task)
        # Equal as numbers: an empty detection slot is 0.0 times the box of the target its index
        # names, which the reference leaves to argpartition (0.0 or -0.0, both zero).
        np.testing.assert_array_equal(fast[rows], obs[rows])
        other = np.ones(obs.shape[1], dtype=bool)
        other[task.layout.detections] = False
        assert obs[rows][:, other].tobytes() == fast[rows][:, other].tobytes()
        compared += int(rows.sum())
        visible += int(task.detections.visible[rows].any(axis=1).sum())
    assert compared > 0.9 * 150 * 32 and visible > 100  # ties are rare; detections were encoded


def test_full_fidelity_env_on_the_kernels_equals_the_reference(monkeypatch):
    """PX4ISR-v0 on the cascade: the cascade and the rotors run in one compiled call per physics step
    (tests/dynamics/test_flight_stack_motion.py), the perception step takes the reference path for
    tilted cameras, dones, rewards and observations run compiled. The physics sums in another order
    than numpy's BLAS, so positions agree within 1e-9 m (measured: 4e-15 m after 300 steps),
    rewards within 1e-9, dones exactly."""
    from flyby.config.evaluation import load_evaluation_cfg
    from flyby.envs.px4_env import PX4ISREnv

    cfg = load_evaluation_cfg().px4_env
    runs = {}
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        env = PX4ISREnv(cfg, flight_stack="cascade")
        obs, _ = env.reset(seed=4)
        rng = np.random.default_rng(4)
        steps = [obs]
        for _ in range(150):
            obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4))
            steps.append((obs, reward, terminated, truncated, env.unwrapped.task.pos_w.copy()))
        assert (env.unwrapped.task.dynamics._compiled_args is not None) == (kernel == "numba")
        env.close()
        runs[kernel] = steps
    for a, b in zip(runs["numpy"][1:], runs["numba"][1:], strict=True):
        np.testing.assert_allclose(b[4], a[4], rtol=0, atol=1e-9)
        assert b[1] == pytest.approx(a[1], rel=1e-9, abs=1e-9) and a[2:4] == b[2:4]
        np.testing.assert_allclose(b[0], a[0], rtol=0, atol=DET_ATOL)


def test_a_subclass_of_the_direct_model_keeps_its_own_step(monkeypatch):
    """The one-call step skips DynamicsModel.step; a subclass that overrides it is honoured."""
    from flyby.dynamics.direct import DirectDynamics

    class Frozen(DirectDynamics):
        def step(self, actions, dt):
            return self.pos_w, self.yaw_rad  # hovers in place whatever the actions

    monkeypatch.setenv("FLYBY_KERNEL", "numba")
    cfg = load_training_cfg().multi_drone_env
    task = ISRTask(cfg, num_envs=2, motion=Frozen(cfg.dynamics, 2, cfg.actions))
    task.seed(0)
    task.reset_all()
    start = task.pos_w.copy()
    for _ in range(5):
        task.step(np.ones((2, 4)))
    assert task._one_call is None and task.pos_w.tobytes() == start.tobytes()
