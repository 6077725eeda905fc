"""The policy layer: per-image draws, op subsets, seeds, both placements, both backends.

Tests marked ``backends`` run twice in ``make test``: under TensorFlow and under JAX.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from policysearch import autoaugment, no_augment, randaugment, trivialaugment
from policysearch.augment import OP_NAMES, apply_op
from policysearch.policy.layer import PolicyAugmentation

pytestmark = pytest.mark.backends


def as_np(x: object) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def batch(images: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(images))
    return np.concatenate([images] * reps)[:size]


def draws(layer: PolicyAugmentation, images: np.ndarray) -> dict[str, np.ndarray]:
    t = layer.get_random_transformation(keras.ops.convert_to_tensor(images.astype("float32")))
    return {k: as_np(v) for k, v in t.items()}


def transform(layer: PolicyAugmentation, images: np.ndarray, t: dict) -> np.ndarray:
    tensors = {k: keras.ops.convert_to_tensor(v) for k, v in t.items()}
    return as_np(layer.transform_images(keras.ops.convert_to_tensor(images.astype("float32")),
                                        tensors))


def test_each_image_draws_its_own_ops(cifar_images: np.ndarray) -> None:
    layer = PolicyAugmentation(randaugment(2, 9), seed=0)
    t = draws(layer, batch(cifar_images, 512))
    for stage in range(2):
        ops, counts = np.unique(t["op"][:, stage], return_counts=True)
        assert len(ops) == 14, "every one of the 14 ops is drawn in a batch of 512"
        assert counts.max() < 0.15 * 512, "no op dominates the batch"
    assert len(np.unique(t["sign"][:, 0])) == 2
    assert t["apply"][:, :2].all() and not t["apply"][:, 2:].any()


def test_op_subset_is_respected(cifar_images: np.ndarray) -> None:
    subset = ("Rotate", "Invert", "Equalize")
    layer = PolicyAugmentation(randaugment(3, 12, ops=subset), seed=1)
    t = draws(layer, batch(cifar_images, 256))
    drawn = {OP_NAMES[i] for i in np.unique(t["op"][:, :3])}
    assert drawn == set(subset)


def test_single_op_policy_equals_apply_op(cifar_images: np.ndarray) -> None:
    """A policy of one unsigned op at M applies exactly that op to every image."""
    layer = PolicyAugmentation(randaugment(1, 30, ops=["Posterize"]), seed=2)
    out = as_np(layer(cifar_images, training=True))
    assert np.array_equal(out, as_np(apply_op(cifar_images, "Posterize", 30)))


def test_each_image_gets_the_result_of_its_own_op(cifar_images: np.ndarray) -> None:
    images = batch(cifar_images, 96)
    layer = PolicyAugmentation(randaugment(1, 17), seed=3)
    t = draws(layer, images)
    out = transform(layer, images, t)
    for i in range(len(images)):
        name = OP_NAMES[t["op"][i, 0]]
        expected = as_np(apply_op(images[i:i + 1], name, float(t["level"][i, 0]),
                                  int(t["sign"][i, 0]), position=tuple(t["rand"][i, 0])))
        assert np.array_equal(out[i], expected[0]), name


def test_both_strategies_give_the_same_batch(cifar_images: np.ndarray) -> None:
    """``dispatch`` (each op on the images that drew it; the geometric ops in one warp) and
    ``select`` (every op on the whole batch) apply the same draws to the same pixels: every op,
    two stages, images that draw Identity among them, dynamic and not."""
    images = batch(cifar_images, 160)
    policy = randaugment(2, 13, ops=OP_NAMES, magnitude_std=4.0)
    # a dynamic layer's dispatch skips an unused stage in a cond, which needs TensorFlow
    for dynamic in (False, True) if keras.backend.backend() == "tensorflow" else (False,):
        kwargs = dict(seed=11, crop_padding=4, flip=True, dynamic=dynamic)
        dispatch = PolicyAugmentation(policy, strategy="dispatch", **kwargs)
        select = PolicyAugmentation(policy, strategy="select", **kwargs)
        t = draws(dispatch, images)
        assert len(np.unique(t["op"][:, :2])) == len(OP_NAMES)  # Identity too
        assert np.array_equal(transform(dispatch, images, t), transform(select, images, t))


def test_same_seed_same_batch_other_seed_other_batch(cifar_images: np.ndarray) -> None:
    policy = randaugment(2, 9)
    a = as_np(PolicyAugmentation(policy, seed=5)(cifar_images, training=True))
    b = as_np(PolicyAugmentation(policy, seed=5)(cifar_images, training=True))
    c = as_np(PolicyAugmentation(policy, seed=6)(cifar_images, training=True))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    layer = PolicyAugmentation(policy, seed=5)
    first = as_np(layer(cifar_images, training=True))
    second = as_np(layer(cifar_images, training=True))
    assert not np.array_equal(first, second), "each call draws anew"
    layer.set_seed(5)
    assert np.array_equal(as_np(layer(cifar_images, training=True)), first)


def test_identity_at_inference_random_in_training(cifar_images: np.ndarray) -> None:
    layer = PolicyAugmentation(randaugment(2, 9), seed=0, crop_padding=4, flip=True)
    assert np.array_equal(as_np(layer(cifar_images, training=False)), cifar_images)
    assert np.mean(as_np(layer(cifar_images, training=True)) != cifar_images) > 0.5


def test_crop_and_flip(cifar_images: np.ndarray) -> None:
    flip = PolicyAugmentation(no_augment(), flip=True, seed=0)
    out = as_np(flip(cifar_images, training=True))
    flipped = np.all(out == cifar_images[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == cifar_images, axis=(1, 2, 3))
    assert np.all(flipped | kept) and 10 < flipped.sum() < 54
    crop = PolicyAugmentation(no_augment(), crop_padding=4, seed=0)
    t = draws(crop, cifar_images)
    out = transform(crop, cifar_images, t)
    assert set(np.unique(t["shift"])) <= set(range(-4, 5))
    i = int(np.argmax(np.abs(t["shift"]).sum(axis=1)))
    dx, dy = (int(v) for v in t["shift"][i])
    shifted = np.zeros((40, 40, 3))
    shifted[4:36, 4:36] = cifar_images[i]
    assert np.array_equal(out[i], shifted[4 + dy:36 + dy, 4 + dx:36 + dx])


def test_magnitude_std_jitters_per_image(cifar_images: np.ndarray) -> None:
    t = draws(PolicyAugmentation(randaugment(1, 15, magnitude_std=3.0), seed=0),
              batch(cifar_images, 512))
    levels = t["level"][:, 0]
    assert 2.0 < levels.std() < 4.0 and abs(levels.mean() - 15) < 0.5
    assert levels.min() >= 0 and levels.max() <= 30


def test_trivialaugment_draws_uniform_magnitudes(cifar_images: np.ndarray) -> None:
    t = draws(PolicyAugmentation(trivialaugment(), seed=0), batch(cifar_images, 1024))
    levels = t["level"][:, 0]
    assert levels.min() < 2 and levels.max() > 28 and abs(levels.mean() - 15) < 1.5
    assert t["apply"][:, 0].all() and not t["apply"][:, 1:].any()


def test_autoaugment_probabilities_and_sub_policies(cifar_images: np.ndarray) -> None:
    policy = autoaugment([[("Invert", 1.0, 0), ("Rotate", 0.0, 30)],
                          [("Equalize", 0.5, 0)]])
    t = draws(PolicyAugmentation(policy, seed=0), batch(cifar_images, 1024))
    first = t["sub_policy"] == 0
    assert 0.4 < first.mean() < 0.6
    assert t["apply"][first, 0].all() and not t["apply"][first, 1].any()
    assert 0.4 < t["apply"][~first, 0].mean() < 0.6
    assert set(OP_NAMES[i] for i in t["op"][first, 0]) == {"Invert"}


def test_dynamic_layer_switches_policy_without_retracing(cifar_images: np.ndarray) -> None:
    """The policy lives in non-trainable weights, passed to the compiled function as state:
    switching policies assigns them and reuses the compiled function."""
    layer = PolicyAugmentation(randaugment(1, 5, ops=["Invert"]), dynamic=True, seed=0)
    images = keras.ops.convert_to_tensor(cifar_images.astype("float32"))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x: layer(x, training=True))

        def run() -> np.ndarray:
            return as_np(compiled(images))

        def traces() -> int:
            return compiled.experimental_get_tracing_count()
    else:
        import jax

        compiled = jax.jit(lambda state, x: layer.stateless_call([], state, x, training=True)[0])

        def run() -> np.ndarray:
            return as_np(compiled([v.value for v in layer.non_trainable_variables], images))

        def traces() -> int:
            return compiled._cache_size()
    assert np.array_equal(run(), 255 - cifar_images)
    layer.set_policy(randaugment(1, 30, ops=["Posterize"]))
    assert np.array_equal(run(), as_np(apply_op(cifar_images, "Posterize", 30)))
    layer.set_policy(autoaugment([[("Solarize", 1.0, 30), ("Invert", 1.0, 0)]]))
    assert np.array_equal(run(), cifar_images.astype("float32"))
    assert traces() == 1


def test_static_layer_refuses_a_policy_outside_its_graph() -> None:
    layer = PolicyAugmentation(randaugment(1, 5, ops=["Invert", "Rotate"]))
    layer.set_policy(randaugment(1, 9, ops=["Rotate"]))
    with pytest.raises(ValueError, match="dynamic=True"):
        layer.set_policy(randaugment(2, 9))


def test_tf_data_compatibility(cifar_images: np.ndarray) -> None:
    """In a tf.data map the layer computes with TensorFlow whatever the Keras backend."""
    tf = pytest.importorskip("tensorflow")
    layer = PolicyAugmentation(randaugment(2, 9), seed=0)
    columns = layer.num_uniforms
    ds = tf.data.Dataset.from_tensor_slices(batch(cifar_images, 64)).batch(32)
    ds = ds.enumerate().map(lambda i, x: (x, layer(
        x, training=True,
        uniforms=tf.random.stateless_uniform(
            (32, columns), seed=tf.stack([tf.constant(7, tf.int64), i])))))
    outs = [(x.numpy(), y.numpy()) for x, y in ds]
    assert all(y.shape == (32, 32, 32, 3) and y.dtype == np.float32 for _, y in outs)
    assert all(np.mean(x != y) > 0.3 for x, y in outs)
    again = [y.numpy() for _, y in ds]
    assert all(np.array_equal(a, b) for (_, a), b in zip(outs, again)), "seeded per batch"
    # The same draws outside tf.data give the same images.
    u = tf.random.stateless_uniform((32, columns), seed=tf.stack([tf.constant(7, tf.int64),
                                                                  tf.constant(0, tf.int64)]))
    eager = layer(keras.ops.convert_to_tensor(outs[0][0]), training=True,
                  uniforms=keras.ops.convert_to_tensor(u.numpy()))
    assert np.array_equal(as_np(eager), outs[0][1])


def test_model_placement_trains(cifar_images: np.ndarray) -> None:
    """Inside a model the layer runs in the compiled train step of the current backend."""
    inputs = keras.Input((32, 32, 3))
    x = PolicyAugmentation(randaugment(2, 9), dynamic=True, seed=0, crop_padding=4,
                           flip=True)(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(4, 3)(x)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=keras.backend.backend() != "tensorflow")
    history = model.fit(cifar_images.astype("float32"), np.arange(64) % 10, batch_size=16,
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    preds = model.predict(cifar_images[:4].astype("float32"), verbose=0)
    assert np.array_equal(preds, model.predict(cifar_images[:4].astype("float32"), verbose=0))


def test_layer_config_round_trip() -> None:
    layer = PolicyAugmentation(randaugment(3, 7, ops=["Rotate", "Color"]), crop_padding=2,
                               flip=True, seed=9)
    clone = PolicyAugmentation.from_config(layer.get_config())
    assert clone.policy == layer.policy
    assert (clone.crop_padding, clone.flip, clone.seed) == (2, True, 9)


def test_bad_layer_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="Received: crop_padding=-1"):
        PolicyAugmentation(crop_padding=-1)
    with pytest.raises(ValueError, match="Received: strategy='fast'"):
        PolicyAugmentation(strategy="fast")
    with pytest.raises(ValueError, match="rank 4"):
        PolicyAugmentation(randaugment(1, 1))(np.zeros((32, 32), "float32"), training=True)


def test_each_op_gets_its_own_magnitude(cifar_images: np.ndarray) -> None:
    """RandAugment's per-op magnitudes (a group's magnitude) land on each drawn op; the other
    ops keep the policy's magnitude; magnitude_std jitters around each op's own."""
    own = {"Rotate": 25, "TranslateX": 20, "Brightness": 3}
    policy = randaugment(2, 9, op_magnitudes=own)
    t = draws(PolicyAugmentation(policy, seed=0), batch(cifar_images, 512))
    for stage in range(2):
        for index, level in zip(t["op"][:, stage], t["level"][:, stage]):
            assert level == policy.magnitude_of(OP_NAMES[index])
    assert {OP_NAMES[i] for i in np.unique(t["op"][:, :2])} >= set(own)
    jitter = PolicyAugmentation(randaugment(1, 9, op_magnitudes=own, magnitude_std=2.0), seed=0)
    t = draws(jitter, batch(cifar_images, 1024))
    rotate = t["level"][t["op"][:, 0] == OP_NAMES.index("Rotate"), 0]
    assert abs(rotate.mean() - 25) < 0.6 and 1.0 < rotate.std() < 3.0


def test_a_policy_turns_the_base_crop_and_flip_off(cifar_images: np.ndarray) -> None:
    from dataclasses import replace

    off = replace(no_augment(), base={"flip": False, "crop_padding": 0})
    layer = PolicyAugmentation(off, crop_padding=4, flip=True, seed=0, dynamic=True)
    assert np.array_equal(as_np(layer(cifar_images, training=True)), cifar_images)
    layer.set_policy(replace(no_augment(), base={"crop_padding": 0}))  # flip only
    out = as_np(layer(cifar_images, training=True))
    flipped = np.all(out == cifar_images[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == cifar_images, axis=(1, 2, 3))
    assert np.all(flipped | kept) and 10 < flipped.sum() < 54
    layer.set_policy(no_augment())  # back to the experiment's crop and flip
    assert set(np.unique(draws(layer, cifar_images)["shift"])) > {0}
