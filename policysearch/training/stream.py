"""The batches of a run, and one long-lived ``tf.data`` pipeline that serves every run.

A run's batches are fixed by its seed alone (common random numbers): the images in a seeded
order, reshuffled each epoch by ``tf.data``'s seeded shuffle, and per batch a block of uniform
numbers drawn from (seed, batch index) that the policy layer turns into its random choices.

Building a ``tf.data`` iterator instantiates its map functions, and tracing the augmentation
builds thousands of graph ops: seconds per run, more than a short proxy run trains. So a
``BatchStream`` builds one pipeline with a dynamic policy layer and keeps one iterator for the
trainer's life; each run is a request (its images, order, seed and policy table, all tensors)
put on a queue the pipeline reads. Nothing of a run is computed before its request, and what
an aborted run (pruned, stopped, failed) left in flight is dropped: each batch carries its run's
number, the pipeline stops a run's batches once a newer run starts, and a filter at the
consumer's end lets only the current run's batches through.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from policysearch.policy.definition import no_augment
from policysearch.policy.layer import PolicyAugmentation


@dataclass(frozen=True)
class RunInputs:
    """What one run trains on: ``x``/``y`` the images (uint8) and one-hot labels in the run's
    seeded order, ``positions`` (batches, batch size) the rows of each batch epoch after epoch,
    ``seed`` the seed of the augmentation draws, ``table`` the policy as arrays."""

    x: np.ndarray
    y: np.ndarray
    positions: np.ndarray
    seed: int
    table: dict[str, np.ndarray]


def epoch_positions(size: int, epochs: int, batch: int, seed: int) -> np.ndarray:
    """Each epoch's order of ``size`` rows as ``tf.data``'s seeded shuffle gives it (reshuffled
    every epoch), cut into batches: ``(epochs * size // batch, batch)`` int32.

    The global seed must be set first (``keras.utils.set_random_seed(seed)``), as the shuffle's
    op seed pairs with it."""
    import tensorflow as tf

    order = (tf.data.Dataset.range(size).shuffle(size, seed=seed, reshuffle_each_iteration=True)
             .batch(size).repeat(epochs))
    return np.concatenate(list(order.as_numpy_iterator())).astype("int32").reshape(-1, batch)


def run_batches(x: Any, y: Any, positions: Any) -> Any:
    """A run's batches before augmentation, as a ``tf.data`` dataset of (batch index, images,
    labels); ``x``, ``y`` and ``positions`` are arrays or tensors."""
    import tensorflow as tf

    whole = tf.data.Dataset.from_tensors((x, y)).repeat()
    ds = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(positions).enumerate(), whole)
    return ds.map(lambda indexed, data: (indexed[0], tf.gather(data[0], indexed[1]),
                                          tf.gather(data[1], indexed[1])))


def draws(seed: Any, step: Any, batch: int, columns: int) -> Any:
    """The uniform numbers of one batch: a function of (seed, batch index) only."""
    import tensorflow as tf

    return tf.random.stateless_uniform(
        (batch, columns), seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)]))


class BatchStream:
    """One pipeline, one iterator, many runs (see the module's docstring).

    ``start(run)`` returns the iterator, positioned at the run's first augmented batch of
    (images, labels); it yields exactly the batches ``run_batches`` and a layer of the run's
    policy would, and then waits for the next run.
    """

    def __init__(self, layer: PolicyAugmentation, batch: int, image_shape: tuple[int, ...],
                 num_classes: int, image_dtype: Any = np.uint8) -> None:
        import tensorflow as tf

        if not layer.dynamic_policy:
            raise ValueError("a BatchStream serves every policy: its layer must be dynamic")
        self.layer = layer
        self.batch = batch
        shapes = {name: value.shape for name, value in
                  no_augment().table(layer.max_sub_policies, layer.max_stages).items()}
        names = sorted(shapes)
        self._names = names
        self._dtype = np.dtype(image_dtype)
        # the request: run number, seed, images, labels, positions, then the policy table
        kinds = [tf.int64, tf.int64, tf.as_dtype(self._dtype), tf.float32, tf.int32]
        self._queue = tf.queue.FIFOQueue(2, kinds + [tf.float32] * len(names))
        self._current = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self._runs = 0
        current, queue, columns = self._current, self._queue, layer.num_uniforms
        shape = tuple(image_shape)

        def requests(_: Any) -> Any:
            return tuple(queue.dequeue())

        def one_run(number: Any, seed: Any, x: Any, y: Any, positions: Any, *table: Any) -> Any:
            x = tf.ensure_shape(x, (None, *shape))
            y = tf.ensure_shape(y, (None, num_classes))
            positions = tf.ensure_shape(positions, (None, batch))
            ds = run_batches(x, y, positions)
            # stop making an aborted run's batches once a newer run has started
            ds = ds.take_while(lambda *_: tf.equal(current.read_value(), number))
            policy = {name: tf.ensure_shape(value, shapes[name])
                      for name, value in zip(names, table)}
            return ds.map(lambda step, images, labels: (number, seed, step, images, labels,
                                                        policy))

        def augment(number: Any, seed: Any, step: Any, images: Any, labels: Any,
                    table: Any) -> Any:
            uniforms = draws(seed, step, batch, columns)
            return number, layer(images, training=True, uniforms=uniforms, table=table), labels

        ds = tf.data.Dataset.range(2**62).map(requests).flat_map(one_run)
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.prefetch(tf.data.AUTOTUNE)
        # the filter reads the run number when the consumer asks: nothing may buffer after it
        # (no prefetch injected, the last map left sequential)
        ds = ds.filter(lambda number, images, labels: tf.equal(number, current.read_value()))
        ds = ds.map(lambda number, images, labels: (images, labels))
        options = tf.data.Options()
        options.experimental_optimization.inject_prefetch = False
        options.experimental_optimization.map_parallelization = False
        self.iterator = iter(ds.with_options(options))
        self._close = weakref.finalize(self, _close_queue, queue)

    def start(self, run: RunInputs) -> Any:
        """Make ``run`` the current run and return the iterator that yields its batches."""
        number = self._runs
        self._runs += 1
        self._current.assign(number)
        images = run.x.astype(self._dtype, copy=False)
        self._queue.enqueue([np.int64(number), np.int64(run.seed), images, run.y, run.positions]
                            + [run.table[name] for name in self._names])
        return self.iterator

    def close(self) -> None:
        self._close()


def _close_queue(queue: Any) -> None:
    with contextlib.suppress(Exception):  # TensorFlow may be shutting down already
        queue.close(cancel_pending_enqueues=True)
