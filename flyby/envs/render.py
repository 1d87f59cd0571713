"""Pixels on demand: a lazily built backend that mirrors an :class:`ISRTask`.

Training never creates a renderer. The first call to :meth:`TaskRenderer.cameras`
builds the backend (MuJoCo by default), copies the task's drone and target poses
into it (kinematic: no physics) and renders. Calls on the steps in between
renders return the cached frames (render skipping): a render happens at most
once every ``render_interval`` control steps unless forced.
"""

from __future__ import annotations

import numpy as np

from flyby.enums import BackendKind
from flyby.envs.isr_task import ISRTask
from flyby.geometry import yaw_quat_wxyz


class TaskRenderer:
    """Renders a task's drone cameras and an overview, with render skipping.

    Args:
        task: the task to mirror.
        backend: backend kind (see :func:`flyby.sim.base.select_backend_kind`), or a
            backend object that already exists (the full-fidelity env's physics
            backend): it is used as is, its drone poses are left to its physics
            and it is not closed here.
        render_interval: control steps between fresh renders (>= 1).

    Attributes:
        rendered: fresh camera renders so far.
        skipped: camera requests answered from the cache.
    """

    def __init__(
        self, task: ISRTask, backend: BackendKind | str | None = None, render_interval: int = 1
    ) -> None:
        if render_interval < 1:
            raise ValueError(f"render_interval must be >= 1 step, got {render_interval}")
        self.task = task
        self.render_interval = int(render_interval)
        self.rendered = 0
        self.skipped = 0
        if backend is None or isinstance(backend, (str, BackendKind)):
            self.backend_kind, self._backend, self._owns_backend = backend, None, True
        else:
            self.backend_kind, self._backend, self._owns_backend = None, backend, False
        self._frames: np.ndarray | None = None
        self._last_step = -(10**9)

    @property
    def backend(self):
        """The simulator backend, built on first use."""
        if self._backend is None:
            from flyby.sim.base import make_backend

            self._backend = make_backend(
                self.backend_kind, self.task.world, self.task.num_envs, self.task.cfg.camera
            )
        return self._backend

    def sync(self) -> None:
        """Copy drone and target poses from the task into the backend."""
        task = self.task
        if self._owns_backend:  # a kinematic mirror; a physics backend already has the poses
            self.backend.set_drone_poses(task.pos_w, yaw_quat_wxyz(task.yaw_rad))
        pos, yaw = task.world.target_poses(task.world_time_s)
        self.backend.set_target_poses(pos, yaw)

    def cameras(self, force: bool = False) -> tuple[np.ndarray, bool]:
        """All drone camera images.

        Returns:
            frames: (N, H, W, 3) uint8 RGB at the camera preset's resolution.
            fresh: True if rendered now, False if reused from an earlier step.
        """
        step = self.task.global_step
        due = step - self._last_step >= self.render_interval or step < self._last_step
        if force or due or self._frames is None:
            self.sync()
            self._frames = self.backend.render_cameras()
            self._last_step = step
            self.rendered += 1
            return self._frames, True
        self.skipped += 1
        return self._frames, False

    def overview(self) -> np.ndarray:
        """(H, W, 3) uint8 image of the whole area from the overview camera (always fresh)."""
        self.sync()
        return self.backend.render_overview()

    def close(self) -> None:
        if self._backend is not None and self._owns_backend:
            self._backend.close()
        self._backend = None
