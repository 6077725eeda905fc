"""The example training scripts: they train on a class-stratified sample, find the data where
the Makefile does, and reach above-chance accuracy on held-out images (issue 23)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "policies" / "randaugment_subset.json"


def example(name: str) -> ModuleType:
    """An example script as a module (torch and TensorFlow are imported only in its main)."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def above_chance(accuracy: float, classes: int, images: int) -> bool:
    """``accuracy`` on ``images`` held-out images is over chance by three binomial standard
    errors (a model that guesses gets there about once in 700 runs)."""
    chance = 1 / classes
    return accuracy > chance + 3 * math.sqrt(chance * (1 - chance) / images)


@pytest.mark.parametrize("name", ["train_with_policy", "train_pytorch"])
def test_examples_sample_every_class_in_proportion(name: str) -> None:
    labels = np.repeat(np.arange(10), 500)  # sorted by class, as the CIFAR-10 archive lists it
    picks = example(name).sample(labels, 200)
    assert len(picks) == len(set(picks.tolist())) == 200
    assert np.bincount(labels[picks], minlength=10).tolist() == [20] * 10
    assert not np.array_equal(picks, np.arange(200)), "not the first N"
    assert np.array_equal(picks, example(name).sample(labels, 200)), "seeded"


@pytest.mark.parametrize("name", ["train_with_policy", "train_pytorch"])
def test_examples_find_the_data_as_the_makefile_does(name: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = example(name)
    monkeypatch.setenv("POLICYSEARCH_DATA_DIR", str(tmp_path))
    assert module.default_data_dir() == str(tmp_path)
    monkeypatch.delenv("POLICYSEARCH_DATA_DIR")
    shared = ROOT.parent / "shared" / "data"
    expected = str(shared) if (shared / "cifar10-images.tar.gz").is_file() else None
    assert module.default_data_dir() == expected


@pytest.mark.parametrize("placement", ["data", "model"])
def test_keras_example_beats_chance(placement: str, data_dir: Path) -> None:
    """The shipped example policy (RA N=1 M=11 over 8 ops, crop and flip) on 1,024 images."""
    accuracy = example("train_with_policy").main(
        [str(POLICY), "--placement", placement, "--epochs", "3", "--images", "1024",
         "--test-images", "2000", "--data-dir", str(data_dir)])
    assert above_chance(accuracy, 10, 2000), accuracy


def test_keras_example_trains_a_keras_applications_model(data_dir: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """The same policy file in front of MobileNetV3Small (random weights), in the train step."""
    accuracy = example("train_with_policy").main(
        [str(POLICY), "--placement", "model", "--model", "MobileNetV3Small", "--epochs", "1",
         "--images", "128", "--test-images", "100", "--data-dir", str(data_dir)])
    out = capsys.readouterr().out
    assert "model: MobileNetV3Small" in out and "policy: RandAugment(n=1, m=11" in out
    assert 0.0 <= accuracy <= 1.0 and "test accuracy" in out
