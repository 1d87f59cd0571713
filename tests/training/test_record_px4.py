"""PX4's estimate in `flyby record` logs: attached beside the ground truth, saved, plotted.

Without PX4, ``read_ulog`` is replaced by PX4ULog objects built from a known truth, so the
alignment (PX4 time, PX4's origin, episodes) is checked exactly. With PX4 (marked ``px4``,
instance 9): a 10 s `flyby record --flight-stack px4 --plot` and its estimator error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from flyby.errors import TuningDataError, ULogError
from flyby.geometry import enu_to_geodetic
from flyby.px4.ulog import LocalPosition, MotorOutputs, PX4ULog, VelocitySetpoint
from flyby.training.record import TrajectoryLog, attach_px4_estimate, load_log, save_log

HOME = (47.397742, 8.545594, 488.0)
STEP_DT = 0.04
PHYSICS_DT = 0.004


def _truth(t_s: np.ndarray, episode: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth known flight: pos (T, 3) m ENU, vel (T, 3) m/s."""
    pos = np.stack([10 + 2 * t_s, -5 + np.sin(t_s), 40 + 0.5 * t_s + episode], axis=1)
    vel = np.stack([2 + 0 * t_s, np.cos(t_s), 0.5 + 0 * t_s], axis=1)
    return pos, vel


def _px4_log(tmp_path: Path, origins_w) -> tuple[TrajectoryLog, dict, dict]:
    """A 2-episode PX4 log (50 rows each), ``{text log: [ulog]}`` and ``{ulog: PX4ULog}``."""
    rows = {k: [] for k in ("time_s", "pos_w", "lin_vel_w", "episode", "px4_time_s")}
    runs, ulogs, flights = [], {}, {}
    for e, (boot_px4_s, origin_w) in enumerate(zip((7.3, 9.1), origins_w)):
        k = np.arange(50)
        px4_t = boot_px4_s + k * STEP_DT + PHYSICS_DT
        pos, vel = _truth(px4_t, e)
        rows["time_s"].append((k + 60 * e) * STEP_DT)
        rows["pos_w"].append(pos)
        rows["lin_vel_w"].append(vel)
        rows["episode"].append(np.full(50, e))
        rows["px4_time_s"].append(px4_t)
        text_log = tmp_path / f"px4_9_run{e}.log"
        ulog = tmp_path / f"px4_9_run{e}.ulg"
        runs.append({"text_log": str(text_log), "boot_pos_w": [10.0, -5.0, 0.055]})
        ulogs[text_log] = [ulog]
        # PX4's samples: every 8 ms over the episode and a bit around it, in its local frame.
        ts = np.arange(boot_px4_s - 1.0, boot_px4_s + 3.0, 0.008)
        p, v = _truth(ts, e)
        lat, lon, alt = enu_to_geodetic(np.asarray(origin_w, dtype=float), *HOME)
        ref = np.tile([float(lat), float(lon), float(alt)], (len(ts), 1))
        ones = np.ones(len(ts), dtype=bool)
        lp = LocalPosition(ts, p - np.asarray(origin_w), v, ref, ones, ones, ones, ones)
        sp = VelocitySetpoint(ts[::25], v[::25] * 1.1, np.zeros(len(ts[::25])))
        tm = ts[::12]
        motors = MotorOutputs(tm, 0.69 + 0.05 * np.sin(tm[:, None] + np.arange(4)))
        flights[ulog] = PX4ULog(ulog, ts[0], ts[-1], lp, sp, sp, motors)
        ulog.write_bytes(b"ULog\x01\x12\x35")  # exists on disk; its content comes from `flights`
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    log = TrajectoryLog(
        time_s=cat["time_s"], commands=np.zeros((100, 4)), pos_w=cat["pos_w"], lin_vel_w=cat["lin_vel_w"],
        yaw_rad=np.zeros(100), episode=cat["episode"], px4_time_s=cat["px4_time_s"],
        meta={"step_dt": STEP_DT, "flight_stack": "px4", "flight_stack_label": "PX4 SITL (test)",
              "px4": {"home": list(HOME), "runs": runs}},
    )  # fmt: skip
    return log, ulogs, flights


@pytest.fixture
def fake_ulogs(monkeypatch):
    """Route ``read_ulog`` to prepared PX4ULog objects: ``fake_ulogs.update({path: PX4ULog})``."""
    from flyby.px4 import ulog as ulog_mod

    table: dict[Path, PX4ULog] = {}

    def read(path):
        path = Path(path)
        if path not in table:
            raise ULogError(f"ULog {path} does not exist", path=path)
        return table[path]

    monkeypatch.setattr(ulog_mod, "read_ulog", read)
    return table


def test_estimate_lands_on_the_rows_in_world_enu(tmp_path, fake_ulogs):
    origins = ([10.2, -4.9, 0.6], [9.8, -5.1, -0.1])  # PX4's GNSS origin: near the boot position, not on it
    log, ulogs, flights = _px4_log(tmp_path, origins)
    fake_ulogs.update(flights)
    attach_px4_estimate(log, ulogs)
    np.testing.assert_allclose(log.px4_est_pos_w, log.pos_w, atol=2e-3)  # origin + local = world
    np.testing.assert_allclose(log.px4_est_vel_w, log.lin_vel_w, atol=2e-3)
    runs = log.meta["px4"]["runs"]
    assert [r["ulogs"] for r in runs] == [[str(tmp_path / f"px4_9_run{e}.ulg")] for e in (0, 1)]
    np.testing.assert_allclose(runs[0]["origin_w"], origins[0], atol=1e-3)
    offset = np.subtract(origins[1], [10.0, -5.0, 0.055])
    np.testing.assert_allclose(runs[1]["origin_minus_boot_m"], offset, atol=1e-3)
    summary = log.meta["px4_estimate"]
    assert summary["rows"] == 100 and summary["rows_without_estimate"] == 0
    assert summary["pos_err_p95_m"] < 0.01


def test_boot_position_stands_in_when_px4_has_no_origin(tmp_path, fake_ulogs):
    log, ulogs, flights = _px4_log(tmp_path, ([10.0, -5.0, 0.055], [10.0, -5.0, 0.055]))
    for path, f in flights.items():
        lp = f.local_position._replace(ref_geodetic=np.full_like(f.local_position.ref_geodetic, np.nan))
        flights[path] = PX4ULog(path, f.start_time_s, f.end_time_s, lp, f.trajectory_setpoint,
                                f.local_position_setpoint, f.motors)  # fmt: skip
    fake_ulogs.update(flights)
    attach_px4_estimate(log, ulogs)
    np.testing.assert_allclose(log.px4_est_pos_w, log.pos_w, atol=2e-3)
    assert log.meta["px4"]["runs"][0]["origin_w"] is None


def test_save_load_keeps_px4_arrays_and_old_logs_still_load(tmp_path, fake_ulogs):
    log, ulogs, flights = _px4_log(tmp_path, ([10.0, -5.0, 0.0], [10.0, -5.0, 0.0]))
    fake_ulogs.update(flights)
    attach_px4_estimate(log, ulogs)
    path = save_log(log, tmp_path / "out" / "px4.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["px4.npz"]  # written atomically, no temp left
    back = load_log(path)
    assert back.has_px4_estimate
    np.testing.assert_array_equal(back.px4_est_pos_w, log.px4_est_pos_w)
    np.testing.assert_array_equal(back.px4_time_s, log.px4_time_s)
    assert back.meta["px4_estimate"] == json.loads(json.dumps(log.meta["px4_estimate"]))
    # A log without the optional arrays (a cascade log, or one from before) reads as before.
    kept = ("time_s", "commands", "pos_w", "lin_vel_w", "yaw_rad", "episode")
    plain = TrajectoryLog(**{k: getattr(log, k) for k in kept}, meta={"step_dt": STEP_DT})
    old = load_log(save_log(plain, tmp_path / "plain.npz"))
    assert not old.has_px4_estimate and old.px4_time_s is None
    with np.load(tmp_path / "plain.npz") as data:
        assert not any(k.startswith("px4_") for k in data.files)
    # flyby tune's loader and window maths take a log with the extra arrays unchanged.
    from flyby.training.tune_dynamics import window_starts

    windows = [len(window_starts(x, window_s=1.0, stride_s=0.5)) for x in (back, old)]
    assert windows[0] == windows[1] > 0


def test_attach_errors_name_what_is_missing(tmp_path, fake_ulogs):
    log, ulogs, flights = _px4_log(tmp_path, ([10.0, -5.0, 0.0], [10.0, -5.0, 0.0]))
    fake_ulogs.update(flights)
    missing_run = {k: v for k, v in ulogs.items() if "run1" not in str(k)}
    with pytest.raises(ULogError, match=r"no ULog kept for PX4 run .*px4_9_run1\.log"):
        attach_px4_estimate(log, missing_run)
    cascade = TrajectoryLog(log.time_s, log.commands, log.pos_w, log.lin_vel_w, log.yaw_rad, log.episode,
                            meta={"step_dt": STEP_DT, "flight_stack": "cascade"})  # fmt: skip
    with pytest.raises(TuningDataError, match="record it with `flyby record --flight-stack px4`"):
        attach_px4_estimate(cascade, ulogs)


def test_plot_is_written_atomically(tmp_path, fake_ulogs):
    pytest.importorskip("matplotlib", reason='matplotlib is missing: pip install "flyby[train]"')
    from flyby.training.px4_plot import plot_px4_log

    log, ulogs, flights = _px4_log(tmp_path, ([10.3, -5.0, 0.2], [10.0, -5.0, 0.0]))
    fake_ulogs.update(flights)
    attach_px4_estimate(log, ulogs)
    out = plot_px4_log(log, tmp_path / "plots" / "px4.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["px4.png"]


# ---------------------------------------------------------------------------- with PX4


@pytest.mark.px4
def test_flyby_record_with_px4_carries_its_estimate(px4_binary, tmp_path, monkeypatch, capsys):
    """`flyby record --flight-stack px4` for 10 s on instance 9: estimate arrays, small error, a plot."""
    pytest.importorskip("pyulog", reason='pyulog is missing: pip install "flyby[px4]"')
    from flyby.cli import main

    if os.environ.get("PX4_DIR"):
        monkeypatch.setenv("PX4_DIR", str(Path(os.environ["PX4_DIR"]).resolve()))
    monkeypatch.chdir(tmp_path)  # PX4's text logs and ULogs go to ./output/logs
    out, png = tmp_path / "rec.npz", tmp_path / "rec.png"
    code = main(["record", "--flight-stack", "px4", "--px4-instance", "9", "--duration", "10", "--seed", "3",
                 "--out", str(out), "--plot", str(png)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    log = load_log(out)
    assert log.has_px4_estimate and log.meta["flight_stack"] == "px4"
    runs = log.meta["px4"]["runs"]
    assert len(runs) == len(log.episode_bounds()) >= 1
    for run in runs:
        assert run["ulogs"] and all(Path(u).is_file() for u in run["ulogs"])
        assert Path(run["ulogs"][0]).parent == Path("output/logs")
    ok = np.isfinite(log.px4_est_pos_w).all(axis=1)
    assert ok.mean() > 0.99, f"{(~ok).sum()} of {len(log)} rows without PX4's estimate"
    pos_err = np.linalg.norm(log.px4_est_pos_w[ok] - log.pos_w[ok], axis=1)
    vel_err = np.linalg.norm(log.px4_est_vel_w[ok] - log.lin_vel_w[ok], axis=1)
    with capsys.disabled():
        print(
            f"\nPX4 EKF2 vs truth over {ok.sum()} rows: position error median {np.median(pos_err):.3f} m, "
            f"p95 {np.percentile(pos_err, 95):.3f} m; velocity median {np.median(vel_err):.3f} m/s"
        )
    assert np.median(pos_err) < 0.5 and np.percentile(pos_err, 95) < 1.0
    assert np.median(vel_err) < 0.3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PX4 estimate : EKF2 position error median" in printed.out
    assert main(["px4-log", str(out)]) == 0
