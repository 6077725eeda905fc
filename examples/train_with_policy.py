"""Train with an exported policy, in the tf.data pipeline or inside the model.

    python examples/train_with_policy.py policies/cifar10-randaugment_subset.json \
        [--placement data|model] [--epochs 2] [--images 2000] [--data-dir ../shared/data]

``policysearch.load_policy`` returns a Keras layer. In a ``tf.data`` map (placement "data") it
runs on the CPU with TensorFlow whatever the Keras backend is; as the model's first layer
(placement "model") it runs in the train step on the accelerator and passes images through
unchanged at inference.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--placement", choices=("data", "model"), default="data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import policysearch
    from policysearch.data.datasets import load_part

    train = load_part("cifar10", "train", args.data_dir)
    x, y = train.x[: args.images], train.y[: args.images]

    # The one line: the policy, plus the crop and flip it was searched with.
    augment = policysearch.load_policy(args.policy, base=True, seed=0)
    print(f"policy: {augment.policy!r}")

    inputs = keras.Input(x.shape[1:], dtype="uint8")
    h = augment(inputs) if args.placement == "model" else inputs
    h = keras.layers.Rescaling(1 / 255)(h)
    for width in (16, 32, 64):
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(len(train.classes))(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(128)
    if args.placement == "data":
        ds = ds.map(lambda images, labels: (augment(images, training=True), labels),
                    num_parallel_calls=tf.data.AUTOTUNE)
    history = model.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=args.epochs, verbose=2)
    accuracy = float(np.asarray(history.history["accuracy"][-1]))
    print(f"trained {args.epochs} epoch(s) with augmentation in the {args.placement} "
          f"placement: train accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
