"""The model registry: every model builds, trains a step on real images, and draws its
weights from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from policysearch.config.experiment import ModelConfig
from policysearch.errors import ConfigError
from policysearch.training.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_trains_one_step_and_seed_fixes_weights(name: str,
                                                      cifar_images: np.ndarray) -> None:
    import keras

    config = ModelConfig(name=name, widths=[8, 16], depth=2)
    model = build_model(config, (32, 32, 3), 10, seed=3)
    same = build_model(config, (32, 32, 3), 10, seed=3)
    other = build_model(config, (32, 32, 3), 10, seed=4)
    for a, b in zip(model.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))

    x = cifar_images[:16].astype("float32")  # 0..255, as the trainer feeds it
    y = keras.utils.to_categorical(np.arange(16) % 10, 10)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    logs = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (16, 10)


def test_resnet_layout_stages_and_downsampling() -> None:
    model = build_model(ModelConfig(name="resnet", widths=[8, 16, 32], depth=2), (32, 32, 3), 10)
    adds = [layer for layer in model.layers if layer.name.endswith("_add")]
    assert len(adds) == 3 * 2  # depth residual blocks per stage
    assert [tuple(a.output.shape[1:]) for a in adds[::2]] == [(32, 32, 8), (16, 16, 16),
                                                              (8, 8, 32)]


def test_bad_widths_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.widths"):
        build_model(ModelConfig(name="resnet", widths=[], depth=1), (32, 32, 3), 10)
