"""The bodies' state inside MjData: drones as mocap poses (kinematic) or free rigid bodies (dynamic).

- :class:`MocapDrones` (kinematic, the default): each drone is a mocap body whose
  pose the caller writes; nothing is stepped and nothing collides.
- :class:`FreeBodyDrones` (``dynamic=MultirotorCfg(...)``): each drone is a free
  rigid body with the airframe's mass and inertia, an invisible collision box,
  and a body-frame wrench input (six ``motor`` actuators on a site at the centre
  of mass); gravity is on, and the ground and every building (one invisible
  collision box each) collide with the drones. :meth:`FreeBodyDrones.step`
  advances the physics at the model's timestep (``physics_dt``) without
  rendering. Drones do not collide with each other (the collision filter is in
  :mod:`flyby.sim.mujoco_scene`).
- :class:`MocapTargets`: the targets are mocap bodies in both modes; the caller
  writes their position and yaw.

Both views index MjData arrays in place (no copies on write). Drone ids and poses are
validated by :func:`check_drone_ids` / :func:`check_drone_poses` before they get here.

Frames: world ENU, metres; quaternions wxyz rotate body FLU into world; angular
velocity is body FLU (MuJoCo's free-joint ``qvel[3:6]``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from flyby.dynamics.multirotor import DroneState
from flyby.errors import PhysicsUnstable
from flyby.geometry import STANDARD_GRAVITY, rotate_inverse, yaw_quat_wxyz
from flyby.sim.mujoco_import import mujoco
from flyby.sim.poses import check_drone_ids, check_drone_poses, check_target_poses

__all__ = [
    "FreeBodyDrones",
    "FreeBodyViews",
    "MocapDrones",
    "MocapTargets",
    "check_drone_ids",
    "check_drone_poses",
]


class MocapDrones:
    """Kinematic drones: mocap bodies whose poses the caller writes.

    Args:
        model: the compiled scene; ``drone_body`` are mocap bodies.
        data: its MjData.
        drone_body: (N,) intp body id of each drone.
    """

    def __init__(self, model, data, drone_body: np.ndarray) -> None:
        self._data = data
        self._mocap = model.body_mocapid[drone_body].astype(np.intp)

    def set_poses(self, ids: np.ndarray, pos_w: np.ndarray, quat_wxyz: np.ndarray) -> None:
        """Write the poses of drones ``ids``: (k, 3) float64 metres ENU, (k, 4) float64 unit wxyz."""
        self._data.mocap_pos[self._mocap[ids]] = pos_w
        self._data.mocap_quat[self._mocap[ids]] = quat_wxyz

    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) float64 pos_w (metres, ENU) and (N, 4) float64 quat_wxyz, copies."""
        return self._data.mocap_pos[self._mocap].copy(), self._data.mocap_quat[self._mocap].copy()


class MocapTargets:
    """The T targets: mocap bodies ``target_0`` ... whose poses (position, yaw) the caller writes.

    Args:
        model: the compiled scene.
        data: its MjData.
        num_targets: T, the world's number of targets.
    """

    def __init__(self, model, data, num_targets: int) -> None:
        self._data = data
        self._num_targets = num_targets
        body = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"target_{t}") for t in range(num_targets)]
        self._mocap = np.array([model.body_mocapid[b] for b in body], dtype=np.intp)

    def set_poses(self, pos_w: np.ndarray, yaw_rad: np.ndarray) -> None:
        """Place all T targets.

        Args:
            pos_w: (T, 3) float, metres, world ENU, box centres.
            yaw_rad: (T,) float, radians about world z.

        Raises:
            ValueError: wrong shapes or non-finite values.
        """
        pos, yaw = check_target_poses(pos_w, yaw_rad, self._num_targets)
        if self._num_targets:
            self._data.mocap_pos[self._mocap] = pos
            self._data.mocap_quat[self._mocap] = yaw_quat_wxyz(yaw)


class FreeBodyViews(NamedTuple):
    """Views into MjData of N free-body drones, for compiled controllers (no copies).

    Attributes:
        qpos: (N, 7) float64 [pos_w m ENU, quat_wxyz body FLU -> world]; read only.
        qvel: (N, 6) float64 [lin_vel_w m/s ENU, ang_vel_b rad/s FLU]; read only.
        ctrl: (N, 6) float64 body wrench [force_b N, torque_b N m], FLU, at the centre of mass,
            held through the next physics steps; written by the caller, who keeps every
            ``|value|`` below ``max_value`` (``MujocoBackend.apply_body_wrench`` checks it).
        max_value: MuJoCo's ``mjMAXVAL`` (1e10).
    """

    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray
    max_value: float


class FreeBodyDrones:
    """Free-body drones: index views into MjData, the body wrench, physics steps and contact flags.

    Args:
        model: the compiled dynamic scene (:func:`~flyby.sim.mujoco_scene.build_mjcf` with
            ``dynamic``): the drones are its only jointed bodies, one free joint each, in
            drone order, with six actuators each and collision geoms ``drone_<i>_collision``.
        data: its MjData.
        drone_body: (N,) intp body id of each drone.
    """

    def __init__(self, model, data, drone_body: np.ndarray) -> None:
        n = len(drone_body)
        m = model
        self._model, self._data, self._num_drones = model, data, n
        # Drones are the only jointed bodies, one free joint each, in drone order: qpos is
        # (N, 7) [pos_w, quat_wxyz] and qvel (N, 6) [lin_vel_w, ang_vel_b] without gathers.
        assert m.njnt == n and m.nq == 7 * n and m.nv == 6 * n and m.nu == 6 * n, (
            "unexpected dynamic model layout"
        )
        assert (m.jnt_bodyid == drone_body).all() and (m.jnt_qposadr == 7 * np.arange(n)).all()
        self._qpos = data.qpos.reshape(n, 7)
        self._qvel = data.qvel.reshape(n, 6)
        self._qacc = data.qacc.reshape(n, 6)
        self._ctrl = data.ctrl.reshape(n, 6)  # [force_b, torque_b] per drone (site actuators)
        geom_drone = np.full(m.ngeom, -1, dtype=np.intp)
        for i in range(n):
            geom_drone[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"drone_{i}_collision")] = i
        self._geom_drone = geom_drone
        self._contact = np.zeros(n, dtype=bool)
        self._gravity_w = np.array([0.0, 0.0, -STANDARD_GRAVITY])
        # MuJoCo resets the whole state on these warnings; step() turns them into errors.
        warn = mujoco.mjtWarning
        self._blow_up_warnings = [
            data.warning[w] for w in (warn.mjWARN_BADQPOS, warn.mjWARN_BADQVEL, warn.mjWARN_BADQACC)
        ]
        self._blow_ups_seen = [w.number for w in self._blow_up_warnings]
        mujoco.mj_forward(m, data)
        self._update_contact(reset=True)

    def _update_contact(self, reset: bool = False) -> None:
        """OR the drones touching the world in the current contact list into the contact flags."""
        if reset:
            self._contact[:] = False
        ncon = self._data.ncon
        if ncon:
            drones = self._geom_drone[self._data.contact.geom[:ncon].ravel()]
            self._contact[drones[drones >= 0]] = True

    def reset(self, ids: np.ndarray, pos_w: np.ndarray, quat_wxyz: np.ndarray) -> None:
        """Place drones ``ids`` at rest with zero wrench, then ``mj_forward`` (state valid at once).

        Args:
            ids: (k,) int drone indices.
            pos_w: (k, 3) float64, metres, world ENU, centre of mass.
            quat_wxyz: (k, 4) float64 unit quaternions, body FLU -> world.
        """
        self._qpos[ids, :3] = pos_w
        self._qpos[ids, 3:] = quat_wxyz
        self._qvel[ids] = 0.0
        self._ctrl[ids] = 0.0
        self._data.qacc_warmstart.reshape(self._num_drones, 6)[ids] = 0.0
        mujoco.mj_forward(self._model, self._data)
        self._update_contact(reset=True)

    def apply_body_wrench(self, force_b: np.ndarray, torque_b: np.ndarray) -> None:
        """Hold this wrench on every drone (body frame, at the centre of mass) until changed.

        Args:
            force_b: (N, 3) float, newtons, body FLU.
            torque_b: (N, 3) float, newton metres, body FLU.

        Raises:
            ValueError: wrong shapes, or values non-finite or beyond MuJoCo's 1e10 (the
                wrench is then cleared to zero).
        """
        n = self._num_drones
        force_b = np.asarray(force_b, dtype=np.float64)
        torque_b = np.asarray(torque_b, dtype=np.float64)
        if force_b.shape != (n, 3) or torque_b.shape != (n, 3):
            raise ValueError(
                f"expected force_b ({n}, 3) and torque_b ({n}, 3); got {force_b.shape} and {torque_b.shape}"
            )
        ctrl = self._ctrl
        ctrl[:, :3] = force_b
        ctrl[:, 3:] = torque_b
        if not np.abs(ctrl).max() < mujoco.mjMAXVAL:  # also catches NaN
            ctrl[:] = 0.0
            raise ValueError(
                f"the body wrench must be finite and below {mujoco.mjMAXVAL:g} (MuJoCo's limit); "
                "the wrench was cleared to zero"
            )

    def step(self, n: int) -> None:
        """Advance the physics by ``n`` >= 1 ``mj_step`` calls; contact flags cover all of them.

        Raises:
            PhysicsUnstable: MuJoCo met NaN or huge positions, velocities or accelerations
                and reset every body to its initial state.
        """
        model, data = self._model, self._data
        self._contact[:] = False
        for _ in range(n):
            mujoco.mj_step(model, data)
            if data.ncon:
                self._update_contact()
        blow_ups = [w.number for w in self._blow_up_warnings]
        if blow_ups != self._blow_ups_seen:
            changed = next(k for k, (a, b) in enumerate(zip(blow_ups, self._blow_ups_seen)) if a != b)
            self._blow_ups_seen = blow_ups
            dof = self._blow_up_warnings[changed].lastinfo
            raise PhysicsUnstable(
                f"MuJoCo found NaN or huge positions, velocities or accelerations (> {mujoco.mjMAXVAL:g}) "
                f"at degree of freedom {dof} (drone {dof // 6}) and reset the whole simulation to its "
                f"initial state (sim time now {data.time:.3f} s). Check the body wrench (within the "
                "airframe's thrust) and place the drones again with reset_drone_states."
            )

    def poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) float64 pos_w (metres, ENU, centre of mass) and (N, 4) float64 quat_wxyz, copies."""
        return self._qpos[:, :3].copy(), self._qpos[:, 3:].copy()

    def views(self) -> FreeBodyViews:
        """The drones' state and wrench input in MjData, as views (see :class:`FreeBodyViews`)."""
        return FreeBodyViews(self._qpos, self._qvel, self._ctrl, float(mujoco.mjMAXVAL))

    def state(self) -> DroneState:
        """The rigid-body state after the last step; see ``MujocoBackend.drone_state``.

        ``specific_force_b`` is ``R_wb^T (a_w - g_w)`` with ``a_w`` from MuJoCo's ``qacc``.

        Returns:
            A :class:`~flyby.dynamics.multirotor.DroneState` of (N, ...) float64 copies.
        """
        qpos, qvel = self._qpos, self._qvel
        quat = qpos[:, 3:].copy()
        return DroneState(
            pos_w=qpos[:, :3].copy(),
            quat_wxyz=quat,
            lin_vel_w=qvel[:, :3].copy(),
            ang_vel_b=qvel[:, 3:].copy(),
            specific_force_b=rotate_inverse(quat, self._qacc[:, :3] - self._gravity_w),
            contact=self._contact.copy(),
        )
