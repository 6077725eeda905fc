"""Decoding one image file to an array, safely.

The size is read from the file's header before anything is decoded: images too large to train
at full size, parts that would not fit in memory and decompression bombs are refused in one
line. 16-bit greyscale is scaled to 8 bits (not clipped), and with an image size every image is
decoded to that square size (``RESIZE_METHOD``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from policysearch.errors import DataError, env_int

RESIZE_METHOD = ("the shorter side is resized to image_size with PIL's bicubic filter, then "
                 "the centre image_size x image_size square is kept (PIL ImageOps.fit)")
MAX_SIDE = 1024
"""Largest image side trained at full size; larger images need ``image_size``."""
SIZE_HINT = "pass --image-size N (data.image_size) to decode every image to N x N"


def max_data_bytes() -> int:
    """Most bytes a decoded part may take (``$POLICYSEARCH_MAX_DATA_BYTES``, default 4 GiB)."""
    return env_int("POLICYSEARCH_MAX_DATA_BYTES", 4 << 30)


def allocate(what: str, count: int, shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised ``(count, *shape)`` uint8 array, refused (naming ``what``) over the
    memory limit before anything else is decoded."""
    need = count * int(np.prod(shape))
    if need > max_data_bytes():
        raise DataError(
            f"{what} of {shape[1]}x{shape[0]} need {need / 2**30:.1f} GiB decoded, over the "
            f"{max_data_bytes() / 2**30:.1f} GiB limit; {SIZE_HINT} with a smaller N")
    return np.empty((count, *shape), dtype="uint8")


def decode_image(data: bytes, what: str, image_size: int | None = None) -> np.ndarray:
    """One image file's bytes as ``(H, W, 3)`` uint8; ``what`` names it in errors."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if image_size is None and max(width, height) > MAX_SIDE:
                    raise DataError(f"{what} is {width}x{height}, too large to train at full "
                                    f"size (over {MAX_SIDE} px); {SIZE_HINT} (e.g. 64)")
                if image_size is not None:
                    im.draft(None, (image_size, image_size))  # JPEG: decode at 1/2..1/8 scale
                im = to_8bit(im, what)
                if image_size is not None:
                    im = ImageOps.fit(im, (image_size, image_size),
                                      method=Image.Resampling.BICUBIC)
                return np.asarray(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{what} has too many pixels to decode safely (over "
                        f"{Image.MAX_IMAGE_PIXELS:,}: a decompression bomb?); shrink it first") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise DataError(f"{what}: cannot decode it ({err.__class__.__name__}); is it corrupt?") \
            from None


def to_8bit(im: Any, what: str) -> Any:
    """RGB with 8 bits per channel; 16-bit greyscale is scaled (65535 -> 255), not clipped."""
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{what} has 32-bit pixel values; convert it to 8 or 16 bits")
        scaled = (values.astype("uint32") * 255 + 32767) // 65535
        im = Image.fromarray(scaled.astype("uint8"), "L")
    elif im.mode == "F":
        raise DataError(f"{what} has floating-point pixels; convert it to 8-bit")
    return im.convert("RGB")


def fit_arrays(x: np.ndarray, image_size: int | None) -> np.ndarray:
    """Decoded ``(N, H, W, 3)`` images at ``image_size`` (the same method as decoding)."""
    if not image_size or x.shape[1:3] == (image_size, image_size):
        return x
    from PIL import Image, ImageOps

    return np.stack([np.asarray(ImageOps.fit(Image.fromarray(im), (image_size, image_size),
                                             method=Image.Resampling.BICUBIC)) for im in x])
