"""Fixtures for the PX4 bridge tests: a lockstep rig on free loopback ports against the MAVLink test
double."""

from __future__ import annotations

import pytest

pytest.importorskip("pymavlink", reason='pymavlink is missing: pip install "flyby[px4]"')

from mavlink_double import MavlinkDouble
from px4_rig import LockstepRig

from flyby.px4.bridge import LockstepBridge
from flyby.px4.offboard import OffboardClient


@pytest.fixture
def make_rig():
    """``make_rig(timeout_s=0.5, dead_after_s=5.0, **double_kwargs) -> (rig, double)``; all closed after the
    test."""
    opened = []

    def make(timeout_s: float = 0.5, dead_after_s: float = 5.0, **double_kwargs):
        bridge = LockstepBridge(0, timeout_s, port=0, dead_after_s=dead_after_s)
        client = OffboardClient(0, port=0, timeout_s=10.0)
        double = MavlinkDouble(bridge.port, client.port, **double_kwargs)
        bridge.process = double
        opened.append((double, bridge, client))
        double.start()
        bridge.wait_for_connection(timeout_s=5.0)
        return LockstepRig(bridge, client), double

    yield make
    for double, bridge, client in opened:
        double.stop()
        bridge.close()
        client.close()
