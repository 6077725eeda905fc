"""The trainer's contract: common random numbers, validation only where asked, any budget.

Two evaluations at the same seed start from identical weights and see identical batches,
whatever their policies; that is what makes every comparison of the search a paired one.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from policysearch.config.experiment import BaseAugmentConfig, ModelConfig, TrainerConfig
from policysearch.data.splits import Split
from policysearch.policy.definition import no_augment, randaugment
from policysearch.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(data_dir: Path) -> tuple[Split, Split]:
    from policysearch.data.datasets import load_part

    part = load_part("cifar10", "train", data_dir)  # sorted by class: take every 625th image
    return Split(part.x[::1250], part.y[::1250]), Split(part.x[625::1562], part.y[625::1562])


def trainer(lr: float = 0.05, epochs: int = 2, validate_every: int = 1) -> Trainer:
    config = TrainerConfig(epochs=epochs, batch_size=16, lr=lr, warmup_epochs=0,
                           validate_every=validate_every, placement="data",
                           model=ModelConfig(widths=[8, 16], depth=1))
    return Trainer(config, BaseAugmentConfig(crop_padding=2, flip=True), (32, 32, 3), 10, 40)


def labels(pairs) -> list[int]:
    return [int(i) for _, y in pairs for i in np.argmax(y.numpy(), axis=1)]


def test_same_seed_same_weights_and_batches_whatever_the_policy(data) -> None:
    train, val = data
    t = trainer(lr=0.0)  # no learning: the weights after training are the initial weights
    weak, strong = no_augment(), randaugment(2, 14)
    def weights() -> list[np.ndarray]:  # trainable ones (BN statistics follow the images)
        return [np.array(w) for w in t.network.trainable_weights]

    t.train(weak, train, val, seed=7)
    first = weights()
    t.train(strong, train, val, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, weights()))
    t.train(weak, train, val, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(first, weights()))
    # every image once per epoch (40 images, batches of 16: the third batch wraps around)
    assert t.steps_per_epoch == 3

    def batches(policy, seed: int) -> tuple[list[int], np.ndarray]:
        keras.utils.set_random_seed(seed)  # as ``train`` does before building them
        pairs = list(t.batches(policy, train, seed))
        return labels(pairs), np.concatenate([x.numpy() for x, _ in pairs])

    (labels_a, images_a), (labels_b, images_b) = batches(weak, 7), batches(strong, 7)
    assert labels_a == labels_b, "the same batch order for every policy at one seed"
    assert labels_a != batches(weak, 8)[0]
    assert not np.array_equal(images_a, images_b), "the policies differ in what they do"
    assert np.array_equal(images_b, batches(strong, 7)[1]), "and each is reproducible"


def test_same_seed_same_result(data) -> None:
    train, val = data
    t = trainer()
    one = t.train(randaugment(1, 9), train, val, seed=3)
    two = t.train(randaugment(1, 9), train, val, seed=3)
    assert one.train_loss == pytest.approx(two.train_loss, rel=1e-5)
    assert one.val_accuracy == two.val_accuracy


def test_validation_only_every_k_epochs_and_at_the_end(data) -> None:
    train, val = data
    seen: list[int] = []
    result = trainer(epochs=5, validate_every=2).train(
        no_augment(), train, val, seed=1, on_epoch=lambda e, loss, acc: seen.append(e) and False)
    assert result.val_epochs == seen == [2, 4, 5], "epochs counted from 1, the last always"
    assert len(result.train_loss) == 5


def test_spanning_epochs_between_validations_trains_the_same_steps(data) -> None:
    # one Keras epoch per validation interval (fewer epoch-end costs) is the same training
    train, val = data
    every_epoch = trainer(epochs=4, validate_every=1).train(randaugment(1, 9), train, val, seed=5)
    spanned = trainer(epochs=4, validate_every=2).train(randaugment(1, 9), train, val, seed=5)
    assert spanned.loss_epochs == spanned.val_epochs == [2, 4]
    assert every_epoch.loss_epochs == [1, 2, 3, 4]
    assert spanned.val_accuracy == [every_epoch.val_accuracy[1], every_epoch.val_accuracy[3]]
    assert spanned.train_loss[1] == pytest.approx(np.mean(every_epoch.train_loss[2:]), rel=1e-4)


def test_one_pipeline_serves_every_run_with_each_runs_own_batches(data) -> None:
    # A TensorFlow trainer keeps one tf.data iterator for all its runs (training.stream): it
    # yields exactly the batches of a pipeline built for the run alone, whatever ran before,
    # a run stopped early (its batches in flight are dropped) or a failed one included.
    train, val = data
    t = trainer(epochs=3)
    assert t.streams
    strong, other = randaugment(2, 14), randaugment(1, 20, ops=["Rotate", "Solarize"])

    def streamed(policy, seed: int) -> tuple[list[int], np.ndarray]:
        t._reset(seed)
        iterator = t._stream_for(train).start(t.run_inputs(policy, train, seed))
        pairs = [next(iterator) for _ in range(t.epochs * t.steps_per_epoch)]
        return labels(pairs), np.concatenate([x.numpy() for x, _ in pairs])

    def alone(policy, seed: int) -> tuple[list[int], np.ndarray]:
        keras.utils.set_random_seed(seed)
        pairs = list(t.batches(policy, train, seed))
        return labels(pairs), np.concatenate([x.numpy() for x, _ in pairs])

    for policy, seed in ((strong, 7), (no_augment(), 7), (other, 8)):
        got, want = streamed(policy, seed), alone(policy, seed)
        assert got[0] == want[0] and np.array_equal(got[1], want[1]), (policy, seed)

    fresh = trainer(epochs=3).train(other, train, val, seed=4)
    stopped = t.train(strong, train, val, seed=3, on_epoch=lambda e, loss, acc: True)
    assert stopped.stopped_early and stopped.val_epochs == [1]
    t._reset(5)
    t._stream_for(train).start(t.run_inputs(strong, train, 5))  # started, never consumed
    after = t.train(other, train, val, seed=4)
    assert after.train_loss == fresh.train_loss and after.val_accuracy == fresh.val_accuracy
