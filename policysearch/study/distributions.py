"""Distributions of a search space's fields: parsing (one line naming the file and key on a
bad value) and sampling with an Optuna trial (see ``policysearch.study.spaces``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from policysearch.augment.ops import OP_NAMES, RANDAUGMENT_OPS


@dataclass(frozen=True)
class Dist:
    """A field's value: fixed, or a distribution to sample."""

    kind: str  # fixed | int | float | choice | subset | switch (a choice of plain values)
    value: Any = None
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    min_size: int = 1

    def switches(self, trial: Any, name: str) -> dict[str, bool]:
        """Ops: each op's own in/out switch (a fixed list: every op in)."""
        if self.kind == "fixed":
            return {op: True for op in self.value}
        return {op: trial.suggest_categorical(f"{name}_{op}", [True, False])
                for op in self.choices}

    @property
    def op_universe(self) -> tuple[str, ...]:
        return tuple(self.value) if self.kind == "fixed" else self.choices

    def sample(self, trial: Any, name: str) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)
        if self.kind in ("choice", "switch"):
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


def describe(d: Dist) -> str:
    if d.kind in ("int", "float"):
        step = f" step {d.step}" if d.step else ""
        return f"{d.kind} {d.low}..{d.high}{step}{' log' if d.log else ''}"
    if d.kind == "subset":
        return f"subset of {len(d.choices)} (at least {d.min_size})"
    if d.kind == "switch":
        return "choice of " + ", ".join(str(c).lower() for c in d.choices)
    return f"choice of {len(d.choices)}"


def parse_ops(key: str, value: Any, fail: Any) -> tuple[str, ...]:
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


def parse_field(key: str, value: Any, bounds: Any, fail: Any) -> Dist:
    is_ops = bounds is None
    if not isinstance(value, dict):
        if is_ops and key == "ops":
            return Dist("fixed", parse_ops(key, value, fail))
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
        choices = parse_ops(key, value[kind], fail)
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
    if step is not None and step > hi - lo and hi > lo:
        raise fail(key, f"step {step!r} is larger than the range {lo!r}..{hi!r}: every value "
                        "would be the low end; use a step that fits the range")
    if log and step is not None and not (kind == "int" and step == 1):
        raise fail(key, "a log range takes no step (an int log range only step 1)")
    return Dist(kind, low=lo, high=hi, step=step, log=log)


def _finite(value: float) -> bool:
    """A number of a size a range can use (not NaN, not infinite, not 10**400)."""
    try:
        return math.isfinite(value) and abs(value) < 1e12
    except OverflowError:
        return False
