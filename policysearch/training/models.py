"""Models by name: ``MODELS`` maps a name to a builder; sizes come from ``ModelConfig``."""

from __future__ import annotations

import functools
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

MIN_SIDE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
"""The smallest input side a ``keras.applications`` model accepts, where it is not 32."""


def applications() -> list[str]:
    """The model constructors ``keras.applications`` offers, by name."""
    return sorted(name for name in dir(keras.applications)
                  if name[:1].isupper() and callable(getattr(keras.applications, name)))


def input_side(config: Any, image_shape: tuple[int, int, int]) -> int:
    """The side the network sees: ``model.input_size``, else the images' own, raised to what a
    ``keras.applications`` model needs."""
    side = int(config.input_size or image_shape[0])
    if config.name in applications():
        side = max(side, MIN_SIDE.get(config.name, 32))
    return side


def resolve(config: Any) -> tuple[str, Builder]:
    """``model.name`` as (kind, builder); one line naming the valid choices when it is none.

    Kinds: ``builtin`` (``cnn``, ``resnet``), ``application`` (a ``keras.applications``
    model, random weights) and ``builder`` (``package.module:function``, called with the image
    shape, the number of classes and a seed, returning an uncompiled ``keras.Model``)."""
    name = config.name
    if name in MODELS:
        return "builtin", MODELS[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            found = getattr(importlib.import_module(module), attr, None)
        except Exception as err:  # whatever importing the user's module raises
            raise ConfigError(f"model.name {name!r}: cannot import {module!r} "
                              f"({type(err).__name__}: {err}); give package.module:function "
                              "on the Python path") from None
        if not callable(found):
            raise ConfigError(f"model.name {name!r}: {module!r} has no function {attr!r}")
        return "builder", found
    apps = applications()
    if name in apps:
        return "application", getattr(keras.applications, name)
    close = [a for a in apps if a.lower().startswith(name.lower()[:5])][:4] if name else []
    raise ConfigError(f"model.name {name!r}: not a model; expected cnn, resnet, a "
                      f"keras.applications model ({len(apps)}: "
                      f"{', '.join(close or ['MobileNetV3Small', 'EfficientNetB0', 'ResNet50V2'])}"
                      ", ...) or package.module:function")


def describe_model(config: Any, image_shape: tuple[int, int, int]) -> str:
    """The model in the first lines: its name, sizes and the side it sees."""
    kind, _ = resolve(config)
    side = input_side(config, image_shape)
    resized = (f"images resized {image_shape[0]}->{side} px" if side != image_shape[0]
               else "")
    if kind == "builtin":
        return (f"{config.name} {'/'.join(map(str, config.widths))}x{config.depth}"
                + (f" ({resized})" if resized else ""))
    what = "your builder"
    if kind == "application":
        weights = getattr(config, "weights", None)
        what = ("keras.applications, " + ("random weights" if not weights else
                                          "imagenet weights" if weights == "imagenet" else
                                          f"weights from {weights}"))
    return f"{config.name} ({what}{', ' + resized if resized else ''})"


@functools.lru_cache(maxsize=4)
def pretrained(name: str, shape: tuple[int, int, int], weights: str) -> list[Any]:
    """A ``keras.applications`` backbone's pretrained weights (``imagenet`` or a .weights.h5
    file), loaded once a process; every seed's network restores them."""
    builder = getattr(keras.applications, name)
    try:
        if weights == "imagenet":
            backbone = builder(include_top=False, weights="imagenet", pooling="avg",
                               input_shape=shape)
        else:
            backbone = builder(include_top=False, weights=None, pooling="avg",
                               input_shape=shape)
            backbone.load_weights(weights)
    except Exception as err:  # a download that failed, a file that is not this backbone's
        raise ConfigError(f"model.weights {weights!r} for {name} on {shape[0]}x{shape[1]}x"
                          f"{shape[2]} images: {type(err).__name__}: {str(err)[:200]}; give "
                          "imagenet (with network access, or the file in ~/.keras/models), a "
                          "backbone's .weights.h5, or null") from None
    return backbone.get_weights()


def preprocessing(builder: Builder) -> Any:
    """The scaling a pretrained application expects of [0, 255] pixels (its module's
    ``preprocess_input``; the identity for models that scale inside)."""
    import sys

    return getattr(sys.modules.get(builder.__module__), "preprocess_input", None)


def build_model(config: Any, image_shape: tuple[int, int, int], num_classes: int,
                seed: int = 0) -> keras.Model:
    """The model ``config`` (a ``ModelConfig``) names, with weights drawn from ``seed``.

    Inputs are float images in [0, 255] of ``image_shape`` whatever the model: a network gets a
    resize layer in front when the side it sees (``input_side``: ``model.input_size``, or what a
    ``keras.applications`` model needs) differs; an application sees the pixels as they are
    (with random weights its own normalisation learns the scale)."""
    kind, builder = resolve(config)
    side = input_side(config, image_shape)
    shape = (side, side, image_shape[2])
    if getattr(config, "weights", None) and kind != "application":
        whose = "ours" if kind == "builtin" else "your builder: load its weights there"
        raise ConfigError(f"model.weights {config.weights!r}: only a keras.applications model "
                          f"takes them ({config.name!r} is {whose}); give null")
    if kind == "builtin":
        if not config.widths or min(config.widths) < 1:
            raise ConfigError(f"model.widths: expected one or more positive widths, got "
                              f"{list(config.widths)}")
        network = builder(shape, num_classes, list(config.widths), config.depth, seed=seed)
    elif kind == "builder":
        keras.utils.set_random_seed(seed)
        network = builder(shape, num_classes, seed)
        if not isinstance(network, keras.Model):
            raise ConfigError(f"model.name {config.name!r}: returned {type(network).__name__}, "
                              "not a keras.Model")
    else:
        keras.utils.set_random_seed(seed)
        try:
            backbone = builder(include_top=False, weights=None, pooling="avg",
                               input_shape=shape)
        except ValueError as err:
            raise ConfigError(f"model.name {config.name!r} on {side}x{side}x{image_shape[2]} "
                              f"images: {err}; set model.input_size") from None
        inputs = keras.Input(shape, name="images")
        x = inputs
        weights = getattr(config, "weights", None)
        if weights:  # the pretrained backbone, the same at every seed; the head from the seed
            backbone.set_weights(pretrained(config.name, shape, weights))
            scale = preprocessing(builder)
            if scale is not None:
                x = layers.Lambda(scale, name="preprocess")(x)
        network = keras.Model(inputs, layers.Dense(num_classes, name="logits")(backbone(x)),
                              name=config.name)
    if shape == tuple(image_shape):
        return network
    # any network sees the side it asks for: a resize layer in front (model.input_size)
    inputs = keras.Input(image_shape, name="images")
    return keras.Model(inputs, network(layers.Resizing(side, side, name="resize")(inputs)),
                       name=network.name)


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


def check_models(experiment: Any, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """Build the proxy's and the target's networks once (a user's builder or a
    ``keras.applications`` model), so a model that cannot be built is refused before anything
    trains, not when the race first trains the target."""
    seen = set()
    for model in (experiment.trainer.model, experiment.target.trainer.model):
        key = (model.name, model.weights)
        if (model.name in MODELS and not model.weights) or key in seen:
            continue
        seen.add(key)
        build_model(model, image_shape, num_classes, seed=0)
