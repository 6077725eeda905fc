"""Train with an exported policy, in the tf.data pipeline or inside the model.

    python examples/train_with_policy.py policies/cifar10-randaugment_groups.json \
        [--placement data|model] [--epochs 3] [--images 2000] [--test-images 1000] \
        [--model cnn|MobileNetV3Small|EfficientNetB0|...] [--data-dir ../shared/data]

``policysearch.load_policy`` returns a Keras layer. In a ``tf.data`` map (placement "data") it
runs on the CPU with TensorFlow whatever the Keras backend is; as the model's first layer
(placement "model") it runs in the train step on the accelerator and passes images through
unchanged at inference. As ``examples/train_pytorch.py``: training images drawn stratified by
class, accuracy on held-out test images beside chance, the data directory as the Makefile's.
``--model`` trains a ``keras.applications`` network (random weights) instead of the small CNN:
the policy layer goes in front of any Keras model the same way.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT = Path(__file__).resolve().parent.parent
ARCHIVE = "cifar10-images.tar.gz"


def default_data_dir() -> str | None:
    """As the Makefile: ``$POLICYSEARCH_DATA_DIR``, else ``../shared/data`` beside the project
    when the archive is there; None lets Keras download CIFAR-10."""
    if os.environ.get("POLICYSEARCH_DATA_DIR"):
        return os.environ["POLICYSEARCH_DATA_DIR"]
    shared = PROJECT.parent / "shared" / "data"
    return str(shared) if (shared / ARCHIVE).is_file() else None


def sample(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` indices with every class in proportion (seeded), not the first ``count``."""
    from policysearch.data.splits import stratified

    pool = np.arange(len(labels))
    return np.sort(stratified(labels, pool, min(count, len(pool)), np.random.default_rng(seed)))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--placement", choices=("data", "model"), default="data")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000, help="training images (stratified)")
    parser.add_argument("--test-images", type=int, default=1000,
                        help="held-out test images the accuracy is measured on (stratified)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="cnn",
                        help="cnn, or a keras.applications model by name (random weights)")
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help=f"folder with {ARCHIVE} (default: as the Makefile)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import policysearch
    from policysearch.data.datasets import load_part

    train = load_part("cifar10", "train", args.data_dir)
    test = load_part("cifar10", "test", args.data_dir)
    picks = sample(train.y, args.images)
    x, y = train.x[picks], train.y[picks]
    held_out = sample(test.y, args.test_images)

    # The one line: the policy, plus the crop and flip it was searched with.
    augment = policysearch.load_policy(args.policy, base=True, seed=0)
    print(f"policy: {augment.policy!r}")

    keras.utils.set_random_seed(0)
    inputs = keras.Input(x.shape[1:], dtype="uint8")
    h = augment(inputs) if args.placement == "model" else inputs
    if args.model == "cnn":
        h = keras.layers.Rescaling(1 / 255)(h)
        for width in (16, 32, 64):
            h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(h)
            h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
    else:  # any Keras model takes the augmented images the same way
        network = getattr(keras.applications, args.model)(
            include_top=False, weights=None, pooling="avg", input_shape=x.shape[1:])
        h = network(keras.ops.cast(h, "float32"))
    print(f"model: {args.model}")
    model = keras.Model(inputs, keras.layers.Dense(len(train.classes))(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0)
    ds = ds.batch(args.batch_size)
    if args.placement == "data":
        ds = ds.map(lambda images, labels: (augment(images, training=True), labels),
                    num_parallel_calls=tf.data.AUTOTUNE)
    model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=args.epochs, verbose=2)
    # held-out images, unaugmented (in the model placement the layer passes them through)
    logits = model.predict(test.x[held_out], batch_size=256, verbose=0)
    accuracy = float((np.argmax(logits, axis=1) == test.y[held_out]).mean())
    print(f"trained {args.epochs} epoch(s) with augmentation in the {args.placement} "
          f"placement: test accuracy {accuracy:.3f} on {len(held_out)} held-out images "
          f"(chance {1 / len(train.classes):.3f})")
    return accuracy


if __name__ == "__main__":
    main()
