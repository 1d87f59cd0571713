"""Typed configuration: ``@dataclass(kw_only=True)`` configs loaded from YAML.

Every component has one ``<Thing>Cfg`` dataclass. Fields declare their bounds
with :func:`cfg_field`; :func:`from_dict` converts a plain mapping (parsed YAML)
into the dataclass, checking types, bounds, unknown keys and each config's own
cross-field ``validate()``, and raises one :class:`~flyby.errors.ConfigError`
that lists *every* problem by dotted path (as IsaacLab's
``configclass.validate`` does). A key that moved elsewhere is named by the config class's
``MOVED_KEYS`` (``{old key: where it lives now}``), so an old YAML file gets an error that
names the new key instead of "unknown key".

Example::

    cfg = load_yaml(TrainingCfg, "training_config.yaml")   # a packaged file
    cfg = load_yaml(TrainingCfg, "/path/to/my.yaml")        # or any path
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import types
import typing
from collections import abc
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from flyby.errors import ConfigError

T = TypeVar("T")

_BOUNDS = ("gt", "ge", "lt", "le")


def cfg_field(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A dataclass field with numeric bounds checked by :func:`from_dict`.

    Bounds apply to numbers and to every element of tuples of numbers.
    """
    meta = {k: v for k, v in zip(_BOUNDS, (gt, ge, lt, le)) if v is not None}
    if choices is not None:
        meta["choices"] = choices
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _describe_bounds(meta: Mapping[str, Any]) -> str:
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{words[k]} {meta[k]}" for k in _BOUNDS if k in meta)


def _check_bounds(value: float, meta: Mapping[str, Any]) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if "gt" in meta and not value > meta["gt"]:
        return False
    if "ge" in meta and not value >= meta["ge"]:
        return False
    if "lt" in meta and not value < meta["lt"]:
        return False
    if "le" in meta and not value <= meta["le"]:
        return False
    return True


def _convert(value: Any, tp: Any, path: str, meta: Mapping[str, Any], problems: list[str]) -> Any:
    """Convert ``value`` to type ``tp``; append problems instead of raising."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], path, meta, problems)
        if str in inner and all(a is str or typing.get_origin(a) is abc.Callable for a in inner):
            # A function field (e.g. a reward term's func): YAML names it as "module:function",
            # resolved by the config that holds it; Python may pass the callable itself.
            if isinstance(value, str) or callable(value):
                return value
            problems.append(f"{path}: expected a 'module:function' string, got {value!r}")
            return None
        raise TypeError(f"unsupported union type {tp} at {path}")
    if tp is Any:  # free-form values (e.g. a term's params): passed on as parsed
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
            return None
        return _from_dict(tp, value, path, problems)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            problems.append(f"{path}: {value!r} is not one of {allowed}")
            return None
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list, got {value!r}")
            return None
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(value)
        else:
            item_types = list(args)
            if len(value) != len(item_types):
                problems.append(f"{path}: expected {len(item_types)} values, got {len(value)} ({value!r})")
                return None
        out = [
            _convert(v, t, f"{path}[{i}]", meta, problems) for i, (v, t) in enumerate(zip(value, item_types))
        ]
        return tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return None
        key_t, val_t = typing.get_args(tp)
        return {
            _convert(k, key_t, f"{path}.{k}", {}, problems): _convert(v, val_t, f"{path}.{k}", meta, problems)
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true/false, got {value!r}")
            return None
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {value!r}")
            return None
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: expected a number, got {value!r}")
            return None
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
            return None
    else:
        raise TypeError(f"unsupported config field type {tp!r} at {path}")
    if tp in (int, float):
        if not _check_bounds(value, meta):
            problems.append(
                f"{path}: {value!r} is out of range (must be {_describe_bounds(meta) or 'finite'})"
            )
    if "choices" in meta and value not in meta["choices"]:
        problems.append(f"{path}: {value!r} is not one of {meta['choices']!r}")
    return value


def _from_dict(cls: type[T], data: Mapping[str, Any], prefix: str, problems: list[str]) -> T | None:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    moved = getattr(cls, "MOVED_KEYS", {})
    for key in data:
        if key in moved:
            problems.append(f"{_join(prefix, str(key))}: this key has moved: {moved[key]}")
        elif key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(f"{_join(prefix, str(key))}: unknown key (known keys: {known})")
    kwargs: dict[str, Any] = {}
    n_before = len(problems)
    for name, f in fields.items():
        path = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], path, f.metadata, problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{path}: required key is missing")
    if len(problems) > n_before:
        return None
    cfg = cls(**kwargs)
    problems.extend(f"{_join(prefix, p)}" for p in _validate(cfg))
    return cfg


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _validate(cfg: Any) -> list[str]:
    """Bounds of every field, nested configs, then the config's own ``validate()``."""
    problems: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            problems.extend(f"{f.name}.{p}" for p in _validate(value))
            continue
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not _check_bounds(v, f.metadata):
                problems.append(
                    f"{f.name}: {value!r} is out of range (must be "
                    f"{_describe_bounds(f.metadata) or 'finite'})"
                )
                break
    own = getattr(cfg, "validate", None)
    if callable(own):
        problems.extend(own())
    return problems


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, source: str | None = None) -> T:
    """Build config ``cls`` from a mapping; raise ``ConfigError`` listing every problem.

    Args:
        cls: a ``@dataclass`` config class.
        data: parsed YAML; ``None`` means all defaults.
        source: file name used in the error message.

    Raises:
        ConfigError: unknown keys, wrong types, values out of range, or failed
            cross-field checks, each named by its dotted path.
    """
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"<root>: expected a mapping, got {type(data).__name__}"], source)
    cfg = _from_dict(cls, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    assert cfg is not None
    return cfg


def check(cfg: T) -> T:
    """Validate an already-built config (e.g. one made in Python); return it.

    Raises:
        ConfigError: listing every out-of-range field and failed cross-check.
    """
    problems = _validate(cfg)
    if problems:
        raise ConfigError(problems, type(cfg).__name__)
    return cfg


def packaged_config_path(name: str) -> Path:
    """Path of a YAML file shipped in ``flyby/config``."""
    return Path(str(resources.files("flyby.config") / name))


def read_yaml(path_or_name: str | Path) -> tuple[Any, Path]:
    """Parse a YAML file: a filesystem path, or the bare name of a file shipped in ``flyby/config``.

    Returns:
        (parsed data, resolved path).

    Raises:
        ConfigError: the file is missing or is not valid YAML.
    """
    path = Path(path_or_name)
    if not path.exists() and path.parent == Path("."):
        path = packaged_config_path(str(path_or_name))
    if not path.exists():
        raise ConfigError(
            [f"<file>: {path_or_name!s} does not exist (give a path or a packaged config name)"]
        )
    try:
        return yaml.safe_load(path.read_text()), path
    except yaml.YAMLError as exc:
        raise ConfigError([f"<file>: not valid YAML: {exc}"], str(path)) from exc


def load_yaml(cls: type[T], path_or_name: str | Path, *, section: str | None = None) -> T:
    """Load a YAML file into config ``cls``.

    Args:
        path_or_name: a filesystem path, or the bare name of a file shipped in
            ``flyby/config`` (e.g. ``"training_config.yaml"``).
        section: optional top-level key to read instead of the whole file.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or has bad values.
    """
    data, path = read_yaml(path_or_name)
    if section is not None:
        if not isinstance(data, Mapping) or section not in data:
            raise ConfigError([f"{section}: section missing"], str(path))
        data = data[section]
    return from_dict(cls, data, source=str(path))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-YAML-friendly dict of a config (enums as values, tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if callable(v):  # a function field: the "module:function" string that names it
            return f"{getattr(v, '__module__', '?')}:{getattr(v, '__qualname__', repr(v))}"
        return v

    return plain(cfg)


def cfg_hash(*parts: Any) -> str:
    """A short stable fingerprint of configs (dataclasses or plain data): sha256 of their JSON, 16 hex
    digits."""
    plain = [to_dict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts]
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]
