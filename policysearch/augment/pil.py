"""The ops as PIL calls, one image at a time (no TensorFlow, no torch).

``pil_reference`` is the PIL call each op is defined by (``tests/test_ops.py`` compares the
Keras ops with it). ``apply_pil`` applies an op exactly as ``policysearch.augment.apply_op``
does: the same PIL calls, plus the two places where policysearch defines the op itself
(AutoContrast's exact integer stretch and Cutout's square).
"""

from __future__ import annotations

import math

from PIL import Image, ImageEnhance, ImageOps

from policysearch.augment.ops import OPS


def _fill(image: Image.Image, fill: int) -> int | tuple[int, ...]:
    return fill if image.mode == "L" else (fill,) * len(image.getbands())


def pil_reference(name: str, image: Image.Image, value: float, fill: int = 128) -> Image.Image:
    """The PIL call op ``name`` is defined by, at the op's argument ``value``."""
    color = _fill(image, fill)
    if name == "Identity":
        return image
    if name == "ShearX":
        return image.transform(image.size, Image.AFFINE, (1, value, 0, 0, 1, 0), fillcolor=color)
    if name == "ShearY":
        return image.transform(image.size, Image.AFFINE, (1, 0, 0, value, 1, 0), fillcolor=color)
    if name == "TranslateX":
        return image.transform(image.size, Image.AFFINE, (1, 0, value, 0, 1, 0), fillcolor=color)
    if name == "TranslateY":
        return image.transform(image.size, Image.AFFINE, (1, 0, 0, 0, 1, value), fillcolor=color)
    if name == "Rotate":
        return image.rotate(value, fillcolor=color)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, name)(image).enhance(value)
    if name == "Posterize":
        return ImageOps.posterize(image, int(value))
    if name == "Solarize":
        return ImageOps.solarize(image, value)
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Invert":
        return ImageOps.invert(image)
    raise KeyError(name)


def autocontrast_exact(image: Image.Image) -> Image.Image:
    """Stretch each channel's [min, max] to [0, 255] as ``(v - lo) * 255 // (hi - lo)``.

    policysearch's AutoContrast: PIL's float64 table lands one level lower for a few (lo, hi).
    """
    tables = []
    for channel in image.split():
        lo, hi = channel.getextrema()
        if hi > lo:
            tables += [(v - lo) * 255 // (hi - lo) if lo <= v <= hi else v for v in range(256)]
        else:
            tables += list(range(256))
    return image.point(tables)


def cutout(image: Image.Image, fraction: float, position: tuple[float, float],
           fill: int) -> Image.Image:
    """Fill a square of side ``round(fraction * min(H, W))`` centred at ``position`` (in [0, 1)^2
    of the width and height), as policysearch's Cutout."""
    width, height = image.size
    side = round(fraction * min(width, height))
    cx, cy = math.floor(position[0] * width), math.floor(position[1] * height)
    x0, y0 = cx - side // 2, cy - side // 2
    box = (max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height))
    if side <= 0 or box[2] <= box[0] or box[3] <= box[1]:
        return image
    out = image.copy()
    out.paste(_fill(image, fill), box)
    return out


def apply_pil(image: Image.Image, name: str, value: float, fill: int = 128,
              position: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """Apply op ``name`` at argument ``value`` (``arg_value``) to one PIL image."""
    if name not in OPS:
        raise KeyError(name)
    if name == "AutoContrast":
        return autocontrast_exact(image)
    if name == "Cutout":
        return cutout(image, value, position, fill)
    return pil_reference(name, image, value, fill)
