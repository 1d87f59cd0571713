"""Faults against the real PX4 SITL process (marked ``px4``; skipped without PX4).

Each fault must end in a :class:`~flyby.errors.PX4Unavailable`-family error that names
PX4's log, within a bound asserted here, and leave no PX4 process behind:

- PX4 killed (SIGKILL) in flight -> :class:`~flyby.errors.PX4Died`;
- PX4 frozen (SIGSTOP) in flight -> :class:`~flyby.errors.PX4Timeout` ("stopped answering");
- a parameter PX4 refuses (unknown name, wrong type) -> :class:`~flyby.errors.PX4ParamRejected`
  naming the parameter, long before the start-up bound;
- a simulator/offboard port already taken -> :class:`~flyby.errors.PX4PortInUse` naming the port.

Only PX4 instances 6, 7 and 8 are used (TCP 4566-4568, UDP 14546-14548), so these tests can
run beside other PX4 users of instances 0..5 on the same machine. Every PX4 started here is
stopped by its flight stack; the ``own_pids`` fixture checks that and, should a test fail
half-way, resumes and kills what is left (only the pids these tests started).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from px4_rig import RigidBodySim, make_sensors

from flyby.errors import PX4Died, PX4ParamRejected, PX4PortInUse, PX4Timeout, PX4Unavailable
from flyby.px4.flight_stack import PX4FlightStack
from flyby.px4.params import SITL_PARAMS

pytestmark = pytest.mark.px4

DT = 0.004  # s, physics step = PX4's 250 Hz lockstep
REPLY_BOUND_S = 2.0  # s, px4.timeout_s here: how long PX4 may stay silent before it counts as frozen


def _px4(instance: int) -> SimpleNamespace:
    """A PX4Cfg-like object: PX4 from $PX4_DIR, the given instance, a 2 s reply bound."""
    return SimpleNamespace(px4_dir="", instance=instance, timeout_s=REPLY_BOUND_S)


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def own_pids():
    """A list to put the PX4 pids of the test in; afterwards none may be left running.

    Teardown resumes (SIGCONT) and kills (SIGKILL) any that are, so a failing test leaves
    nothing frozen behind, and then fails the test.
    """
    pids: list[int] = []
    yield pids
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    assert not left, f"PX4 processes left running after the test: {left}"


def _fly_until_airborne(stack: PX4FlightStack, sim: RigidBodySim, *, min_alt_m: float = 0.3) -> None:
    """Start-up (first update), then climb at 1 m/s until the body is ``min_alt_m`` up, armed (bounded)."""
    vel = np.array([[0.0, 0.0, 1.0]])
    for _ in range(round(10.0 / DT)):  # 10 s of sim time at most
        u = stack.update(vel, np.zeros(1), sim.state(), DT)
        sim.step(u, stack.armed, DT)
        if stack.armed[0] and sim.pos_w[0, 2] > min_alt_m:
            return
    pytest.fail(f"PX4 did not lift the drone {min_alt_m} m in 10 s of sim time (at {sim.pos_w[0, 2]:.2f} m)")


def _fly_until_error(stack: PX4FlightStack, sim: RigidBodySim, limit_s: float) -> PX4Unavailable:
    """Keep stepping until PX4Unavailable; fail if it does not come within ``limit_s`` of wall time."""
    vel = np.array([[0.0, 0.0, 0.5]])
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            u = stack.update(vel, np.zeros(1), sim.state(), DT)
        except PX4Unavailable as exc:
            return exc
        sim.step(u, stack.armed, DT)
    pytest.fail(f"no PX4Unavailable within {limit_s} s of wall time")


def test_px4_killed_in_flight_is_px4died_naming_the_log(px4_binary, own_pids, capsys):
    sim = RigidBodySim(1)
    with PX4FlightStack(1, px4=_px4(6), sensors=make_sensors(1), startup_timeout_s=60.0) as stack:
        (pid,) = stack.pids
        own_pids.append(pid)
        log_path = stack.log_paths[0]
        _fly_until_airborne(stack, sim)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        exc = _fly_until_error(stack, sim, limit_s=10.0)
        elapsed = time.monotonic() - t0
    with capsys.disabled():
        print(f"\nSIGKILL -> {type(exc).__name__} after {elapsed * 1e3:.1f} ms: {exc}")
    assert isinstance(exc, PX4Died), exc
    assert elapsed < 2.0  # the closed connection is noticed at once, not after a reply bound
    message = str(exc)
    assert str(log_path) in message and "PX4 instance 6" in message
    assert "killed by SIGKILL" in message
    assert not _alive(pid)


def test_px4_frozen_in_flight_is_px4timeout_naming_the_log(px4_binary, own_pids, capsys):
    sim = RigidBodySim(1)
    with PX4FlightStack(1, px4=_px4(7), sensors=make_sensors(1), startup_timeout_s=60.0) as stack:
        (pid,) = stack.pids
        own_pids.append(pid)
        log_path = stack.log_paths[0]
        _fly_until_airborne(stack, sim)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        exc = _fly_until_error(stack, sim, limit_s=10.0)
        elapsed = time.monotonic() - t0
        assert _alive(pid)  # frozen, not dead: close() below must resume and stop it
        t1 = time.monotonic()
    close_s = time.monotonic() - t1
    with capsys.disabled():
        print(f"\nSIGSTOP -> {type(exc).__name__} after {elapsed:.2f} s (close {close_s:.2f} s): {exc}")
    assert isinstance(exc, PX4Timeout), exc
    assert REPLY_BOUND_S - 0.1 <= elapsed < REPLY_BOUND_S + 3.0
    message = str(exc)
    assert "stopped answering" in message and str(log_path) in message
    assert f"frozen: stopped by a signal (SIGSTOP/SIGTSTP) or a debugger, pid {pid}" in message
    assert close_s < 2.0  # SIGINT + SIGCONT: no wait for the SIGKILL fallback
    assert not _alive(pid)


@pytest.mark.parametrize(
    ("extra", "rejected", "says"),
    [
        ({"FLYBY_NO_SUCH": 1}, ["FLYBY_NO_SUCH"], "FLYBY_NO_SUCH=1: this PX4 build has no such parameter"),
        (
            {"COM_DISARM_PRFLT": -1},  # an int for PX4's FLOAT parameter
            ["COM_DISARM_PRFLT"],
            (
                "COM_DISARM_PRFLT=-1 was sent as INT32 (an int) but PX4 declares it FLOAT: "
                "write it as a float (-1.0)"
            ),
        ),
    ],
    ids=["unknown-name", "wrong-type"],
)
def test_rejected_parameter_names_it_within_the_startup_bound(
    px4_binary, own_pids, capsys, extra, rejected, says
):
    startup_timeout_s = 8.0
    params = {**SITL_PARAMS, **extra}
    sim = RigidBodySim(1)
    with PX4FlightStack(
        1, px4=_px4(8), sensors=make_sensors(1), startup_timeout_s=startup_timeout_s, params=params
    ) as stack:
        (pid,) = stack.pids
        own_pids.append(pid)
        log_path = stack.log_paths[0]
        t0 = time.monotonic()
        with pytest.raises(PX4ParamRejected) as info:
            stack.update(np.zeros((1, 3)), np.zeros(1), sim.state(), DT)
        elapsed = time.monotonic() - t0
    with capsys.disabled():
        print(f"\nparameter {extra} -> PX4ParamRejected after {elapsed:.2f} s: {info.value}")
    assert elapsed < startup_timeout_s  # PX4's console line, not the start-up bound, ended it
    assert info.value.names == rejected
    message = str(info.value)
    assert says in message and str(log_path) in message
    assert not _alive(pid)


def test_simulator_port_held_by_a_running_stack_is_px4portinuse(px4_binary, own_pids):
    sim = RigidBodySim(1)
    with PX4FlightStack(1, px4=_px4(6), sensors=make_sensors(1), startup_timeout_s=60.0) as first:
        own_pids.append(first.pids[0])
        first.update(np.zeros((1, 3)), np.zeros(1), sim.state(), DT)  # PX4 up and armed on instance 6
        t0 = time.monotonic()
        with pytest.raises(PX4PortInUse) as info:
            PX4FlightStack(1, px4=_px4(6), sensors=make_sensors(1))  # a second run on the same instance
        assert time.monotonic() - t0 < 1.0
        assert (info.value.protocol, info.value.port) == ("TCP", 4566)
        message = str(info.value)
        assert "TCP 127.0.0.1:4566 (the simulator port of PX4 instance 6)" in message
        assert "ss -ltnp 'sport = :4566'" in message and "another PX4 instance (px4.instance" in message
        # The failed second stack started nothing and left the first one flying.
        ours = [p.pid for p in psutil.Process().children() if _alive(p.pid) and "px4" in p.name()]
        assert ours == first.pids
        assert first.ready.all()
        first.update(np.zeros((1, 3)), np.zeros(1), sim.state(), DT)
        assert first.armed.all()


def test_offboard_port_in_use_is_px4portinuse_and_frees_the_simulator_port(px4_binary):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", 14547))
        with pytest.raises(PX4PortInUse) as info:
            PX4FlightStack(1, px4=_px4(7), sensors=make_sensors(1))
    assert (info.value.protocol, info.value.port) == ("UDP", 14547)
    assert "UDP 127.0.0.1:14547 (the offboard port of PX4 instance 7)" in str(info.value)
    assert "ss -lunp 'sport = :14547'" in str(info.value)
    # TCP 4567 was bound before UDP failed; it must be free again (info still holds the frames).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 4567))
