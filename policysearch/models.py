"""Models by name: ``MODELS`` maps a name to a builder; sizes come from ``ModelConfig``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers


def build_cnn(image_shape: tuple[int, int, int], num_classes: int, widths: list[int],
              depth: int = 1, seed: int = 0) -> keras.Model:
    """Conv-BN-ReLU stages (``depth`` 3x3 convs, then a 2x2 max-pool), global
    average pool, linear head.

    Inputs are float images in [0, 255]; weights are drawn from ``seed``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape, name="images")
    x = layers.Rescaling(2.0 / 255.0, offset=-1.0)(inputs)
    for stage, width in enumerate(widths):
        for conv in range(depth):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                              name=f"conv{stage}_{conv}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{stage}_{conv}")(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D(name=f"pool{stage}")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="proxy_cnn")


Builder = Callable[..., keras.Model]
MODELS: dict[str, Builder] = {"cnn": build_cnn}
"""Model builders: ``builder(image_shape, num_classes, widths, depth, seed)``."""


def build_model(config: Any, image_shape: tuple[int, int, int], num_classes: int,
                seed: int = 0) -> keras.Model:
    """The model ``config`` (a ``ModelConfig``) names, with weights drawn from ``seed``."""
    return MODELS[config.name](image_shape, num_classes, list(config.widths), config.depth,
                               seed=seed)


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def __init__(self, peak: float, warmup: int, total: int) -> None:
        self.peak = float(peak)
        self.warmup = max(int(warmup), 1)
        self.total = max(int(total), self.warmup + 1)

    def __call__(self, step: Any) -> Any:
        step = keras.ops.cast(step, "float32")
        up = step / self.warmup
        down = (self.total - step) / (self.total - self.warmup)
        return self.peak * keras.ops.clip(keras.ops.minimum(up, down), 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}
