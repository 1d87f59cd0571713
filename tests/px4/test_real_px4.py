"""The same takeoff/hover scenario against real PX4 SITL (marked ``px4``; skipped without PX4).

Runs when PX4 is found: ``PX4_DIR=/path/to/PX4-Autopilot`` (built with ``make px4_sitl_default``)
or ``px4`` on PATH, e.g. inside the flyby container. PX4's logs go to ``output/logs/``.
"""

from __future__ import annotations

import numpy as np
import pytest
from px4_rig import RigidBodySim, make_sensors
from px4_scenarios import assert_took_off_and_hovered, takeoff_hover


pytestmark = pytest.mark.px4


@pytest.mark.parametrize("num_drones", [1, 2])
def test_takeoff_and_hover_on_real_px4(px4_binary, num_drones, capsys):
    from flyby.px4.flight_stack import PX4FlightStack

    sim = RigidBodySim(num_drones, pos_w=[[3.0 * k, 0.0, 0.0] for k in range(num_drones)])
    with PX4FlightStack(num_drones, sensors=make_sensors(num_drones), startup_timeout_s=180.0) as stack:
        result = takeoff_hover(stack, sim, climb_s=3.0, hover_s=6.0)
        rtt_us = stack.round_trip_times_s() * 1e6
        with capsys.disabled():
            print(
                f"\nreal PX4 ({px4_binary}), {num_drones} drone(s): hover at {result.hover_heights[-1]} m, "
                f"lockstep round trip mean {rtt_us.mean():.0f} us, p99 {np.percentile(rtt_us, 99):.0f} us, "
                f"logs {stack.log_paths}"
            )
        assert_took_off_and_hovered(result, min_alt_m=1.5, max_alt_m=4.0, band_m=0.3)
