"""flyby.px4.ulog: PX4's ULog in flyby's frames.

Without PX4: synthetic ULogs (``ulog_synth``) check the NED -> ENU conversion, the origin and the
errors for a missing file, a file that is not a ULog and a missing topic. With PX4 (marked
``px4``): a short real flight on instance 9 writes the ULog the reader is checked on.
"""

from __future__ import annotations

import numpy as np
import pytest
from ulog_synth import write_ulog

from flyby.errors import ULogError
from flyby.geometry import enu_to_geodetic
from flyby.px4.ulog import read_ulog, resample

pytest.importorskip("pyulog", reason='pyulog is missing: pip install "flyby[px4]"')

HOME = (47.397742, 8.545594, 488.0)  # lat deg, lon deg, alt m AMSL: flyby's default home
CLIMB_MPS, CLIMB_S, EAST_MPS = 1.5, 5.0, 1.5  # the real-PX4 flight: m/s up for s, then m/s east


def _flight_topics(n: int = 6, origin_w=(5.0, 10.0, 0.3), global_from: int = 0) -> dict:
    """Synthetic topics: NED local position (north 1, east 2, down -3), NED velocity (1, 2, -3)."""
    t = 2_000_000 + np.arange(n) * 8_000  # us of PX4 time
    lat, lon, alt = enu_to_geodetic(np.asarray(origin_w, dtype=np.float64), *HOME)
    has_ref = np.arange(n) >= global_from
    ones = np.ones(n)
    return {
        "vehicle_local_position": {
            "timestamp": t + 500, "timestamp_sample": t, "x": ones, "y": 2 * ones, "z": -3 * ones,
            "vx": ones, "vy": 2 * ones, "vz": -3 * ones, "ref_lat": np.full(n, float(lat)),
            "ref_lon": np.full(n, float(lon)), "ref_alt": np.full(n, float(alt)), "xy_valid": ones,
            "z_valid": ones, "v_xy_valid": ones, "v_z_valid": ones, "xy_global": has_ref, "z_global": has_ref,
        },
        "trajectory_setpoint": {
            "timestamp": t, "velocity": np.tile([1.0, 2.0, -3.0], (n, 1)), "yawspeed": np.full(n, 0.25),
        },
        "vehicle_local_position_setpoint": {
            "timestamp": t, "vx": ones, "vy": 2 * ones, "vz": -1.5 * ones, "yawspeed": np.full(n, 0.25),
        },
        "actuator_motors": {
            "timestamp": t, "timestamp_sample": t,
            "control": np.tile(np.r_[0.6, 0.7, 0.8, 0.9, np.full(8, np.nan)], (n, 1)),
        },
    }  # fmt: skip


# ---------------------------------------------------------------------------- without PX4


def test_reader_gives_world_enu_and_px4_time(tmp_path):
    path = write_ulog(tmp_path / "flight.ulg", _flight_topics(origin_w=(5.0, 10.0, 0.3)))
    flight = read_ulog(path)
    lp = flight.local_position
    assert lp.time_s[0] == pytest.approx(2.0)  # timestamp_sample, not the later timestamp
    np.testing.assert_allclose(lp.pos_local_w, np.tile([2.0, 1.0, 3.0], (6, 1)))  # (e, n, u) from (n, e, d)
    np.testing.assert_allclose(lp.vel_w, np.tile([2.0, 1.0, 3.0], (6, 1)))
    np.testing.assert_allclose(lp.origin_w(HOME), np.tile([5.0, 10.0, 0.3], (6, 1)), atol=1e-4)
    np.testing.assert_allclose(lp.pos_w(HOME), np.tile([7.0, 11.0, 3.3], (6, 1)), atol=1e-4)
    sp = flight.trajectory_setpoint
    np.testing.assert_allclose(sp.vel_w, np.tile([2.0, 1.0, 3.0], (6, 1)))
    np.testing.assert_allclose(sp.yaw_rate_rad_s, -0.25)  # about NED down -> about ENU up
    np.testing.assert_allclose(flight.local_position_setpoint.vel_w, np.tile([2.0, 1.0, 1.5], (6, 1)))
    assert flight.motors.controls.shape == (6, 4)
    np.testing.assert_allclose(flight.motors.controls[0], [0.6, 0.7, 0.8, 0.9], rtol=1e-6)
    assert flight.end_time_s == pytest.approx(2.0 + 5 * 0.008 + 0.0005)


def test_origin_falls_back_before_px4_has_one(tmp_path):
    path = write_ulog(tmp_path / "flight.ulg", _flight_topics(global_from=3))
    lp = read_ulog(path).local_position
    assert np.isnan(lp.pos_w(HOME)[:3]).all() and np.isfinite(lp.pos_w(HOME)[3:]).all()
    fallback = lp.pos_w(HOME, fallback_origin_w=[1.0, 1.0, 0.0])
    np.testing.assert_allclose(fallback[:3], np.tile([3.0, 2.0, 3.0], (3, 1)))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ULogError, match=r"missing\.ulg does not exist") as info:
        read_ulog(tmp_path / "missing.ulg")
    assert info.value.path == tmp_path / "missing.ulg" and info.value.topic is None


def test_not_a_ulog_names_the_file(tmp_path):
    path = tmp_path / "notes.ulg"
    path.write_text("PX4 log? no, a text file\n" * 20)
    with pytest.raises(ULogError, match=r"notes\.ulg is not a PX4 ULog"):
        read_ulog(path)


def test_ulog_cut_inside_its_definitions_is_an_error_naming_the_file(tmp_path):
    whole = write_ulog(tmp_path / "whole.ulg", _flight_topics()).read_bytes()
    cut = tmp_path / "cut.ulg"
    cut.write_bytes(whole[:80])  # header, flag bits and half a format message
    with pytest.raises(ULogError, match=r"cut\.ulg"):
        read_ulog(cut)


def test_missing_topic_names_file_and_topic(tmp_path):
    topics = _flight_topics()
    del topics["vehicle_local_position"]
    path = write_ulog(tmp_path / "no_estimate.ulg", topics)
    with pytest.raises(ULogError, match=r"no_estimate\.ulg has no 'vehicle_local_position' data") as info:
        read_ulog(path)
    assert info.value.topic == "vehicle_local_position"
    assert "actuator_motors" in str(info.value)  # says which topics it does have


def test_resample_is_nan_outside_the_samples_and_across_gaps():
    t = np.array([0.0, 0.1, 0.2, 1.0, 1.1])
    v = np.stack([t * 10, -t], axis=1)
    out = resample(t, v, np.array([-0.05, 0.05, 0.15, 0.6, 1.05, 1.2]), max_gap_s=0.15)
    np.testing.assert_allclose(out[1:3], [[0.5, -0.05], [1.5, -0.15]])
    np.testing.assert_allclose(out[4], [10.5, -1.05])
    assert np.isnan(out[[0, 3, 5]]).all()  # before, in the 0.8 s gap, after


# ---------------------------------------------------------------------------- with PX4


@pytest.fixture(scope="module")
def px4_flight(px4_binary, tmp_path_factory):
    """A real PX4 (instance 9) flight from (3, -2, 0) m: climb 1.5 m/s for 5 s (PX4's take-off ramp
    lifts off after about 2 s), then east 1.5 m/s for 3 s.

    Returns (ulog path, launcher, truth dict): truth has ``t`` (PX4 s at which PX4 got each state),
    ``pos_w``, ``vel_w``, and the PX4 clock at the end.
    """
    from types import SimpleNamespace

    from px4_rig import RigidBodySim, make_sensors

    from flyby.px4.flight_stack import PX4FlightStack
    from flyby.px4.launcher import PX4Launcher

    log_dir = tmp_path_factory.mktemp("px4_logs")
    made = []

    def factory(instance, _sim_port, _offboard_port):
        made.append(PX4Launcher(instance, None, log_dir=log_dir, stop_timeout_s=5.0))
        return made[-1]

    dt = 0.004
    start = np.array([3.0, -2.0, 0.0])
    sim = RigidBodySim(1, pos_w=[start])
    px4 = SimpleNamespace(px4_dir="", instance=9, timeout_s=5.0)
    truth = {"t": [], "pos_w": [], "vel_w": []}
    sensors = make_sensors(1)
    with PX4FlightStack(
        1, px4=px4, sensors=sensors, startup_timeout_s=120.0, launcher_factory=factory
    ) as stack:
        vel = np.zeros((1, 3))
        for k in range(round(8.0 / dt)):
            vel[0] = (0.0, 0.0, CLIMB_MPS) if k * dt < CLIMB_S else (EAST_MPS, 0.0, 0.0)
            u = stack.update(vel, np.zeros(1), sim.state(), dt)
            sim.step(u, stack.armed, dt)
            truth["t"].append(float(stack.px4_time_s[0]) + dt)  # PX4 gets this state with the next HIL_SENSOR
            truth["pos_w"].append(sim.pos_w[0].copy())
            truth["vel_w"].append(sim.vel_w[0].copy())
        end_s = float(stack.px4_time_s[0])
    truth = {k: np.asarray(v) for k, v in truth.items()}
    truth["end_s"] = end_s
    truth["start_w"] = start
    truth["home"] = stack.home
    launcher = made[0]
    assert len(launcher.ulog_paths) == 1, (
        f"expected one ULog, got {launcher.ulog_paths}; {launcher.describe()}"
    )
    return launcher.ulog_paths[0], launcher, truth


@pytest.mark.px4
def test_px4_ulog_is_kept_next_to_its_text_log(px4_flight):
    path, launcher, truth = px4_flight
    assert path == launcher.log_path.with_suffix(".ulg") and path.is_file()
    assert launcher.workdir is None and launcher.kept_ulogs == {launcher.log_path: [path]}
    flight = read_ulog(path)
    # Complete after SIGINT: the log reaches PX4's last lockstep step.
    assert flight.end_time_s == pytest.approx(truth["end_s"], abs=0.05), (flight.end_time_s, truth["end_s"])


@pytest.mark.px4
def test_px4_estimate_matches_ground_truth_in_world_enu(px4_flight):
    path, _, truth = px4_flight
    lp = read_ulog(path).local_position
    # From 1 s after start-up (armed, airborne) to PX4's last estimate (the final state of the
    # loop reaches PX4 in no HIL_SENSOR, or too late for the 125 Hz log).
    flying = (truth["t"] > truth["t"][0] + 1.0) & (truth["t"] <= lp.time_s[-1])
    assert flying.sum() > 0.9 * (len(flying) - 250)
    est_pos = resample(lp.time_s, lp.pos_w(truth["home"]), truth["t"][flying])
    est_vel = resample(lp.time_s, lp.vel_w, truth["t"][flying])
    pos_err = np.linalg.norm(est_pos - truth["pos_w"][flying], axis=1)
    vel_err = np.linalg.norm(est_vel - truth["vel_w"][flying], axis=1)
    assert np.isfinite(pos_err).all()
    assert np.median(pos_err) < 0.5 and np.percentile(pos_err, 95) < 1.0, np.percentile(pos_err, [50, 95])
    assert np.median(vel_err) < 0.3, np.median(vel_err)
    # Frames: the climb is +z (up) and the east leg +x (east) in the estimate too.
    assert truth["pos_w"][-1, 2] > 2.0 and est_pos[-1, 2] == pytest.approx(truth["pos_w"][-1, 2], abs=0.5)
    assert est_vel[-1, 0] > 0.7 * EAST_MPS
    # PX4's origin is on the ground below the start, within GNSS noise.
    origin = lp.origin_w(truth["home"])[-1]
    assert np.linalg.norm(origin - truth["start_w"]) < 1.5, origin


@pytest.mark.px4
def test_px4_setpoints_and_motors(px4_flight):
    path, _, truth = px4_flight
    flight = read_ulog(path)
    sp = flight.trajectory_setpoint
    climb = (sp.time_s > truth["t"][0] + 1.0) & (sp.time_s < truth["t"][0] + CLIMB_S - 0.1)
    east = sp.time_s > truth["t"][0] + CLIMB_S + 0.2
    assert climb.sum() > 5 and east.sum() > 5
    np.testing.assert_allclose(sp.vel_w[climb], np.tile([0.0, 0.0, CLIMB_MPS], (climb.sum(), 1)), atol=1e-3)
    np.testing.assert_allclose(sp.vel_w[east], np.tile([EAST_MPS, 0.0, 0.0], (east.sum(), 1)), atol=1e-3)
    u = flight.motors.controls
    armed = np.isfinite(u).all(axis=1)
    assert u.shape[1] == 4 and armed.sum() > 20
    assert ((u[armed] >= 0.0) & (u[armed] <= 1.0)).all()
    hover = armed & (flight.motors.time_s > truth["t"][0] + CLIMB_S + 1.5)
    assert 0.5 < np.mean(u[hover]) < 0.85, np.mean(u[hover])  # near the Iris's hover_u 0.694
