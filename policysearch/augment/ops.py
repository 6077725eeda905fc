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
    """One op: how a magnitude becomes its argument, and how the argument changes images."""

    name: str
    kind: str  # "identity" | "affine" | "pixel"
    kernel: Callable[..., Tensor] | None
    level_to_arg: Callable[[Backend, Tensor, int, int], Tensor]
    signed: bool
    unit: str

    def arg(self, K: Backend, level: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
        """Per-image argument for magnitudes ``level`` (B,) and signs ``sign`` (B,)."""
        value = self.level_to_arg(K, level, height, width)
        return value * sign if self.signed else value

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
    """Nearest-neighbour affine warp with PIL's convention.

    ``matrix`` (B, 6) is ``(a, b, c, d, e, f)``: output pixel ``(x, y)`` samples the input at
    ``floor(a (x + .5) + b (y + .5) + c)``, ``floor(d (x + .5) + e (y + .5) + f)``; samples outside
    the image take the per-image value ``fill`` (B,). One gather: the fill values are rows
    appended to the source.
    """
    N = K.numpy
    shape = K.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    gx = N.reshape(K.cast(N.arange(width), "float32") + 0.5, (1, 1, -1))
    gy = N.reshape(K.cast(N.arange(height), "float32") + 0.5, (1, -1, 1))
    m = [_b(K, matrix[:, i], 3) for i in range(6)]
    src_x = N.floor(m[0] * gx + m[1] * gy + m[2])
    src_y = N.floor(m[3] * gx + m[4] * gy + m[5])
    valid = (src_x >= 0) & (src_x < K.cast(width, "float32"))
    valid = valid & (src_y >= 0) & (src_y < K.cast(height, "float32"))
    image = N.arange(batch, dtype="int32")
    pixel = _b(K, image * (height * width), 3) + K.cast(src_y, "int32") * width
    pixel = pixel + K.cast(src_x, "int32")
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
    mean = N.floor(N.mean(grayscale(K, images), axis=(1, 2, 3)) + 0.5)
    return blend(K, _b(K, mean), images, factor)


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

    Computed exactly as ``floor((v - lo) * 255 / (hi - lo))`` (exact in float32: the quotient
    of two small integers is either an integer or at least 1/255 away from one). PIL's float64
    ``v * scale + offset`` lands one below an exact integer for some (lo, hi) pairs (0.14% of
    its table entries).
    """
    N = K.numpy
    lo = N.min(images, axis=(1, 2), keepdims=True, initial=255.0)
    hi = N.max(images, axis=(1, 2), keepdims=True, initial=0.0)
    stretched = N.clip(N.floor((images - lo) * 255.0 / N.maximum(hi - lo, 1.0)), 0.0, 255.0)
    return N.where(hi > lo, stretched, images)


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


def _enhance_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return level * (0.9 / MAX_LEVEL)


def _posterize_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    """torchvision: ``8 - round(M / 7.5)`` bits, 8 at M=0 down to 4 at M=30."""
    return 8.0 - K.numpy.round(level / (MAX_LEVEL / 4.0))


def _solarize_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return 255.0 - level * (255.0 / MAX_LEVEL)


def _no_arg(K: Backend, level: Tensor, h: int, w: int) -> Tensor:
    return level * 0.0


def _factor(kernel: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Enhance ops take ``1 + v`` as PIL's factor, ``v`` being the signed magnitude value."""
    return lambda K, images, v, rand, fill: kernel(K, images, 1.0 + v, rand, fill)


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("Identity", "identity", None, _no_arg, False, ""),
        OpSpec("ShearX", "affine", _shear_x, _linear(0.3), True, "shear"),
        OpSpec("ShearY", "affine", _shear_y, _linear(0.3), True, "shear"),
        OpSpec("TranslateX", "affine", _translate_x, _translate_x_arg, True, "pixels"),
        OpSpec("TranslateY", "affine", _translate_y, _translate_y_arg, True, "pixels"),
        OpSpec("Rotate", "affine", _rotate, _linear(30.0), True, "degrees"),
        OpSpec("Brightness", "pixel", _factor(_brightness), _enhance_arg, True, "factor"),
        OpSpec("Color", "pixel", _factor(_color), _enhance_arg, True, "factor"),
        OpSpec("Contrast", "pixel", _factor(_contrast), _enhance_arg, True, "factor"),
        OpSpec("Sharpness", "pixel", _factor(_sharpness), _enhance_arg, True, "factor"),
        OpSpec("Posterize", "pixel", _posterize, _posterize_arg, False, "bits"),
        OpSpec("Solarize", "pixel", _solarize, _solarize_arg, False, "threshold"),
        OpSpec("AutoContrast", "pixel", _autocontrast, _no_arg, False, ""),
        OpSpec("Equalize", "pixel", _equalize, _no_arg, False, ""),
        OpSpec("Cutout", "pixel", _cutout, _linear(CUTOUT_MAX), False, "fraction of side"),
        OpSpec("Invert", "pixel", _invert, _no_arg, False, ""),
    )
}
"""Every op by name, in a fixed order: the index of an op is its position here."""

OP_NAMES: tuple[str, ...] = tuple(OPS)
RANDAUGMENT_OPS: tuple[str, ...] = OP_NAMES[:14]
"""The 14 ops of torchvision's RandAugment (the default op set)."""
OPTIONAL_OPS: tuple[str, ...] = OP_NAMES[14:]


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


class _ScalarBackend:
    """Just enough of a backend to evaluate ``level_to_arg`` rules on Python floats."""

    numpy = _ScalarNumpy

    @staticmethod
    def cast(x: float, dtype: str) -> float:
        return float(x)


def arg_value(name: str, magnitude: float, height: int = 32, width: int = 32) -> float:
    """The op's argument at ``magnitude`` for a positive sign, in its unit (``OpSpec.unit``).

    Pure Python (no Keras import), for summaries such as ``policysearch show``.
    """
    return float(OPS[name].arg(_ScalarBackend, float(magnitude), 1.0, height, width))
