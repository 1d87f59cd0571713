"""The PX4 fault paths of PX4FlightStack on the MAVLink test double (no PX4 needed).

The same faults as ``test_real_px4_faults.py`` runs against real PX4: a PX4 that dies in
flight (:class:`~flyby.errors.PX4Died`), one that freezes (:class:`~flyby.errors.PX4Timeout`),
a parameter it refuses (:class:`~flyby.errors.PX4ParamRejected`) and a port already taken
(:class:`~flyby.errors.PX4PortInUse`), each within a bound and naming the peer's log line
(the double's ``describe()``).
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
from mavlink_double import DoubleFactory
from px4_rig import RigidBodySim, make_sensors

from flyby.errors import PX4Died, PX4ParamRejected, PX4PortInUse, PX4Timeout, PX4Unavailable
from flyby.px4.bridge import LockstepBridge
from flyby.px4.flight_stack import PX4FlightStack
from flyby.px4.offboard import OffboardClient
from flyby.px4.params import SITL_PARAMS

DT = 0.004  # s


def _stack(factory, **kwargs) -> PX4FlightStack:
    kwargs.setdefault("startup_timeout_s", 20.0)
    return PX4FlightStack(
        1, sensors=make_sensors(1), launcher_factory=factory, ephemeral_ports=True, **kwargs
    )


def _run_until_error(stack: PX4FlightStack, limit_s: float) -> tuple[PX4Unavailable, float, int]:
    """Step (climbing) until PX4Unavailable; returns (error, wall s, steps). Fails after ``limit_s``."""
    sim = RigidBodySim(1)
    vel = np.array([[0.0, 0.0, 1.0]])
    t0 = time.monotonic()
    steps = 0
    while time.monotonic() - t0 < limit_s:
        try:
            u = stack.update(vel, np.zeros(1), sim.state(), DT)
        except PX4Unavailable as exc:
            return exc, time.monotonic() - t0, steps
        sim.step(u, stack.armed, DT)
        steps += 1
    pytest.fail(f"no PX4Unavailable within {limit_s} s")


def test_peer_dying_in_flight_is_px4died():
    factory = DoubleFactory(arm_after_s=0.2, die_after=800)
    with _stack(factory) as stack:
        exc, elapsed, steps = _run_until_error(stack, limit_s=15.0)
        assert stack.ready.all() and steps > 0  # it died after start-up, while update() ran
    assert isinstance(exc, PX4Died), exc
    assert elapsed < 10.0
    assert "exited: it closed the simulator connection" in str(exc)
    assert "MAVLink test double instance 0 (exit code 1)" in str(exc)


def test_peer_freezing_in_flight_is_px4timeout_after_the_reply_bound():
    factory = DoubleFactory(arm_after_s=0.2, hang_after=800)
    px4 = SimpleNamespace(px4_dir="", instance=0, timeout_s=0.5)  # dead after 0.5 s of silence
    with _stack(factory, px4=px4) as stack:
        exc, elapsed, steps = _run_until_error(stack, limit_s=15.0)
        assert stack.ready.all() and steps > 0
    assert isinstance(exc, PX4Timeout), exc
    assert elapsed < 10.0
    assert "stopped answering: no HIL_ACTUATOR_CONTROLS for 0.5 s" in str(exc)
    assert "MAVLink test double instance 0" in str(exc)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"FLYBY_NO_SUCH": 1}, "FLYBY_NO_SUCH=1: this PX4 build has no such parameter"),
        ({"COM_DISARM_PRFLT": -1}, "PX4 declares it FLOAT: write it as a float (-1.0)"),
        ({"NAV_DLL_ACT": 0.0}, "PX4 declares it INT32: write it as an int (0)"),
    ],
    ids=["unknown-name", "int-for-float", "float-for-int"],
)
def test_rejected_parameter_fails_start_up_at_once_naming_it(extra, says):
    factory = DoubleFactory(arm_after_s=0.2)
    with _stack(factory, params={**SITL_PARAMS, **extra}) as stack:
        t0 = time.monotonic()
        with pytest.raises(PX4ParamRejected) as info:
            stack.update(np.zeros((1, 3)), np.zeros(1), RigidBodySim(1).state(), DT)
        assert time.monotonic() - t0 < 5.0  # far inside startup_timeout_s (20 s)
    assert info.value.names == list(extra)
    assert says in str(info.value) and "MAVLink test double instance 0" in str(info.value)
    assert not factory.doubles[0].armed


def test_parameter_never_confirmed_is_named_at_the_start_up_bound():
    """Without a log to read, the start-up bound still says which parameter PX4 never confirmed."""

    def no_log(*args):
        double = DoubleFactory(arm_after_s=0.2)(*args)
        double.log_tail = None  # a launcher without log_tail
        return double

    with _stack(no_log, params={**SITL_PARAMS, "FLYBY_NO_SUCH": 1}, startup_timeout_s=1.0) as stack:
        t0 = time.monotonic()
        with pytest.raises(PX4Timeout) as info:
            stack.update(np.zeros((1, 3)), np.zeros(1), RigidBodySim(1).state(), DT)
        assert time.monotonic() - t0 < 3.0
    message = str(info.value)
    assert "did not finish start-up within 1 s: still setting SITL parameters" in message
    assert "never confirmed by PX4's PARAM_VALUE: FLYBY_NO_SUCH=1, PX4 sent no PARAM_VALUE" in message
    assert "MPC_THR_HOVER" not in message  # the confirmed ones are not listed


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_bridge_and_client_name_a_port_in_use(kind):
    with socket.socket(socket.AF_INET, kind) as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        if kind == socket.SOCK_STREAM:
            blocker.listen(1)
        with pytest.raises(PX4PortInUse) as info:
            if kind == socket.SOCK_STREAM:
                LockstepBridge(3, port=port)
            else:
                OffboardClient(3, port=port)
    protocol, option = ("TCP", "ltnp") if kind == socket.SOCK_STREAM else ("UDP", "lunp")
    assert (info.value.protocol, info.value.port) == (protocol, port)
    assert f"{protocol} 127.0.0.1:{port}" in str(info.value) and "PX4 instance 3" in str(info.value)
    assert f"ss -{option} 'sport = :{port}'" in str(info.value)


def test_offboard_port_in_use_frees_the_simulator_port_and_starts_nothing():
    """Fixed ports of instance 8: UDP 14548 taken -> PX4PortInUse; TCP 4568 is free again."""
    factory = DoubleFactory()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("127.0.0.1", 14548))
        px4 = SimpleNamespace(px4_dir="", instance=8, timeout_s=1.0)
        where = r"UDP 127\.0\.0\.1:14548 \(the offboard port of PX4 instance 8\)"
        with pytest.raises(PX4PortInUse, match=where):
            PX4FlightStack(1, px4=px4, sensors=make_sensors(1), launcher_factory=factory)
    assert factory.doubles == {}  # nothing was started
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 4568))  # raises EADDRINUSE if the bridge's socket leaked
