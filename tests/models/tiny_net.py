"""A user's own model builder, as ``model.name: models.tiny_net:build`` names it."""

from __future__ import annotations

import keras
from keras import layers


def build(image_shape: tuple[int, int, int], num_classes: int, seed: int) -> keras.Model:
    """A small conv net; uncompiled, weights drawn from ``seed``."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes)(x), name="tiny_net")


def not_a_model(image_shape: tuple[int, int, int], num_classes: int, seed: int) -> str:
    return "a string"


def diverging(image_shape: tuple[int, int, int], num_classes: int, seed: int) -> keras.Model:
    """A network whose logits overflow float32 at once: its training loss is NaN."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape)
    x = layers.GlobalAveragePooling2D()(layers.Rescaling(1.0)(inputs))
    x = layers.Dense(num_classes)(x)
    return keras.Model(inputs, layers.Rescaling(1e30)(layers.Rescaling(1e30)(x)))
