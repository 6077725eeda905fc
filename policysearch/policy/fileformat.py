"""The policy file format (``policysearch.policy/v1``): validation of decoded JSON.

Every error names the file (``origin``) and the field, and echoes the bad value, short.
"""

from __future__ import annotations

import math
from typing import Any

from policysearch.augment.ops import MAX_LEVEL, OP_NAMES, OPS, takes_magnitude
from policysearch.errors import PolicyFormatError

SCHEMA = "policysearch.policy/v1"
TYPES = ("randaugment", "trivialaugment", "autoaugment", "none")
MAX_STAGES = 4
"""Most ops one image goes through (RandAugment ``num_ops``, steps of a sub-policy)."""
MAX_SUB_POLICIES = 32



def _fail(origin: str, key: str, problem: str) -> PolicyFormatError:
    return PolicyFormatError(f"{origin}: field '{key}': {problem}")


def _number(origin: str, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(origin, key, f"expected a number, got {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(origin, key, f"expected a finite number, got {value!r}")
    if not low <= value <= high:  # exact for integers of any size
        shown = value if abs(value) < 1e15 else f"a number of {len(str(int(value)))} digits"
        raise _fail(origin, key, f"{shown} is outside {json_number(low)}..{json_number(high)}")
    return float(json_number(value))  # as the JSON form holds it, so that a round trip is exact


def _integer(origin: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(origin, key, f"expected an integer, got {_short(value)}")
    if not low <= value <= high:
        shown = value if abs(value) < 10**15 else f"an integer of {len(str(value))} digits"
        raise _fail(origin, key, f"{shown} is outside {low}..{high}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


BASE_FIELDS = {"crop_padding": (0, 512), "flip": None}
"""The base augmentation a policy file may record: crop padding in pixels, flip (a boolean)."""


def _base(origin: str, base: Any) -> dict[str, Any]:
    if not isinstance(base, dict):
        raise _fail(origin, "base", f"expected an object, got {_short(base)}")
    out: dict[str, Any] = {}
    for key, value in base.items():
        if key not in BASE_FIELDS:
            raise _fail(origin, f"base.{key}", "unknown; expected crop_padding or flip")
        if key == "flip":
            if not isinstance(value, bool):
                raise _fail(origin, "base.flip", f"expected true or false, got {_short(value)}")
            out[key] = value
        else:
            out[key] = _integer(origin, f"base.{key}", value, *BASE_FIELDS[key])
    return out


_SOURCE_TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,), "experiment": (str,), "space": (str,), "study": (str,),
    "storage": (str,), "note": (str,), "package_version": (str,), "created_at": (str,),
    "mlflow_run_id": (str,), "mlflow_tracking_uri": (str,), "experiment_file": (str,),
    "trial": (int,), "n_seeds": (int,), "seeds": (list,), "proxy": (dict,),
    "best_baseline": (dict,), "gain_exceeds_noise": (bool,), "beats_best_baseline": (bool,),
    "val_accuracy_mean": (int, float), "val_accuracy_std": (int, float),
    "gain_over_best_baseline": (int, float), "gain_standard_error": (int, float),
}
"""Types of the provenance fields that commands read (``null`` is allowed for each)."""


def _source(origin: str, source: Any) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise _fail(origin, "source", f"expected an object, got {_short(source)}")
    for key, types in _SOURCE_TYPES.items():
        value = source.get(key)
        if value is None:
            continue
        if isinstance(value, bool) and bool not in types:
            types = ()
        if not isinstance(value, types):
            names = " or ".join({str: "a string", int: "an integer", float: "a number",
                                 list: "a list", dict: "an object", bool: "true or false"}[t]
                                for t in types) or "not a boolean"
            raise _fail(origin, f"source.{key}", f"expected {names}, got {_short(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(origin, f"source.{key}", f"expected a finite number, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            raise _fail(origin, f"source.{key}", "integer too large")
    size = source.get("image_size")
    if size is not None:
        if not isinstance(size, list) or len(size) != 2:
            raise _fail(origin, "source.image_size",
                        f"expected [height, width], got {_short(size)}")
        for i, side in enumerate(size):
            _integer(origin, f"source.image_size[{i}]", side, 1, 65535)
    baseline = source.get("best_baseline")
    if baseline is not None:
        if not isinstance(baseline.get("name"), str):
            raise _fail(origin, "source.best_baseline.name", "expected a string")
        for key in ("val_accuracy_mean", "val_accuracy_std"):
            _number(origin, f"source.best_baseline.{key}", baseline.get(key), -1e9, 1e9)
    return source


def _op(origin: str, key: str, value: Any) -> str:
    if value not in OPS:
        raise _fail(origin, key, f"unknown op {value!r}; known ops: {', '.join(OP_NAMES)}")
    return value


def parse_fields(data: Any, origin: str) -> dict[str, Any]:
    """The fields of a ``Policy`` from a decoded policy file; errors name ``origin`` and the
    field."""
    if not isinstance(data, dict):
        raise PolicyFormatError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema is None:
        raise _fail(origin, "schema", f"missing; expected {SCHEMA!r}")
    if schema != SCHEMA:
        raise _fail(origin, "schema",
                    f"unknown version {schema!r}; this policysearch reads {SCHEMA!r}")
    kind = data.get("type")
    if kind not in TYPES:
        raise _fail(origin, "type", f"expected one of {', '.join(TYPES)}, got {kind!r}")
    allowed = {"schema", "type", "fill", "magnitude_scale", "base", "source"} | {
        "randaugment": {"num_ops", "magnitude", "magnitude_std", "ops", "op_magnitudes"},
        "trivialaugment": {"ops"},
        "autoaugment": {"sub_policies"},
        "none": set(),
    }[kind]
    for key in data:
        if key not in allowed:
            raise _fail(origin, key, f"not a field of a {kind} policy")
    scale = data.get("magnitude_scale")
    if scale is not None and (not isinstance(scale, dict) or scale.get("bins") != 31
                              or scale.get("max") != 30):
        raise _fail(origin, "magnitude_scale", "this file uses another magnitude scale "
                    "(expected 31 bins, M = 0..30)")
    fill = _integer(origin, "fill", data.get("fill", 128), 0, 255)
    base = _base(origin, data.get("base", {}))
    source = _source(origin, data.get("source", {}))
    common = {"fill": fill, "base": base, "source": source}

    def required(key: str) -> Any:
        if key not in data:
            raise _fail(origin, key, f"missing (required for a {kind} policy)")
        return data[key]

    def op_list(key: str) -> tuple[str, ...]:
        ops = required(key)
        if not isinstance(ops, list) or not ops:
            raise _fail(origin, key, f"expected a non-empty list of op names, got {ops!r}")
        names = tuple(_op(origin, f"{key}[{i}]", op) for i, op in enumerate(ops))
        if len(set(names)) != len(names):
            raise _fail(origin, key, "lists an op twice")
        return names

    if kind == "randaugment":
        ops = op_list("ops")
        magnitude, per_op = _op_magnitudes(
            origin, ops, _number(origin, "magnitude", required("magnitude"), 0, MAX_LEVEL),
            data.get("op_magnitudes", {}))
        return dict(
            type=kind,
            num_ops=_integer(origin, "num_ops", required("num_ops"), 0, MAX_STAGES),
            magnitude=magnitude,
            magnitude_std=_number(origin, "magnitude_std", data.get("magnitude_std", 0.0), 0,
                                  MAX_LEVEL),
            ops=ops,
            op_magnitudes=per_op,
            **common,
        )
    if kind == "trivialaugment":
        return dict(type=kind, ops=op_list("ops"), **common)
    if kind == "none":
        return dict(type=kind, ops=(), **common)
    subs = required("sub_policies")
    if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB_POLICIES:
        raise _fail(origin, "sub_policies",
                    f"expected a list of 1..{MAX_SUB_POLICIES} sub-policies, got {subs!r}")
    parsed = []
    for i, sub in enumerate(subs):
        if not isinstance(sub, list) or not 1 <= len(sub) <= MAX_STAGES:
            raise _fail(origin, f"sub_policies[{i}]",
                        f"expected a list of 1..{MAX_STAGES} [op, probability, magnitude] steps")
        steps = []
        for j, step in enumerate(sub):
            key = f"sub_policies[{i}][{j}]"
            if not isinstance(step, list) or len(step) != 3:
                raise _fail(origin, key, f"expected [op, probability, magnitude], got {step!r}")
            steps.append((_op(origin, key, step[0]),
                          _number(origin, key + " probability", step[1], 0, 1),
                          _number(origin, key + " magnitude", step[2], 0, MAX_LEVEL)))
        parsed.append(tuple(steps))
    ops = tuple(dict.fromkeys(op for sub in parsed for op, _, _ in sub))
    return dict(type=kind, sub_policies=tuple(parsed), ops=ops, **common)


def _op_magnitudes(origin: str, ops: tuple[str, ...], magnitude: float, value: Any
                   ) -> tuple[float, tuple[tuple[str, float], ...]]:
    """RandAugment's optional per-op magnitudes, in canonical form: ``(magnitude, overrides)``.

    Each entry names an op of ``ops`` whose argument depends on its magnitude. ``magnitude``
    becomes the one most of these ops use (the file's own where it ties), and only the ops at
    another magnitude keep an entry: a policy says one thing one way, so equal policies are
    equal (and one with every op at 9 is RandAugment M=9).
    """
    if not isinstance(value, dict):
        raise _fail(origin, "op_magnitudes",
                    f"expected an object of op name to magnitude, got {_short(value)}")
    given: dict[str, float] = {}
    for name, level in value.items():
        key = f"op_magnitudes.{name}"
        if name not in OPS:
            raise _fail(origin, key, f"unknown op {name!r}; known ops: {', '.join(OP_NAMES)}")
        if name not in ops:
            raise _fail(origin, key, f"{name} is not in the policy's ops")
        if not takes_magnitude(name):
            raise _fail(origin, key, f"{name} takes no magnitude")
        given[name] = _number(origin, key, level, 0, MAX_LEVEL)
    if given:  # the magnitude most ops use (the file's, among equals) carries the rest
        levels = [given.get(name, magnitude) for name in OP_NAMES
                  if name in ops and takes_magnitude(name)]
        top = max(levels.count(level) for level in levels)
        if levels.count(magnitude) < top:
            magnitude = next(level for level in levels if levels.count(level) == top)
    overrides = tuple((name, given[name]) for name in OP_NAMES
                      if name in given and given[name] != magnitude)
    return magnitude, overrides


def json_number(value: float) -> float | int:
    """Integers stay integers in JSON and text (9, not 9.0)."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)
