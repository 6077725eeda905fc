"""Policies: what a search proposes and what the exported JSON file holds.

A policy is data (no Keras here, so summaries and exports answer fast). Four types share one
runtime form, a table of sub-policies x stages (see ``Policy.table``), which the augmentation
layer reads as tensors: one compiled graph serves every policy.

- ``randaugment``: each image applies ``num_ops`` ops drawn uniformly from ``ops`` at
  ``magnitude`` (jittered per image by ``magnitude_std``), or at the op's own magnitude where
  ``op_magnitudes`` gives one (e.g. one magnitude per op group);
- ``trivialaugment``: one op from ``ops`` at a magnitude drawn uniformly from [0, 30];
- ``autoaugment``: each image draws one sub-policy; each of its ``(op, probability, magnitude)``
  steps is applied with its probability;
- ``none``: no op (the trainer's base crop and flip only).

Every type may also turn the trainer's base augmentation off: ``base.flip: false`` turns the
flip off and ``base.crop_padding: 0`` the crop (a search may decide either). An exported file's
``base`` records the crop and flip its policy was trained with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from policysearch.augment.ops import (
    MAX_LEVEL,
    OP_NAMES,
    OPS,
    RANDAUGMENT_OPS,
    op_summary,
    takes_magnitude,
)
from policysearch.errors import PolicyFormatError
from policysearch.policy.fileformat import (  # noqa: F401  (re-exported)
    MAX_STAGES,
    MAX_SUB_POLICIES,
    SCHEMA,
    TYPES,
    json_number,
    parse_fields,
)

MAGNITUDE_SCALE: dict[str, Any] = {
    "bins": 31,
    "min": 0,
    "max": 30,
    "definition": "value = linspace(0, value_at_max, 31)[M], as torchvision RandAugment with "
    "num_magnitude_bins=31; signed ops take a random sign per image",
    "value_at_max": {name: spec.at_max for name, spec in OPS.items() if spec.at_max},
}


@dataclass(frozen=True)
class Policy:
    """An augmentation policy. Build one with the helpers below or ``Policy.from_dict``."""

    type: str
    num_ops: int = 0
    magnitude: float = 0.0
    magnitude_std: float = 0.0
    ops: tuple[str, ...] = RANDAUGMENT_OPS
    sub_policies: tuple[tuple[tuple[str, float, float], ...], ...] = ()
    op_magnitudes: tuple[tuple[str, float], ...] = ()
    """RandAugment: ``(op, magnitude)`` for the ops that do not use ``magnitude``."""
    fill: int = 128
    base: dict[str, Any] = field(default_factory=dict, compare=False)
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, origin: str = "policy") -> Policy:
        """Validate a decoded policy file; errors name ``origin`` and the field."""
        return cls(**parse_fields(data, origin))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema v1)."""
        out: dict[str, Any] = {"schema": SCHEMA, "type": self.type}
        if self.type == "randaugment":
            out.update(num_ops=self.num_ops, magnitude=json_number(self.magnitude),
                       magnitude_std=json_number(self.magnitude_std), ops=list(self.ops))
            if self.op_magnitudes:
                out["op_magnitudes"] = {op: json_number(m) for op, m in self.op_magnitudes}
        elif self.type == "trivialaugment":
            out.update(ops=list(self.ops))
        elif self.type == "autoaugment":
            out.update(sub_policies=[[[op, json_number(p), json_number(m)] for op, p, m in sub]
                                     for sub in self.sub_policies])
        out["fill"] = self.fill
        out["magnitude_scale"] = MAGNITUDE_SCALE
        if self.base:
            out["base"] = dict(self.base)
        if self.source:
            out["source"] = dict(self.source)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def with_source(self, **source: Any) -> Policy:
        return replace(self, source={**self.source, **source})

    def key(self) -> str:
        """A canonical string of what the policy does (provenance excluded)."""
        core = self.to_dict()
        for name in ("magnitude_scale", "base", "source", "schema"):
            core.pop(name, None)
        if not self.flips:  # a policy that turns the base flip off is another augmentation
            core["flip"] = False
        if not self.crops:
            core["crop"] = False
        if "ops" in core:  # drawn uniformly: the order of the list means nothing
            core["ops"] = sorted(core["ops"])
        return json.dumps(core, sort_keys=True)

    # -- reading -------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """A short name, e.g. ``RA(N=2,M=9)``, ``TA``, ``AA(5x2)``, ``crop+flip``."""
        if self.type == "none":
            return {(True, True): "crop+flip", (True, False): "crop only",
                    (False, True): "flip only", (False, False): "no augmentation"}[
                        (self.crops, self.flips)]
        return self._core_label() + self._base_label()

    def _base_label(self) -> str:
        """What the policy turns off of the base augmentation, e.g. `` no flip``."""
        off = [name for name, on in (("crop", self.crops), ("flip", self.flips)) if not on]
        return f" no {'/'.join(off)}" if off else ""

    def _core_label(self) -> str:
        if self.type == "trivialaugment":
            full = set(self.ops) == set(RANDAUGMENT_OPS)
            return "TA" + ("" if full else f"[{len(self.ops)} ops]")
        if self.type == "autoaugment":
            steps = max((len(s) for s in self.sub_policies), default=0)
            return f"AA({len(self.sub_policies)}x{steps})"
        subset = "" if set(self.ops) == set(RANDAUGMENT_OPS) else f",{len(self.ops)} ops"
        return f"RA(N={self.num_ops},M={self.magnitude_text()}{subset})"

    def magnitude_of(self, op: str) -> float:
        """The magnitude at which RandAugment applies ``op``."""
        return dict(self.op_magnitudes).get(op, self.magnitude)

    def magnitude_text(self) -> str:
        """RandAugment's magnitudes in short: ``9``, or per group ``geometric 14/colour 5``
        (per op where a group's ops differ), the ops without a magnitude left out."""
        if not self.op_magnitudes:
            return str(json_number(self.magnitude))
        by_group: dict[str, dict[str, float]] = {}
        for op in self.ops:
            if takes_magnitude(op):
                by_group.setdefault(OPS[op].group, {})[op] = self.magnitude_of(op)
        parts = []
        for group, levels in by_group.items():
            values = list(levels.values())
            common = max(values, key=values.count)  # the first of the most frequent
            odd = ", ".join(f"{op} {json_number(m)}" for op, m in levels.items() if m != common)
            parts.append(f"{group} {json_number(common)}" + (f" ({odd})" if odd else ""))
        return "/".join(parts)

    def __repr__(self) -> str:
        if self.type == "randaugment":
            ops = "all 14" if set(self.ops) == set(RANDAUGMENT_OPS) else ", ".join(self.ops)
            std = f", mstd={json_number(self.magnitude_std)}" if self.magnitude_std else ""
            m = self.magnitude_text()
            return f"RandAugment(n={self.num_ops}, m={m}{std}, ops=[{ops}]){self._base_label()}"
        if self.type == "trivialaugment":
            ops = "all 14" if set(self.ops) == set(RANDAUGMENT_OPS) else ", ".join(self.ops)
            return f"TrivialAugment(ops=[{ops}]){self._base_label()}"
        if self.type == "autoaugment":
            subs = "; ".join(
                " + ".join(f"{op}(p={json_number(p)}, m={json_number(m)})" for op, p, m in sub)
                for sub in self.sub_policies
            )
            return f"AutoAugment([{subs}]){self._base_label()}"
        return f"NoAugment(){self._base_label()}"

    def describe(self, height: int = 32, width: int = 32) -> list[str]:
        """Readable lines: each op with its argument in the op's own unit."""
        if self.type == "none":
            return ["no policy ops: the trainer's base augmentation only", *self._base_lines()]
        if self.type == "randaugment":
            at = (f"magnitude {json_number(self.magnitude)}/30" if not self.op_magnitudes
                  else f"magnitudes {self.magnitude_text()} (of 30)")
            lines = [f"RandAugment: each image applies {self.num_ops} op(s) drawn uniformly "
                     f"from {len(self.ops)}, at {at}"
                     + (f" (per-image std {json_number(self.magnitude_std)})"
                        if self.magnitude_std else "")]
            lines += ["  " + op_summary(op, self.magnitude_of(op), height, width)
                      for op in self.ops]
            return lines + self._base_lines()
        if self.type == "trivialaugment":
            lines = [f"TrivialAugment: each image applies 1 op drawn uniformly from "
                     f"{len(self.ops)}, at a magnitude drawn uniformly from 0..30"]
            lines += ["  " + op_summary(op, MAX_LEVEL, height, width, upto=True) for op in self.ops]
            return lines + self._base_lines()
        lines = [f"AutoAugment: each image draws one of {len(self.sub_policies)} sub-policies; "
                 "each step applies with its probability"]
        for i, sub in enumerate(self.sub_policies):
            steps = ", then ".join(f"p={json_number(p)}: {op_summary(op, m, height, width)}"
                                   for op, p, m in sub)
            lines.append(f"  {i + 1}. {steps}")
        return lines + self._base_lines()

    def _base_lines(self) -> list[str]:
        off = self._base_label().strip()
        return [f"base augmentation: {off} (the policy turns it off)"] if off else []

    @property
    def flips(self) -> bool:
        """Whether the base flip stays on with this policy (``base.flip``, default true)."""
        return self.base.get("flip", True) is not False

    @property
    def crops(self) -> bool:
        """Whether the base crop stays on with this policy (off when ``base.crop_padding`` is 0)."""
        return self.base.get("crop_padding") != 0

    def base_kwargs(self) -> dict[str, Any]:
        """The recorded base augmentation as the layer's and the transform's keyword arguments
        (``load_policy(base=True)``, ``load_transform(base=True)``)."""
        return {"crop_padding": int(self.base.get("crop_padding", 0)),
                "flip": bool(self.base.get("flip", False))}

    def trained_base(self, crop_padding: int, flip: bool) -> dict[str, Any]:
        """The base augmentation this policy trains with under an experiment's ``crop_padding``
        and ``flip`` (what an exported file records in ``base``)."""
        return {"crop_padding": crop_padding if self.crops else 0,
                "flip": bool(flip and self.flips)}

    @property
    def num_stages(self) -> int:
        """Most ops one image goes through."""
        if self.type == "randaugment":
            return self.num_ops
        if self.type == "trivialaugment":
            return 1
        if self.type == "autoaugment":
            return max(len(sub) for sub in self.sub_policies)
        return 0

    # -- runtime form --------------------------------------------------------------------------

    def table(self, max_sub_policies: int = MAX_SUB_POLICIES,
              max_stages: int = MAX_STAGES) -> dict[str, Any]:
        """The policy as fixed-shape arrays, the runtime form that the layer holds as tensors.

        ``sub_weights`` (S,): how often each sub-policy is drawn; ``op_weights`` (S, L, K): which
        op a stage draws; ``prob`` (S, L): the chance a stage applies; ``mag_low``/``mag_high``
        (S, L): its magnitude range; ``op_mag`` (K,): an op's own magnitude where it has one
        (RandAugment's ``op_magnitudes``), else -1 (the stage's range); ``mag_std``: per-image
        magnitude jitter; ``flip``: 0 when the policy turns the base flip off (``base.flip:
        false``), else 1; ``crop``: 0 when it turns the base crop off (``base.crop_padding: 0``).
        """
        import numpy as np

        S, L, K = max_sub_policies, max_stages, len(OP_NAMES)
        t = {
            "sub_weights": np.zeros((S,), "float32"),
            "op_weights": np.zeros((S, L, K), "float32"),
            "prob": np.zeros((S, L), "float32"),
            "mag_low": np.zeros((S, L), "float32"),
            "mag_high": np.zeros((S, L), "float32"),
            "op_mag": np.full((K,), -1.0, "float32"),
            "mag_std": np.zeros((), "float32"),
            "fill": np.array(self.fill, "float32"),
            "flip": np.array(1.0 if self.flips else 0.0, "float32"),
            "crop": np.array(1.0 if self.crops else 0.0, "float32"),
        }
        t["op_weights"][..., 0] = 1.0  # unused stages draw Identity
        t["sub_weights"][0] = 1.0
        mask = np.array([name in self.ops for name in OP_NAMES], "float32")
        if self.type == "randaugment":
            if self.num_ops > L:
                raise ValueError(f"num_ops={self.num_ops} exceeds the layer's {L} stages")
            for stage in range(self.num_ops):
                t["op_weights"][0, stage] = mask
                t["prob"][0, stage] = 1.0
                t["mag_low"][0, stage] = t["mag_high"][0, stage] = self.magnitude
            t["mag_std"][...] = self.magnitude_std
            for op, m in self.op_magnitudes:
                t["op_mag"][OP_NAMES.index(op)] = m
        elif self.type == "trivialaugment":
            t["op_weights"][0, 0] = mask
            t["prob"][0, 0] = 1.0
            t["mag_high"][0, 0] = MAX_LEVEL
        elif self.type == "autoaugment":
            if len(self.sub_policies) > S:
                raise ValueError(f"{len(self.sub_policies)} sub-policies exceed the layer's {S}")
            t["sub_weights"][: len(self.sub_policies)] = 1.0
            for s, sub in enumerate(self.sub_policies):
                if len(sub) > L:
                    raise ValueError(f"a sub-policy of {len(sub)} steps exceeds {L} stages")
                for stage, (op, p, m) in enumerate(sub):
                    t["op_weights"][s, stage] = 0.0
                    t["op_weights"][s, stage, OP_NAMES.index(op)] = 1.0
                    t["prob"][s, stage] = p
                    t["mag_low"][s, stage] = t["mag_high"][s, stage] = m
        return t


# ----------------------------------------------------------------------------------------------
# Constructors


def randaugment(num_ops: int = 2, magnitude: float = 9, ops: Any = RANDAUGMENT_OPS,
                magnitude_std: float = 0.0, fill: int = 128,
                op_magnitudes: dict[str, float] | None = None) -> Policy:
    """RandAugment; ``op_magnitudes`` gives some ops their own magnitude (the rest use
    ``magnitude``)."""
    data = {"schema": SCHEMA, "type": "randaugment", "num_ops": num_ops, "magnitude": magnitude,
            "magnitude_std": magnitude_std, "ops": list(ops), "fill": fill}
    if op_magnitudes:
        data["op_magnitudes"] = dict(op_magnitudes)
    return Policy.from_dict(data, "randaugment()")


def trivialaugment(ops: Any = RANDAUGMENT_OPS, fill: int = 128) -> Policy:
    return Policy.from_dict({"schema": SCHEMA, "type": "trivialaugment", "ops": list(ops),
                             "fill": fill}, "trivialaugment()")


def autoaugment(sub_policies: Any, fill: int = 128) -> Policy:
    return Policy.from_dict({"schema": SCHEMA, "type": "autoaugment",
                             "sub_policies": [[list(step) for step in sub]
                                              for sub in sub_policies],
                             "fill": fill}, "autoaugment()")


def no_augment() -> Policy:
    return Policy(type="none", ops=())


def crop_only() -> Policy:
    """No ops, and the base flip off: the base crop alone (for data a flip changes)."""
    return Policy(type="none", ops=(), base={"flip": False})


# ----------------------------------------------------------------------------------------------
# Files


MAX_FILE_BYTES = 1 << 20
"""Largest policy file read (1 MiB; an exported policy is a few KB)."""


def read_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy JSON file (no Keras import).

    Directories, devices, files over ``MAX_FILE_BYTES`` and binary files are refused in one
    line without being read whole.
    """
    from policysearch.data.textfile import read_text

    path = Path(path)
    text = read_text(path, "policy file", PolicyFormatError, MAX_FILE_BYTES, "JSON text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        what = ("is empty" if not text.strip()
                else f"is not valid JSON ({err.msg} at line {err.lineno})")
        raise PolicyFormatError(f"policy file {path}: {what}; is it truncated?") from None
    except RecursionError:
        raise PolicyFormatError(f"policy file {path}: is nested too deeply to be a policy")\
            from None
    except ValueError as err:  # integers of thousands of digits
        raise PolicyFormatError(f"policy file {path}: is not valid JSON ({err})") from None
    return Policy(**parse_fields(data, f"policy file {path}"))


def write_policy(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Write ``policy`` atomically (a reader never sees half a file)."""
    from policysearch.paths import write_atomic

    path = Path(path)
    write_atomic(path, policy.to_json())
    return path
