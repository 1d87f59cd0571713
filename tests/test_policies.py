"""The scripted patrol policy: its compiled path flies exactly the numpy reference's patrol."""

from __future__ import annotations

import numpy as np
import pytest

from flyby.mdp.observations import ObsLayout
from flyby.policies import PatrolPolicy, SmoothPatrolPolicy


def _patrol_actions(monkeypatch, kernel: str, obs_seq: np.ndarray, **kwargs) -> np.ndarray:
    monkeypatch.setenv("FLYBY_KERNEL", kernel)
    policy = SmoothPatrolPolicy(obs_seq.shape[1], ObsLayout(5), seed=7, **kwargs)
    return np.stack([policy(obs) for obs in obs_seq])


@pytest.mark.parametrize("num_envs", [1, 3, 16])
def test_compiled_patrol_equals_reference_bit_for_bit(monkeypatch, num_envs):
    rng = np.random.default_rng(num_envs)
    layout = ObsLayout(5)
    obs_seq = rng.uniform(-1, 1, (300, num_envs, layout.dim)).astype(np.float32)
    # Edge cases: exactly at and past the edge fraction, zero, the ceiling, a NaN elsewhere in the row.
    obs_seq[:20, :, layout.pos] = np.float32(0.75)
    obs_seq[20:40, :, layout.pos] = np.float32(-0.76)
    obs_seq[40:60, :, layout.pos] = 0.0
    obs_seq[60:80, :, layout.pos.start + 2] = 1.0
    obs_seq[80:90, :, layout.detections] = np.nan
    kwargs = {"speed": 0.9, "altitude_frac": 0.35, "edge_frac": 0.75, "dt": 0.04}
    ref = _patrol_actions(monkeypatch, "numpy", obs_seq, **kwargs)
    fast = _patrol_actions(monkeypatch, "numba", obs_seq, **kwargs)
    assert fast.dtype == ref.dtype == np.float32
    assert (np.abs(ref) <= 1).all()
    np.testing.assert_array_equal(fast.view(np.int32), ref.view(np.int32))  # same bits, signed zeros too


def test_float64_observations_take_the_reference_path(monkeypatch):
    """The compiled path reads float32 positions; a float64 observation keeps the reference's arithmetic."""
    obs = np.random.default_rng(0).uniform(-1, 1, (50, 2, ObsLayout(5).dim))
    ref = _patrol_actions(monkeypatch, "numpy", obs)
    fast = _patrol_actions(monkeypatch, "numba", obs)
    np.testing.assert_array_equal(fast, ref)


def test_patrol_baseline_reseeds_identically_on_both_paths(monkeypatch):
    obs = np.zeros(ObsLayout(5).dim, dtype=np.float32)
    runs = []
    for kernel in ("numpy", "numba"):
        monkeypatch.setenv("FLYBY_KERNEL", kernel)
        policy = PatrolPolicy(dt=0.04, seed=3)
        first = [policy(obs) for _ in range(20)]
        policy.reset(3)
        again = [policy(obs) for _ in range(20)]
        np.testing.assert_array_equal(first, again)
        runs.append(first)
    np.testing.assert_array_equal(runs[0], runs[1])
