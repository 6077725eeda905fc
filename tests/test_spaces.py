"""Search spaces: every shipped space samples valid policies with a real Optuna study, parameter
names never change between trials, malformed spaces are refused with the file and key named."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
import pytest

from policysearch.augment.ops import MAX_LEVEL, OPS, RANDAUGMENT_OPS, takes_magnitude
from policysearch.errors import ConfigError
from policysearch.policy.baselines import BASELINES
from policysearch.policy.definition import (
    Policy,
    no_augment,
    randaugment,
    read_policy,
    trivialaugment,
    write_policy,
)
from policysearch.study.spaces import SPACES_DIR, available_spaces, load_space

SHIPPED = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample_policies(space_name: str, sampler: optuna.samplers.BaseSampler,
                    n: int = 20) -> tuple[list[Policy], list[set[str]]]:
    space = load_space(space_name)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                direction="maximize")
    policies, names = [], []
    for i in range(n):
        trial = study.ask()
        policy = space.sample(trial)
        policies.append(policy)
        names.append(set(trial.params))
        study.tell(trial, float(i % 7) / 7)  # any objective; TPE needs values to model
    return policies, names


def test_shipped_spaces_are_listed() -> None:
    assert available_spaces() == SHIPPED
    assert {"randaugment", "randaugment_subset", "trivialaugment_subset",
            "autoaugment"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_space_loads(name: str) -> None:
    space = load_space(name)
    assert space.name == name
    assert space.path == str(SPACES_DIR / f"{name}.yaml")
    assert space.type in ("randaugment", "trivialaugment", "autoaugment")
    assert space.description
    assert any(d.searched for d in space.fields.values())
    summary = space.summary()
    assert summary["name"] == name and summary["type"] == space.type


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_sampled_policies_are_valid_and_within_the_space(name: str, sampler: str) -> None:
    space = load_space(name)
    make = {"random": lambda: optuna.samplers.RandomSampler(seed=3),
            "tpe": lambda: optuna.samplers.TPESampler(seed=3, n_startup_trials=5)}[sampler]
    policies, _ = sample_policies(name, make())
    assert len(policies) == 20
    for policy in policies:
        assert policy.type == space.type
        assert Policy.from_dict(policy.to_dict()) == policy
        assert Policy.from_dict(policy.to_dict()).key() == policy.key()
        f = space.fields
        if policy.type in ("randaugment", "trivialaugment"):
            ops = f["ops"]
            allowed = ops.value if ops.kind == "fixed" else ops.choices
            assert set(policy.ops) <= set(allowed)
            if ops.kind == "subset":
                assert len(policy.ops) >= ops.min_size
        if policy.type == "randaugment":
            assert 0 <= policy.magnitude <= MAX_LEVEL
            assert f["num_ops"].low <= policy.num_ops <= f["num_ops"].high
            for op in filter(takes_magnitude, policy.ops):  # its group's, else `magnitude`
                group = f["groups"].value.get(OPS[op].group)
                dist = group.magnitude if group and group.magnitude else f["magnitude"]
                m = policy.magnitude_of(op)
                assert (m == dist.value if dist.kind == "fixed" else dist.low <= m <= dist.high)
                assert float(m).is_integer(), "int distribution"
            assert policy.magnitude_std == f["magnitude_std"].value
        if policy.type == "autoaugment":
            assert len(policy.sub_policies) == f["sub_policies"].value
            for sub in policy.sub_policies:
                assert len(sub) == f["steps"].value
                for op, p, m in sub:
                    assert op in f["op"].choices
                    assert 0 <= p <= 1 and 0 <= m <= MAX_LEVEL
    if space.fields.get("ops") is not None and space.fields["ops"].kind == "subset":
        assert len({p.ops for p in policies}) > 1, "the op subset is searched"


@pytest.mark.parametrize("name", SHIPPED)
def test_parameter_names_are_fixed_across_trials(name: str) -> None:
    """Multivariate TPE models parameters jointly only when every trial has the same ones:
    no parameter may be sampled independently ("sampled independently" warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("error", message=".*sampled independently.*")
        sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=5)
        _, names = sample_policies(name, sampler)
    assert all(n == names[0] for n in names), "same parameter names in every trial"
    assert names[0], "the space searches something"


def test_parameter_names_of_the_op_subset_space() -> None:
    _, names = sample_policies("randaugment_subset", optuna.samplers.RandomSampler(seed=0), 2)
    assert names[0] == {"num_ops", "magnitude"} | {f"op_{op}" for op in RANDAUGMENT_OPS}


def test_too_few_ops_are_completed_to_min_size() -> None:
    """A trial that switches every op off still gets min_size ops (in table order)."""
    space = load_space("randaugment_subset")
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    params = {f"op_{op}": False for op in RANDAUGMENT_OPS} | {"num_ops": 2, "magnitude": 9}
    study.enqueue_trial(params)
    policy = space.sample(study.ask())
    assert policy.ops == RANDAUGMENT_OPS[:2]


# ----------------------------------------------------------------------------------------------
# Malformed spaces


def write_space(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path: Path | str, *needles: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    message = str(err.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_unknown_op_names_file_and_key(tmp_path: Path) -> None:
    path = write_space(tmp_path, "type: randaugment\nops: [Rotate, Blur]\n")
    refused(path, "key 'ops'", "unknown op 'Blur'")
    path = write_space(tmp_path, "type: autoaugment\nop: {choice: [Rotate, Warp]}\n", "aa.yaml")
    refused(path, "key 'op'", "unknown op 'Warp'")


@pytest.mark.parametrize("text, key", [
    ("num_ops: {normal: [1, 3]}", "num_ops"),
    ("num_ops: {int: [1, 3], float: [1, 3]}", "num_ops"),
    ("num_ops: {int: [3, 1]}", "num_ops"),
    ("num_ops: {int: [1, 9]}", "num_ops"),
    ("num_ops: {float: [1, 3]}", "num_ops"),
    ("num_ops: {int: [1, 3], step: 0.5}", "num_ops"),
    ("num_ops: {int: [1, 4], step: 2, log: true}", "num_ops"),
    ("magnitude: {int: [0, 31]}", "magnitude"),
    ("magnitude: {float: [0, 30], log: true}", "magnitude"),
    ("magnitude: {float: [1, 30], step: 1, log: true}", "magnitude"),
    ("magnitude: {float: [0, 30], step: -1}", "magnitude"),
    ("magnitude: {float: [0, 30], bins: 31}", "magnitude"),
    ("magnitude: {choice: [1, 2]}", "magnitude"),
    ("magnitude: {}", "magnitude"),
    ("magnitude: nine", "magnitude"),
    ("magnitude_std: 31", "magnitude_std"),
    ("ops: {choice: all}", "ops"),
    ("ops: {int: [0, 3]}", "ops"),
    ("epochs: 3", "epochs"),
])
def test_bad_distribution_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write_space(tmp_path, f"type: randaugment\n{text}\n")
    refused(path, f"key '{key}'")


def test_every_accepted_distribution_samples(tmp_path: Path) -> None:
    """What the loader accepts, Optuna can sample (no error deferred to the search)."""
    path = write_space(tmp_path, "type: randaugment\n"
                       "num_ops: {int: [1, 4], step: 1, log: true}\n"
                       "magnitude: {float: [1, 30], log: true}\n"
                       "magnitude_std: {float: [0, 2], step: 0.5}\n"
                       "ops: {subset: [Rotate, ShearX, Cutout, Invert], min_size: 1}\n")
    space = load_space(str(path))
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        policy = space.sample(study.ask())
        assert 1 <= policy.num_ops <= 4 and 1 <= policy.magnitude <= 30
        assert policy.magnitude_std in (0, 0.5, 1, 1.5, 2)
        assert set(policy.ops) <= {"Rotate", "ShearX", "Cutout", "Invert"}


def test_min_size_too_large_names_file_and_key(tmp_path: Path) -> None:
    path = write_space(tmp_path, "type: trivialaugment\n"
                       "ops: {subset: [Rotate, ShearX], min_size: 3}\n")
    refused(path, "key 'ops'", "min_size", "1..2", "3")


def test_autoaugment_shape_must_be_fixed(tmp_path: Path) -> None:
    path = write_space(tmp_path, "type: autoaugment\nsub_policies: {int: [1, 5]}\n")
    refused(path, "key 'sub_policies'", "fixed")
    path = write_space(tmp_path, "type: autoaugment\nsteps: 5\n", "steps.yaml")
    refused(path, "key 'steps'")


def test_bad_type_names_file_and_key(tmp_path: Path) -> None:
    refused(write_space(tmp_path, "type: mixup\n"), "key 'type'", "'mixup'")
    refused(write_space(tmp_path, "- a list\n", "list.yaml"), "mapping")


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write_space(tmp_path, "type: randaugment\nops: [Rotate, ShearX\nnum_ops: 2\n")
    refused(path, "not valid YAML", "line")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    refused(tmp_path / "missing.yaml", "no file")
    with pytest.raises(ConfigError) as err:
        load_space("no_such_space")
    assert "no_such_space" in str(err.value)
    assert "randaugment_subset" in str(err.value), "lists the shipped spaces"


# ----------------------------------------------------------------------------------------------
# Baselines


def test_baselines() -> None:
    assert set(BASELINES) == {"crop_flip", "crop_only", "randaugment_n2_m9", "trivialaugment"}
    assert BASELINES["crop_flip"] == no_augment()
    assert BASELINES["crop_flip"].type == "none"
    ra = BASELINES["randaugment_n2_m9"]
    assert ra == randaugment(2, 9)
    assert (ra.num_ops, ra.magnitude, ra.magnitude_std) == (2, 9, 0)
    assert ra.ops == RANDAUGMENT_OPS and len(ra.ops) == 14
    ta = BASELINES["trivialaugment"]
    assert ta == trivialaugment() and ta.ops == RANDAUGMENT_OPS
    assert [b.label for b in BASELINES.values()] == ["crop+flip", "crop only", "RA(N=2,M=9)",
                                                     "TA"]
    only = BASELINES["crop_only"]
    assert only.type == "none" and only.base == {"flip": False} and not only.flips
    assert only.key() != BASELINES["crop_flip"].key(), "no flip is another augmentation"
    assert only.table()["flip"] == 0 and BASELINES["crop_flip"].table()["flip"] == 1


# ----------------------------------------------------------------------------------------------
# Non-finite numbers and files that are no space (issue 16)


@pytest.mark.parametrize("text, key", [
    ("magnitude: {float: [.nan, 30]}", "magnitude"),
    ("magnitude: {float: [0, .nan]}", "magnitude"),
    ("magnitude: {float: [0, .inf]}", "magnitude"),
    ("magnitude: {float: [0, 30], step: .nan}", "magnitude"),
    ("magnitude: {float: [0, 30], step: .inf}", "magnitude"),
    ("magnitude: .nan", "magnitude"),
    ("magnitude_std: .nan", "magnitude_std"),
    ("magnitude: {int: [0, 1" + "0" * 400 + "]}", "magnitude"),
])
def test_nan_and_infinite_ranges_are_refused(tmp_path: Path, text: str, key: str) -> None:
    path = write_space(tmp_path, f"type: randaugment\n{text}\n")
    refused(path, f"key '{key}'")


def test_a_directory_or_device_is_no_space(tmp_path: Path) -> None:
    refused(tmp_path, "is a directory")
    refused("/dev/zero", "is not a regular file")


def test_a_space_that_expands_without_bound_is_refused(tmp_path: Path) -> None:
    text = ("type: randaugment\nx0: &a0 [Rotate, Rotate, Rotate, Rotate, Rotate, Rotate]\n"
            + "".join(f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
                      f"*a{i - 1}]\n" for i in range(1, 9))
            + "ops: *a8\n")
    refused(write_space(tmp_path, text), "expands to more than")


# ----------------------------------------------------------------------------------------------
# Op groups, each with its magnitude, and the base flip and crop (issue 21)

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
COLOUR = ("Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast",
          "Equalize")


def groups_trial(**changes: object) -> Policy:
    """The randaugment_groups space's policy for one real Optuna trial with these params."""
    params = {f"op_{op}": True for op in RANDAUGMENT_OPS} | {
        "num_ops": 2, "group_geometric": True, "magnitude_geometric": 14, "group_colour": True,
        "magnitude_colour": 5, "flip": True, "crop_padding": "experiment"} | changes
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.enqueue_trial(params)
    trial = study.ask()
    policy = load_space("randaugment_groups").sample(trial)
    assert set(trial.params) == set(params), "every parameter is asked in every trial"
    return policy


def test_parameter_names_of_the_groups_space() -> None:
    _, names = sample_policies("randaugment_groups", optuna.samplers.RandomSampler(seed=0), 2)
    assert names[0] == {"num_ops", "group_geometric", "magnitude_geometric", "group_colour",
                        "magnitude_colour", "flip", "crop_padding"} | {
                            f"op_{op}" for op in RANDAUGMENT_OPS}


def test_each_group_magnitude_lands_on_its_ops(tmp_path: Path) -> None:
    policy = groups_trial()
    assert policy.ops == RANDAUGMENT_OPS and policy.flips and policy.crops
    assert {op: policy.magnitude_of(op) for op in GEOMETRIC + COLOUR[:6]} == (
        {op: 14 for op in GEOMETRIC} | {op: 5 for op in COLOUR[:6]})
    assert policy.label == "RA(N=2,M=geometric 14/colour 5)"
    again = read_policy(write_policy(policy, tmp_path / "p.json"))
    assert again == policy and again.key() == policy.key()
    # in the file: the magnitude most ops use (colour's 5, six ops), the others op by op
    assert again.to_dict()["magnitude"] == 5
    assert again.to_dict()["op_magnitudes"] == {op: 14 for op in GEOMETRIC}


def test_a_group_off_drops_its_ops_and_an_op_off_drops_itself() -> None:
    policy = groups_trial(group_geometric=False, op_Solarize=False)
    assert policy.ops == ("Identity",) + tuple(op for op in COLOUR if op != "Solarize")
    assert policy.magnitude == 5 and not policy.op_magnitudes  # one magnitude left: canonical


def test_flip_and_crop_off_turn_the_base_off() -> None:
    policy = groups_trial(flip=False, crop_padding=0)
    assert policy.base == {"flip": False, "crop_padding": 0}
    table = policy.table()
    assert table["flip"] == 0 and table["crop"] == 0
    assert policy.trained_base(4, True) == {"crop_padding": 0, "flip": False}
    assert groups_trial(flip=False).base == {"flip": False}
    assert groups_trial().base == {}


def test_a_search_that_lands_on_a_baseline_names_it() -> None:
    from policysearch.policy.baselines import same_baseline

    policy = groups_trial(magnitude_geometric=9, magnitude_colour=9)
    assert same_baseline(policy, BASELINES) == ("randaugment_n2_m9", "RA(N=2,M=9)")


def test_too_few_ops_fall_back_deterministically() -> None:
    """Groups that leave too few ops are ignored (the op switches decide); then table order."""
    off = {f"op_{op}": False for op in RANDAUGMENT_OPS}
    both_off = {"group_geometric": False, "group_colour": False}
    assert groups_trial(**both_off).ops == RANDAUGMENT_OPS
    assert groups_trial(**both_off | {"op_Identity": False, "op_Color": False}).ops == tuple(
        op for op in RANDAUGMENT_OPS if op not in ("Identity", "Color"))
    assert groups_trial(**off | {"op_Rotate": True, "op_Color": True, "group_geometric": False,
                                 "op_Identity": True}).ops == ("Identity", "Color")
    assert groups_trial(**off | {"op_Rotate": True, "group_geometric": False}).ops == (
        "Identity", "Rotate")
    assert groups_trial(**off).ops == ("Identity", "ShearX")


@pytest.mark.parametrize("text, key, needle", [
    ("groups: {shape: {}}", "groups.shape", "unknown group"),
    ("groups: [geometric]", "groups", "expected a mapping"),
    ("groups: {geometric: {switch: maybe}}", "groups.geometric.switch", "true or false"),
    ("groups: {geometric: {magnitude: 31}}", "groups.geometric.magnitude", "outside"),
    ("groups: {geometric: {magnitude: {choice: [1, 2]}}}", "groups.geometric.magnitude",
     "int or float"),
    ("groups: {geometric: {weight: 2}}", "groups.geometric", "expected {switch"),
    ("groups: {occlusion: {}}", "groups.occlusion", "no op of this group"),
    ("ops: [Rotate, Invert]\ngroups: {inversion: {magnitude: 3}}", "groups.inversion.magnitude",
     "take no magnitude"),
    ("flip: maybe", "flip", "true and false"),
    ("flip: {choice: [true, true]}", "flip", "distinct"),
    ("crop_padding: 4", "crop_padding", "keep the experiment's crop or turn it off"),
    ("crop_padding: {choice: [0, 4]}", "crop_padding", "0 and experiment"),
    ("crop_padding: {choice: []}", "crop_padding", "expected a value"),
])
def test_bad_groups_and_base_choices_name_file_and_key(tmp_path: Path, text: str, key: str,
                                                       needle: str) -> None:
    message = refused(write_space(tmp_path, f"type: randaugment\n{text}\n"), f"key '{key}'",
                      needle)
    assert "\n" not in message


def test_groups_are_randaugment_only_but_every_type_may_turn_the_base_off(
        tmp_path: Path) -> None:
    refused(write_space(tmp_path, "type: trivialaugment\ngroups: {geometric: {}}\n"),
            "key 'groups'", "not a field of a trivialaugment space")
    path = write_space(tmp_path, "type: trivialaugment\nflip: false\n", "ta.yaml")
    space = load_space(str(path))
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    assert space.sample(study.ask()).base == {"flip": False}


def test_random_search_proposes_the_same_policies_whoever_draws_them(tmp_path: Path) -> None:
    """The k-th searched proposal depends on the study's seed and k alone: two workers that
    take turns, a worker that dies and a resumed process (fresh samplers, one storage) propose
    what one process alone proposes, and a retried trial is the same proposal."""
    from policysearch.config.samplers import DRAW, SAMPLERS

    space = load_space("randaugment_groups")
    alone, _ = sample_policies("randaugment_groups", SAMPLERS["random"](7), 6)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    workers = [optuna.load_study(study_name="s", storage=storage, sampler=SAMPLERS["random"](7))
               for _ in range(2)]
    got = []
    for i in range(4):  # two workers take turns
        trial = workers[i % 2].ask()
        got.append(space.sample(trial).to_dict())
        workers[i % 2].tell(trial, 0.5)
    dying = workers[0].ask()  # a trial whose worker dies before it sampled: retried, same draw
    workers[0].tell(dying, state=optuna.trial.TrialState.FAIL)
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=SAMPLERS["random"](7))
    draw = storage.get_trial(dying._trial_id).user_attrs[DRAW]
    resumed.enqueue_trial({}, user_attrs={DRAW: draw})
    for _ in range(2):
        trial = resumed.ask()
        got.append(space.sample(trial).to_dict())
        resumed.tell(trial, 0.5)
    assert got == [p.to_dict() for p in alone]
    seeds = {json.dumps(p.to_dict(), sort_keys=True) for p in alone}
    assert len(seeds) == 6  # the draws differ from each other
