from __future__ import annotations

import numpy as np
import pytest

from flyby.envs.direct_env import DirectISREnv
from flyby.envs.multi_drone_env import MultiDroneISREnv
from flyby.envs.render import TaskRenderer


@pytest.fixture(scope="module")
def multi_env():
    env = MultiDroneISREnv(num_drones=4, render_mode="rgb_array")
    env.reset(seed=0)
    yield env
    env.close()


def test_render_skipping_reuses_frames_between_render_steps(multi_env):
    env = multi_env
    renderer = env.renderer
    interval = env.cfg.render_interval
    assert interval == 4
    fresh_flags = []
    for _ in range(12):
        env.step(np.full((4, 4), 0.3))
        frames, fresh = renderer.cameras()
        fresh_flags.append(fresh)
        assert frames.shape == (4, 80, 80, 3) and frames.dtype == np.uint8
    # Asked every step, rendered every 4th: the rest came from the cache.
    assert sum(fresh_flags) == 12 // interval
    assert renderer.skipped == 12 - 12 // interval
    grid = env.render()
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.shape[0] >= 2 * 80


def test_fresh_renders_follow_the_drones(multi_env):
    env = multi_env
    a, _ = env.renderer.cameras(force=True)
    a = a.copy()
    for _ in range(8):
        env.step(np.tile([1.0, 0.0, 0.0, 0.5], (4, 1)))
    b, fresh = env.renderer.cameras(force=True)
    assert fresh and not np.array_equal(a, b)


def test_direct_env_renders_its_camera_at_the_training_preset():
    env = DirectISREnv(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and image.std() > 1.0
    env.close()
    with pytest.warns(UserWarning, match="render_mode=None"):
        assert DirectISREnv().render() is None  # no render_mode: a warning, no image


def test_renderer_rejects_a_zero_interval(multi_env):
    with pytest.raises(ValueError, match="render_interval must be >= 1 step, got 0"):
        TaskRenderer(multi_env.task, render_interval=0)
