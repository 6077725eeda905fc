"""The trainer: one compiled model that scores many policies at one budget.

Compiling costs far more than a proxy trial, so a ``Trainer`` builds and compiles its model
once; each ``train`` call re-initialises the weights (copied from a freshly seeded model, never
rebuilt), resets the optimizer, and sets the policy, whose parameters are tensors.

Augmentation runs where the experiment places it: in the ``tf.data`` input pipeline (``data``:
TensorFlow on the CPU, beside the training) or inside the model's train step (``model``: the
backend's compiled step, on the accelerator). ``auto`` picks ``model`` on an accelerator or
without TensorFlow, else ``data``.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from policysearch.config.auto import resolve_batch_size, resolve_lr
from policysearch.config.experiment import BaseAugmentConfig, TrainerConfig
from policysearch.data.splits import Split
from policysearch.policy.definition import Policy
from policysearch.policy.layer import PolicyAugmentation
from policysearch.training import interrupts
from policysearch.training.models import WarmupLinearDecay, build_model
from policysearch.training.stream import (
    BatchStream,
    RunInputs,
    draws,
    epoch_positions,
    run_batches,
)

EpochCallback = Callable[[int, float, float], bool]
"""Called after each validated epoch with (epoch, train loss, validation accuracy), epochs
counted from 1; the loss is the mean since the previous call; True stops training."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    train_loss: list[float] = field(default_factory=list)
    loss_epochs: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def final_accuracy(self) -> float:
        return self.val_accuracy[-1] if self.val_accuracy else float("nan")


def has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def has_accelerator() -> bool:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def resolve_placement(placement: str) -> str:
    if placement == "auto":
        return "model" if has_accelerator() or not has_tensorflow() else "data"
    if placement == "data" and not has_tensorflow():
        raise RuntimeError("placement 'data' runs augmentation in a tf.data pipeline and needs "
                           "TensorFlow; install it or use placement 'model'")
    return placement


MAX_SHARED_STREAMS = 8
_STREAMS: dict[tuple[Any, ...], BatchStream] = {}
"""Pipelines by what shapes them (base augmentation, batch, image shape, classes, dtype): the
trainers of one process share one (its build and the augmentation's trace take seconds), as the
runs of a process are sequential; a run started on it ends the one before."""


class Trainer:
    """Trains one model configuration with a policy and reports validation accuracy.

    Common random numbers: the same seed gives the same initial weights, the same batch order
    and the same augmentation draws per batch, whatever the policy.
    """

    def __init__(self, config: TrainerConfig, base: BaseAugmentConfig,
                 image_shape: tuple[int, int, int], num_classes: int, train_size: int) -> None:
        self.config = config
        self.base = base
        self.image_shape = tuple(image_shape)
        self.num_classes = num_classes
        self.epochs = config.epochs
        self.batch_size = resolve_batch_size(config.batch_size, train_size)
        self.lr = resolve_lr(config.lr, self.batch_size)
        # every image once per epoch: the last batch is completed from the next shuffle
        self.steps_per_epoch = max(math.ceil(train_size / self.batch_size), 1)
        self.placement = resolve_placement(config.placement)
        self.backend = keras.backend.backend()

        self.network = build_model(config.model, self.image_shape, num_classes, seed=0)
        self.augment: PolicyAugmentation | None = None
        if self.placement == "model":
            self.augment = self._augmentation(None, dynamic=True)
            inputs = keras.Input(self.image_shape)
            self.model = keras.Model(inputs, self.network(self.augment(inputs)))
        else:
            self.model = self.network
        total = self.epochs * self.steps_per_epoch
        schedule = WarmupLinearDecay(self.lr, round(config.warmup_epochs * self.steps_per_epoch),
                                     total)
        self.optimizer = keras.optimizers.SGD(
            schedule, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
        self.model.compile(
            optimizer=self.optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config.label_smoothing
            ),
            metrics=["accuracy"],
            jit_compile=self.backend != "tensorflow",
        )
        self.optimizer.build(self.model.trainable_variables)
        self._optimizer_start = [np.array(v) for v in self.optimizer.variables]
        # With TensorFlow and augmentation in tf.data, one pipeline serves every run (built at
        # the first): see ``training.stream``. Other backends fit on a pipeline per run.
        self._stream: BatchStream | None = None
        self.streams = self.placement == "data" and self.backend == "tensorflow"

    def _augmentation(self, policy: Policy | None, dynamic: bool,
                      seed: int | None = None) -> PolicyAugmentation:
        return PolicyAugmentation(policy, dynamic=dynamic, seed=seed,
                                  crop_padding=self.base.crop_padding, flip=self.base.flip)

    # -- one trial -------------------------------------------------------------------------------

    def train(self, policy: Policy, train: Split, val: Split, seed: int,
              on_epoch: EpochCallback | None = None) -> TrainResult:
        """Train from fresh weights (drawn from ``seed``) with ``policy``; validate on ``val``
        every ``validate_every`` epochs and after the last."""
        self._reset(seed)
        if self.augment is not None:
            self.augment.set_policy(policy)
            self.augment.set_seed(seed)
        result = TrainResult()
        streamed = self.placement == "data" or has_tensorflow()
        # Keras pays a fixed cost at every epoch's end; with the batches streamed, one Keras
        # epoch spans every epoch between two validations (the same steps, the same batches)
        span = math.gcd(self.config.validate_every, self.epochs) if streamed else 1
        callback = _EpochHook(result, on_epoch, (val.x, self._onehot(val.y)), self.batch_size,
                              self.config.validate_every, self.epochs, span)
        # the trainer's one pipeline is built (and its augmentation traced) before the clock
        # starts: it serves every run, so no run's seconds carry it
        stream = self._stream_for(train) if self.streams else None
        start = time.perf_counter()
        interrupts.check()
        callbacks = [callback, _StopHook()]
        if stream is not None:
            self._fit_stream(stream.start(self.run_inputs(policy, train, seed)),
                             self.epochs // span, self.steps_per_epoch * span, callback)
        elif streamed:
            self.model.fit(self.batches(policy, train, seed), epochs=self.epochs // span,
                           steps_per_epoch=self.steps_per_epoch * span, callbacks=callbacks,
                           verbose=0)
        else:
            x, y = self._epoch_images(train, seed)
            keras.utils.set_random_seed(seed)
            self.model.fit(x, y, batch_size=self.batch_size, epochs=self.epochs, shuffle=True,
                           callbacks=callbacks, verbose=0)
        result.seconds = time.perf_counter() - start
        if callback.diverged:
            raise TrainingDiverged(f"training loss became {callback.diverged} by epoch "
                                   f"{result.loss_epochs[-1]}")
        return result

    def evaluate(self, split: Split) -> float:
        """Accuracy of the current weights on ``split`` (no augmentation)."""
        out = self.model.evaluate(split.x, self._onehot(split.y), batch_size=self.batch_size,
                                  verbose=0, return_dict=True)
        return float(out["accuracy"])

    # -- internals -------------------------------------------------------------------------------

    def _onehot(self, y: np.ndarray) -> np.ndarray:
        return np.eye(self.num_classes, dtype="float32")[y]

    def _reset(self, seed: int) -> None:
        """Fresh weights drawn from ``seed``, a fresh optimizer state; nothing recompiles."""
        fresh = build_model(self.config.model, self.image_shape, self.num_classes, seed=seed)
        self.network.set_weights(fresh.get_weights())
        for variable, value in zip(self.optimizer.variables, self._optimizer_start):
            variable.assign(value)
        keras.utils.set_random_seed(seed)

    def _epoch_images(self, train: Split, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The images of one epoch in a seeded order (the last batch completed by wrapping)."""
        order = np.random.default_rng(seed).permutation(len(train))
        order = np.resize(order, self.steps_per_epoch * self.batch_size)
        return train.x[order], self._onehot(train.y[order])

    def run_inputs(self, policy: Policy, train: Split, seed: int) -> RunInputs:
        """What a run with ``seed`` trains on (call after ``_reset(seed)``, which sets the
        global seed that the epochs' shuffle pairs with)."""
        x, y = self._epoch_images(train, seed)
        positions = epoch_positions(len(x), self.epochs, self.batch_size, seed)
        layer = self.augment or self._augmentation(None, dynamic=True)
        table = policy.table(layer.max_sub_policies, layer.max_stages)
        return RunInputs(x, y, positions, seed, table)

    def batches(self, policy: Policy, train: Split, seed: int) -> Any:
        """The ``tf.data`` batches of every epoch; with placement ``data``, augmented.

        The order depends on ``seed`` only, whatever the policy (common random numbers). Each
        batch draws its augmentation from (seed, global batch index): the same seed gives the
        same augmented batches, in any order of parallel map calls. A streaming trainer yields
        these very batches from its one pipeline.
        """
        import tensorflow as tf

        run = self.run_inputs(policy, train, seed)
        ds = run_batches(run.x, run.y, run.positions)
        if self.placement == "data":
            layer = self._augmentation(policy, dynamic=False, seed=seed)
            batch, columns = self.batch_size, layer.num_uniforms

            def augment(step: Any, images: Any, labels: Any) -> Any:
                uniforms = draws(seed, step, batch, columns)
                return layer(images, training=True, uniforms=uniforms), labels

            ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = ds.map(lambda step, images, labels: (tf.cast(images, tf.float32), labels))
        return ds.prefetch(tf.data.AUTOTUNE)

    def _stream_for(self, train: Split) -> BatchStream:
        if self._stream is None:
            key = (self.base.crop_padding, self.base.flip, self.batch_size, self.image_shape,
                   self.num_classes, np.dtype(train.x.dtype).str)
            stream = _STREAMS.pop(key, None) or BatchStream(
                self._augmentation(None, dynamic=True), self.batch_size, self.image_shape,
                self.num_classes, train.x.dtype)
            _STREAMS[key] = stream  # the newest last
            while len(_STREAMS) > MAX_SHARED_STREAMS:  # a trainer holding one keeps it alive
                _STREAMS.pop(next(iter(_STREAMS)))
            self._stream = stream
        return self._stream

    def _fit_stream(self, iterator: Any, epochs: int, steps: int, hook: _EpochHook) -> None:
        """``model.fit``'s loop over one long-lived iterator: the same compiled step, the same
        batches; metrics reset per (Keras) epoch, a safe point after every batch."""
        model = self.model
        model.make_train_function()
        model.stop_training = False
        hook.set_model(model)
        for epoch in range(epochs):
            model.reset_metrics()
            for _ in range(steps):
                model.train_function(iterator)
                interrupts.check()
            logs = {name: float(value) for name, value in model.get_metrics_result().items()}
            hook.on_epoch_end(epoch, logs)
            if model.stop_training:
                break


class _StopHook(keras.callbacks.Callback):
    """A safe point after every batch: a recorded SIGTERM/SIGINT stops training there."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        interrupts.check()

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        interrupts.check()


class _EpochHook(keras.callbacks.Callback):
    """Records the loss, validates every ``every`` epochs and after the last, stops on NaN or
    when ``on_epoch`` says so. One Keras epoch is ``span`` training epochs."""

    def __init__(self, result: TrainResult, on_epoch: EpochCallback | None,
                 val: tuple[np.ndarray, np.ndarray], batch_size: int, every: int,
                 epochs: int, span: int = 1) -> None:
        super().__init__()
        self.result = result
        self.on_epoch = on_epoch
        self.val = val
        self.batch_size = batch_size
        self.every = every
        self.epochs = epochs
        self.span = span
        self.diverged: str | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float((logs or {}).get("loss", float("nan")))
        done = (epoch + 1) * self.span
        self.result.train_loss.append(loss)
        self.result.loss_epochs.append(done)
        if not math.isfinite(loss):
            self.diverged = "NaN" if math.isnan(loss) else "infinite"
            self.model.stop_training = True
            return
        if done % self.every and done != self.epochs:
            return
        out = self.model.evaluate(*self.val, batch_size=self.batch_size, verbose=0,
                                  return_dict=True, callbacks=[_StopHook()])
        accuracy = float(out["accuracy"])
        self.result.val_accuracy.append(accuracy)
        self.result.val_epochs.append(done)
        if self.on_epoch is not None and self.on_epoch(done, loss, accuracy):
            self.result.stopped_early = True
            self.model.stop_training = True


def trainer_for(experiment: Any, budget: str, splits: Any) -> Trainer:
    """A compiled ``Trainer`` for the experiment's ``proxy`` or ``target`` budget."""
    config = experiment.budget(budget).trainer
    return Trainer(config, experiment.base_augment, splits.image_shape, len(splits.classes),
                   len(splits.training(budget)))
