"""The framework-free transform (``load_transform``) against the ops and the Keras layer.

Per op: every bin 0..30 and both signs on real CIFAR-10 images equal ``apply_op`` exactly.
Per policy type: the distribution of what it does to real images matches ``PolicyAugmentation``
(two-sample Kolmogorov-Smirnov tests on per-image statistics), and the same test tells a wrong
magnitude apart. Copies run in real worker processes and draw differently there.
"""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import ks_2samp

from policysearch import (
    autoaugment,
    load_transform,
    no_augment,
    randaugment,
    trivialaugment,
    write_policy,
)
from policysearch.augment import OP_NAMES, OPS
from policysearch.policy.transform import PolicyTransform

ROOT = Path(__file__).resolve().parent.parent
P_MIN = 1e-3  # KS p-value below which two samples are called different

POLICIES = {
    "ra_full": randaugment(2, 9),
    "ra_subset_mstd": randaugment(2, 14, ops=["Identity", "ShearX", "TranslateY", "Color",
                                              "Posterize", "Solarize", "Cutout"],
                                  magnitude_std=4),
    "ra_op_magnitudes": randaugment(2, 9, ops=["Identity", "ShearY", "TranslateX", "Rotate",
                                               "Brightness", "Posterize", "Solarize"],
                                    op_magnitudes={"ShearY": 20, "TranslateX": 20, "Rotate": 20,
                                                   "Brightness": 2, "Posterize": 28}),
    "ta": trivialaugment(),
    "aa": autoaugment([[("Invert", 0.3, 0), ("Rotate", 0.8, 20)],
                       [("Cutout", 0.7, 12), ("Equalize", 0.5, 0)],
                       [("TranslateX", 0.6, 25), ("Sharpness", 0.9, 30), ("Posterize", 1, 28)]]),
}


def _pil(images: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(i) for i in images]


# ----------------------------------------------------------------------------------------------
# Per op: equal to apply_op


@pytest.mark.parametrize("name", OP_NAMES)
def test_each_op_equals_apply_op_at_every_bin_and_sign(name: str, cifar_images: np.ndarray) -> None:
    from policysearch.augment import apply_op

    images = cifar_images[:24]
    signs = (1.0, -1.0) if OPS[name].signed else (1.0,)
    cases = [(m, s) for m in range(31) for s in signs]
    batch = np.concatenate([images] * len(cases))
    levels = np.repeat([m for m, _ in cases], len(images)).astype("float32")
    signs_per_image = np.repeat([s for _, s in cases], len(images)).astype("float32")
    transform = PolicyTransform(randaugment(1, 0, ops=[name]), seed=0)
    positions = [(0.5, 0.5), (0.03, 0.97)] if name == "Cutout" else [(0.5, 0.5)]
    for position in positions:
        ours = np.asarray(apply_op(batch, name, levels, signs_per_image, position=position))
        pil = np.stack([
            np.asarray(transform.apply(image, [(name, float(m), float(s), position)]))
            for image, m, s in zip(_pil(batch), levels, signs_per_image)
        ])
        diff = np.abs(ours - pil).reshape(len(batch), -1).max(axis=1)
        assert diff.max() == 0, f"{name}: differs at bins {sorted(set(levels[diff > 0]))}"


def test_array_and_pil_inputs_keep_their_kind(cifar_images: np.ndarray) -> None:
    transform = PolicyTransform(randaugment(2, 9), seed=0)
    image = cifar_images[0]
    assert transform(image).shape == (32, 32, 3) and transform(image).dtype == np.uint8
    gray = np.asarray(Image.fromarray(image).convert("L"))
    assert transform(gray).shape == (32, 32)
    assert transform(gray[..., None]).shape == (32, 32, 1)
    out = transform(Image.fromarray(image))
    assert isinstance(out, Image.Image) and out.mode == "RGB"


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((32, 32, 3), "float32"), "dtype=float32"),
    (np.zeros((32, 32, 4), "uint8"), r"shape=\(32, 32, 4\)"),
    (np.zeros((2, 32, 32, 3), "uint8"), "shape="),
    (Image.new("RGBA", (8, 8)), "mode='RGBA'"),
])
def test_bad_images_are_named(image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyTransform(randaugment(1, 9), seed=0)(image)


def test_base_crop_and_flip_is_a_padded_crop_then_a_flip(cifar_images: np.ndarray) -> None:
    """Every output is one of the (2p + 1)^2 x 2 zero-padded crops, flipped or not."""
    pad = 4
    transform = PolicyTransform(no_augment(), crop_padding=pad, flip=True, seed=0)
    image = cifar_images[1]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for _ in range(40):
        out = transform(image)
        matches = [(dx, dy, f) for dx in range(-pad, pad + 1) for dy in range(-pad, pad + 1)
                   for f in (False, True)
                   if np.array_equal(out, (lambda c: c[:, ::-1] if f else c)(
                       padded[pad + dy:pad + dy + 32, pad + dx:pad + dx + 32]))]
        assert matches, "output is not a padded crop of the input"
        seen.add(matches[0])
    assert len(seen) > 10


def test_same_seed_same_draws_and_load_transform_reads_base(tmp_path: Path,
                                                            cifar_images: np.ndarray) -> None:
    policy = replace(randaugment(2, 9), base={"crop_padding": 4, "flip": True})
    path = write_policy(policy, tmp_path / "p.json")
    a, b = load_transform(path, seed=3), load_transform(path, seed=3)
    assert not a.base
    assert all(np.array_equal(a(i), b(i)) for i in cifar_images[:8])
    based = load_transform(path, base=True, seed=3)
    assert based.crop_padding == 4 and based.flip


def test_import_pulls_in_neither_torch_nor_tensorflow(tmp_path: Path) -> None:
    path = write_policy(trivialaugment(), tmp_path / "p.json")
    code = ("import sys, numpy as np, policysearch\n"
            f"t = policysearch.load_transform({str(path)!r}, seed=0)\n"
            "t(np.zeros((8, 8, 3), 'uint8'))\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------
# Worker processes


def _run_in_worker(transform: PolicyTransform, image: np.ndarray, queue: object) -> None:
    queue.put(np.stack([transform(image) for _ in range(8)]))


def _outputs_of_two_workers(method: str, transform: PolicyTransform,
                            image: np.ndarray) -> list[np.ndarray]:
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    workers = [context.Process(target=_run_in_worker, args=(transform, image, queue))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outputs = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return outputs


def test_pickled_copies_draw_differently_in_spawned_workers(cifar_images: np.ndarray) -> None:
    transform = PolicyTransform(randaugment(2, 12), seed=0)
    copy = pickle.loads(pickle.dumps(transform))
    assert np.array_equal(copy(cifar_images[0]), transform(cifar_images[0]))  # same process
    first, second = _outputs_of_two_workers("spawn", transform, cifar_images[2])
    assert not np.array_equal(first, second), "both workers drew the same augmentations"


def test_forked_workers_reseed(cifar_images: np.ndarray) -> None:
    transform = PolicyTransform(randaugment(2, 12), seed=0)
    transform(cifar_images[0])  # the parent's generator exists before the fork
    first, second = _outputs_of_two_workers("fork", transform, cifar_images[2])
    parent = np.stack([transform(cifar_images[2]) for _ in range(8)])
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, parent) and not np.array_equal(second, parent)


# ----------------------------------------------------------------------------------------------
# Per policy type: the same distribution as the Keras layer


def statistics(originals: np.ndarray, augmented: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image: mean |change|, share of changed pixels, mean value of the result."""
    diff = np.abs(augmented.astype("float64") - originals.astype("float64"))
    return {"mean_abs_change": diff.mean(axis=(1, 2, 3)),
            "changed_fraction": (diff.max(axis=3) > 0).mean(axis=(1, 2)),
            "mean_value": augmented.reshape(len(augmented), -1).mean(axis=1)}


def layer_sample(policy: object, images: np.ndarray, **base: object) -> np.ndarray:
    from policysearch.policy.layer import PolicyAugmentation

    layer = PolicyAugmentation(policy, seed=1, **base)
    return np.asarray(layer(images, training=True)).astype("uint8")


def transform_sample(policy: object, images: np.ndarray, **base: object) -> np.ndarray:
    transform = PolicyTransform(policy, seed=2, **base)
    return np.stack([transform(image) for image in images])


def ks_pvalues(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(ks_2samp(a[key], b[key]).pvalue) for key in a}


@pytest.mark.parametrize("name", list(POLICIES))
def test_distribution_matches_the_keras_layer(name: str, cifar_images: np.ndarray) -> None:
    images = np.concatenate([cifar_images] * 20)  # 1,280 draws over 64 real images
    base = {"crop_padding": 4, "flip": True} if name == "ra_full" else {}
    policy = POLICIES[name]
    ours = statistics(images, transform_sample(policy, images, **base))
    keras = statistics(images, layer_sample(policy, images, **base))
    pvalues = ks_pvalues(ours, keras)
    assert min(pvalues.values()) > P_MIN, pvalues


def test_the_distribution_test_tells_a_wrong_magnitude_apart(cifar_images: np.ndarray) -> None:
    images = np.concatenate([cifar_images] * 20)
    keras = statistics(images, layer_sample(randaugment(2, 9), images))
    wrong = statistics(images, transform_sample(randaugment(2, 13), images))
    assert min(ks_pvalues(wrong, keras).values()) < P_MIN


def test_the_distribution_test_tells_ignored_op_magnitudes_apart(
        cifar_images: np.ndarray) -> None:
    """Per-op magnitudes change what the policy does, visibly to the same test."""
    images = np.concatenate([cifar_images] * 20)
    policy = POLICIES["ra_op_magnitudes"]
    keras = statistics(images, layer_sample(policy, images))
    ignored = statistics(images, transform_sample(replace(policy, op_magnitudes=()), images))
    assert min(ks_pvalues(ignored, keras).values()) < P_MIN


def test_a_policy_that_turns_the_base_off_leaves_images_alone(cifar_images: np.ndarray) -> None:
    off = replace(no_augment(), base={"flip": False, "crop_padding": 0})
    transform = PolicyTransform(off, crop_padding=4, flip=True, seed=0)
    assert all(np.array_equal(transform(i), i) for i in cifar_images[:16])
    flip_only = PolicyTransform(replace(off, base={"crop_padding": 0}), crop_padding=4,
                                flip=True, seed=0)
    outs = [flip_only(i) for i in cifar_images[:32]]
    assert all(np.array_equal(o, i) or np.array_equal(o, i[:, ::-1])
               for o, i in zip(outs, cifar_images))
    assert any(not np.array_equal(o, i) for o, i in zip(outs, cifar_images))
