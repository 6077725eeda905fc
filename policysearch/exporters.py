"""Carry a policy to other frameworks: torchvision, timm, TensorFlow Model Garden.

Each exporter returns the equivalent code and the list of what the target cannot express.
An empty list means the target reproduces the policy (up to the noted pixel rounding);
otherwise the CLI refuses, naming the differences, unless ``--approximate`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from policysearch.augment.ops import RANDAUGMENT_OPS
from policysearch.policy import Policy, _num

TARGETS = ("torchvision", "timm", "tf-models")

TIMM_RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                 "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                 "TranslateXRel", "TranslateYRel")
TF_MODELS_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                 "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX",
                 "TranslateY", "Cutout", "SolarizeAdd")


@dataclass
class Export:
    target: str
    code: str
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.differences


def export(policy: Policy, target: str) -> Export:
    if target == "torchvision":
        return _torchvision(policy)
    if target == "timm":
        return _timm(policy)
    if target == "tf-models":
        return _tf_models(policy)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def _common(policy: Policy) -> list[str]:
    out = []
    if policy.type == "autoaugment":
        out.append("custom AutoAugment sub-policies (the target only ships its fixed, "
                   "published policies)")
    if policy.magnitude_std:
        out.append(f"per-image magnitude jitter magnitude_std={_num(policy.magnitude_std)}")
    return out


def _torchvision(policy: Policy) -> Export:
    fill = f"[{policy.fill}, {policy.fill}, {policy.fill}]"
    notes = ["torchvision truncates fractional translations to whole pixels where PIL (and "
             "policysearch) round them: a translation may differ by one pixel"]
    if policy.type == "none":
        return Export("torchvision", "# no policy ops: keep only your crop and flip", [], [])
    differences = _common(policy)
    if policy.type == "trivialaugment":
        differences.append("torchvision's TrivialAugmentWide uses wider ranges (e.g. Rotate up "
                           "to 135 degrees, shear up to 0.99) than this policy's 31-bin scale")
        code = (f"torchvision.transforms.TrivialAugmentWide(num_magnitude_bins=31, "
                f"interpolation=InterpolationMode.NEAREST, fill={fill})")
        return Export("torchvision", code, differences, notes)
    if policy.type == "randaugment":
        if set(policy.ops) != set(RANDAUGMENT_OPS):
            missing = sorted(set(RANDAUGMENT_OPS) - set(policy.ops))
            extra = sorted(set(policy.ops) - set(RANDAUGMENT_OPS))
            what = []
            if missing:
                what.append(f"leaves out {', '.join(missing)}")
            if extra:
                what.append(f"adds {', '.join(extra)}")
            differences.append(f"op subset: this policy {' and '.join(what)}; torchvision's "
                               "RandAugment always draws from all 14 ops")
        if float(policy.magnitude) != int(policy.magnitude):
            differences.append(f"magnitude {_num(policy.magnitude)} is not a whole bin; "
                               "torchvision takes an integer magnitude")
    code = (f"torchvision.transforms.RandAugment(num_ops={policy.num_ops}, "
            f"magnitude={round(policy.magnitude)}, num_magnitude_bins=31, "
            f"interpolation=InterpolationMode.NEAREST, fill={fill})")
    if policy.type == "autoaugment":
        code = "torchvision.transforms.AutoAugment(...)  # no custom sub-policies"
    return Export("torchvision", code, differences, notes)


def _timm(policy: Policy) -> Export:
    if policy.type == "none":
        return Export("timm", "# no policy ops: leave auto_augment unset", [], [])
    differences = _common(policy)
    if policy.type == "trivialaugment":
        differences.append("timm has no TrivialAugment config string")
    ops = set(policy.ops)
    differences.append(
        "timm's RandAugment op set is " + ", ".join(TIMM_RAND_OPS) + "; it has no Identity op "
        "and each drawn op applies with probability 0.5; this policy draws from "
        + ", ".join(op for op in RANDAUGMENT_OPS + ("Cutout", "Invert") if op in ops)
        + " and always applies the drawn op")
    differences.append("timm's magnitude scale is 0..10 in whole steps (this policy's M/3 "
                       f"= {_num(policy.magnitude / 3)}), with enhance factors 0.1..1.9, "
                       "posterize 0..4 bits and random bilinear/bicubic resampling")
    mstd = f"-mstd{_num(policy.magnitude_std / 3)}" if policy.magnitude_std else ""
    code = f"rand-m{round(policy.magnitude / 3)}-n{policy.num_ops or 1}{mstd}-inc1"
    return Export("timm", code, differences, [])


def _tf_models(policy: Policy) -> Export:
    if policy.type == "none":
        return Export("tf-models", "# no policy ops", [], [])
    differences = _common(policy)
    ops = set(policy.ops)
    exclude = [op for op in TF_MODELS_OPS if op not in ops]
    if "Identity" in ops:
        differences.append("TF Model Garden's RandAugment has no Identity op")
    differences.append("TF Model Garden applies each drawn op with a random probability in "
                       "[0.2, 0.8], on a 0..10 magnitude scale with enhance factors 0.1..1.9 "
                       "and translations in absolute pixels (translate_const)")
    if policy.type == "trivialaugment":
        differences.append("TF Model Garden has no TrivialAugment")
    code = (f"official.vision.ops.augment.RandAugment(num_layers={policy.num_ops or 1}, "
            f"magnitude={_num(policy.magnitude / 3)}, exclude_ops={exclude!r})")
    return Export("tf-models", code, differences, [])
