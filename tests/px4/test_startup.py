"""flyby.px4.startup: the one PX4 start-up sequence (HEARTBEAT, parameters, OFFBOARD, arming).

A scripted link checks the machine's order and pacing exactly; the MAVLink test double checks that
the offboard client's blocking helpers and the stepped machine (as the flight stack runs it) send
the same messages, and that the flight stack names the step its start-up timed out in.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from mavlink_double import DoubleFactory, MavlinkDouble
from px4_rig import RigidBodySim, make_sensors

from flyby.errors import PX4Timeout
from flyby.px4.flight_stack import PX4FlightStack
from flyby.px4.mavlink import dialect
from flyby.px4.offboard import OffboardClient
from flyby.px4.startup import SEQUENCE, StartupSequence, Step, param_confirmed

PARAMS = {"COM_RCL_EXCEPT": 4, "MPC_THR_HOVER": 0.694}


class ScriptedLink:
    """The client side the machine reads and sends through; the test sets PX4's replies by hand."""

    def __init__(self) -> None:
        self.connected = False
        self.armed = False
        self.offboard = False
        self.params: dict[str, int | float] = {}
        self.sent: list[tuple] = []

    def send_param(self, name, value) -> None:
        self.sent.append(("PARAM_SET", name, value))

    def set_message_interval(self, message_id, interval_us) -> None:
        self.sent.append(("SET_MESSAGE_INTERVAL", message_id, interval_us))

    def request_offboard(self) -> None:
        self.sent.append(("DO_SET_MODE",))

    def request_arm(self, arm: bool = True) -> None:
        self.sent.append(("ARM", arm))

    def take(self) -> list[tuple]:
        out, self.sent = self.sent, []
        return out


def _machine(link: ScriptedLink, **kwargs) -> StartupSequence:
    kwargs.setdefault("params", PARAMS)
    kwargs.setdefault("request_period", 100)
    return StartupSequence(link, **kwargs)


def test_steps_run_in_order_with_their_messages_and_pacing():
    link = ScriptedLink()
    seq = _machine(link, message_intervals={31: -1.0})
    assert seq.advance(0) is Step.HEARTBEAT and link.take() == []  # nothing to send before PX4 is heard
    link.connected = True
    assert seq.advance(10) is Step.PARAMS
    assert link.take() == [
        ("PARAM_SET", "COM_RCL_EXCEPT", 4),
        ("PARAM_SET", "MPC_THR_HOVER", 0.694),
        ("SET_MESSAGE_INTERVAL", 31, -1.0),
    ]
    link.params["COM_RCL_EXCEPT"] = 4
    assert seq.advance(109) is Step.PARAMS and link.take() == []  # not due yet
    assert seq.advance(110) is Step.PARAMS  # one period later: only the unconfirmed value again
    assert link.take() == [("PARAM_SET", "MPC_THR_HOVER", 0.694), ("SET_MESSAGE_INTERVAL", 31, -1.0)]
    link.params["MPC_THR_HOVER"] = float(np.float32(0.694))  # PX4 echoes REAL32
    assert seq.advance(150) is Step.OFFBOARD and link.take() == []
    assert seq.advance(249) is Step.OFFBOARD and link.take() == []  # setpoints stream one period first
    assert seq.advance(250, streaming=False) is Step.OFFBOARD and link.take() == []  # PX4 would refuse
    assert seq.advance(260) is Step.OFFBOARD and link.take() == [("DO_SET_MODE",)]
    link.offboard = True
    assert seq.advance(300) is Step.ARM and link.take() == []  # the request timer runs on
    assert seq.advance(360) is Step.ARM and link.take() == [("ARM", True)]
    link.armed = True
    assert seq.advance(370) is Step.DONE and seq.done and link.take() == []
    assert seq.advance(10_000) is Step.DONE and link.take() == []  # done stays done


def test_arming_is_retried_while_px4_refuses_and_never_requested_before_offboard():
    link = ScriptedLink()
    link.connected = True
    seq = _machine(link, params={})
    for t in range(0, 1000, 10):  # PX4 never enters OFFBOARD
        seq.advance(t)
    assert set(link.take()) == {("DO_SET_MODE",)} and seq.step is Step.OFFBOARD
    link.offboard = True
    arms = 0
    for t in range(1000, 2000, 10):  # PX4's estimator not ready: arming refused for 10 periods
        seq.advance(t)
        arms += link.take().count(("ARM", True))
    assert arms == 10 and seq.step is Step.ARM and not seq.done


def test_px4_leaving_offboard_while_arming_steps_back_to_offboard():
    link = ScriptedLink()
    link.connected = link.offboard = True
    seq = _machine(link, params={})
    assert seq.advance(0) is Step.ARM and link.take() == []  # one period of setpoints after the parameters
    assert seq.advance(100) is Step.ARM and link.take() == [("ARM", True)]
    link.offboard = False  # e.g. PX4's offboard-loss failsafe
    assert seq.advance(200) is Step.OFFBOARD and link.take() == [("DO_SET_MODE",)]
    link.offboard = link.armed = True
    assert seq.advance(210) is Step.DONE


def test_one_step_alone_as_the_blocking_helpers_run_it():
    link = ScriptedLink()
    link.connected = True  # arm() alone: only COMPONENT_ARM_DISARM, never DO_SET_MODE, due at once
    seq = _machine(link, steps=(Step.ARM,))
    assert seq.advance(0) is Step.ARM and link.take() == [("ARM", True)]
    assert seq.advance(100) is Step.ARM and link.take() == [("ARM", True)]


def test_unconfirmed_parameters_are_named_and_a_rejection_check_stops_the_sends():
    link = ScriptedLink()
    link.connected = True
    link.params = {"COM_RCL_EXCEPT": 4, "MPC_THR_HOVER": 0.5}  # stale reports from before: forgotten
    seq = _machine(link)
    assert link.params == {}
    seq.advance(0)
    link.take()
    link.params["MPC_THR_HOVER"] = 0.5  # PX4 reports another value
    assert seq.describe() == (
        "setting SITL parameters (never confirmed by PX4's PARAM_VALUE: COM_RCL_EXCEPT=4, PX4 sent no "
        "PARAM_VALUE, MPC_THR_HOVER=0.694, PX4 reported 0.5)"
    )

    class Refused(Exception):
        pass

    def check(missing):
        raise Refused(sorted(missing))

    seq.check_params = check
    with pytest.raises(Refused, match="COM_RCL_EXCEPT"):
        seq.advance(100)
    assert link.take() == []  # checked before anything is resent
    assert _machine(link, params={}, steps=(Step.ARM,)).describe() == "arming"


@pytest.mark.parametrize(
    ("steps", "period", "says"),
    [
        ((), 1.0, "contiguous, ordered part"),
        ((Step.ARM, Step.OFFBOARD), 1.0, "got \\['ARM', 'OFFBOARD'\\]"),
        ((Step.HEARTBEAT, Step.OFFBOARD), 1.0, "contiguous"),
        ((Step.DONE,), 1.0, "contiguous"),
        (("ARM",), 1.0, "got \\['ARM'\\]"),
        (SEQUENCE, 0.0, "request_period must be > 0, got 0.0"),
        (SEQUENCE, -1.0, "request_period must be > 0"),
        (SEQUENCE, math.nan, "request_period must be > 0, got nan"),
    ],
)
def test_bad_arguments_are_refused(steps, period, says):
    with pytest.raises(ValueError, match=says):
        StartupSequence(ScriptedLink(), steps=steps, request_period=period)


def test_param_confirmed():
    assert param_confirmed(4, 4) and not param_confirmed(5, 4) and not param_confirmed(None, 4)
    assert param_confirmed(float(np.float32(0.694)), 0.694)  # REAL32 on the wire
    assert not param_confirmed(0.7, 0.694)
    assert param_confirmed(-1.0, -1.0) and not param_confirmed(None, 0.0)


# -- against the MAVLink test double ---------------------------------------------------------------


def _record(client: OffboardClient) -> list[tuple]:
    """Every start-up message the client sends (setpoints left out), as (type, fields)."""
    sent: list[tuple] = []
    send = client._send

    def spy(msg) -> None:
        kind = msg.get_type()
        if kind == "PARAM_SET":
            sent.append((kind, msg.param_id, msg.param_type))
        elif kind == "COMMAND_LONG":
            sent.append((kind, msg.command, msg.param1, msg.param2))
        elif kind != "SET_POSITION_TARGET_LOCAL_NED":
            sent.append((kind,))
        send(msg)

    client._send = spy
    return sent


def _first_sends(sent: list[tuple]) -> list[tuple]:
    """Each distinct message once, in the order first sent (how often one is resent depends on timing)."""
    return list(dict.fromkeys(sent))


def _pair(arm_after_s: float):
    client = OffboardClient(0, port=0, timeout_s=5.0, retry_s=0.25)
    double = MavlinkDouble(None, client.port, arm_after_s=arm_after_s).start()
    return client, double


def test_blocking_helpers_and_the_stepped_machine_send_the_same_messages():
    m = dialect()
    client, double = _pair(arm_after_s=1.0)  # arming refused at first: retried
    try:
        blocking = _record(client)
        client.wait_heartbeat()
        client.set_params()
        client.set_offboard()
        client.arm()
        assert client.armed and client.offboard
    finally:
        double.stop()
        client.close()
    client, double = _pair(arm_after_s=1.0)
    try:
        stepped = _record(client)
        seq = StartupSequence(client, request_period=0.25)  # the whole sequence, as the flight stack runs it
        deadline = time.monotonic() + 10.0
        while not seq.done:
            assert time.monotonic() < deadline, f"stepped start-up stuck: {seq.describe()}"
            if client.connected:
                client.stream_velocity(np.zeros(3), 0.0)
            seq.advance(time.monotonic(), streaming=client.connected)
            client.poll(0.02)
        assert double.armed and double.offboard and double.violations == []
    finally:
        double.stop()
        client.close()
    assert _first_sends(stepped) == _first_sends(blocking)
    arm = ("COMMAND_LONG", m.MAV_CMD_COMPONENT_ARM_DISARM, 1.0, 0.0)
    assert _first_sends(blocking)[-2:] == [("COMMAND_LONG", m.MAV_CMD_DO_SET_MODE, 1.0, 6.0), arm]
    assert blocking.count(arm) >= 2 and stepped.count(arm) >= 2  # the refused arming was retried
    assert [p[1] for p in _first_sends(blocking)[:5]] == [
        "COM_RCL_EXCEPT", "COM_DISARM_PRFLT", "NAV_RCL_ACT", "NAV_DLL_ACT", "MPC_THR_HOVER",
    ]  # fmt: skip


def test_flight_stack_start_up_timeout_names_the_step_it_was_in():
    factory = DoubleFactory(arm_after_s=1e9)  # the estimator never converges: arming always refused
    stack = PX4FlightStack(
        1,
        sensors=make_sensors(1),
        launcher_factory=factory,
        ephemeral_ports=True,
        startup_timeout_s=5.0,
    )
    with stack, pytest.raises(PX4Timeout) as info:
        stack.update(np.zeros((1, 3)), np.zeros(1), RigidBodySim(1).state(), 0.004)
    message = str(info.value)
    assert "did not finish start-up within 5 s: still arming at PX4 time" in message
    assert "Preflight Fail: ekf2 not ready" in message
    m = dialect()
    commands = [cmd for cmd, _ in factory.doubles[0].commands]
    first_arm = commands.index(m.MAV_CMD_COMPONENT_ARM_DISARM)
    assert m.MAV_CMD_DO_SET_MODE in commands[:first_arm]  # OFFBOARD first, then arming
    assert commands.count(m.MAV_CMD_COMPONENT_ARM_DISARM) >= 2  # retried once per second of PX4 time
