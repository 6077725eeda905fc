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

Fields by type: ``randaugment``: num_ops, magnitude, magnitude_std, ops, groups;
``trivialaugment``: ops; ``autoaugment``: sub_policies (fixed), steps (fixed), op, probability,
magnitude (each a distribution shared by every step: parameters ``sp{i}_op{j}``, ``sp{i}_p{j}``,
``sp{i}_m{j}``). Every type also takes the base augmentation a policy may turn off: ``flip``
(``true``: the experiment's flip; ``false``: off; ``{choice: [true, false]}``: searched) and
``crop_padding`` (``experiment``: the experiment's crop; ``0``: off; ``{choice: [0,
experiment]}``: searched).

``groups`` (RandAugment) switches the op groups of the op table (``OpSpec.group``) and gives
each its own magnitude::

    groups:
      geometric: {switch: true, magnitude: {int: [0, 30]}}   # group_geometric, magnitude_geometric
      colour: {magnitude: 9}                                 # always in, fixed magnitude

``switch`` (default true) searches the group in or out (parameter ``group_<name>``); without it
the group is always in. ``magnitude`` (a number or an int/float range; parameter
``magnitude_<name>`` when searched) applies to every op of the group; ops of no listed group
with a magnitude take ``magnitude``. An op is in the policy when its own switch (``op_<Name>``,
from ``ops``) and its group's switch are both on. When that leaves fewer than ``min_size`` ops
(1 without a subset), the group switches are ignored and the op switches alone decide; if still
too few, the ops are completed in order. Deterministic, never resampled: the parameters stay
fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from policysearch.augment.ops import (
    GROUPS,
    MAX_LEVEL,
    OPS,
    group_ops,
    takes_magnitude,
)
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
from policysearch.study.distributions import Dist, describe, parse_field

_FIELDS = {
    "randaugment": {"num_ops": (0, MAX_STAGES, int), "magnitude": (0, MAX_LEVEL, float),
                    "magnitude_std": (0, MAX_LEVEL, float), "ops": None, "groups": None},
    "trivialaugment": {"ops": None},
    "autoaugment": {"sub_policies": (1, MAX_SUB_POLICIES, int), "steps": (1, MAX_STAGES, int),
                    "op": None, "probability": (0, 1, float), "magnitude": (0, MAX_LEVEL, float)},
}
_DEFAULTS = {
    "randaugment": {"num_ops": 2, "magnitude": 9, "magnitude_std": 0.0, "ops": "all",
                    "groups": {}},
    "trivialaugment": {"ops": "all"},
    "autoaugment": {"sub_policies": 5, "steps": 2, "op": {"choice": "all"},
                    "probability": {"float": [0.0, 1.0], "step": 0.1},
                    "magnitude": {"int": [0, 30]}},
}


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
        return replace(self._sample_ops(trial), base=self._sample_base(trial))

    def _sample_base(self, trial: Any) -> dict[str, Any]:
        base: dict[str, Any] = {}
        if self.fields["flip"].sample(trial, "flip") is False:
            base["flip"] = False
        if self.fields["crop_padding"].sample(trial, "crop_padding") == 0:
            base["crop_padding"] = 0
        return base

    def _sample_ops(self, trial: Any) -> Policy:
        f = self.fields
        if self.type == "randaugment" and f["groups"].value:
            return self._sample_groups(trial)
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

    def _sample_groups(self, trial: Any) -> Policy:
        """RandAugment over op groups: every parameter is asked in every trial (fixed names)."""
        f = self.fields
        num_ops = f["num_ops"].sample(trial, "num_ops")
        magnitude = f["magnitude"].sample(trial, "magnitude")
        std = f["magnitude_std"].sample(trial, "magnitude_std")
        own = f["ops"].switches(trial, "op")
        groups: dict[str, Group] = f["groups"].value
        on = {name: g.switch.sample(trial, f"group_{name}") for name, g in groups.items()}
        level = {name: g.magnitude.sample(trial, f"magnitude_{name}")
                 for name, g in groups.items() if g.magnitude is not None}
        universe = f["ops"].op_universe
        chosen = [op for op in universe if own[op] and on.get(OPS[op].group, True)]
        minimum = f["ops"].min_size if f["ops"].kind == "subset" else 1
        if len(chosen) < minimum:  # the groups leave too few: the op switches alone decide
            chosen = [op for op in universe if own[op]]
        for op in universe:  # still too few: complete in order
            if len(chosen) >= minimum:
                break
            if op not in chosen:
                chosen.append(op)
        ops = tuple(op for op in universe if op in chosen)
        per_op = {op: level[OPS[op].group] for op in ops
                  if OPS[op].group in level and takes_magnitude(op)}
        return randaugment(num_ops, magnitude, ops=ops, magnitude_std=std, op_magnitudes=per_op)

    def summary(self) -> dict[str, Any]:
        """The space as plain data (for MLflow params and reports)."""
        out = {"name": self.name, "type": self.type,
               **{k: (d.value if d.kind == "fixed" else describe(d))
                  for k, d in self.fields.items() if k != "groups"}}
        for name, group in (self.fields["groups"].value if "groups" in self.fields else {}
                            ).items():
            out[f"group_{name}"] = describe(group.switch) if group.switch.searched else "in"
            if group.magnitude is not None:
                out[f"magnitude_{name}"] = (describe(group.magnitude)
                                            if group.magnitude.searched
                                            else group.magnitude.value)
        return out


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
    allowed = set(_FIELDS[kind]) | {"type", "description", "flip", "crop_padding"}
    for key in raw:
        if key not in allowed:
            raise fail(key, f"not a field of a {kind} space; expected one of "
                       f"{', '.join(sorted(allowed))}")
    fields = {}
    for key, bounds in _FIELDS[kind].items():
        if key == "groups":
            continue
        value = raw.get(key, _DEFAULTS[kind][key])
        fields[key] = parse_field(key, value, bounds, fail)
    if kind == "randaugment":
        fields["groups"] = Dist("fixed", _groups(raw.get("groups", {}),
                                                 fields["ops"].op_universe, fail))
    fields["flip"] = _base_choice("flip", raw.get("flip", True), (True, False), fail)
    fields["crop_padding"] = _base_choice("crop_padding", raw.get("crop_padding", "experiment"),
                                          (0, "experiment"), fail)
    for key in ("sub_policies", "steps"):
        if key in fields and fields[key].searched:
            raise fail(key, "must be a fixed integer (the number of parameters is fixed)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "expected a string")
    return SearchSpace(name=name, type=kind, fields=fields, description=description, path=origin,
                       raw=dict(raw))


@dataclass(frozen=True)
class Group:
    """An op group in a space: its in/out switch and its magnitude (None: ``magnitude``)."""

    ops: tuple[str, ...]
    switch: Dist
    magnitude: Dist | None


def _groups(value: Any, universe: tuple[str, ...], fail: Any) -> dict[str, Group]:
    if not isinstance(value, dict):
        raise fail("groups", f"expected a mapping of group name to options, got {value!r}")
    out = {}
    for name, options in value.items():
        key = f"groups.{name}"
        if name not in GROUPS:
            raise fail(key, f"unknown group; the op table's groups: {', '.join(GROUPS)}")
        options = {} if options is None else options
        if not isinstance(options, dict) or set(options) - {"switch", "magnitude"}:
            raise fail(key, f"expected {{switch: true|false, magnitude: ...}}, got {options!r}")
        ops = group_ops(name, universe)
        if not ops:
            raise fail(key, f"no op of this group is in the space's ops (the group's ops: "
                       f"{', '.join(group_ops(name))})")
        switch = options.get("switch", True)
        if not isinstance(switch, bool):
            raise fail(f"{key}.switch", f"expected true or false, got {switch!r}")
        magnitude = None
        if "magnitude" in options:
            if not any(takes_magnitude(op) for op in ops):
                raise fail(f"{key}.magnitude", f"the group's ops ({', '.join(ops)}) take no "
                           "magnitude")
            magnitude = parse_field(f"{key}.magnitude", options["magnitude"],
                                     (0, MAX_LEVEL, float), fail)
        out[name] = Group(ops, Dist("switch", choices=(True, False)) if switch
                          else Dist("fixed", True), magnitude)
    return out


def _base_choice(key: str, value: Any, allowed: tuple[Any, ...], fail: Any) -> Dist:
    """``flip`` or ``crop_padding``: a fixed value of ``allowed`` or ``{choice: [...]}``."""
    shown = " and ".join(repr(a).replace("'", "").lower() for a in allowed)

    def valid(v: Any) -> bool:
        return any(v is a if isinstance(a, bool) or isinstance(v, bool) else v == a
                   for a in allowed)

    if isinstance(value, dict):
        choices = value.get("choice")
        if set(value) != {"choice"} or not isinstance(choices, list) or not choices:
            raise fail(key, f"expected a value or {{choice: [...]}} of {shown}, got {value!r}")
        if not all(valid(v) for v in choices) or len(set(map(str, choices))) != len(choices):
            raise fail(key, f"choices must be distinct values of {shown}, got {choices!r}")
        return Dist("switch", choices=tuple(choices)) if len(choices) > 1 else Dist(
            "fixed", choices[0])
    if not valid(value):
        raise fail(key, f"expected {shown} or {{choice: [...]}} of them, got {value!r}"
                   + (" (a policy can only keep the experiment's crop or turn it off)"
                      if key == "crop_padding" else ""))
    return Dist("fixed", value)
