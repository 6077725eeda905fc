"""`show --epochs` numbers: closed forms, and the real layer agrees with them."""

from __future__ import annotations

import numpy as np
import pytest

from policysearch import autoaugment, no_augment, randaugment, trivialaugment
from policysearch.policy.explain import explain, unchanged_probability, variant_count


def test_closed_forms() -> None:
    # RandAugment: both draws must be Identity; 14 ops -> 1/196.
    assert unchanged_probability(randaugment(2, 9)) == pytest.approx(1 / 196)
    # Magnitude 0 makes every geometric and enhance op neutral.
    assert unchanged_probability(randaugment(2, 0, ["Rotate", "Brightness"])) == 1.0
    # AutoAugment: an op skipped by its probability leaves the image unchanged.
    aa = autoaugment([[("Rotate", 0.4, 10), ("Equalize", 0.5, 0)]])
    assert unchanged_probability(aa) == pytest.approx(0.6 * 0.5)
    assert unchanged_probability(no_augment()) == 1.0
    # TrivialAugment over [Identity, Equalize]: half the draws are Identity.
    assert unchanged_probability(trivialaugment(["Identity", "Equalize"])) == pytest.approx(0.5)
    # Variants: Identity 1 + Rotate at M=9 with two signs.
    assert variant_count(randaugment(1, 9, ["Identity", "Rotate"])) == 3
    e = explain(randaugment(1, 9, ["Identity", "Rotate"]), epochs=10)
    assert e.expected_unchanged_epochs == pytest.approx(10 / 2)
    assert e.never_unchanged == pytest.approx(0.5 ** 10)
    assert e.lines()[-1].startswith("Assumptions:")


def test_layer_agrees_with_the_unchanged_probability(cifar_images: np.ndarray) -> None:
    from policysearch.policy.layer import PolicyAugmentation

    policy = randaugment(1, 9, ["Identity", "Rotate", "Brightness"])
    layer = PolicyAugmentation(policy, seed=3)
    batch = np.repeat(cifar_images[:1], 3000, axis=0)
    out = np.asarray(layer(batch, training=True))
    unchanged = np.mean(np.all(out.reshape(len(out), -1) == batch.reshape(len(batch), -1),
                               axis=1))
    expected = unchanged_probability(policy)
    assert expected == pytest.approx(1 / 3)
    assert abs(unchanged - expected) < 0.04, unchanged  # 4.5 binomial std. deviations
