"""PX4's start-up on the offboard link: the one sequence the offboard client and the flight stack share.

The steps, in order (PX4 v1.16 behaviour; each needs the one before):

1. ``HEARTBEAT``: wait for PX4's HEARTBEAT on the offboard port (the client learns PX4's address and
   ids from it). Sends nothing.
2. ``PARAMS``: PARAM_SET each parameter PX4 has not yet confirmed with a PARAM_VALUE echo of the value
   sent (``int`` bit-cast as INT32, ``float`` as REAL32), then MAV_CMD_SET_MESSAGE_INTERVAL for each
   telemetry stream given; all resent once per request period until every value is confirmed. PX4
   answers an unknown name, or a value of the wrong type, with a console line only (no MAVLink reply),
   so a caller that can read PX4's console passes ``check_params`` to fail at once.
3. ``OFFBOARD``: COMMAND_LONG MAV_CMD_DO_SET_MODE (``param1`` = 1 custom, ``param2`` = 6 OFFBOARD) once
   per request period until PX4's HEARTBEAT says OFFBOARD. PX4 refuses OFFBOARD until velocity
   setpoints stream, so nothing is requested while the caller says they do not; after ``PARAMS`` the
   first request waits one request period, so that setpoints have streamed that long.
4. ``ARM``: MAV_CMD_COMPONENT_ARM_DISARM ``param1`` = 1 once per request period until the HEARTBEAT
   says armed. PX4 refuses (``Preflight Fail: ekf2 not ready``) until its estimator has converged. If
   PX4 leaves OFFBOARD meanwhile, the sequence steps back to ``OFFBOARD`` (when it has that step).

then ``DONE``. A :class:`StartupSequence` may run a contiguous part of it (the offboard client's
blocking helpers run one step each).

The machine never blocks and owns no clock or bound. Its caller reads PX4's replies
(``client.poll()``) and calls :meth:`StartupSequence.advance` with the time now, in the unit of
``request_period``: :class:`flyby.px4.flight_stack.PX4FlightStack` once per lockstep tick with PX4
time in microseconds; :class:`flyby.px4.offboard.OffboardClient`'s blocking helpers in a bounded loop
with wall seconds. Each caller bounds the start-up and names :attr:`StartupSequence.step` (or
:meth:`StartupSequence.describe`) when it gives up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from flyby.px4.params import SITL_PARAMS


class Step(enum.Enum):
    """A step of PX4's start-up on the offboard link; the value says what the step is waiting for."""

    HEARTBEAT = "waiting for PX4's HEARTBEAT on the offboard port"
    PARAMS = "setting SITL parameters"
    OFFBOARD = "switching to OFFBOARD"
    ARM = "arming"
    DONE = "armed in OFFBOARD"


SEQUENCE: tuple[Step, ...] = (Step.HEARTBEAT, Step.PARAMS, Step.OFFBOARD, Step.ARM)
"""The whole start-up, in order."""


class OffboardLink(Protocol):
    """What the sequence reads and sends (:class:`flyby.px4.offboard.OffboardClient` has it all)."""

    connected: bool  # PX4's HEARTBEAT received
    armed: bool  # from PX4's latest HEARTBEAT
    offboard: bool  # from PX4's latest HEARTBEAT
    params: dict[str, int | float]  # PARAM_VALUE reports, by name

    def send_param(self, name: str, value: int | float) -> None: ...  # int: bit-cast INT32

    def set_message_interval(self, message_id: int, interval_us: float) -> None: ...

    def request_offboard(self) -> None: ...

    def request_arm(self, arm: bool = True) -> None: ...


class StartupSequence:
    """PX4's start-up (or a contiguous part of it) on one offboard link, one :meth:`advance` at a time.

    Args:
        client: the offboard link (an :class:`~flyby.px4.offboard.OffboardClient`).
        params: PX4 parameters the ``PARAMS`` step sets (ints are sent bit-cast). Reports of these
            names that arrived before the sequence was made do not count as confirmations.
        steps: the part of :data:`SEQUENCE` to run, in order, without gaps.
        request_period: how often unanswered requests are resent, in the unit of ``now``
            (the flight stack: 1_000_000 us of PX4 time; the blocking helpers: wall seconds).
        message_intervals: ``{MAVLink message id: interval_us}`` requested with the parameters
            (-1 turns a stream off; :func:`flyby.px4.params.telemetry_intervals_us`).
        check_params: ``check_params(unconfirmed)`` called before each resend of the parameters; it
            raises (e.g. :class:`~flyby.errors.PX4ParamRejected`) when PX4 is known to refuse one.

    Raises:
        ValueError: ``steps`` empty, out of order or with a gap; ``request_period`` not > 0.
    """

    def __init__(
        self,
        client: OffboardLink,
        *,
        params: Mapping[str, int | float] = SITL_PARAMS,
        steps: Sequence[Step] = SEQUENCE,
        request_period: float,
        message_intervals: Mapping[int, float] | None = None,
        check_params: Callable[[Mapping[str, int | float]], None] | None = None,
    ) -> None:
        steps = tuple(steps)
        starts = [k for k in range(len(SEQUENCE)) if SEQUENCE[k : k + len(steps)] == steps]
        if not steps or not starts:
            raise ValueError(
                f"steps must be a contiguous, ordered part of {[s.name for s in SEQUENCE]}, "
                f"got {[getattr(s, 'name', s) for s in steps]}"
            )
        if not float(request_period) > 0:
            raise ValueError(f"request_period must be > 0, got {request_period!r}")
        self.client = client
        self.params = dict(params)
        self.steps = steps
        self.request_period = float(request_period)
        self.message_intervals = dict(message_intervals or {})
        self.check_params = check_params
        self._index = 0
        self._next_request: float | None = None  # None: the first request is due at once
        if Step.PARAMS in steps:
            for name in self.params:
                client.params.pop(name, None)

    @property
    def step(self) -> Step:
        """The step the sequence is waiting on (:attr:`Step.DONE` when finished)."""
        return self.steps[self._index] if self._index < len(self.steps) else Step.DONE

    @property
    def done(self) -> bool:
        """True once every step has been seen done (it stays True)."""
        return self._index >= len(self.steps)

    def missing_params(self) -> dict[str, int | float]:
        """``params`` PX4 has not confirmed (a PARAM_VALUE with the value sent) yet, in ``params`` order."""
        reported = self.client.params
        return {k: v for k, v in self.params.items() if not param_confirmed(reported.get(k), v)}

    def _met(self, step: Step) -> bool:
        c = self.client
        if step is Step.HEARTBEAT:
            return bool(c.connected)
        if step is Step.PARAMS:
            return not self.missing_params()
        if step is Step.OFFBOARD:
            return bool(c.offboard)
        return bool(c.armed)

    def sync(self, now: float) -> bool:
        """Move past the steps PX4's latest replies show done; sends nothing. Returns :attr:`done`.

        Args:
            now: the time now, in the unit of ``request_period``.
        """
        while not self.done:
            step = self.steps[self._index]
            if step is Step.ARM and Step.OFFBOARD in self.steps and not self.client.offboard:
                self._index -= 1  # PX4 left OFFBOARD: ask for it again before arming
                continue
            if not self._met(step):
                break
            self._index += 1
            if step is Step.HEARTBEAT:
                self._next_request = None  # the parameters go out at once
            elif step is Step.PARAMS:
                self._next_request = now + self.request_period  # setpoints stream this long first
        return self.done

    def advance(self, now: float, *, streaming: bool = True) -> Step:
        """:meth:`sync`, then send the current step's request when it is due.

        Call after reading PX4's replies. OFFBOARD and arming are requested only while
        ``streaming`` (the caller sends velocity setpoints at >= 2 Hz of PX4 time).

        Args:
            now: the time now, in the unit of ``request_period``.
            streaming: setpoints are streaming.

        Returns:
            The step now waited on (:attr:`Step.DONE` when finished).

        Raises:
            whatever ``check_params`` raises; the client's errors on sending
            (:class:`~flyby.errors.PX4Unavailable`).
        """
        if self.sync(now):
            return Step.DONE
        step = self.step
        due = self._next_request is None or now >= self._next_request
        if step is Step.HEARTBEAT or not due or (step in (Step.OFFBOARD, Step.ARM) and not streaming):
            return step
        self._next_request = now + self.request_period
        client = self.client
        if step is Step.PARAMS:
            missing = self.missing_params()
            if self.check_params is not None:
                self.check_params(missing)
            for name, value in missing.items():
                client.send_param(name, value)
            for message_id, interval_us in self.message_intervals.items():  # idempotent: resent too
                client.set_message_interval(message_id, interval_us)
        elif step is Step.OFFBOARD:
            client.request_offboard()
        else:
            client.request_arm()
        return step

    def describe(self) -> str:
        """What the sequence waits on, for error messages; ``PARAMS`` names the unconfirmed values."""
        text = self.step.value
        if self.step is Step.PARAMS:
            reported = self.client.params
            text += (
                " (never confirmed by PX4's PARAM_VALUE: "
                + ", ".join(
                    f"{name}={value!r}, " + _reported(reported.get(name))
                    for name, value in self.missing_params().items()
                )
                + ")"
            )
        return text


def param_confirmed(reported: float | None, wanted: float) -> bool:
    """True when PX4's reported value (None: none yet) is ``wanted``: ints exactly, floats to 1e-6
    relative (REAL32 on the wire)."""
    if reported is None:
        return False
    if isinstance(wanted, float) or isinstance(reported, float):
        return abs(float(reported) - float(wanted)) <= 1e-6 * max(1.0, abs(float(wanted)))
    return int(reported) == int(wanted)


def _reported(value: float | None) -> str:
    return "PX4 sent no PARAM_VALUE" if value is None else f"PX4 reported {value!r}"
