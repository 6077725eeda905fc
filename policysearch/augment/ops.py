"""The augmentation ops: one table, name -> op, each with its magnitude -> argument rule.

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

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_LEVEL = 30.0
"""Top of the magnitude scale (torchvision ``num_magnitude_bins=31``)."""

TRANSLATE_MAX = 150.0 / 331.0
"""Largest translation, as a fraction of the image side (torchvision RandAugment)."""

CUTOUT_MAX = 0.5
"""Largest Cutout square, as a fraction of the shorter image side."""

Tensor = Any
Backend = Any  # a Keras backend namespace: numpy, core, cast, shape, ...


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
    level ``m`` (None: timm has no such op).
    """

    name: str
    kind: str  # "identity" | "affine" | "pixel"
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
# Shared kernels


def _b(K: Backend, v: Tensor, rank: int = 4) -> Tensor:
    """Reshape a per-image vector (B,) to broadcast against a rank-``rank`` batch."""
    return K.numpy.reshape(v, (-1,) + (1,) * (rank - 1))


def take_rows(K: Backend, x: Tensor, indices: Tensor) -> Tensor:
    """``x[indices]`` along the first axis, for indices known to be in range.

    Under TensorFlow this is one ``tf.gather``: Keras' ``take`` adds a pass that wraps negative
    indices, which costs as much as the gather itself on a CPU.
    """
    if K.name == "tensorflow":
        import tensorflow as tf

        return tf.gather(x, indices)
    return K.numpy.take(x, indices, axis=0)


def warp(K: Backend, images: Tensor, matrix: Tensor, fill: Tensor) -> Tensor:
    """Nearest-neighbour affine warp, sampling exactly as PIL's ``Image.transform`` does.

    ``matrix`` (B, 6) is PIL's ``(a, b, c, d, e, f)``: output pixel ``(x, y)`` samples the input
    near ``(a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f)``; samples outside the
    image take the per-image value ``fill`` (B,). As in PIL, a map without shear or rotation
    (``b = d = 0``) floors the float coordinates, and any other map uses PIL's 16.16
    fixed-point arithmetic (so ties at pixel edges fall the same way). One gather: the fill
    values are rows appended to the source.
    """
    N = K.numpy
    shape = K.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    xs = N.reshape(K.cast(N.arange(width), "float32"), (1, 1, -1))
    ys = N.reshape(K.cast(N.arange(height), "float32"), (1, -1, 1))
    a, b, c, d, e, f = (_b(K, matrix[:, i], 3) for i in range(6))
    # Scale path (PIL ImagingScaleAffine), in floating point.
    float_x = N.floor(a * (xs + 0.5) + c)
    float_y = N.floor(e * (ys + 0.5) + f)

    # Fixed-point path (PIL affine_fixed): FIX(v) = floor(v * 65536 + 0.5).
    def fix(v: Tensor) -> Tensor:
        return K.cast(N.floor(v * 65536.0 + 0.5), "int32")

    xi, yi = K.cast(xs, "int32"), K.cast(ys, "int32")
    fixed_x = N.floor_divide(fix(c + 0.5 * a + 0.5 * b) + yi * fix(b) + xi * fix(a), 65536)
    fixed_y = N.floor_divide(fix(f + 0.5 * d + 0.5 * e) + yi * fix(e) + xi * fix(d), 65536)
    scale_only = (b == 0) & (d == 0)
    src_x = N.where(scale_only, K.cast(float_x, "int32"), fixed_x)
    src_y = N.where(scale_only, K.cast(float_y, "int32"), fixed_y)
    valid = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    image = N.arange(batch, dtype="int32")
    pixel = _b(K, image * (height * width), 3) + src_y * width + src_x
    outside = _b(K, image + batch * height * width, 3)
    source = N.concatenate(
        [N.reshape(images, (-1, channels)),
         N.broadcast_to(N.reshape(K.cast(fill, "float32"), (-1, 1)), (batch, channels))],
        axis=0,
    )
    return take_rows(K, source, N.where(valid, pixel, outside))


def identity_matrix(K: Backend, batch: Tensor) -> Tensor:
    """The affine map that leaves an image as it is, for each of ``batch`` images."""
    one = K.numpy.ones((batch,), dtype="float32")
    zero = one * 0.0
    return K.numpy.stack([one, zero, zero, zero, one, zero], axis=1)


def apply_lut(K: Backend, images: Tensor, lut: Tensor) -> Tensor:
    """Look up every pixel in its image's per-channel table ``lut`` (B, C, 256)."""
    N = K.numpy
    shape = K.shape(images)
    batch, channels = shape[0], shape[3]
    offset = N.reshape(N.arange(batch * channels, dtype="int32") * 256, (-1, 1, 1, channels))
    return take_rows(K, N.reshape(lut, (-1,)), K.cast(images, "int32") + offset)


def histogram(K: Backend, images: Tensor) -> Tensor:
    """Per-image, per-channel histograms (B, C, 256) as int32."""
    N = K.numpy
    shape = K.shape(images)
    batch, channels = shape[0], shape[3]
    offset = N.reshape(N.arange(batch * channels, dtype="int32") * 256, (-1, 1, 1, channels))
    ids = N.reshape(K.cast(images, "int32") + offset, (-1,))
    counts = K.math.segment_sum(
        N.ones_like(ids), ids, num_segments=batch * channels * 256, sorted=False
    )
    return N.reshape(counts, (batch, channels, 256))


def grayscale(K: Backend, images: Tensor) -> Tensor:
    """PIL ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``, as (B, H, W, 1)."""
    if K.shape(images)[3] == 1:
        return images
    # Exact in float32: the sum stays below 2**24 and 65536 is a power of two.
    x = images
    weighted = x[..., 0:1] * 19595.0 + x[..., 1:2] * 38470.0 + x[..., 2:3] * 7471.0 + 32768.0
    return K.numpy.floor(weighted / 65536.0)


def blend(K: Backend, degenerate: Tensor, images: Tensor, factor: Tensor) -> Tensor:
    """PIL ``Image.blend(degenerate, images, factor)``: computed in float32, truncated to uint8."""
    out = degenerate + _b(K, factor) * (images - degenerate)
    return K.numpy.clip(K.numpy.floor(out), 0.0, 255.0)


# ----------------------------------------------------------------------------------------------
# Affine ops: PIL's transform data (a, b, c, d, e, f), output -> input.


def _affine(K: Backend, *rows: Tensor) -> Tensor:
    return K.numpy.stack(rows, axis=1)


def _shear_x(K: Backend, v: Tensor, height: int, width: int) -> Tensor:
    one, zero = v * 0.0 + 1.0, v * 0.0
    return _affine(K, one, v, zero, zero, one, zero)


def _shear_y(K: Backend, v: Tensor, height: int, width: int) -> Tensor:
    one, zero = v * 0.0 + 1.0, v * 0.0
    return _affine(K, one, zero, zero, v, one, zero)


def _translate_x(K: Backend, v: Tensor, height: int, width: int) -> Tensor:
    one, zero = v * 0.0 + 1.0, v * 0.0
    return _affine(K, one, zero, v, zero, one, zero)


def _translate_y(K: Backend, v: Tensor, height: int, width: int) -> Tensor:
    one, zero = v * 0.0 + 1.0, v * 0.0
    return _affine(K, one, zero, zero, zero, one, v)


def _rotate(K: Backend, degrees: Tensor, height: int, width: int) -> Tensor:
    """PIL ``Image.rotate(degrees)``: counter-clockwise about the centre ``(w / 2, h / 2)``."""
    N = K.numpy
    theta = -degrees * (math.pi / 180.0)
    cos, sin = N.cos(theta), N.sin(theta)
    cx = K.cast(width, "float32") / 2.0
    cy = K.cast(height, "float32") / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return _affine(K, cos, sin, c, -sin, cos, f)


# ----------------------------------------------------------------------------------------------
# Pixel ops: (K, images, arg, rand, fill) -> images.


def _brightness(K: Backend, images: Tensor, factor: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return blend(K, 0.0, images, factor)


def _color(K: Backend, images: Tensor, factor: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Color``: blend with the grayscale image."""
    return blend(K, grayscale(K, images), images, factor)


def _contrast(K: Backend, images: Tensor, factor: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Contrast``: blend with the rounded mean of the grayscale image."""
    N = K.numpy
    gray = K.cast(grayscale(K, images), "int32")
    count = K.shape(images)[1] * K.shape(images)[2]
    # int(mean + 0.5), in integers: exact for any image size and any compiler.
    mean = N.floor_divide(2 * N.sum(gray, axis=(1, 2, 3)) + count, 2 * count)
    return blend(K, _b(K, K.cast(mean, "float32")), images, factor)


def smooth(K: Backend, images: Tensor) -> Tensor:
    """PIL ``ImageFilter.SMOOTH`` (3x3, centre 5, others 1, / 13); border pixels are kept."""
    N = K.numpy
    shape = K.shape(images)
    height, width = shape[1], shape[2]
    total = 4.0 * images[:, 1:-1, 1:-1, :]
    for dy in range(3):
        for dx in range(3):
            total = total + images[:, dy : height - 2 + dy, dx : width - 2 + dx, :]
    inner = N.clip(N.floor(total / 13.0 + 0.5), 0.0, 255.0)
    padded = N.pad(inner, ((0, 0), (1, 1), (1, 1), (0, 0)))
    border = N.pad(N.zeros_like(inner), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0)
    return padded + border * images


def _sharpness(K: Backend, images: Tensor, factor: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image."""
    return blend(K, smooth(K, images), images, factor)


def _posterize(K: Backend, images: Tensor, bits: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageOps.posterize``: keep the top ``bits`` bits of every value."""
    step = _b(K, K.numpy.power(2.0, 8.0 - bits))
    return K.numpy.floor(images / step) * step


def _solarize(K: Backend, images: Tensor, threshold: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageOps.solarize``: values at or above ``threshold`` are inverted."""
    return K.numpy.where(images < _b(K, threshold), images, 255.0 - images)


def _invert(K: Backend, images: Tensor, arg: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageOps.invert``."""
    return 255.0 - images


def _autocontrast(K: Backend, images: Tensor, arg: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageOps.autocontrast``: stretch each channel's [min, max] to [0, 255].

    Computed exactly, in integers, as ``(v - lo) * 255 // (hi - lo)``. PIL's float64
    ``v * scale + offset`` lands one below an exact integer for some (lo, hi) pairs (0.14% of
    its table entries), so a pixel may be one level above PIL's.
    """
    N = K.numpy
    x = K.cast(images, "int32")
    lo = N.min(x, axis=(1, 2), keepdims=True, initial=255)
    hi = N.max(x, axis=(1, 2), keepdims=True, initial=0)
    stretched = N.floor_divide((x - lo) * 255, N.maximum(hi - lo, 1))
    return K.cast(N.where(hi > lo, stretched, x), "float32")


def _equalize(K: Backend, images: Tensor, arg: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """PIL ``ImageOps.equalize``, with PIL's integer arithmetic, as a per-channel table."""
    N = K.numpy
    hist = histogram(K, images)
    total = N.sum(hist, axis=-1, keepdims=True)
    ramp = N.reshape(N.arange(256, dtype="int32"), (1, 1, 256))
    last_index = N.max(N.where(hist > 0, ramp, -1), axis=-1, keepdims=True, initial=-1)
    last = N.sum(N.where(ramp == last_index, hist, 0), axis=-1, keepdims=True)
    step = N.floor_divide(total - last, 255)
    before = N.cumsum(hist, axis=-1) - hist
    table = N.minimum(N.floor_divide(N.floor_divide(step, 2) + before, N.maximum(step, 1)), 255)
    distinct = N.sum(K.cast(hist > 0, "int32"), axis=-1, keepdims=True)
    table = N.where((distinct > 1) & (step > 0), table, ramp)
    return apply_lut(K, images, K.cast(table, "float32"))




def _cutout(K: Backend, images: Tensor, fraction: Tensor, rand: Tensor, fill: Tensor) -> Tensor:
    """Fill a square of side ``round(fraction * min(H, W))`` centred at ``rand`` (in [0, 1)^2)."""
    N = K.numpy
    shape = K.shape(images)
    height, width = K.cast(shape[1], "float32"), K.cast(shape[2], "float32")
    side = N.round(fraction * N.minimum(height, width))
    cx = N.floor(rand[:, 0] * width)
    cy = N.floor(rand[:, 1] * height)
    x0, y0 = cx - N.floor(side / 2.0), cy - N.floor(side / 2.0)
    xs = N.reshape(K.cast(N.arange(shape[2]), "float32"), (1, 1, -1))
    ys = N.reshape(K.cast(N.arange(shape[1]), "float32"), (1, -1, 1))
    inside_x = (xs >= _b(K, x0, 3)) & (xs < _b(K, x0 + side, 3))
    inside_y = (ys >= _b(K, y0, 3)) & (ys < _b(K, y0 + side, 3))
    inside = K.cast(N.expand_dims(inside_x & inside_y, -1), "float32")
    return images + inside * (_b(K, fill) - images)


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
        OpSpec("Identity", "identity", None, _no_arg, False, "",
               reference="—", at_max="", formula="0.0", torchvision="img",
               timm="PosterizeOriginal", timm_level="10"),
        OpSpec("ShearX", "affine", _shear_x, _linear(0.3), True, "shear", neutral=0.0,
               at_max="0.3 (PIL affine (1, v, 0, 0, 1, 0))",
               reference="`Image.transform(AFFINE, (1, v, 0, 0, 1, 0))`, nearest",
               formula="m * (0.3 / 30)",
               torchvision=_AFFINE.format(tx=0.0, ty=0.0, sx="math.degrees(math.atan(v))",
                                          sy=0.0),
               timm="ShearX", timm_level="m / 3"),
        OpSpec("ShearY", "affine", _shear_y, _linear(0.3), True, "shear", neutral=0.0,
               at_max="0.3 (PIL affine (1, 0, 0, v, 1, 0))",
               reference="`Image.transform(AFFINE, (1, 0, 0, v, 1, 0))`, nearest",
               formula="m * (0.3 / 30)",
               torchvision=_AFFINE.format(tx=0.0, ty=0.0, sx=0.0,
                                          sy="math.degrees(math.atan(v))"),
               timm="ShearY", timm_level="m / 3"),
        OpSpec("TranslateX", "affine", _translate_x, _translate_x_arg, True, "pixels",
               neutral=0.0, at_max="150/331 of the image width, in pixels",
               reference="`Image.transform(AFFINE, (1, 0, v, 0, 1, 0))`, nearest",
               formula="m / 30 * (150 / 331) * w",
               torchvision=_AFFINE.format(tx="-v", ty=0.0, sx=0.0, sy=0.0),
               timm="TranslateXRel", timm_level="m / 3"),
        OpSpec("TranslateY", "affine", _translate_y, _translate_y_arg, True, "pixels",
               neutral=0.0, at_max="150/331 of the image height, in pixels",
               reference="`Image.transform(AFFINE, (1, 0, 0, 0, 1, v))`, nearest",
               formula="m / 30 * (150 / 331) * h",
               torchvision=_AFFINE.format(tx=0.0, ty="-v", sx=0.0, sy=0.0),
               timm="TranslateYRel", timm_level="m / 3"),
        OpSpec("Rotate", "affine", _rotate, _linear(30.0), True, "degrees", neutral=0.0,
               at_max="30 degrees", reference="`Image.rotate(v)`, nearest, about the centre",
               formula="m * (30 / 30)",
               torchvision="F.rotate(img, v, interpolation=NEAREST, fill=fill)",
               timm="Rotate", timm_level="m / 3"),
        OpSpec("Brightness", "pixel", _brightness, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Brightness.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_brightness(img, v)",
               timm="BrightnessIncreasing", timm_level="m / 3"),
        OpSpec("Color", "pixel", _color, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Color.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_saturation(img, v)",
               timm="ColorIncreasing", timm_level="m / 3"),
        OpSpec("Contrast", "pixel", _contrast, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Contrast.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_contrast(img, v)",
               timm="ContrastIncreasing", timm_level="m / 3"),
        OpSpec("Sharpness", "pixel", _sharpness, _enhance_arg, True, "factor", neutral=1.0,
               at_max="0.9 (PIL enhance factor 1 + v)",
               reference="`ImageEnhance.Sharpness.enhance(1 ± v)`",
               formula="1.0 + 0.9 * m / 30", torchvision="F.adjust_sharpness(img, v)",
               timm="SharpnessIncreasing", timm_level="m / 3"),
        OpSpec("Posterize", "pixel", _posterize, _posterize_arg, False, "bits", neutral=8.0,
               at_max="4 bits (8 - round(M / 7.5) bits kept)",
               reference="`ImageOps.posterize(bits)`, bits = 8 − round(M / 7.5)",
               formula="8.0 - round(m / 7.5)", torchvision="F.posterize(img, int(v))",
               # PosterizeOriginal keeps int(0.4 L) + 4 bits: L = 11.25 - M / 3 gives
               # 8 - round(M / 7.5), and never fewer than 4 bits.
               timm="PosterizeOriginal", timm_level="11.25 - m / 3"),
        OpSpec("Solarize", "pixel", _solarize, _solarize_arg, False, "threshold",
               at_max="threshold 0 (255 - 255 M / 30; values at or above are inverted)",
               reference="`ImageOps.solarize(threshold)`, threshold = 255 − 255·M/30",
               formula="255.0 - m * (255 / 30)", torchvision="F.solarize(img, v)",
               # timm's threshold int(25.6 L) equals ceil(255 - 8.5 M) for this L.
               timm="Solarize", timm_level="(256 - 1e-9 - 8.5 * m) / 25.6"),
        OpSpec("AutoContrast", "pixel", _autocontrast, _no_arg, False, "",
               reference="`ImageOps.autocontrast`", torchvision="F.autocontrast(img)",
               timm="AutoContrast", timm_level="0"),
        OpSpec("Equalize", "pixel", _equalize, _no_arg, False, "",
               reference="`ImageOps.equalize`", torchvision="F.equalize(img)",
               timm="Equalize", timm_level="0"),
        OpSpec("Cutout", "pixel", _cutout, _linear(CUTOUT_MAX), False, "fraction of side",
               default=False, neutral=0.0, at_max="a square of 0.5 of the shorter side",
               reference="a square of side round(v · min(H, W)) filled at a random centre",
               formula="m * (0.5 / 30)", torchvision="cutout(img, v, fill)"),
        OpSpec("Invert", "pixel", _invert, _no_arg, False, "", default=False,
               reference="`ImageOps.invert`", torchvision="F.invert(img)",
               timm="Invert", timm_level="0"),
    )
}
"""Every op by name, in a fixed order: the index of an op is its position here."""

OP_NAMES: tuple[str, ...] = tuple(OPS)
RANDAUGMENT_OPS: tuple[str, ...] = tuple(name for name, spec in OPS.items() if spec.default)
"""The 14 ops of torchvision's RandAugment (the default op set)."""


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
