"""The op contract: one suite run over every op (as Optuna runs one suite over every sampler).

Each op is compared with PIL, the reference that AutoAugment's and timm's ops are defined by,
on real CIFAR-10 images and on generated images, at several magnitudes and both signs. The PIL
calls (``policysearch.augment.pil.pil_reference``) are the ones the framework-free transform uses.

Tolerances: every op except AutoContrast must equal PIL exactly (max |diff| = 0). AutoContrast
may differ by 1 on at most 1% of pixels: PIL computes ``v * scale + offset`` in float64 and lands
one below an exact integer for some (lo, hi) pairs; policysearch computes the exact quotient.
Cutout has no PIL counterpart; it is checked against its definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from policysearch.augment import OP_NAMES, OPS, apply_op
from policysearch.augment.ops import arg_value
from policysearch.augment.pil import pil_reference

pytestmark = pytest.mark.backends  # `make test` runs these under TensorFlow and under JAX

MAGNITUDES = (*range(31), 9.7, 22.5)  # every bin, and two magnitudes between bins
PIL_OPS = [name for name in OP_NAMES if name != "Cutout"]


def compare(name: str, images: np.ndarray, magnitude: float, sign: int) -> np.ndarray:
    value = arg_value(name, magnitude, images.shape[1], images.shape[2], sign=sign)
    ours = np.asarray(apply_op(images, name, magnitude, sign))
    mode = "L" if images.shape[-1] == 1 else "RGB"
    ref = np.stack([np.asarray(pil_reference(name, Image.fromarray(i.squeeze(), mode), value))
                    for i in images]).reshape(images.shape)
    return np.abs(ours.astype("float64") - ref.astype("float64"))


def check_tolerance(name: str, diff: np.ndarray) -> None:
    if name == "AutoContrast":
        assert diff.max() <= 1, f"{name}: max |diff| {diff.max()} > 1"
        assert np.mean(diff > 0) <= 0.01, f"{name}: {np.mean(diff > 0):.3%} of pixels differ"
    else:
        assert diff.max() == 0, (f"{name}: max |diff| {diff.max()}, "
                                 f"{np.mean(diff > 0):.3%} of pixels differ from PIL")


@pytest.mark.parametrize(("name", "sign"), [(n, s) for n in PIL_OPS for s in (1, -1)
                                             if s == 1 or OPS[n].signed])
def test_matches_pil_on_cifar(name: str, sign: int, cifar_images: np.ndarray) -> None:
    for magnitude in MAGNITUDES:
        check_tolerance(name, compare(name, cifar_images, magnitude, sign))


@pytest.mark.parametrize("name", PIL_OPS)
def test_matches_pil_on_generated_images(name: str, generated_images: np.ndarray) -> None:
    for magnitude in MAGNITUDES:
        for sign in (1, -1) if OPS[name].signed else (1,):
            check_tolerance(name, compare(name, generated_images, magnitude, sign))


@pytest.mark.parametrize("name", PIL_OPS)
def test_matches_pil_on_grayscale(name: str, cifar_images: np.ndarray) -> None:
    """Single-channel (mode "L") images, same tolerances."""
    gray = np.stack([np.asarray(Image.fromarray(i).convert("L")) for i in cifar_images[:16]])
    for magnitude in (4, 12, 20, 28):  # shear ties at pixel edges fall as in PIL's fixed point
        check_tolerance(name, compare(name, gray[..., None], magnitude, 1))


@pytest.mark.parametrize("name", OP_NAMES)
def test_output_contract(name: str, cifar_images: np.ndarray) -> None:
    """float32, same shape, integer values in [0, 255], from uint8 or float input."""
    for images in (cifar_images[:8], cifar_images[:8].astype("float32")):
        out = np.asarray(apply_op(images, name, 17.0, -1))
        assert out.shape == images.shape
        assert out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
        assert np.array_equal(out, np.round(out))


@pytest.mark.parametrize("name", OP_NAMES)
def test_per_image_magnitudes_and_signs(name: str, cifar_images: np.ndarray) -> None:
    """One call with per-image magnitudes equals one call per image."""
    images = cifar_images[:6]
    magnitudes = np.array([0, 3, 9.5, 14, 27, 30], "float32")
    signs = np.array([1, -1, 1, -1, 1, -1], "float32")
    batched = np.asarray(apply_op(images, name, magnitudes, signs))
    for i in range(len(images)):
        single = np.asarray(apply_op(images[i:i + 1], name, float(magnitudes[i]), int(signs[i])))
        assert np.array_equal(batched[i], single[0])


@pytest.mark.parametrize("name", [n for n in OP_NAMES if OPS[n].unit not in ("", "threshold")])
def test_neutral_at_magnitude_zero(name: str, cifar_images: np.ndarray) -> None:
    """Ops whose value is 0 (factor 1, 8 bits, an empty square) at M=0 leave images as they are."""
    assert np.array_equal(np.asarray(apply_op(cifar_images, name, 0)), cifar_images)


def test_cutout_matches_its_definition(cifar_images: np.ndarray) -> None:
    images = cifar_images[:4]
    for magnitude, position in ((9, (0.5, 0.5)), (30, (0.1, 0.9)), (15, (0.99, 0.0))):
        out = np.asarray(apply_op(images, "Cutout", magnitude, position=position))
        side = round(arg_value("Cutout", magnitude) * 32)
        cx, cy = math.floor(position[0] * 32), math.floor(position[1] * 32)
        x0, y0 = cx - side // 2, cy - side // 2
        expected = images.astype("float32").copy()
        expected[:, max(y0, 0):max(y0 + side, 0), max(x0, 0):max(x0 + side, 0), :] = 128
        assert np.array_equal(out, expected)


def test_fill_value_is_configurable(cifar_images: np.ndarray) -> None:
    out = np.asarray(apply_op(cifar_images[:2], "TranslateX", 30, fill=7))
    assert np.all(out[:, :, -1, :] == 7)


def test_signed_ops_go_both_ways(cifar_images: np.ndarray) -> None:
    for name in [n for n in OP_NAMES if OPS[n].signed]:
        up = np.asarray(apply_op(cifar_images[:4], name, 20, 1))
        down = np.asarray(apply_op(cifar_images[:4], name, 20, -1))
        assert not np.array_equal(up, down), name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Rotat", "magnitude": 9}, "Received: op='Rotat'"),
        ({"name": "Rotate", "magnitude": 31}, "Received: magnitude=31"),
        ({"name": "Rotate", "magnitude": -1}, "Received: magnitude=-1"),
        ({"name": "Rotate", "magnitude": float("nan")}, "Received: magnitude=nan"),
        ({"name": "Rotate", "magnitude": 9, "sign": 2}, "Received: sign=2"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict, message: str,
                                      cifar_images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_op(cifar_images[:2], **kwargs)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((32, 32, 3), "uint8"), "rank 4"),
        (np.zeros((2, 32, 32, 4), "uint8"), "Received: channels=4"),
        (np.zeros((0, 32, 32, 3), "uint8"), "empty batch"),
    ],
)
def test_bad_images_are_named(images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_op(images, "Rotate", 9)


def test_op_table_is_complete() -> None:
    """14 RandAugment ops plus Cutout and Invert; every op has a magnitude rule and a unit."""
    assert OP_NAMES[:14] == ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY",
                             "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
                             "Posterize", "Solarize", "AutoContrast", "Equalize")
    assert set(OP_NAMES[14:]) == {"Cutout", "Invert"}
    assert arg_value("Rotate", 30) == 30.0
    assert arg_value("ShearX", 15) == pytest.approx(0.15)
    assert arg_value("TranslateX", 30, 32, 32) == pytest.approx(150 / 331 * 32)
    assert arg_value("Posterize", 0) == 8 and arg_value("Posterize", 30) == 4
    assert arg_value("Solarize", 30) == 0 and arg_value("Solarize", 0) == 255
    assert arg_value("Brightness", 30) == pytest.approx(1.9)
    assert arg_value("Brightness", 30, sign=-1) == pytest.approx(0.1)


@pytest.mark.parametrize("name", OP_NAMES)
def test_portable_formula_equals_the_magnitude_rule(name: str) -> None:
    """``OpSpec.formula`` (quoted by exporters and docs) is ``arg_value`` at every bin and sign."""
    spec = OPS[name]
    for magnitude in (*range(31), 9.7, 22.5):
        for sign in (1, -1) if spec.signed else (1,):
            for h, w in ((32, 32), (24, 40)):
                m = magnitude * sign if spec.signed else magnitude
                value = eval(spec.formula, {"round": round}, {"m": m, "h": h, "w": w})
                expected = arg_value(name, magnitude, h, w, sign=sign)
                if float(magnitude).is_integer():
                    assert value == expected, (name, magnitude, sign)
                else:
                    assert value == pytest.approx(expected, rel=1e-6), (name, magnitude, sign)


def test_op_spec_fields_are_complete() -> None:
    """Every op states its unit, default membership and reference; the default set is the 14."""
    from policysearch.augment.ops import RANDAUGMENT_OPS

    assert OP_NAMES[:14] == RANDAUGMENT_OPS
    for spec in OPS.values():
        assert spec.reference, spec.name
        assert spec.torchvision.startswith(("F.", "img", "cutout(")), spec.name
        assert (spec.neutral is None) == (spec.kind == "identity" or spec.unit in ("", "threshold"))


def test_every_op_is_in_one_group_and_groups_follow_the_kind() -> None:
    """Groups are data of the op table: geometric ops are the affine ones; colour ops are the
    default pixel ops; Cutout, Invert and Identity stand apart."""
    from policysearch.augment.ops import GROUPS, RANDAUGMENT_OPS, group_ops

    assert all(spec.group in GROUPS for spec in OPS.values())
    assert sum(len(group_ops(g)) for g in GROUPS) == len(OP_NAMES)
    assert group_ops("geometric") == tuple(n for n in OP_NAMES if OPS[n].kind == "affine")
    assert group_ops("colour") == tuple(n for n in RANDAUGMENT_OPS if OPS[n].kind == "pixel")
    assert group_ops("occlusion") == ("Cutout",) and group_ops("inversion") == ("Invert",)
