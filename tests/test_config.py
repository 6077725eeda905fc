"""Experiment configs: the shipped files load, smoke and command-line overrides apply, and every
malformed value is refused with the file and the dotted key named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from policysearch.config.experiment import EXPERIMENTS_DIR, Experiment, load_experiment
from policysearch.errors import ConfigError
from policysearch.policy.baselines import BASELINES
from policysearch.study.spaces import load_space

SHIPPED = ("cifar10", "cifar10-reduced", "cifar10-64px")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_experiments_load(name: str) -> None:
    exp = load_experiment(name, calibrated=False)  # the file as written (no calibrate pick)
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


@pytest.mark.parametrize("path", sorted(EXPERIMENTS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_file_loads_as_written_and_with_its_smoke(path: Path) -> None:
    for smoke in (False, True):
        exp = load_experiment(str(path), smoke=smoke, calibrated=False)
        assert exp.name == path.stem and exp.source == str(path)
        assert exp.target.train_size is None or exp.target.train_size >= exp.data.train_size


def test_the_64px_experiment_decodes_at_64_and_asks_only_for_side_2() -> None:
    exp = load_experiment("cifar10-64px", calibrated=False)
    assert exp.data.image_size == 64
    assert exp.base_augment.crop_padding == 8, "auto padding scales with the side (4 at 32 px)"
    assert exp.calibrate.ladder == ["side/2"]
    assert exp.target.trainer.model.name == "cnn" and exp.target.trainer.model.input_size is None


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
    assert flat["search.space"] == "randaugment_groups"
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


# ----------------------------------------------------------------------------------------------
# Finite numbers, bounded files, the dataset's own path (issues 16 and 12)


@pytest.mark.parametrize("text, key, needle", [
    ("trainer:\n  lr: .nan\n", "trainer.lr", "finite"),
    ("trainer:\n  momentum: .nan\n", "trainer.momentum", "finite"),
    ("trainer:\n  warmup_epochs: .inf\n", "trainer.warmup_epochs", "finite"),
    ("trainer:\n  weight_decay: -.inf\n", "trainer.weight_decay", "finite"),
    ("trainer:\n  lr: 1e400\n", "trainer.lr", "finite"),
    ("search:\n  timeout_minutes: .inf\n", "search.timeout_minutes", "finite"),
    ("trainer:\n  model:\n    widths: [0, -5]\n", "trainer.model.widths[0]", "below the minimum 1"),
    ("trainer:\n  model:\n    widths: []\n", "trainer.model.widths", "at least 1"),
    ("trainer:\n  epochs: 100000000000000000000000\n", "trainer.epochs", "above the maximum"),
    ("base_augment:\n  crop_padding: big\n", "base_augment.crop_padding", "integer or auto"),
    ("base_augment:\n  crop_padding: -1\n", "base_augment.crop_padding", "below the minimum"),
    ("base_augment:\n  flip: 'false'\n", "base_augment.flip", "expected true or false"),
    ("data:\n  image_size: 0\n", "data.image_size", "below the minimum 8"),
])
def test_non_finite_and_out_of_range_numbers_are_refused_at_load(
        tmp_path: Path, text: str, key: str, needle: str) -> None:
    refused(write(tmp_path, text), key, needle)


def test_override_under_a_scalar_section_names_the_key(tmp_path: Path) -> None:
    """``trainer: 5`` with ``--epochs 1``: one line, not a TypeError."""
    refused(write(tmp_path, "trainer: 5\n"), "trainer", "expected a mapping",
            overrides={"trainer.epochs": 1})


@pytest.mark.parametrize("text, needle", [
    ("a: &a [x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
               for p, n in zip("abcdefgh", "bcdefghi"))
     + "smoke: {search: {baselines: *i}}\n", "expands to more than"),
    ("smoke: &s {x: *s}\n", "expands to more than"),
    ("smoke: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
])
def test_yaml_that_expands_without_bound_is_refused(tmp_path: Path, text: str,
                                                   needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_experiment(str(path))
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)


def test_files_that_are_no_config_are_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="over the 1,048,576-byte limit"):
        load_experiment(str(big))
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_experiment("/dev/zero")
    with pytest.raises(ConfigError, match="is a directory"):
        load_experiment(str(tmp_path))
    binary = tmp_path / "x.yaml"
    binary.write_bytes(b"\xff\xfe\x00bin")
    with pytest.raises(ConfigError, match="not a YAML text file"):
        load_experiment(str(binary))


@pytest.mark.parametrize("name", ["mydata", "foo.tar.gz"])
def test_relative_dataset_path_is_the_dataset_not_an_experiment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """README's ``--dataset mydata`` from the folder that holds it."""
    from conftest import tar_folder, write_image_folder

    folder = write_image_folder(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    if name.endswith(".tar.gz"):
        tar_folder(folder, tmp_path / name)
    else:
        folder.rename(tmp_path / name)
    exp = load_experiment(dataset=name)
    assert exp.source == "defaults" and exp.dataset == name
    assert exp.base_augment.crop_padding == 2, "auto: 16 px images / 8"


def test_crop_padding_auto_follows_the_image_size(tmp_path: Path) -> None:
    from conftest import write_image_folder

    from policysearch.config.auto import resolve_crop_padding

    assert [resolve_crop_padding("auto", s) for s in (8, 16, 32, 64, 224)] == [1, 2, 4, 8, 28]
    assert resolve_crop_padding(3, 224) == 3
    digits = write_image_folder(tmp_path / "digits", size=8)
    assert load_experiment(dataset=str(digits)).base_augment.crop_padding == 1
    assert load_experiment(dataset=str(digits), overrides={"data.image_size": 64}) \
        .base_augment.crop_padding == 8
    fixed = load_experiment(dataset=str(digits), overrides={"base_augment.crop_padding": 0,
                                                            "base_augment.flip": False})
    assert fixed.base_augment.crop_padding == 0 and fixed.base_augment.flip is False
    assert load_experiment("cifar10").base_augment.crop_padding == 4
    assert load_experiment(dataset="cifar10").base_augment.crop_padding == 4


def test_the_shipped_cifar10_search_trains_the_calibrated_proxy() -> None:
    # results/cifar10-calibration.yaml (make calibrate EXPERIMENT=cifar10) picked images/2: the
    # search trains it in place of the file's 250 x 40 while the file's target is the one measured
    pick = yaml.safe_load((EXPERIMENTS_DIR / "results" / "cifar10-calibration.yaml").read_text())
    exp = load_experiment("cifar10")
    assert exp.data.train_size == pick["proxy"]["data"]["train_size"] == 500
    assert exp.trainer.epochs == pick["proxy"]["trainer"]["epochs"] == exp.target.trainer.epochs
    # its first line (the cost of a rung timed on another machine than the target is null)
    from policysearch.config.calibration import calibration_path, proxy_note

    note = proxy_note(exp.to_dict(), calibration_path("cifar10"), exp.source)
    assert "rung images/2, Spearman +0.95, confirmed +0.95" in note and "nan" not in note
