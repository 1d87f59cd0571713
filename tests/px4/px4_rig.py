"""Small test-only simulation pieces for the PX4 bridge tests (no MuJoCo, no PX4).

- :class:`RigidBodySim`: batched 6-DOF rigid body (Iris mass and inertia) driven by
  :class:`flyby.dynamics.multirotor.RotorModel`, with a flat ground at z = 0; semi-implicit
  Euler at the physics step. Enough to close the loop bridge -> double -> rotors -> body.
- :func:`make_sensors`: the project's :class:`flyby.sensors.SensorSuite` with its default config.
- :class:`LockstepRig`: bridge + offboard client + body + sensors stepped like an env's physics loop.
"""

from __future__ import annotations

import numpy as np

from flyby.dynamics.multirotor import DroneState, MultirotorCfg, RotorModel
from flyby.geometry import STANDARD_GRAVITY, quat_mul, quat_wxyz_to_rot


class RigidBodySim:
    """N free rigid bodies above a flat ground, pushed by the Iris rotor model. World ENU, body FLU."""

    def __init__(
        self, num_drones: int = 1, pos_w=None, yaw_rad=None, cfg: MultirotorCfg | None = None
    ) -> None:
        self.cfg = cfg or MultirotorCfg()
        self.n = num_drones
        self.rotors = RotorModel(self.cfg, num_drones)
        self.inertia = np.asarray(self.cfg.inertia_kgm2, dtype=np.float64)
        self.reset(pos_w, yaw_rad)

    def reset(self, pos_w=None, yaw_rad=None) -> None:
        n = self.n
        self.pos_w = np.zeros((n, 3)) if pos_w is None else np.array(pos_w, dtype=np.float64).reshape(n, 3)
        yaw = np.zeros(n) if yaw_rad is None else np.asarray(yaw_rad, dtype=np.float64).reshape(n)
        self.quat = np.stack([np.cos(yaw / 2), np.zeros(n), np.zeros(n), np.sin(yaw / 2)], axis=1)
        self.vel_w = np.zeros((n, 3))
        self.omega_b = np.zeros((n, 3))
        self.specific_force_b = np.tile([0.0, 0.0, STANDARD_GRAVITY], (n, 1))
        self.contact = self.pos_w[:, 2] <= 1e-9
        self.rotors.reset()
        self.time_s = 0.0

    def state(self) -> DroneState:
        return DroneState(
            self.pos_w.copy(), self.quat.copy(), self.vel_w.copy(), self.omega_b.copy(),
            self.specific_force_b.copy(), self.contact.copy(),
        )  # fmt: skip

    def step(self, u: np.ndarray, armed: np.ndarray, dt: float) -> None:
        rot = quat_wxyz_to_rot(self.quat)
        vel_b = np.einsum("nji,nj->ni", rot, self.vel_w)
        omega = self.rotors.step(u, armed, dt)
        force_b, torque_b = self.rotors.wrench_b(omega, vel_b)
        acc_w = np.einsum("nij,nj->ni", rot, force_b) / self.cfg.mass_kg
        acc_w[:, 2] -= STANDARD_GRAVITY
        on_ground = (self.pos_w[:, 2] <= 1e-9) & (acc_w[:, 2] <= 0.0)
        acc_w[on_ground] = 0.0  # the ground carries the weight; no sliding
        self.vel_w += acc_w * dt
        self.vel_w[on_ground] = 0.0
        self.pos_w += self.vel_w * dt
        below = self.pos_w[:, 2] < 0.0
        self.pos_w[below, 2] = 0.0
        self.vel_w[below, 2] = np.maximum(self.vel_w[below, 2], 0.0)
        gyro = np.cross(self.omega_b, self.omega_b * self.inertia)
        self.omega_b += (torque_b - gyro) / self.inertia * dt
        self.omega_b[on_ground] = 0.0
        half = 0.5 * dt * self.omega_b
        dq = np.concatenate([np.ones((self.n, 1)), half], axis=1)
        self.quat = quat_mul(self.quat, dq)
        self.quat /= np.linalg.norm(self.quat, axis=1, keepdims=True)
        self.specific_force_b = np.einsum("nji,nj->ni", rot, acc_w + np.array([0.0, 0.0, STANDARD_GRAVITY]))
        self.contact = on_ground | below
        self.time_s += dt


def make_sensors(num_drones: int = 1, seed: int = 0):
    """The project's sensor suite (default config: PX4-like noise, PX4's default home)."""
    from flyby.sensors import SensorCfg, SensorSuite

    return SensorSuite(SensorCfg(), num_drones, seed=seed)


class LockstepRig:
    """Bridge + offboard client + rigid body + sensors, stepped like an env's physics loop (test use).

    ``step(vel_enu, yaw_rate)`` is one physics step of ``dt``: ground truth, GPS (10 Hz),
    setpoint (50 Hz, once the offboard link is up) and HIL_SENSOR out, the reply in, the
    rotors and body advanced with it. Returns the :class:`flyby.px4.bridge.ActuatorReply`.
    """

    def __init__(
        self, bridge, client, sim: RigidBodySim | None = None, sensors=None, dt: float = 0.004
    ) -> None:
        self.bridge = bridge
        self.client = client
        self.sim = sim or RigidBodySim(1)
        self.sensors = sensors or make_sensors(1)
        self.dt_usec = round(dt * 1e6)
        self.time_usec = 0
        self.replies = []

    def step(self, vel_enu=(0.0, 0.0, 0.0), yaw_rate: float = 0.0):
        self.time_usec += self.dt_usec
        t = self.time_usec
        st = self.sim.state()
        self.bridge.send_ground_truth(t, st, 0)
        if t % 100_000 == self.dt_usec:
            fix = self.sensors.gps(st)
            self.bridge.send_gps(
                t, float(fix.lat_deg[0]), float(fix.lon_deg[0]), float(fix.alt_m[0]), fix.vel_enu[0]
            )
        if self.client is not None and self.client.connected and t % 20_000 == 0:
            self.client.stream_velocity(
                np.asarray(vel_enu, dtype=np.float64), yaw_rate, time_boot_ms=t // 1000
            )
        accel, gyro = self.sensors.imu(st)
        mag = self.sensors.mag(st)
        p, alt, temp = self.sensors.baro(st)
        self.bridge.send_sensors(t, (accel[0], gyro[0]), mag[0], (float(p[0]), float(alt[0]), float(temp[0])))
        reply = self.bridge.receive_actuators()
        self.sim.step(reply.controls[None], np.array([reply.armed]), self.dt_usec / 1e6)
        if self.client is not None:
            self.client.poll()
        self.replies.append(reply)
        return reply

    def bring_up(self, timeout_s: float = 10.0) -> None:
        """Heartbeat, SITL parameters, OFFBOARD, armed: all while stepping lockstep."""
        for _ in range(5):
            self.step()
        self.client.wait_heartbeat(step=self.step, timeout_s=timeout_s)
        self.client.set_params(step=self.step, timeout_s=timeout_s)
        self.client.set_offboard(step=self.step, timeout_s=timeout_s)
        self.client.arm(step=self.step, timeout_s=timeout_s)


def wait_until(condition, timeout_s: float = 2.0, what: str = "condition") -> None:
    """Poll ``condition()`` until true (the test double runs in its own thread); fail after ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s} s"
        time.sleep(0.002)
