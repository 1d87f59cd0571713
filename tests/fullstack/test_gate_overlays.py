"""The gate videos' ground-truth boxes (gate_overlays) agree with the env's own detections."""

from __future__ import annotations

import numpy as np
from gate_overlays import truth_boxes

from flyby.envs.direct_env import DirectISREnv
from flyby.perception.gt import GroundTruthDetector


def test_truth_boxes_on_the_perception_camera_are_the_observed_detections():
    env = DirectISREnv(render_mode=None)
    try:
        env.reset(seed=3)
        detector = GroundTruthDetector.from_world(env.task.cfg.camera, env.task.world)
        found = 0
        for _ in range(60):
            env.step(np.array([0.3, 0.2, 0.0, 0.1], dtype=np.float32))
            boxes = truth_boxes(env.task, detector)
            det = env.task.detections
            # The render camera is the perception camera here: every box is in the observation, and the boxes
            # are the observation's.
            assert [b.in_obs for b in boxes] == [True] * len(boxes)
            assert len(boxes) == int(det.visible[0].sum())
            for b, t in zip(boxes, np.flatnonzero(det.visible[0])):
                assert np.allclose([b.x1, b.y1, b.x2, b.y2], det.boxes_px[0, t])
                assert b.target_class == int(env.task.world.target_class[t])
            found += len(boxes)
            overlay = [b.box(dx=10.0, scale=2.0) for b in boxes]
            assert all(o.style == "dashed" and ("in obs" in o.label) for o in overlay)
            assert all(o.x1 == 2.0 * b.x1 + 10.0 and o.y2 == 2.0 * b.y2 for o, b in zip(overlay, boxes))
        assert found > 0, "the drone saw no target in 60 steps: the check compared nothing"
    finally:
        env.close()
