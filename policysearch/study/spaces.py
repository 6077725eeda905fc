"""Search spaces: YAML files that say which policies Optuna may propose.

A space file names a policy ``type`` and gives each of its fields either a fixed value or a
distribution::

    type: randaugment
    num_ops: {int: [1, 3]}             # searched integer range
    magnitude: {int: [0, 30]}
    magnitude_std: 0.0                 # fixed
    ops: {subset: all, min_size: 2}    # each op in or out (one boolean parameter per op)

Distributions: ``{int: [low, high], step: s}``, ``{float: [low, high], step: s, log: bool}``,
``{choice: [...]}``, ``{subset: [...] | all, min_size: k}`` (ops only). ``all`` means the 14
RandAugment ops; ``Cutout`` and ``Invert`` may be listed too. Parameter names are fixed (never
conditional), so multivariate TPE models them jointly.

Fields by type: ``randaugment``: num_ops, magnitude, magnitude_std, ops; ``trivialaugment``:
ops; ``autoaugment``: sub_policies (fixed), steps (fixed), op, probability, magnitude (each a
distribution shared by every step: parameters ``sp{i}_op{j}``, ``sp{i}_p{j}``, ``sp{i}_m{j}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policysearch.augment.ops import MAX_LEVEL, OP_NAMES, RANDAUGMENT_OPS
from policysearch.data.textfile import load_yaml, read_text
from policysearch.errors import ConfigError
from policysearch.paths import SPACES_DIR
from policysearch.policy.definition import (
    MAX_STAGES,
    MAX_SUB_POLICIES,
    Policy,
    autoaugment,
    randaugment,
    trivialaugment,
)

_FIELDS = {
    "randaugment": {"num_ops": (0, MAX_STAGES, int), "magnitude": (0, MAX_LEVEL, float),
                    "magnitude_std": (0, MAX_LEVEL, float), "ops": None},
    "trivialaugment": {"ops": None},
    "autoaugment": {"sub_policies": (1, MAX_SUB_POLICIES, int), "steps": (1, MAX_STAGES, int),
                    "op": None, "probability": (0, 1, float), "magnitude": (0, MAX_LEVEL, float)},
}
_DEFAULTS = {
    "randaugment": {"num_ops": 2, "magnitude": 9, "magnitude_std": 0.0, "ops": "all"},
    "trivialaugment": {"ops": "all"},
    "autoaugment": {"sub_policies": 5, "steps": 2, "op": {"choice": "all"},
                    "probability": {"float": [0.0, 1.0], "step": 0.1},
                    "magnitude": {"int": [0, 30]}},
}


@dataclass(frozen=True)
class Dist:
    """A field's value: fixed, or a distribution to sample."""

    kind: str  # fixed | int | float | choice | subset
    value: Any = None
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    min_size: int = 1

    def sample(self, trial: Any, name: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        chosen = [op for op in self.choices if trial.suggest_categorical(f"{name}_{op}",
                                                                         [True, False])]
        # Too few ops: complete deterministically from the ops left out, in table order.
        for op in self.choices:
            if len(chosen) >= self.min_size:
                break
            if op not in chosen:
                chosen.append(op)
        return tuple(op for op in self.choices if op in chosen)

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: ``sample(trial)`` proposes a ``Policy``."""

    name: str
    type: str
    fields: dict[str, Dist]
    description: str = ""
    path: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    """The space as written (stored in the study, so joiners rebuild the same space)."""

    def sample(self, trial: Any) -> Policy:
        f = self.fields
        if self.type == "randaugment":
            return randaugment(f["num_ops"].sample(trial, "num_ops"),
                               f["magnitude"].sample(trial, "magnitude"),
                               ops=f["ops"].sample(trial, "op"),
                               magnitude_std=f["magnitude_std"].sample(trial, "magnitude_std"))
        if self.type == "trivialaugment":
            return trivialaugment(f["ops"].sample(trial, "op"))
        subs = []
        for i in range(f["sub_policies"].value):
            subs.append([(f["op"].sample(trial, f"sp{i}_op{j}"),
                          f["probability"].sample(trial, f"sp{i}_p{j}"),
                          f["magnitude"].sample(trial, f"sp{i}_m{j}"))
                         for j in range(f["steps"].value)])
        return autoaugment(subs)

    def summary(self) -> dict[str, Any]:
        """The space as plain data (for MLflow params and reports)."""
        return {"name": self.name, "type": self.type,
                **{k: (d.value if d.kind == "fixed" else _describe(d))
                   for k, d in self.fields.items()}}


def _describe(d: Dist) -> str:
    if d.kind in ("int", "float"):
        step = f" step {d.step}" if d.step else ""
        return f"{d.kind} {d.low}..{d.high}{step}{' log' if d.log else ''}"
    if d.kind == "subset":
        return f"subset of {len(d.choices)} (at least {d.min_size})"
    return f"choice of {len(d.choices)}"


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name: str) -> SearchSpace:
    """``name`` in ``search_spaces/`` or a path to a YAML file; validated."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = SPACES_DIR / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(available_spaces())
        raise ConfigError(f"search space {name!r}: no file {path} (shipped spaces: {known})")
    text = read_text(path, "search space", ConfigError, kind="YAML text")
    raw = load_yaml(text, str(path), ConfigError)
    return parse_space(raw, str(path), path.stem)


def parse_space(raw: Any, origin: str, name: str) -> SearchSpace:
    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{origin}: key '{key}': {problem}")

    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping with at least 'type'")
    kind = raw.get("type")
    if kind not in _FIELDS:
        raise fail("type", f"expected one of {', '.join(_FIELDS)}, got {kind!r}")
    allowed = set(_FIELDS[kind]) | {"type", "description"}
    for key in raw:
        if key not in allowed:
            raise fail(key, f"not a field of a {kind} space; expected one of "
                       f"{', '.join(sorted(allowed))}")
    fields = {}
    for key, bounds in _FIELDS[kind].items():
        value = raw.get(key, _DEFAULTS[kind][key])
        fields[key] = _parse_field(key, value, bounds, fail)
    for key in ("sub_policies", "steps"):
        if key in fields and fields[key].searched:
            raise fail(key, "must be a fixed integer (the number of parameters is fixed)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "expected a string")
    return SearchSpace(name=name, type=kind, fields=fields, description=description, path=origin,
                       raw=dict(raw))


def _ops(key: str, value: Any, fail: Any) -> tuple[str, ...]:
    if value == "all":
        return RANDAUGMENT_OPS
    if not isinstance(value, list) or not value:
        raise fail(key, f"expected 'all' or a non-empty list of op names, got {value!r}")
    for op in value:
        if op not in OP_NAMES:
            raise fail(key, f"unknown op {op!r}; known ops: {', '.join(OP_NAMES)}")
    if len(set(value)) != len(value):
        raise fail(key, "lists an op twice")
    return tuple(value)


def _parse_field(key: str, value: Any, bounds: Any, fail: Any) -> Dist:
    is_ops = bounds is None
    if not isinstance(value, dict):
        if is_ops and key == "ops":
            return Dist("fixed", _ops(key, value, fail))
        if is_ops:
            if value not in OP_NAMES:
                raise fail(key, f"unknown op {value!r}; known ops: {', '.join(OP_NAMES)}")
            return Dist("fixed", value)
        low, high, typ = bounds
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise fail(key, f"expected a finite number or a distribution, got {value!r}")
        if typ is int and not isinstance(value, int):
            raise fail(key, f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise fail(key, f"{value!r} is outside {low}..{high}")
        return Dist("fixed", value)
    if len(value) == 0:
        raise fail(key, "empty distribution")
    kinds = [k for k in ("int", "float", "choice", "subset") if k in value]
    if len(kinds) != 1:
        raise fail(key, "expected exactly one of int, float, choice, subset")
    kind = kinds[0]
    extra = set(value) - {kind, "step", "log", "min_size"}
    if extra:
        raise fail(key, f"unknown option {sorted(extra)[0]!r}")
    if kind in ("choice", "subset"):
        if not is_ops:
            raise fail(key, f"'{kind}' is for op lists; use int or float for {key}")
        if kind == "subset" and key != "ops":
            raise fail(key, "'subset' is only for 'ops'")
        if kind == "choice" and key == "ops":
            raise fail(key, "use 'subset' to search which ops are in the policy")
        choices = _ops(key, value[kind], fail)
        min_size = value.get("min_size", 1)
        bad_size = isinstance(min_size, bool) or not isinstance(min_size, int) \
            or not 1 <= min_size <= len(choices)
        if kind == "subset" and bad_size:
            raise fail(key, f"min_size must be an integer in 1..{len(choices)}, "
                       f"got {min_size!r}")
        return Dist(kind, choices=choices, min_size=min_size)
    if is_ops:
        raise fail(key, f"'{kind}' is for numbers; ops take choice or subset")
    low, high, typ = bounds
    rng = value[kind]
    if (not isinstance(rng, list) or len(rng) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in rng)):
        raise fail(key, f"expected [low, high], got {rng!r}")
    if not all(_finite(v) for v in rng):
        raise fail(key, f"expected finite numbers for [low, high], got {rng!r}")
    lo, hi = rng
    if kind == "int" and not all(isinstance(v, int) for v in rng):
        raise fail(key, f"int range needs integer bounds, got {rng!r}")
    if typ is int and kind == "float":
        raise fail(key, f"{key} is an integer; use an int range")
    if lo > hi:
        raise fail(key, f"low {lo} is above high {hi}")
    if lo < low or hi > high:
        raise fail(key, f"range [{lo}, {hi}] is outside {low}..{high}")
    step = value.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                             or not _finite(step) or step <= 0):
        raise fail(key, f"step must be a positive number, got {step!r}")
    if kind == "int" and step is not None and not isinstance(step, int):
        raise fail(key, f"an int range needs an integer step, got {step!r}")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise fail(key, f"log must be true or false, got {log!r}")
    if log and lo <= 0:
        raise fail(key, "a log range needs low > 0")
    if log and step is not None and not (kind == "int" and step == 1):
        raise fail(key, "a log range takes no step (an int log range only step 1)")
    return Dist(kind, low=lo, high=hi, step=step, log=log)


def _finite(value: float) -> bool:
    """A number of a size a range can use (not NaN, not infinite, not 10**400)."""
    try:
        return math.isfinite(value) and abs(value) < 1e12
    except OverflowError:
        return False
