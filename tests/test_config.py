"""Experiment configs: the shipped files load, smoke and command-line overrides apply, and every
malformed value is refused with the file and the dotted key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policysearch.config import EXPERIMENTS_DIR, Experiment, load_experiment
from policysearch.errors import ConfigError
from policysearch.spaces import BASELINES, load_space

SHIPPED = ("cifar10", "cifar10-reduced")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiments_load(name: str) -> None:
    exp = load_experiment(name)
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert exp.source == str(path)
    assert exp.name == name and exp.dataset == "cifar10"
    assert exp.data.train_size == raw["data"]["train_size"]
    assert exp.data.val_size == raw["data"]["val_size"]
    assert exp.trainer.epochs == raw["trainer"]["epochs"]
    assert exp.trainer.model.widths == raw["trainer"]["model"]["widths"]
    assert exp.search.trials == raw["search"]["trials"]
    assert isinstance(exp.trainer.lr, float) and isinstance(exp.trainer.warmup_epochs, float)
    assert exp.target.train_size == raw["target"]["train_size"] >= exp.data.train_size
    assert exp.target.trainer.model == exp.trainer.model, "the target inherits the proxy's keys"
    assert exp.data.selection_size == raw["data"]["selection_size"]
    assert set(exp.search.baselines) <= set(BASELINES)
    load_space(exp.search.space)  # the named space exists
    assert exp.smoke == raw["smoke"]


def test_reduced_experiment_follows_the_autoaugment_protocol() -> None:
    exp = load_experiment("cifar10-reduced")
    assert exp.data.train_size == 4000
    assert exp.target_budget.trainer.epochs > exp.proxy_budget.trainer.epochs


@pytest.mark.parametrize("name", SHIPPED)
def test_smoke_overrides_apply(name: str) -> None:
    full = load_experiment(name)
    smoke = load_experiment(name, smoke=True)
    raw = yaml.safe_load((EXPERIMENTS_DIR / f"{name}.yaml").read_text())["smoke"]
    assert smoke.data.train_size == raw["data"]["train_size"] < full.data.train_size
    assert smoke.data.val_size == raw["data"]["val_size"]
    assert smoke.trainer.epochs == raw["trainer"]["epochs"] <= 2
    assert smoke.trainer.batch_size == raw["trainer"]["batch_size"]
    assert smoke.search.trials == raw["search"]["trials"] < full.search.trials
    assert smoke.race.top_k == raw["race"]["top_k"]
    assert smoke.target.trainer.epochs == raw["target"]["trainer"]["epochs"]
    assert smoke.validate.seeds == raw["validate"]["seeds"]
    # what the smoke section leaves alone stays as in the file
    assert smoke.trainer.lr == full.trainer.lr
    assert smoke.trainer.model == full.trainer.model
    assert smoke.search.space == full.search.space
    assert smoke.data.split_seed == full.data.split_seed


def test_overrides_apply_after_smoke() -> None:
    exp = load_experiment("cifar10", smoke=True, overrides={
        "trainer.epochs": 3,
        "search.trials": 7,
        "search.sampler": "random",
        "data.data_dir": "/somewhere",
        "trainer.model.widths": [8, 16],
        "data.val_size": None,  # None: not given on the command line
    })
    assert exp.trainer.epochs == 3 and exp.search.trials == 7
    assert exp.search.sampler == "random"
    assert exp.data.data_dir == "/somewhere"
    assert exp.trainer.model.widths == [8, 16]
    assert exp.data.val_size == 200, "the smoke value stays"


def test_dataset_argument_picks_the_experiment_file_or_defaults(tmp_path: Path) -> None:
    assert load_experiment(dataset="cifar10").source == str(EXPERIMENTS_DIR / "cifar10.yaml")
    other = load_experiment(dataset=str(tmp_path / "flowers"))
    assert other.source == "defaults"
    assert other.dataset == str(tmp_path / "flowers")
    assert other.to_dict() == {**Experiment().to_dict(), "dataset": str(tmp_path / "flowers")}


def test_target_inherits_the_proxy_trainer_and_overrides_its_own_keys(tmp_path: Path) -> None:
    exp = load_experiment(str(write(tmp_path, "trainer:\n  epochs: 10\n  lr: 0.3\n"
                                              "target:\n  train_size: 500\n"
                                              "  trainer: {epochs: 40}\n")))
    assert exp.proxy_budget.trainer.epochs == 10 and exp.target_budget.trainer.epochs == 40
    assert exp.target_budget.trainer.lr == 0.3 and exp.target_budget.train_size == 500


@pytest.mark.parametrize("text, key", [
    ("race:\n  min_seeds: 1\n", "race.min_seeds"),  # a paired interval needs 2 seeds
    ("race:\n  min_seeds: 4\n  max_seeds: 3\n", "race.max_seeds"),
    ("validate:\n  seeds: 1\n", "validate.seeds"),
    ("race:\n  top_k: 0\n", "race.top_k"),
])
def test_evidence_needs_seeds(tmp_path: Path, text: str, key: str) -> None:
    refused(write(tmp_path, text), key)


def test_flat_gives_dotted_keys() -> None:
    flat = load_experiment("cifar10").flat()
    assert flat["trainer.model.widths"] == [16, 32, 64]
    assert flat["search.space"] == "randaugment_subset"
    assert not any(key.startswith("smoke") for key in flat)


# ----------------------------------------------------------------------------------------------
# Malformed files


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def refused(path: Path, key: str, *needles: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as err:
        load_experiment(str(path), **kwargs)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert f"key '{key}'" in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    refused(write(tmp_path, "trainer:\n  epoch: 3\n"), "trainer.epoch", "unknown key", "epochs")
    refused(write(tmp_path, "colour: red\n"), "colour", "unknown key")
    refused(write(tmp_path, "trainer:\n  model:\n    deep: 3\n"), "trainer.model.deep")


@pytest.mark.parametrize("text, key, needle", [
    ("trainer:\n  epochs: two\n", "trainer.epochs", "expected an integer"),
    ("trainer:\n  epochs: 2.5\n", "trainer.epochs", "expected an integer"),
    ("trainer:\n  lr: fast\n", "trainer.lr", "expected a number"),
    ("base_augment:\n  flip: 1\n", "base_augment.flip", "expected true or false"),
    ("search:\n  baselines: crop_flip\n", "search.baselines", "expected a list"),
    ("trainer:\n  model:\n    widths: [16, x]\n", "trainer.model.widths[1]", "integer"),
    ("trainer: 5\n", "trainer", "expected a mapping"),
    ("name: 3\n", "name", "expected a string"),
    ("dataset:\n", "dataset", "must not be empty"),
])
def test_wrong_type_names_file_and_key(tmp_path: Path, text: str, key: str,
                                       needle: str) -> None:
    refused(write(tmp_path, text), key, needle)


@pytest.mark.parametrize("text, key, needle", [
    ("trainer:\n  epochs: 0\n", "trainer.epochs", "below the minimum 1"),
    ("trainer:\n  momentum: 1.5\n", "trainer.momentum", "above the maximum 1.0"),
    ("data:\n  val_size: -5\n", "data.val_size", "-5"),
    ("search:\n  sampler: grid\n", "search.sampler", "expected one of tpe"),
    ("trainer:\n  placement: gpu\n", "trainer.placement", "'gpu'"),
])
def test_value_out_of_range_names_file_and_key(tmp_path: Path, text: str, key: str,
                                               needle: str) -> None:
    refused(write(tmp_path, text), key, needle)


def test_bad_smoke_section_is_checked_when_applied(tmp_path: Path) -> None:
    path = write(tmp_path, "smoke:\n  trainer: {epochs: 0}\n")
    assert load_experiment(str(path)).trainer.epochs == 8
    refused(path, "trainer.epochs", "below the minimum", smoke=True)
    path = write(tmp_path, "smoke: [1]\n")
    refused(path, "smoke", "mapping", smoke=True)


def test_bad_override_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "name: ok\n")
    refused(path, "trainer.epochs", "expected an integer", overrides={"trainer.epochs": "x"})
    refused(path, "trainer.epoch", "unknown key", overrides={"trainer.epoch": 3})


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\ntrainer: {epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(str(path))
    assert str(path) in str(err.value) and "not valid YAML at line" in str(err.value)
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_experiment(str(path))


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    exp = load_experiment(str(write(tmp_path, "")))
    assert exp.to_dict()["trainer"] == Experiment().to_dict()["trainer"]


def test_missing_experiment_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_experiment("no-such-experiment")
    message = str(err.value)
    assert "'no-such-experiment'" in message
    assert str(EXPERIMENTS_DIR / "no-such-experiment.yaml") in message
    with pytest.raises(ConfigError, match="no file"):
        load_experiment(str(tmp_path / "gone.yaml"))


def test_exponent_numbers_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; a float field takes it as the number it is.
    exp = load_experiment(str(write(tmp_path, "trainer: {lr: 1e-3, weight_decay: 5e-4}\n")))
    assert exp.trainer.lr == pytest.approx(0.001)
    assert exp.trainer.weight_decay == pytest.approx(0.0005)


def test_unknown_baseline_is_named(tmp_path: Path) -> None:
    refused(write(tmp_path, "search: {baselines: [crop_flip, autoaugment_v0]}\n"),
            "search.baselines", "autoaugment_v0")
