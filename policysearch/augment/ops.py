"""The augmentation ops: one table, name -> op, each with its magnitude -> argument rule.

The table (``OPS``) is the single source of what anyone needs to know about an op: its kernel
(in ``policysearch.augment.kernels``), its magnitude rule, unit, neutral value, membership of
the default set, PIL reference, and how torchvision and timm express it (``OpSpec``).

Every op works on a batch ``(B, H, W, C)`` of float32 images holding integers in [0, 255]
and a per-image argument ``(B,)``. Ops are written against a Keras backend namespace ``K``
(``keras.src.backend`` or a ``DataLayer``'s ``self.backend``), so one implementation runs in
a tf.data map (TensorFlow) and inside a compiled train step (any Keras backend).

Ops are of two kinds. An ``affine`` op is a PIL-style affine map (output pixel -> input pixel)
applied by a nearest-neighbour warp that follows PIL's pixel-centre convention exactly, so a
policy can apply every image's geometric op in one warp. Every other op is a ``pixel`` op that
maps a batch to a batch with the arithmetic of its PIL counterpart (``ImageEnhance`` blends
truncated to uint8 as ``Image.blend`` does, ``ImageOps`` tables, the ``SMOOTH`` filter).

Magnitudes follow torchvision's RandAugment scale: 31 bins, ``M`` from 0 to 30, an op's value
being ``linspace(0, max, 31)[M]`` (``M`` may be a float). Signed ops take ``sign`` in {-1, +1}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policysearch.augment.kernels import (
    Backend,
    Tensor,
    autocontrast,
    brightness,
    color,
    contrast,
    cutout,
    equalize,
    invert,
    posterize,
    rotate,
    sharpness,
    shear_x,
    shear_y,
    solarize,
    translate_x,
    translate_y,
    warp,
)

MAX_LEVEL = 30.0
"""Top of the magnitude scale (torchvision ``num_magnitude_bins=31``)."""

TRANSLATE_MAX = 150.0 / 331.0
"""Largest translation, as a fraction of the image side (torchvision RandAugment)."""

CUTOUT_MAX = 0.5
"""Largest Cutout square, as a fraction of the shorter image side."""


@dataclass(frozen=True)
class OpSpec:
    """One op: how a magnitude becomes its argument, how the argument changes images, and what
    every reader outside the kernels needs to know about it (docs, summaries, exporters).

    ``formula`` is the magnitude rule as a Python expression of the signed level ``m`` and the
    image size ``h``, ``w`` (it equals ``level_to_arg`` at every bin; tests check this), so
    exported code and docs quote the rule rather than restate it. ``torchvision`` is the call
    that applies the op to a PIL image ``img`` at argument ``v`` with fill ``fill`` through
    ``torchvision.transforms.v2.functional`` (``F``). ``timm`` names timm's ``AugmentOp`` with
    the same PIL call, and ``timm_level`` gives its magnitude as an expression of the unsigned
    level ``m`` (None: timm has no such op). ``group`` (see ``GROUPS``) is what a search space
    switches in or out together and gives one magnitude.
    """

    name: str
    kind: str  # "identity" | "affine" | "pixel"
    group: str  # one of GROUPS: what the op does to an image, for search spaces and panels
    kernel: Callable[..., Tensor] | None
    level_to_arg: Callable[[Backend, Tensor, int, int], Tensor]
    signed: bool
    unit: str
    default: bool = True
    neutral: float | None = None
    at_max: str = ""
    reference: str = ""
    formula: str = "0.0"
    torchvision: str = "img"
    timm: str | None = None
    timm_level: str | None = None

    def is_neutral(self, value: float, height: int, width: int) -> bool:
        """Whether argument ``value`` leaves every image as it is."""
        if self.kind == "identity":
            return True
        if self.neutral is None:
            return False
        if self.unit == "fraction of side":
            return round(value * min(height, width)) == 0
        if self.unit == "bits":
            return value >= self.neutral
        return value == self.neutral

    def arg(self, K: Backend, level: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
        """Per-image argument for magnitudes ``level`` (B,) and signs ``sign`` (B,).

        A signed op's rule receives the signed level (``sign * level``).
        """
        return self.level_to_arg(K, level * sign if self.signed else level, height, width)

    def apply(
        self, K: Backend, images: Tensor, arg: Tensor, rand: Tensor, fill: Tensor
    ) -> Tensor:
        """Apply the op with per-image ``arg`` (B,).

        ``rand`` (B, 2) in [0, 1) places a Cutout square; ``fill`` (B,) fills pixels that a
        geometric op or Cutout leaves empty.
        """
        if self.kind == "identity":
            return images
        if self.kind == "affine":
            shape = K.shape(images)
            return warp(K, images, self.kernel(K, arg, shape[1], shape[2]), fill)
        return self.kernel(K, images, arg, rand, fill)


# ----------------------------------------------------------------------------------------------
# Magnitude -> argument rules (torchvision RandAugment, 31 bins).


def _linear(top: float) -> Callable[[Backend, Tensor, int, int], Tensor]:
    return lambda K, level, h, w: level * (top / MAX_LEVEL)


def _translate_x_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return level / MAX_LEVEL * TRANSLATE_MAX * K.cast(w, "float32")


def _translate_y_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return level / MAX_LEVEL * TRANSLATE_MAX * K.cast(h, "float32")


_ENHANCE_FACTORS = [1.0 + 0.9 * m / MAX_LEVEL for m in range(-30, 31)]


def _enhance_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    """PIL's enhance factor ``1 + 0.9 M / 30`` for the signed level ``M``.

    At whole bins the factor comes from a table computed in float64, so it is the float32 that
    PIL gets from Python's float whatever a compiler does to the arithmetic (XLA turns a
    division by a constant into a multiplication, which can move the factor by one ulp and a
    truncated pixel by one level). Between bins it is computed.
    """
    N = K.numpy
    whole = N.round(level)
    index = K.cast(N.clip(whole, -MAX_LEVEL, MAX_LEVEL) + MAX_LEVEL, "int32")
    table = K.convert_to_tensor(_ENHANCE_FACTORS, "float32")
    return N.where(whole == level, N.take(table, index), 1.0 + level * (0.9 / MAX_LEVEL))


def _posterize_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    """torchvision: ``8 - round(M / 7.5)`` bits, 8 at M=0 down to 4 at M=30."""
    return 8.0 - K.numpy.round(level / (MAX_LEVEL / 4.0))


def _solarize_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return 255.0 - level * (255.0 / MAX_LEVEL)


def _no_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return level * 0.0




_AFFINE = ("F.affine(img, angle=0.0, translate=[{tx}, {ty}], scale=1.0, shear=[{sx}, {sy}], "
           "interpolation=NEAREST, fill=fill, center=[0.0, 0.0])")

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("Identity", "identity", "identity", None, _no_arg, False, "",
               reference="—", at_max="", formula="0.0", torchvision="img",
               timm="PosterizeOriginal", timm_level="10"),
        OpSpec("ShearX", "affine", "geometric", shear_x, _linear(0.3), True, "shear", neutral=0.0,
               at_max="0.3 (PIL affine (1, v, 0, 0, 1, 0))",
               reference="`Image.transform(AFFINE, (1, v, 0, 0, 1, 0))`, nearest",
               formula="m * (0.3 / 30)",
               torchvision=_AFFINE.format(tx=0.0, ty=0.0, sx="math.degrees(math.atan(v))",
                                          sy=0.0),
               timm="ShearX", timm_level="m / 3"),
        OpSpec("ShearY", "affine", "geometric", shear_y, _linear(0.3), True, "shear", neutral=0.0,
               at_max="0.3 (PIL affine (1, 0, 0, v, 1, 0))",
               reference="`Image.transform(AFFINE, (1, 0, 0, v, 1, 0))`, nearest",
               formula="m * (0.3 / 30)",
               torchvision=_AFFINE.format(tx=0.0, ty=0.0, sx=0.0,
                                          sy="math.degrees(math.atan(v))"),
               timm="ShearY", timm_level="m / 3"),
        OpSpec("TranslateX", "affine", "geometric", translate_x, _translate_x_arg, True, "pixels",
               neutral=0.0, at_max="150/331 of the image width, in pixels",
               reference="`Image.transform(AFFINE, (1, 0, v, 0, 1, 0))`, nearest",
               formula="m / 30 * (150 / 331) * w",
               torchvision=_AFFINE.format(tx="-v", ty=0.0, sx=0.0, sy=0.0),
               timm="TranslateXRel", timm_level="m / 3"),
        OpSpec("TranslateY", "affine", "geometric", translate_y, _translate_y_arg, True, "pixels",
               neutral=0.0, at_max="150/331 of the image height, in pixels",
               reference="`Image.transform(AFFINE, (1, 0, 0, 0, 1, v))`, nearest",
               formula="m / 30 * (150 / 331) * h",
               torchvision=_AFFINE.format(tx=0.0, ty="-v", sx=0.0, sy=0.0),
               timm="TranslateYRel", timm_level="m / 3"),
        OpSpec("Rotate", "affine", "geometric", rotate, _linear(30.0), True, "degrees", neutral=0.0,
               at_max="30 degrees", reference="`Image.rotate(v)`, nearest, about the centre",
               formula="m * (30 / 30)",
               torchvision="F.rotate(img, v, interpolation=NEAREST, fill=fill)",
               timm="Rotate", timm_level="m / 3"),
        OpSpec("Brightness", "pixel", "colour", brightness, _enhance_arg, True, "factor",
               neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Brightness.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_brightness(img, v)",
               timm="BrightnessIncreasing", timm_level="m / 3"),
        OpSpec("Color", "pixel", "colour", color, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Color.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_saturation(img, v)",
               timm="ColorIncreasing", timm_level="m / 3"),
        OpSpec("Contrast", "pixel", "colour", contrast, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Contrast.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_contrast(img, v)",
               timm="ContrastIncreasing", timm_level="m / 3"),
        OpSpec("Sharpness", "pixel", "colour", sharpness, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Sharpness.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_sharpness(img, v)",
               timm="SharpnessIncreasing", timm_level="m / 3"),
        OpSpec("Posterize", "pixel", "colour", posterize, _posterize_arg, False, "bits",
               neutral=8.0,
               at_max="4 bits (8 - round(M / 7.5) bits kept)",
               reference="`ImageOps.posterize(bits)`, bits = 8 − round(M / 7.5)",
               formula="8.0 - round(m / 7.5)", torchvision="F.posterize(img, int(v))",
               # PosterizeOriginal keeps int(0.4 L) + 4 bits: L = 11.25 - M / 3 gives
               # 8 - round(M / 7.5), and never fewer than 4 bits.
               timm="PosterizeOriginal", timm_level="11.25 - m / 3"),
        OpSpec("Solarize", "pixel", "colour", solarize, _solarize_arg, False, "threshold",
               at_max="threshold 0 (255 - 255 M / 30; values at or above are inverted)",
               reference="`ImageOps.solarize(threshold)`, threshold = 255 − 255·M/30",
               formula="255.0 - m * (255 / 30)", torchvision="F.solarize(img, v)",
               # timm's threshold int(25.6 L) equals ceil(255 - 8.5 M) for this L.
               timm="Solarize", timm_level="(256 - 1e-9 - 8.5 * m) / 25.6"),
        OpSpec("AutoContrast", "pixel", "colour", autocontrast, _no_arg, False, "",
               reference="`ImageOps.autocontrast`", torchvision="F.autocontrast(img)",
               timm="AutoContrast", timm_level="0"),
        OpSpec("Equalize", "pixel", "colour", equalize, _no_arg, False, "",
               reference="`ImageOps.equalize`", torchvision="F.equalize(img)",
               timm="Equalize", timm_level="0"),
        OpSpec("Cutout", "pixel", "occlusion", cutout, _linear(CUTOUT_MAX), False,
               "fraction of side",
               default=False, neutral=0.0, at_max="a square of 0.5 of the shorter side",
               reference="a square of side round(v · min(H, W)) filled at a random centre",
               formula="m * (0.5 / 30)", torchvision="cutout(img, v, fill)"),
        OpSpec("Invert", "pixel", "inversion", invert, _no_arg, False, "", default=False,
               reference="`ImageOps.invert`", torchvision="F.invert(img)",
               timm="Invert", timm_level="0"),
    )
}
"""Every op by name, in a fixed order: the index of an op is its position here."""

OP_NAMES: tuple[str, ...] = tuple(OPS)
GROUPS: dict[str, str] = {
    "geometric": "moves pixels: shears, translations, rotation (one affine warp)",
    "colour": "changes pixel values in place: enhance factors, posterize, solarize, "
              "autocontrast, equalize",
    "occlusion": "hides part of the image (Cutout)",
    "inversion": "inverts every pixel (Invert)",
    "identity": "leaves the image as it is (Identity)",
}
"""The op groups, each with what its ops do; every op belongs to exactly one (``OpSpec.group``)."""
RANDAUGMENT_OPS: tuple[str, ...] = tuple(name for name, spec in OPS.items() if spec.default)
"""The 14 ops of torchvision's RandAugment (the default op set)."""


def group_ops(group: str, among: tuple[str, ...] = OP_NAMES) -> tuple[str, ...]:
    """The ops of ``group`` among ``among``, in table order."""
    return tuple(name for name in OP_NAMES if name in among and OPS[name].group == group)


def takes_magnitude(name: str) -> bool:
    """Whether op ``name``'s argument depends on its magnitude (not Identity, AutoContrast,
    Equalize, Invert)."""
    return OPS[name].unit != ""


def check_op_names(names: Any) -> tuple[str, ...]:
    """Return ``names`` as a tuple, raising ValueError on an unknown op name."""
    names = tuple(names)
    for name in names:
        if name not in OPS:
            raise ValueError(
                f"Unknown augmentation op. Expected one of {', '.join(OP_NAMES)}. "
                f"Received: op={name!r}"
            )
    return names


class _ScalarNumpy:
    @staticmethod
    def round(x: float) -> float:
        return float(round(x))

    @staticmethod
    def clip(x: float, low: float, high: float) -> float:
        return min(max(x, low), high)

    @staticmethod
    def take(table: list[float], index: float) -> float:
        return table[int(index)]

    @staticmethod
    def where(condition: bool, a: float, b: float) -> float:
        return a if condition else b


class _ScalarBackend:
    """Just enough of a backend to evaluate ``level_to_arg`` rules on Python floats."""

    numpy = _ScalarNumpy

    @staticmethod
    def cast(x: float, dtype: str) -> float:
        return float(x)

    @staticmethod
    def convert_to_tensor(x: list[float], dtype: str) -> list[float]:
        return x


def arg_value(name: str, magnitude: float, height: int = 32, width: int = 32,
              sign: float = 1.0) -> float:
    """The op's argument at ``magnitude`` and ``sign``, in its unit (``OpSpec.unit``).

    Pure Python (no Keras import), for summaries such as ``policysearch show``.
    """
    return float(OPS[name].arg(_ScalarBackend, float(magnitude), float(sign), height, width))


def op_summary(name: str, magnitude: float, height: int = 32, width: int = 32,
               upto: bool = False) -> str:
    """One op at one magnitude in its own unit, e.g. ``Rotate ±8.1°``."""
    spec = OPS[name]
    value = arg_value(name, magnitude, height, width)
    pm = "±" if spec.signed else ""
    up = "up to " if upto else ""
    if spec.unit == "degrees":
        return f"{name} {up}{pm}{value:.1f}°"
    if spec.unit == "pixels":
        return f"{name} {up}{pm}{value:.1f} px"
    if spec.unit == "shear":
        return f"{name} {up}{pm}{value:.3f}"
    if spec.unit == "factor":
        low = arg_value(name, magnitude, height, width, sign=-1.0)
        if upto:
            return f"{name} factor in [{low:.2f}, {value:.2f}]"
        return f"{name} factor {low:.2f} or {value:.2f}"
    if spec.unit == "bits":
        return f"{name} {'down to ' if upto else ''}{int(value)} bits"
    if spec.unit == "threshold":
        return f"{name} threshold {'down to ' if upto else ''}{value:.1f}"
    if spec.unit == "fraction of side":
        return f"{name} {up}{value:.2f} of the side"
    return name
