"""Models by name: ``MODELS`` maps a name to a builder; sizes come from ``ModelConfig``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from policysearch.errors import ConfigError


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


def build_resnet(image_shape: tuple[int, int, int], num_classes: int, widths: list[int],
                 depth: int = 1, seed: int = 0) -> keras.Model:
    """A pre-activation residual network for small images (He et al. 2016, "Identity Mappings").

    A 3x3 stem conv to ``widths[0]``, then one stage per width of ``depth`` residual blocks
    (BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut); the first block of every stage but
    the first has stride 2, and a 1x1 projection shortcut where the shape changes. Then BN-ReLU,
    global average pool, linear head. ``widths=[16, 32, 64], depth=3`` is ResNet-20's layout;
    ``[32, 64, 128]`` with ``depth=4`` is close to WRN-28-2.

    Inputs are float images in [0, 255]; weights are drawn from ``seed``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape, name="images")
    x = layers.Rescaling(2.0 / 255.0, offset=-1.0)(inputs)
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem")(x)
    for stage, width in enumerate(widths):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            name = f"s{stage}b{block}"
            pre = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(x)
            pre = layers.ReLU()(pre)
            shortcut = x
            if stride != 1 or x.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False,
                                         name=f"{name}_proj")(pre)
            y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                              name=f"{name}_conv1")(pre)
            y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
            y = layers.ReLU()(y)
            y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
            x = layers.Add(name=f"{name}_add")([shortcut, y])
    x = layers.BatchNormalization(momentum=0.9, name="final_bn")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet")


Builder = Callable[..., keras.Model]
MODELS: dict[str, Builder] = {"cnn": build_cnn, "resnet": build_resnet}
"""Model builders: ``builder(image_shape, num_classes, widths, depth, seed)``."""


def build_model(config: Any, image_shape: tuple[int, int, int], num_classes: int,
                seed: int = 0) -> keras.Model:
    """The model ``config`` (a ``ModelConfig``) names, with weights drawn from ``seed``."""
    if config.name not in MODELS:
        raise ConfigError(f"model.name: unknown model {config.name!r}; expected one of "
                          f"{', '.join(MODELS)}")
    if not config.widths or min(config.widths) < 1:
        raise ConfigError(f"model.widths: expected one or more positive widths, got "
                          f"{list(config.widths)}")
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
