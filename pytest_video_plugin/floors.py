"""Same-run floor checks: a measured figure against a floor, beside the ceiling this machine reached.

A test measures a figure (a rate, a speed-up) that must reach a floor. On a machine too slow for
the floor the honest verdict is neither "FAIL" (the code is not at fault) nor a lowered floor, so the
test also measures, in the same run, a ceiling: the best this machine can do on the same work
(for example the rate with every optional cost switched off). Then:

========================================= ======================== ===============================
condition                                 verdict                  test outcome (pytest plugin)
========================================= ======================== ===============================
``ceiling`` given and ``ceiling < floor`` ``"not reachable here"`` passes; its verdict says so
``measured < floor``                      ``"fail"``               fails after the body returns
otherwise                                 ``"pass"``               passes
========================================= ======================== ===============================

The floor is never lowered: a "not reachable here" check shows the floor, the ceiling and the
measured value. :func:`judge_floor` is pure and does not import pytest;
:meth:`pytest_video_plugin.recorder.VideoRecorder.check_floor` records its result for the metrics
JSON, and the pytest plugin judges the test with it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FLOOR_VERDICTS",
    "NOT_REACHABLE_HERE",
    "FloorCheck",
    "FloorVerdict",
    "format_numbers",
    "judge_floor",
    "not_reachable_note",
]

#: What a floor check whose floor is above this machine's same-run ceiling says.
NOT_REACHABLE_HERE = "not reachable here"

FloorVerdict = Literal["pass", "fail", "not reachable here"]
FLOOR_VERDICTS: tuple[str, ...] = ("pass", "fail", NOT_REACHABLE_HERE)

#: Significant digits shown first; more are shown when fewer would make unequal values read alike.
_MIN_DIGITS, _MAX_DIGITS = 4, 15


@dataclass(frozen=True)
class FloorCheck:
    """One judged floor check (see the module docstring for the rule).

    Attributes:
        name: what was measured, e.g. ``"B steps/s"``; unique within one recorder.
        measured: the measured value, in ``unit``.
        floor: the value ``measured`` must reach (``>=``), in ``unit``; never lowered.
        ceiling: the best this machine reached on the same work in the same run, in ``unit``;
            None when the test has no ceiling (then the check is a plain floor).
        unit: display unit, e.g. ``"steps/s"`` or ``"x"``; ``""`` for none.
        verdict: ``"pass"``, ``"fail"`` or ``"not reachable here"``.
        text: one line for the terminal and the failure message, e.g. ``"B steps/s: not reachable
            here: floor 120 steps/s, ceiling 93 steps/s measured in this run (measured 86 steps/s);
            neither passed nor failed"``.
        short: the same for a table cell, e.g. ``"B steps/s: 125 steps/s (floor 120 steps/s,
            ceiling 130 steps/s)"``.
    """

    name: str
    measured: float
    floor: float
    ceiling: float | None
    unit: str
    verdict: FloorVerdict
    text: str
    short: str

    @property
    def reachable(self) -> bool:
        """False when the same-run ceiling is below the floor."""
        return self.verdict != NOT_REACHABLE_HERE

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (metrics JSON, xdist transport)."""
        return {
            "name": self.name, "measured": self.measured, "floor": self.floor, "ceiling": self.ceiling,
            "unit": self.unit, "verdict": self.verdict, "text": self.text, "short": self.short,
        }  # fmt: skip


def _format(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_numbers(*values: float) -> tuple[str, ...]:
    """Format ``values`` alike, with enough digits that unequal values never read the same.

    ``format_numbers(120.0, 93.37) -> ("120", "93.37")``; ``format_numbers(2.0, 1.99996) ->
    ("2", "1.99996")`` (four significant digits would show both as ``"2"``); thousands get commas.
    """
    for digits in range(_MIN_DIGITS, _MAX_DIGITS + 1):
        texts = tuple(_format(v, digits) for v in values)
        if all(
            texts[i] != texts[j] or values[i] == values[j]
            for i in range(len(values))
            for j in range(i + 1, len(values))
        ):
            return texts
    return tuple(repr(float(v)) for v in values)


def _with_unit(number: str, unit: str) -> str:
    return f"{number} {unit}" if unit else number


def not_reachable_note(check: Mapping[str, Any]) -> str:
    """``"B steps/s: floor 120, ceiling 93"`` for the verdict column, from :meth:`FloorCheck.as_dict`."""
    floor, ceiling = format_numbers(check["floor"], check["ceiling"])
    return f"{check['name']}: floor {floor}, ceiling {ceiling}"


def _number(name: str, what: str, value: Any, *, allow_negative: bool) -> float:
    """``value`` as a finite float; ValueError naming the check, the argument and the value."""
    number = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except (OverflowError, ValueError, TypeError):  # an int too big for a float, an odd Real
            pass
    if not math.isfinite(number) or (not allow_negative and number < 0):
        need = "a finite real number" + ("" if allow_negative else " >= 0")
        raise ValueError(
            f"check_floor({name!r}): {what} must be {need} (int, float or numpy scalar), got "
            f"{type(value).__name__} {value!r}"
        )
    return number


def judge_floor(
    name: str,
    *,
    measured: float,
    floor: float,
    ceiling: float | None = None,
    unit: str = "",
) -> FloorCheck:
    """Judge ``measured`` against ``floor``, given the ``ceiling`` this machine reached in the same run.

    Args:
        name: what was measured, e.g. ``"B steps/s"``; a non-empty single-line str.
        measured: the measured value, in ``unit``; finite (NaN and inf are errors, not failures).
        floor: the value to reach, ``measured >= floor``; finite and >= 0.
        ceiling: the best this machine reached on the same work in this run, finite and >= 0;
            None for a plain floor. ``ceiling < floor`` gives ``"not reachable here"`` whatever
            ``measured`` is; ``ceiling == floor`` is reachable.
        unit: display unit such as ``"steps/s"`` or ``"x"``; ``""`` for none.

    Returns:
        The :class:`FloorCheck`, verdict ``"not reachable here"``, ``"fail"`` or ``"pass"``.

    Raises:
        ValueError: a bad ``name``, ``unit`` (not a str), or a number that is not finite, not real
            (str, bool, None) or negative where it must not be; the message names the argument and
            the value received.
    """
    if not isinstance(name, str) or not name.strip() or "\n" in name or "\r" in name:
        raise ValueError(f"check_floor: name must be a non-empty single-line str, got {name!r}")
    if not isinstance(unit, str) or "\n" in unit or "\r" in unit:
        raise ValueError(
            f"check_floor({name!r}): unit must be a single-line str such as 'steps/s' or 'x' ('' for "
            f"none), got {type(unit).__name__} {unit!r}"
        )
    measured_f = _number(name, "measured", measured, allow_negative=True)
    floor_f = _number(name, "floor", floor, allow_negative=False)
    ceiling_f = None if ceiling is None else _number(name, "ceiling", ceiling, allow_negative=False)

    if ceiling_f is None:
        m, f = format_numbers(measured_f, floor_f)
        c = None
    else:
        m, f, c = format_numbers(measured_f, floor_f, ceiling_f)
    mu, fu = _with_unit(m, unit), _with_unit(f, unit)
    cu = None if c is None else _with_unit(c, unit)

    verdict: FloorVerdict
    if ceiling_f is not None and ceiling_f < floor_f:
        verdict = NOT_REACHABLE_HERE
        text = (
            f"{name}: {NOT_REACHABLE_HERE}: floor {fu}, ceiling {cu} measured in this run "
            f"(measured {mu}); neither passed nor failed"
        )
        short = f"{name}: {NOT_REACHABLE_HERE}: floor {fu}, ceiling {cu} (measured {mu})"
    else:
        verdict = "fail" if measured_f < floor_f else "pass"
        ceiling_part = "" if cu is None else f", ceiling {cu} in this run"
        text = f"{name}: measured {mu}, floor {fu}{ceiling_part}: {'FAILED' if verdict == 'fail' else 'ok'}"
        short = f"{name}: {mu} (floor {fu}" + ("" if cu is None else f", ceiling {cu}") + ")"
    return FloorCheck(name, measured_f, floor_f, ceiling_f, unit, verdict, text, short)
