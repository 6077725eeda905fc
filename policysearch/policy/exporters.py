"""Carry a policy to other frameworks: torchvision, timm, TensorFlow Model Garden.

``export(policy, target)`` returns an ``Export``: complete, runnable code (imports included)
where the target expresses the policy exactly, else the differences that make it inexact; and
the nearest stock form of the target with one line saying how far it is (``--approximate``).

- torchvision: a small transform over ``torchvision.transforms.v2.functional`` whose calls
  are the PIL calls of policysearch's ops (``OpSpec.torchvision``) at policysearch's magnitude
  rule (``OpSpec.formula``), drawing as ``load_transform`` does: exact for every policy type.
- timm: ``RandAugment`` / ``AutoAugment`` over ``AugmentOp`` with a magnitude per op
  (``OpSpec.timm`` / ``OpSpec.timm_level``); exact for every policy without Cutout.
- tf-models: no exact route (its scales differ, named in the refusal).

``tests/interop`` runs every printed snippet against the real libraries (``make test-interop``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from policysearch.augment.ops import MAX_LEVEL, OPS, takes_magnitude
from policysearch.policy.definition import Policy, randaugment
from policysearch.policy.explain import unchanged_probability
from policysearch.policy.export_code import timm_code, torchvision_code

TARGETS = ("torchvision", "timm", "tf-models")

TF_MODELS_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                 "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX",
                 "TranslateY", "Cutout", "SolarizeAdd")
TIMM_RAND_INCREASING = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                        "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing",
                        "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
                        "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


@dataclass
class Export:
    """What a target can do with a policy."""

    target: str
    code: str | None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    approximate: str | None = None
    distance: str = ""

    @property
    def exact(self) -> bool:
        return self.code is not None


def export(policy: Policy, target: str) -> Export:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if policy.type == "none":
        kept = {(True, True): "your crop and flip", (True, False): "your crop (no flip)",
                (False, True): "your flip (no crop)", (False, False): "no crop and no flip"}[
                    (policy.crops, policy.flips)]
        return Export(target, f"# no policy ops: keep only {kept}", notes=_base_note(policy))
    return {"torchvision": _torchvision, "timm": _timm, "tf-models": _tf_models}[target](policy)


def _percent(p: float) -> str:
    return f"{p:.1%}"


def _distance(stock: str, stock_unchanged: float, policy: Policy) -> str:
    return (f"{stock} leaves {_percent(stock_unchanged)} of images unchanged per epoch; "
            f"this policy leaves {_percent(unchanged_probability(policy))}")


def _base_note(policy: Policy) -> list[str]:
    base = policy.base
    notes = []
    parts = []
    if base.get("crop_padding"):
        parts.append(f"a random crop after padding {base['crop_padding']} zero pixels")
    if base.get("flip"):
        parts.append("a random horizontal flip")
    if parts:
        notes.append("the search also trained with " + " and ".join(parts) + " before the policy")
    off = [what for what, on in (("random crop", policy.crops), ("horizontal flip", policy.flips))
           if not on]
    if off:
        notes.append(f"the search trained without a {' or a '.join(off)}: do not add one")
    return notes


def _one_magnitude(policy: Policy) -> float:
    """RandAugment's magnitude for a target that has one for every op: the policy's, or the
    mean of its per-op magnitudes."""
    if not policy.op_magnitudes:
        return policy.magnitude
    levels = [policy.magnitude_of(op) for op in policy.ops if takes_magnitude(op)]
    return sum(levels) / len(levels) if levels else policy.magnitude


# ----------------------------------------------------------------------------------------------
# torchvision


def _torchvision(policy: Policy) -> Export:
    notes = ["exact on PIL images (a uint8 CHW tensor goes through PIL and back); "
             "AutoContrast is PIL's, which may differ from policysearch's by one level on "
             "under 1% of pixels", *_base_note(policy)]
    result = Export("torchvision", torchvision_code(policy), notes=notes)
    fill = f"[{policy.fill}] * 3"
    header = ("import torch\nfrom torchvision.transforms import v2\n"
              "from torchvision.transforms import InterpolationMode\n\n")
    if policy.type == "randaugment":
        magnitude = round(_one_magnitude(policy))
        result.approximate = (header + f"augment = v2.RandAugment(num_ops={policy.num_ops}, "
                              f"magnitude={magnitude}, num_magnitude_bins=31, "
                              f"interpolation=InterpolationMode.NEAREST, fill={fill})")
        stock = randaugment(policy.num_ops, magnitude)
        result.distance = (_distance("torchvision's RandAugment (all 14 ops, one magnitude, no "
                                     "magnitude jitter, translations truncated to whole pixels)",
                                     unchanged_probability(stock), policy))
    elif policy.type == "trivialaugment":
        result.approximate = (header + "augment = v2.TrivialAugmentWide(num_magnitude_bins=31, "
                              f"interpolation=InterpolationMode.NEAREST, fill={fill})")
        # Wide ranges at 31 integer bins: Identity always, 9 signed ops at bin 0, Posterize
        # 8 bits at bins 0-2; Solarize, AutoContrast, Equalize change images.
        result.distance = _distance("torchvision's TrivialAugmentWide (its wider ranges, e.g. "
                                    "Rotate up to 135 degrees)", (1 + 9 / 31 + 3 / 31) / 14,
                                    policy)
    return result


# ----------------------------------------------------------------------------------------------
# timm


def _timm(policy: Policy) -> Export:
    unsupported = [op for op in policy.ops if OPS[op].timm is None]
    notes = ["exact on PIL images; AutoContrast is PIL's, which may differ from policysearch's "
             "by one level on under 1% of pixels", *_base_note(policy)]
    if unsupported:
        differences = [f"timm's AugmentOp has no {', '.join(unsupported)} (its RandomErasing "
                       "draws rectangles of random area and aspect instead)"]
        result = Export("timm", None, differences, notes)
    else:
        result = Export("timm", timm_code(policy), notes=notes)
    if policy.type == "autoaugment":
        return result
    if policy.type == "randaugment":
        level = min(round(_one_magnitude(policy) / 3), 9)
        layers = policy.num_ops
        mstd = f"-mstd{policy.magnitude_std / 3:.3g}" if policy.magnitude_std else ""
        unchanged = 0.0 if level else 1 - 4 / len(TIMM_RAND_INCREASING)
        unchanged = unchanged ** layers
    else:
        level, layers, mstd, unchanged = 9, 1, "-mstd101", 0.0
    config = f"rand-m{level}-n{layers}-p1.0{mstd}-inc1-mmax9"
    result.approximate = (
        "from PIL import Image\nfrom timm.data.auto_augment import rand_augment_transform\n\n"
        f"augment = rand_augment_transform({config!r}, {{\"img_mean\": ({policy.fill}, "
        f"{policy.fill}, {policy.fill}), \"interpolation\": Image.NEAREST, "
        "\"translate_pct\": 150 / 331})")
    result.distance = _distance(f"timm's {config} (its 15 ops, 0..9 scale; mmax9 keeps "
                                "Posterize at 1 bit or more)", unchanged, policy)
    return result


# ----------------------------------------------------------------------------------------------
# TF Model Garden


def _tf_neutral(op: str, m: float) -> bool:
    """Whether TF Model Garden's op leaves images as they are at its magnitude ``m`` (0..10)."""
    if op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd"):
        return m == 0
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return m / 10 * 1.8 + 0.1 == 1.0
    return op == "Solarize" and int(m / 10 * 256) >= 256


def _tf_models(policy: Policy) -> Export:
    differences = [
        "TF Model Garden (official.vision.ops.augment) maps one magnitude m in 0..10 to every "
        "op on its own scales: an enhance op gets the single factor 0.1 + 0.18 m (this policy: "
        "1 ± 0.03 M, either direction per image), Posterize keeps int(0.4 m) bits (this policy: "
        "8 - round(M / 7.5)), Solarize's threshold is int(25.6 m) (this policy: 255 - 8.5 M), "
        "translations are translate_const * m / 10 pixels, and it rotates about "
        "((w - 1) / 2, (h - 1) / 2) where PIL rotates about (w / 2, h / 2)"]
    ops = set(policy.ops)
    if policy.type == "trivialaugment":
        differences.append("TF Model Garden has no TrivialAugment (a magnitude drawn per image)")
    if policy.type == "randaugment" and policy.magnitude_std:
        differences.append("its magnitude_std jitters m on the 0..10 scale, before its scales")
    if policy.type == "randaugment" and policy.op_magnitudes:
        differences.append("its RandAugment has one magnitude for every op (this policy: "
                           f"{policy.magnitude_text()})")
    result = Export("tf-models", None, differences, _base_note(policy))
    header = "from official.vision.ops import augment as tfm_augment\n\n"
    m = (round(_one_magnitude(policy) / 3, 4) if policy.type == "randaugment"
         else round(MAX_LEVEL / 3))
    exclude = [op for op in TF_MODELS_OPS if op not in ops]
    if policy.type == "autoaugment":
        subs = [[(op, p, round(level / 3, 4)) for op, p, level in sub]
                for sub in policy.sub_policies if all(op in TF_MODELS_OPS for op, _, _ in sub)]
        steps = max((len(sub) for sub in subs), default=0)
        subs = [sub + [("Equalize", 0.0, 0)] * (steps - len(sub)) for sub in subs]  # never applied
        result.approximate = header + f"augment = tfm_augment.AutoAugment(policies={subs!r})"
        stock = [math.prod(1 - p + p * _tf_neutral(op, m) for op, p, m in sub) for sub in subs]
        result.distance = _distance(f"TF Model Garden's AutoAugment with the {len(subs)} of "
                                    f"{len(policy.sub_policies)} sub-policies its ops can name "
                                    "(m = M / 3 on its scales)",
                                    sum(stock) / max(len(stock), 1), policy)
        return result
    layers = policy.num_ops if policy.type == "randaugment" else 1
    available = len(TF_MODELS_OPS) - len(exclude)
    # Per layer: the identity branch (1 of K + 1), or an op that is the identity at m.
    neutral = sum(1 for op in TF_MODELS_OPS if op not in exclude and _tf_neutral(op, m))
    unchanged = ((1 + neutral) / (available + 1)) ** layers
    result.approximate = (header + f"augment = tfm_augment.RandAugment(num_layers={layers}, "
                          f"magnitude={m}, exclude_ops={exclude!r})")
    result.distance = _distance(f"TF Model Garden's RandAugment at m={m}", unchanged, policy)
    return result
