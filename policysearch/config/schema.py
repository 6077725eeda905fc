"""Typed records validated from raw YAML/JSON data: the machinery behind experiment files.

``option`` declares a dataclass field with its bounds and choices; ``build`` turns a raw mapping
into the dataclass, refusing unknown keys, wrong types, non-finite numbers and values out of
range, each in one line naming ``origin`` and the dotted key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import field, fields
from typing import Any

from policysearch.errors import ConfigError


def option(default: Any, *, low: float | None = None, high: float | None = None,
       choices: tuple[Any, ...] | None = None, doc: str = "", auto: bool = False,
       min_items: int = 0) -> Any:
    meta = {"low": low, "high": high, "choices": choices, "doc": doc, "auto": auto,
            "min_items": min_items}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def build(cls: type, raw: Any, origin: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: key '{prefix[:-1]}': expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{origin}: key '{prefix}{key}': unknown key; expected one of "
                              f"{', '.join(known)}")
    values = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            values[name] = build(kind, raw[name], origin, f"{prefix}{name}.")
        else:
            values[name] = check(raw[name], kind, spec.metadata, origin, f"{prefix}{name}")
    return cls(**values)


def check(value: Any, kind: Any, meta: Any, origin: str, key: str) -> Any:
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{origin}: key '{key}': {problem}")

    args = typing.get_args(kind)
    optional = (typing.get_origin(kind) in (typing.Union, types.UnionType)
                and type(None) in args)
    if value is None:
        if optional:
            return None
        raise fail("must not be empty")
    base = next(a for a in args if a is not type(None)) if optional else kind
    origin_type = typing.get_origin(base)
    if origin_type is list:
        if not isinstance(value, list):
            raise fail(f"expected a list, got {value!r}")
        if len(value) < meta.get("min_items", 0):
            raise fail(f"expected at least {meta['min_items']} item(s), got {value!r}")
        item = typing.get_args(base)[0]
        bounds = {"low": meta.get("low"), "high": meta.get("high")}
        return [check(v, item, bounds, origin, f"{key}[{i}]") for i, v in enumerate(value)]
    if meta.get("auto") and value == "auto":
        return value
    if origin_type in (typing.Union, types.UnionType):  # int | str with auto: the int
        base = next(a for a in typing.get_args(base) if a is not str)
    if origin_type is dict:
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {value!r}")
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " or auto" if meta.get("auto") else ""
            raise fail(f"expected an integer{hint}, got {value!r}")
    elif base is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise fail(f"expected a finite number, got {value!r}")
    elif base is str and not isinstance(value, str):
        raise fail(f"expected a string, got {value!r}")
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if isinstance(value, str) and (low is not None or high is not None):
        raise fail(f"expected a number, got {value!r}")
    if low is not None and value < low:
        raise fail(f"{value!r} is below the minimum {low}")
    if high is not None and value > high:
        raise fail(f"{value!r} is above the maximum {high}")
    if choices is not None and value not in choices:
        raise fail(f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value
