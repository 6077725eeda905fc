"""What a policy does to the data, in numbers.

Online augmentation draws new random parameters for every image in every epoch: nothing is
added to the dataset, and each epoch the model sees one variant of each image. These functions
answer "how often is an image seen as it is?" and "how many variants of one image exist?".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policysearch.augment.ops import MAX_LEVEL, OPS, arg_value
from policysearch.policy.definition import Policy

ASSUMPTIONS = (
    "Assumptions: an op leaves an image unchanged only as Identity, when skipped by its "
    "probability, or at a magnitude where its value is exactly neutral (0, factor 1, 8 bits, an "
    "empty Cutout); AutoContrast, Equalize, Invert and Solarize count as changing every image; "
    "continuous magnitudes count as their 31 bins; the trainer's crop and flip are counted apart."
)


def neutral_fraction(name: str, low: float, high: float, height: int = 32,
                     width: int = 32) -> float:
    """The share of magnitudes in [low, high] (uniform) at which op ``name`` is the identity."""
    spec = OPS[name]
    if spec.kind == "identity":
        return 1.0
    if spec.neutral is None:
        return 0.0  # AutoContrast, Equalize, Invert, Solarize change (almost) every image
    if high <= low:
        return 1.0 if _neutral(name, low, height, width) else 0.0
    steps = 3000
    hits = sum(_neutral(name, low + (high - low) * (i + 0.5) / steps, height, width)
               for i in range(steps))
    return hits / steps


def _neutral(name: str, magnitude: float, height: int, width: int) -> bool:
    return OPS[name].is_neutral(arg_value(name, magnitude, height, width), height, width)


def unchanged_probability(policy: Policy, height: int = 32, width: int = 32) -> float:
    """Probability that one image passes one epoch through the policy's ops unchanged."""
    if policy.type == "none":
        return 1.0
    if policy.type in ("randaugment", "trivialaugment"):
        if policy.type == "randaugment" and policy.magnitude_std:
            per_op = [1.0 if op == "Identity" else 0.0 for op in policy.ops]
        elif policy.type == "randaugment":
            per_op = [neutral_fraction(op, policy.magnitude_of(op), policy.magnitude_of(op),
                                       height, width) for op in policy.ops]
        else:
            per_op = [neutral_fraction(op, 0.0, MAX_LEVEL, height, width) for op in policy.ops]
        stage = sum(per_op) / len(per_op)
        return stage ** (policy.num_ops if policy.type == "randaugment" else 1)
    total = 0.0
    for sub in policy.sub_policies:
        p = 1.0
        for op, prob, magnitude in sub:
            p *= (1.0 - prob) + prob * neutral_fraction(op, magnitude, magnitude, height, width)
        total += p
    return total / len(policy.sub_policies)


def variants_per_op(name: str, low: float, high: float, height: int = 32,
                    width: int = 32) -> int:
    """Distinct non-identity results of one op over magnitudes [low, high] (31 bins)."""
    if name == "Identity":
        return 0
    spec = OPS[name]
    if spec.unit == "":
        return 1
    levels = sorted({round(m) for m in _bins(low, high)})
    values = {round(arg_value(name, m, height, width), 6) for m in levels
              if not _neutral(name, m, height, width)}
    count = len(values) * (2 if spec.signed else 1)
    if name == "Cutout":
        count *= height * width  # the square's centre is a pixel position
    return count


def _bins(low: float, high: float) -> list[float]:
    if high <= low:
        return [low]
    return [m for m in range(31) if low <= m <= high] or [low]


def variant_count(policy: Policy, height: int = 32, width: int = 32) -> int:
    """How many different results the policy's ops can give one image (an upper bound:
    different op sequences that happen to give the same pixels are counted apart)."""
    if policy.type == "none":
        return 1
    if policy.type in ("randaugment", "trivialaugment"):
        def bounds(op: str) -> tuple[float, float]:
            if policy.type == "randaugment" and not policy.magnitude_std:
                return policy.magnitude_of(op), policy.magnitude_of(op)
            return 0.0, MAX_LEVEL

        per_stage = 1 + sum(variants_per_op(op, *bounds(op), height, width) for op in policy.ops)
        stages = policy.num_ops if policy.type == "randaugment" else 1
        return per_stage ** stages
    total = 0
    for sub in policy.sub_policies:
        count = 1
        for op, prob, magnitude in sub:
            applied = variants_per_op(op, magnitude, magnitude, height, width) if prob > 0 else 0
            count *= (1 if prob < 1 else 0) + applied or 1
        total += count
    return total


@dataclass
class Explanation:
    unchanged_per_epoch: float
    epochs: int
    expected_unchanged_epochs: float
    never_unchanged: float
    variants: int
    base_variants: int

    def lines(self) -> list[str]:
        p = self.unchanged_per_epoch
        return [
            f"probability an image passes an epoch unchanged by the policy: {p:.4f} "
            f"({p:.2%})",
            f"expected epochs (of {self.epochs}) in which an image is seen unaugmented: "
            f"{self.expected_unchanged_epochs:.2f}",
            f"probability it is never seen unaugmented in {self.epochs} epochs: "
            f"{self.never_unchanged:.4f}",
            f"distinct variants of one image from the policy's ops: {_big(self.variants)}"
            + (f" (x {self.base_variants} from the crop and flip)" if self.base_variants > 1
               else ""),
            ASSUMPTIONS,
        ]


def explain(policy: Policy, epochs: int, height: int = 32, width: int = 32,
            crop_padding: int | None = None, flip: bool | None = None) -> Explanation:
    p = unchanged_probability(policy, height, width)
    padding = policy.base.get("crop_padding", 0) if crop_padding is None else crop_padding
    flips = policy.base.get("flip", False) if flip is None else flip
    padding, flips = (padding if policy.crops else 0), (flips and policy.flips)
    base = (2 * padding + 1) ** 2 * (2 if flips else 1)
    return Explanation(p, epochs, epochs * p, (1 - p) ** epochs,
                       variant_count(policy, height, width), base)


def show_lines(policy: Policy, epochs: int = 0, height: int | None = None,
               width: int | None = None) -> list[str]:
    """The policy in words, as ``policysearch show`` prints it: what it is, each op with its
    argument, the base augmentation, where it was found and why, and (``epochs``) how often an
    image is seen unaugmented. The image size defaults to the one the policy was found on."""
    size = policy.source.get("image_size") or [32, 32]
    height, width = height or int(size[0]), width or int(size[1])
    lines = [repr(policy), *policy.describe(height, width)]
    if policy.base:
        lines.append(f"base augmentation during the search: crop padding "
                     f"{policy.base.get('crop_padding', 0)}, flip {policy.base.get('flip', False)}")
    src = policy.source
    if src.get("dataset") or src.get("study"):
        lines.append(f"found on {src.get('dataset')} by study {src.get('study')!r} "
                     f"(space {src.get('space')}, trial {src.get('trial')})")
    for key, name in (("decision", "decision"), ("reason", "why"), ("note", "note")):
        if src.get(key):
            lines.append(f"{name}: {src[key]}")
    if epochs:
        lines += ["", *explain(policy, epochs, height, width).lines()]
    return lines


def _big(n: int) -> str:
    return f"{n:,}" if n < 10**9 else f"about 10^{math.log10(n):.1f}"
