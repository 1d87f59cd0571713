"""Manager-style term configs: rewards, terminations and observations declared as named terms.

The pattern IsaacLab users know (``RewTerm(func=..., weight=..., params=...)``): an env config
holds ``rewards.terms``, ``terminations.terms`` and ``observations.terms``, dicts of named terms.

- flyby's own terms (``func=None``) are computed together in one batched call per step
  (:func:`flyby.mdp.rewards.builtin_terms`, :mod:`flyby.mdp.terminations`,
  :func:`flyby.mdp.observations.build_observation`); their entries set weights only.
- A term of your own is one pure batched function ``func(task, **params)`` of the
  :class:`~flyby.envs.isr_task.ISRTask` (read its arrays, never write them), returning ``(N,)``
  (rewards: float; terminations: bool) or ``(N, d)`` (observations), and one config line::

      def altitude(task, target_m=30.0):
          return -np.abs(task.pos_w[:, 2] - target_m)

      cfg.rewards.terms["altitude"] = RewTerm(func=altitude, weight=0.5)

  In YAML, ``func`` names the function as ``"module:function"`` (imported when the env is
  built)::

      rewards:
        terms:
          altitude: {func: "my_pkg.terms:altitude", weight: 0.5, params: {target_m: 30.0}}

It runs beside the built-in terms every step and is logged per term like them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyby.config import cfg_field
from flyby.errors import ConfigError

TermFunc = Callable[..., Any]


@dataclass(kw_only=True)
class RewTerm:
    """One reward term: ``weight * func(task, **params)`` per step, times ``step_dt`` if ``per_second``."""

    # pure batched function (task, **params) -> (N,) float, or "module:function"; None: flyby's own
    func: TermFunc | str | None = None
    weight: float = cfg_field(1.0)  # reward per unit of the term (per event, or per second if per_second)
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of func
    # True: a rate (x step_dt each step); False: paid per step as is; None: a built-in's own kind, else False
    per_second: bool | None = None


@dataclass(kw_only=True)
class DoneTerm:
    """One termination term: ``func(task, **params) -> (N,) bool`` ends the episodes where True."""

    # pure batched function (task, **params) -> (N,) bool, or "module:function"; None: flyby's own
    func: TermFunc | str | None = None
    # True: truncates (a time limit); False: terminates (a failure); None: a built-in's own, else False
    time_out: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of func


@dataclass(kw_only=True)
class ObsTerm:
    """One observation group: ``func(task, **params) -> (N, d)`` appended to the observation vector."""

    # pure batched function (task, **params) -> (N, d) float, or "module:function"; None: flyby's own
    func: TermFunc | str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of func


def resolve_func(func: TermFunc | str, where: str) -> TermFunc:
    """The callable a term names: ``func`` itself, or the attribute a ``"module:function"`` string names.

    Args:
        func: a callable, or ``"package.module:function"`` (dotted attributes allowed after the colon).
        where: the term's dotted config path for messages (e.g. ``"rewards.terms.altitude.func"``).

    Raises:
        ConfigError: not a callable and not a ``"module:function"`` string, the module cannot be
            imported, it has no such attribute, or the attribute is not callable (the message names
            ``where`` and the string).
    """
    if callable(func):
        return func
    if not isinstance(func, str) or func.count(":") != 1 or not all(func.split(":")):
        raise ConfigError(
            [
                f"{where}: {func!r} is neither a callable nor a 'module:function' string "
                "(e.g. 'my_pkg.terms:altitude')"
            ]
        )
    module_name, attr = func.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            [f"{where}: cannot import module {module_name!r} of {func!r} ({exc}); is it on sys.path?"]
        ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError([f"{where}: module {module_name!r} has no attribute {attr!r} (from {func!r})"])
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError([f"{where}: {func!r} is a {type(obj).__name__}, not a callable"])
    return obj


def func_problems(func: TermFunc | str | None, where: str) -> list[str]:
    """:func:`resolve_func`'s problem as a list (empty: ``func`` resolves); for ``validate()``."""
    if func is None:
        return []
    try:
        resolve_func(func, where)
    except ConfigError as exc:
        return exc.problems
    return []


def term_dict_problems(
    terms: Mapping[str, Any],
    term_type: type,
    builtins: Sequence[str],
    builtin_clash: Callable[[str, Any], str | None],
    what: str = "term",
) -> list[str]:
    """Problems of a ``{name: term}`` dict of a manager config (rewards, terminations, observations).

    Every entry must be a ``term_type``. A built-in name (``builtins``) keeps flyby's own function:
    ``builtin_clash(name, term)`` returns what the built-in is (e.g. "per event") when the entry
    tries to change more than a built-in allows, else None. Any other name is a term of your own
    and needs a ``func`` that resolves (:func:`func_problems`).

    Returns:
        One line per problem, by dotted path (``terms.<name>[.func]``), for a config's ``validate()``.
    """
    problems = []
    for name, term in terms.items():
        where = f"terms.{name}"
        if not isinstance(term, term_type):
            problems.append(f"{where}: expected a {term_type.__name__} term, got {term!r}")
        elif name in builtins:
            clash = builtin_clash(name, term)
            if clash is not None:
                problems.append(
                    f"{where}: {name!r} is a built-in {what} (computed by flyby, {clash}); "
                    "give your own term another name"
                )
        elif term.func is None:
            problems.append(
                f"{where}.func: a term of your own needs func (a callable or 'module:function'); "
                f"the built-in {what}s are {', '.join(builtins)}"
            )
        else:
            problems.extend(func_problems(term.func, f"{where}.func"))
    return problems
