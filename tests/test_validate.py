"""Validation's entries: the stock policies as the user ran them and with the flip off."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REQUIRE

from policysearch.config.experiment import load_experiment
from policysearch.evidence.validate import FLIP_OFF, entries, flip_off, validate
from policysearch.policy.baselines import BASELINES
from policysearch.policy.definition import randaugment, trivialaugment

ALL = ["crop_flip", "crop_only", "randaugment_n2_m9", "trivialaugment"]


def experiment(tmp_path: Path, dataset: str = "cifar10", flip: bool = True,
               variants: bool = True, **sections: dict):
    import yaml

    config = {"name": "v", "dataset": dataset, "base_augment": {"crop_padding": 2, "flip": flip},
              "search": {"baselines": ALL}, "validate": {"seeds": 2, "flip_variants": variants}}
    for key, values in sections.items():
        config[key] = {**config.get(key, {}), **values}
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_experiment(str(path))


def test_each_augmentation_is_trained_once(tmp_path: Path) -> None:
    exp = experiment(tmp_path)
    trained, same = entries(randaugment(1, 5), exp)
    roles = [role for role, _, _ in trained]
    assert roles == ["policy", *ALL, "randaugment_n2_m9" + FLIP_OFF, "trivialaugment" + FLIP_OFF]
    assert len({p.key() for _, _, p in trained}) == len(trained)
    # crop+flip without its flip is crop only: named, not trained twice
    assert same == [{"role": "crop_flip" + FLIP_OFF, "label": "crop only", "as": "crop_only"}]
    labels = dict((role, label) for role, label, _ in trained)
    assert labels["trivialaugment" + FLIP_OFF] == "TA no flip"
    variant = dict((r, p) for r, _, p in trained)["trivialaugment" + FLIP_OFF]
    assert not variant.flips and variant.crops and variant.type == "trivialaugment"

    # the exported policy is TrivialAugment with the flip off: that variant is the policy
    exported = flip_off(trivialaugment()).with_source(study="s")
    trained, same = entries(exported, exp)
    assert "trivialaugment" + FLIP_OFF not in [role for role, _, _ in trained]
    assert {"role": "trivialaugment" + FLIP_OFF, "label": "TA no flip", "as": "policy"} in same
    # ... and a policy equal to a stock one is trained once, as the policy (as before)
    trained, same = entries(BASELINES["trivialaugment"], exp)
    assert "trivialaugment" not in [role for role, _, _ in trained]


def test_no_variants_unless_asked_or_when_the_flip_is_already_off(tmp_path: Path) -> None:
    for exp in (experiment(tmp_path, variants=False), experiment(tmp_path, flip=False)):
        trained, same = entries(randaugment(1, 5), exp)
        assert [role for role, _, _ in trained] == ["policy", *ALL] and same == []
    assert load_experiment().validate.flip_variants is False  # cifar10's cost is unchanged


def test_flip_variants_on_real_digits_are_paired_by_seed(data_dir: Path, tmp_path: Path) -> None:
    archive = data_dir / "mnist-images.tar.gz"
    if not archive.is_file():
        (pytest.fail if REQUIRE else pytest.skip)(f"{archive} not found")
    exp = experiment(tmp_path, str(archive),
                     data={"train_size": 30, "val_size": 30, "selection_size": 30},
                     search={"baselines": ["crop_flip", "crop_only", "trivialaugment"]},
                     target={"train_size": 60, "trainer": {"epochs": 1, "batch_size": 32,
                                                           "model": {"widths": [8, 16]}}})
    result = validate(randaugment(1, 5), exp, seeds=2, log=lambda _: None,
                      tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    rows = result["rows"]
    roles = {"policy", "crop_flip", "crop_only", "trivialaugment", "trivialaugment" + FLIP_OFF}
    assert {r["role"] for r in rows} == roles
    for role in roles:  # every entry at the same seeds
        assert sorted(r["seed"] for r in rows if r["role"] == role) == [20000, 20001]
    assert len({(r["key"], r["seed"]) for r in rows}) == len(rows) == 10  # none trained twice
    assert result["same"] == [{"role": "crop_flip" + FLIP_OFF, "label": "crop only",
                               "as": "crop_only"}]
    assert result["test_size"] == 2000
    gains = {s["role"]: s for s in result["summary"]}
    variant = gains["trivialaugment" + FLIP_OFF]
    assert variant["label"] == "TA no flip" and variant["n"] == 2
    assert variant["gain_lower"] <= variant["gain"] and 0.0 <= variant["p_value"] <= 1.0
    off = [r for r in rows if r["role"] == "trivialaugment" + FLIP_OFF]
    assert all(r["policy"]["base"] == {"flip": False} for r in off)
