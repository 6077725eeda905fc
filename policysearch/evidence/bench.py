"""``make bench``: what augmentation costs, measured on this machine.

1. Per-op cost: every op applied to a 1024-image batch in one compiled call (the backend's
   jit where it has one), milliseconds per batch.
2. tf.data throughput (TensorFlow, CPU): images/s of a map that applies our layer versus stock
   ``keras.layers.RandAugment``, at N = 2 and 3.
3. Proxy epoch time with and without augmentation (the trainer that scores trials).

Prints a Markdown report (the machine named); ``--out`` also writes it to a file. Skips what
the installed backends cannot run (e.g. part 2 without TensorFlow).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timeit(fn: Any, repeats: int) -> float:
    fn()  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def per_op(images: Any, repeats: int) -> list[tuple[str, float]]:
    import keras
    import numpy as np

    from policysearch.augment import apply_op
    from policysearch.augment.ops import OP_NAMES

    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(images)
    rows = []
    for name in OP_NAMES:
        def call(x: Any, name: str = name) -> Any:
            return apply_op(x, name, 15.0)

        if backend == "jax":
            import jax

            jitted = jax.jit(call)
            fn = lambda f=jitted: f(x).block_until_ready()  # noqa: E731
        elif backend == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")  # one tf.function per op is intended
            compiled = tf.function(call)
            fn = lambda f=compiled: f(x).numpy()  # noqa: E731
        else:
            fn = lambda: np.asarray(call(x))  # noqa: E731
        rows.append((name, 1000 * _timeit(fn, repeats)))
    return rows


def tfdata_throughput(images: Any, batch: int, num_ops: int, seconds: float) -> dict[str, float]:
    import keras
    import tensorflow as tf

    from policysearch.policy.definition import randaugment
    from policysearch.policy.layer import PolicyAugmentation

    ours = PolicyAugmentation(randaugment(num_ops, 9), seed=0)
    stock = keras.layers.RandAugment(value_range=(0, 255), num_ops=num_ops, factor=0.3,
                                     seed=0)
    out = {}
    for name, layer in (("policysearch", ours), ("keras.layers.RandAugment", stock)):
        ds = (tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch)
              .map(lambda x, layer=layer: layer(x, training=True),
                   num_parallel_calls=tf.data.AUTOTUNE).prefetch(2))
        it = iter(ds)
        next(it)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(it)
            count += batch
        out[name] = count / (time.perf_counter() - start)
    return out


def epoch_times(x: Any, y: Any, epochs: int) -> dict[str, float]:
    from policysearch.config.experiment import BaseAugmentConfig, TrainerConfig
    from policysearch.data.splits import Split
    from policysearch.policy.definition import no_augment, randaugment
    from policysearch.training.trainer import Trainer

    cfg = TrainerConfig(epochs=epochs, batch_size=256, validate_every=epochs)
    trainer = Trainer(cfg, BaseAugmentConfig(crop_padding=4, flip=True), x.shape[1:], 10, len(x))
    out = {}
    train, val = Split(x, y), Split(x[:512], y[:512])
    trainer.train(no_augment(), train, val, 0)  # compile
    for label, policy in (("crop+flip", no_augment()), ("crop+flip + RA(N=2,M=9)",
                                                         randaugment(2, 9))):
        result = trainer.train(policy, train, val, 1)
        out[label] = result.seconds / epochs
    out["placement"] = trainer.placement  # type: ignore[assignment]
    return out


def machine_line() -> str:
    from policysearch.evidence.runinfo import machine

    m = machine()
    return (f"{m['cpu']} ({m['cores']} cores), accelerator: {m['accelerator']}, "
            f"Keras {m['keras']} on {m['backend']}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=10000, help="images for epoch timing")
    parser.add_argument("--seconds", type=float, default=8.0, help="per tf.data measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    import keras

    from policysearch.data.datasets import load_part

    part = load_part("cifar10", "train", args.data_dir)
    lines = ["# Benchmarks", "", f"Machine: {machine_line()}", ""]
    batch = part.x[:1024]
    lines += [f"## Per-op cost, 1024-image batch, magnitude 15 ({keras.backend.backend()})",
              "", "| op | ms per batch |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in per_op(batch, args.repeats)]
    print("\n".join(lines), flush=True)
    lines.append("")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        lines.append("tf.data throughput: skipped (TensorFlow is not installed)")
    else:
        lines += ["## tf.data map throughput (TensorFlow, CPU), batch 256", "",
                  "| N ops | policysearch (img/s) | keras.layers.RandAugment (img/s) | ratio |",
                  "|---|---|---|---|"]
        for n in (2, 3):
            r = tfdata_throughput(part.x[:4096], 256, n, args.seconds)
            ours, stock = r["policysearch"], r["keras.layers.RandAugment"]
            lines.append(f"| {n} | {ours:,.0f} | {stock:,.0f} | {ours / stock:.1f}x |")
            print(lines[-1], flush=True)
    lines.append("")
    times = epoch_times(part.x[: args.images], part.y[: args.images], epochs=2)
    placement = times.pop("placement")
    lines += [f"## Proxy CNN epoch time, {args.images} images, batch 256 "
              f"(augmentation placement: {placement})", "", "| augmentation | s per epoch |",
              "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in times.items()]
    report = "\n".join(lines) + "\n"
    print("\n".join(lines[-len(times) - 4:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
    return report


if __name__ == "__main__":
    main()
