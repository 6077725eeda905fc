"""Policy files: round trips, canonical keys, readable forms, validation, atomic writes, and
``load_policy`` as a Keras layer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from policysearch import (
    Policy,
    autoaugment,
    load_policy,
    no_augment,
    randaugment,
    read_policy,
    trivialaugment,
    write_policy,
)
from policysearch.errors import PolicyFormatError
from policysearch.policy.definition import SCHEMA

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
AA_SUBS = [[("Rotate", 0.7, 12), ("Equalize", 0.3, 0)], [("ShearX", 1.0, 30)]]

POLICIES = {
    "randaugment": randaugment(2, 9),
    "randaugment_subset_std": randaugment(3, 14.5, ops=["Rotate", "Posterize", "Cutout"],
                                          magnitude_std=0.5, fill=0),
    "trivialaugment": trivialaugment(),
    "trivialaugment_subset": trivialaugment(["Identity", "Solarize"]),
    "autoaugment": autoaugment(AA_SUBS),
    "none": no_augment(),
    "randaugment_groups_no_base": replace(
        randaugment(2, 9, op_magnitudes={op: 17 for op in GEOMETRIC} | {"Posterize": 25}),
        base={"flip": False, "crop_padding": 0}),
}


def valid_dict(**changes: object) -> dict:
    data = randaugment(2, 9).to_dict()
    data.update(changes)
    return data


def reject(data: object, field: str) -> str:
    with pytest.raises(PolicyFormatError) as err:
        Policy.from_dict(data, "test.json")
    message = str(err.value)
    assert message.startswith("test.json: ")
    assert f"field '{field}'" in message, message
    return message


# ----------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("name", POLICIES)
def test_round_trip_through_dict_json_and_file(name: str, tmp_path: Path) -> None:
    policy = POLICIES[name].with_source(study="s1", trial=3)
    assert Policy.from_dict(policy.to_dict()) == policy
    assert Policy.from_dict(json.loads(policy.to_json())) == policy

    path = write_policy(policy, tmp_path / "sub" / f"{name}.json")
    assert path == tmp_path / "sub" / f"{name}.json"
    again = read_policy(path)
    assert again == policy
    assert again.to_dict() == policy.to_dict()  # also base and source (excluded from ==)
    assert again.source == {"study": "s1", "trial": 3}
    assert again.key() == policy.key()
    assert repr(again) == repr(policy)
    assert again.label == policy.label


def test_randaugment_fields_survive_the_file(tmp_path: Path) -> None:
    policy = POLICIES["randaugment_subset_std"]
    read = read_policy(write_policy(policy, tmp_path / "p.json"))
    assert read.type == "randaugment"
    assert read.num_ops == 3
    assert read.magnitude == 14.5
    assert read.magnitude_std == 0.5
    assert read.ops == ("Rotate", "Posterize", "Cutout")
    assert read.fill == 0


def test_autoaugment_fields_survive_the_file(tmp_path: Path) -> None:
    read = read_policy(write_policy(POLICIES["autoaugment"], tmp_path / "p.json"))
    assert read.sub_policies == (
        (("Rotate", 0.7, 12.0), ("Equalize", 0.3, 0.0)),
        (("ShearX", 1.0, 30.0),),
    )
    assert read.ops == ("Rotate", "Equalize", "ShearX")
    assert read.num_stages == 2


def test_base_and_source_are_kept_in_the_file(tmp_path: Path) -> None:
    data = no_augment().to_dict()
    data["base"] = {"crop_padding": 4, "flip": True}
    data["source"] = {"dataset": "cifar10", "val_accuracy_mean": 0.5}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    policy = read_policy(path)
    assert policy.base == {"crop_padding": 4, "flip": True}
    assert policy.source == {"dataset": "cifar10", "val_accuracy_mean": 0.5}
    assert read_policy(write_policy(policy, tmp_path / "q.json")).base == policy.base


@pytest.mark.parametrize("name", POLICIES)
def test_json_names_the_schema_version(name: str) -> None:
    data = json.loads(POLICIES[name].to_json())
    assert data["schema"] == SCHEMA == "policysearch.policy/v1"
    assert data["type"] == POLICIES[name].type
    assert data["magnitude_scale"]["bins"] == 31 and data["magnitude_scale"]["max"] == 30


def test_whole_magnitudes_stay_integers_in_json() -> None:
    data = json.loads(randaugment(2, 9).to_json())
    assert data["magnitude"] == 9 and isinstance(data["magnitude"], int)
    assert json.loads(randaugment(2, 9.5).to_json())["magnitude"] == 9.5


# ----------------------------------------------------------------------------------------------
# Keys and readable forms


def test_key_is_equal_for_equal_policies_and_ignores_provenance() -> None:
    a = randaugment(2, 9)
    b = Policy.from_dict(valid_dict(magnitude=9.0, base={"crop_padding": 4},
                                    source={"study": "x"}))
    assert a == b
    assert a.key() == b.key()
    assert a.key() == a.key() == randaugment(2, 9).key()
    assert json.loads(a.key()) == {"type": "randaugment", "num_ops": 2, "magnitude": 9,
                                   "magnitude_std": 0, "ops": sorted(a.ops), "fill": 128}
    # Ops are drawn uniformly: their order in the list does not change the policy's key.
    assert randaugment(2, 9, ["Rotate", "ShearX"]).key() == \
        randaugment(2, 9, ["ShearX", "Rotate"]).key()
    assert a.key() == json.dumps(json.loads(a.key()), sort_keys=True), "keys are sorted"


def test_key_differs_for_different_policies() -> None:
    keys = {p.key() for p in POLICIES.values()}
    keys |= {randaugment(2, 10).key(), randaugment(1, 9).key(), randaugment(2, 9, fill=0).key()}
    assert len(keys) == len(POLICIES) + 3


def test_repr_is_readable() -> None:
    assert repr(randaugment(2, 9)) == "RandAugment(n=2, m=9, ops=[all 14])"
    assert (repr(POLICIES["randaugment_subset_std"])
            == "RandAugment(n=3, m=14.5, mstd=0.5, ops=[Rotate, Posterize, Cutout])")
    assert repr(trivialaugment()) == "TrivialAugment(ops=[all 14])"
    assert repr(POLICIES["trivialaugment_subset"]) == "TrivialAugment(ops=[Identity, Solarize])"
    assert repr(POLICIES["autoaugment"]) == (
        "AutoAugment([Rotate(p=0.7, m=12) + Equalize(p=0.3, m=0); ShearX(p=1, m=30)])")
    assert repr(no_augment()) == "NoAugment()"


def test_labels() -> None:
    assert randaugment(2, 9).label == "RA(N=2,M=9)"
    assert POLICIES["randaugment_subset_std"].label == "RA(N=3,M=14.5,3 ops)"
    assert trivialaugment().label == "TA"
    assert POLICIES["trivialaugment_subset"].label == "TA[2 ops]"
    assert POLICIES["autoaugment"].label == "AA(2x2)"
    assert no_augment().label == "crop+flip"


def test_describe_lists_each_op_in_its_unit() -> None:
    lines = randaugment(2, 15, ops=["Rotate", "Posterize"]).describe()
    assert lines[0].startswith("RandAugment: each image applies 2 op(s) drawn uniformly from 2")
    assert lines[1:] == ["  Rotate ±15.0°", "  Posterize 6 bits"]


# ----------------------------------------------------------------------------------------------
# Validation: every rejection names the field


def test_unknown_op_is_rejected() -> None:
    message = reject(valid_dict(ops=["Rotate", "Blur"]), "ops[1]")
    assert "unknown op 'Blur'" in message


def test_autoaugment_unknown_op_is_rejected() -> None:
    data = autoaugment(AA_SUBS).to_dict()
    data["sub_policies"][1][0][0] = "Warp"
    assert "unknown op 'Warp'" in reject(data, "sub_policies[1][0]")


@pytest.mark.parametrize("value", [31, -1, 30.5, float("nan"), "9", True])
def test_bad_magnitude_is_rejected(value: object) -> None:
    reject(valid_dict(magnitude=value), "magnitude")


def test_magnitude_31_message_gives_the_range() -> None:
    assert "31 is outside 0..30" in reject(valid_dict(magnitude=31), "magnitude")


@pytest.mark.parametrize("value", [5, -1, 2.0, None])
def test_bad_num_ops_is_rejected(value: object) -> None:
    reject(valid_dict(num_ops=value), "num_ops")


def test_num_ops_zero_is_the_documented_lower_bound() -> None:
    """0..4 is the documented range (the search spaces share it); RA with N=0 applies no op."""
    zero = randaugment(0, 9)
    assert Policy.from_dict(zero.to_dict()) == zero
    assert zero.num_stages == 0
    assert zero.table()["prob"].sum() == 0, "no stage applies an op"
    assert randaugment(4, 9).num_stages == 4


def test_wrong_schema_version_is_rejected() -> None:
    message = reject(valid_dict(schema="policysearch.policy/v2"), "schema")
    assert "policysearch.policy/v2" in message and SCHEMA in message
    data = valid_dict()
    del data["schema"]
    assert "missing" in reject(data, "schema")


def test_wrong_type_is_rejected() -> None:
    message = reject(valid_dict(type="mixup"), "type")
    assert "'mixup'" in message and "randaugment" in message


@pytest.mark.parametrize("probability", [1.5, -0.1])
def test_probability_out_of_range_is_rejected(probability: float) -> None:
    data = autoaugment(AA_SUBS).to_dict()
    data["sub_policies"][0][1][1] = probability
    message = reject(data, "sub_policies[0][1] probability")
    assert "outside 0..1" in message
    with pytest.raises(PolicyFormatError, match="probability"):
        autoaugment([[("Rotate", probability, 3)]])


def test_other_malformed_fields_are_rejected() -> None:
    reject(valid_dict(ops=[]), "ops")
    reject(valid_dict(ops=["Rotate", "Rotate"]), "ops")
    reject(valid_dict(fill=256), "fill")
    reject(valid_dict(sub_policies=[]), "sub_policies")  # not a field of randaugment
    reject(valid_dict(magnitude_scale={"bins": 11, "max": 10}), "magnitude_scale")
    reject(valid_dict(base=[4]), "base")
    data = valid_dict()
    del data["magnitude"]
    assert "missing" in reject(data, "magnitude")
    with pytest.raises(PolicyFormatError, match="expected a JSON object"):
        Policy.from_dict([1, 2], "test.json")


def test_empty_file_says_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    with pytest.raises(PolicyFormatError) as err:
        read_policy(path)
    assert str(path) in str(err.value) and "empty" in str(err.value)


def test_truncated_file_says_truncated(tmp_path: Path) -> None:
    text = randaugment(2, 9).to_json()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(PolicyFormatError) as err:
        read_policy(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyFormatError, match="not found"):
        read_policy(tmp_path / "nope.json")


def test_nan_in_the_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(randaugment(2, 9).to_json().replace('"magnitude": 9', '"magnitude": NaN'))
    with pytest.raises(PolicyFormatError, match="field 'magnitude'"):
        read_policy(path)


# ----------------------------------------------------------------------------------------------
# Atomic writes


def test_write_policy_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    write_policy(randaugment(2, 9), path)
    write_policy(trivialaugment(), path)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]
    assert read_policy(path) == trivialaugment()


def test_failed_write_leaves_no_temporary_file_and_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "policy.json"
    (target / "inside").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(OSError):
        write_policy(randaugment(2, 9), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]
    assert (target / "inside").is_dir()


# ----------------------------------------------------------------------------------------------
# load_policy: the file as a Keras layer


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("load_policy checks run under the TensorFlow backend")
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (8, 32, 32, 3)).astype("uint8")


def as_np(x: object) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(x)


def crop_flip_versions(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every zero-padded crop of ``image``, flipped or not."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy:dy + h, dx:dx + w]
            out += [crop, crop[:, ::-1]]
    return out


def test_loaded_layer_passes_through_at_inference_and_augments_in_training(
        tmp_path: Path, images: np.ndarray) -> None:
    path = write_policy(randaugment(2, 15, ops=["Rotate", "Posterize", "Invert"]),
                        tmp_path / "p.json")
    layer = load_policy(path, seed=0)
    assert layer.policy == read_policy(path)
    assert layer.crop_padding == 0 and not layer.flip

    inference = as_np(layer(images, training=False))
    assert inference.dtype == np.float32
    assert np.array_equal(inference, images.astype("float32"))

    train = as_np(layer(images, training=True))
    assert train.shape == images.shape
    assert train.min() >= 0 and train.max() <= 255
    changed = [not np.array_equal(a, b) for a, b in zip(train, images.astype("float32"))]
    assert all(changed), "Rotate, Posterize 15 and Invert change every noise image"


def test_load_policy_base_applies_the_files_crop_and_flip(
        tmp_path: Path, images: np.ndarray) -> None:
    data = no_augment().to_dict()
    data["base"] = {"crop_padding": 4, "flip": True}
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))

    plain = load_policy(path, seed=0)
    assert plain.crop_padding == 0 and not plain.flip
    assert np.array_equal(as_np(plain(images, training=True)), images.astype("float32"))

    layer = load_policy(path, base=True, seed=0)
    assert layer.crop_padding == 4 and layer.flip
    assert np.array_equal(as_np(layer(images, training=False)), images.astype("float32"))
    out = as_np(layer(images, training=True))
    assert not np.array_equal(out, images.astype("float32"))
    for augmented, image in zip(out, images.astype("float32")):
        assert any(np.array_equal(augmented, v) for v in crop_flip_versions(image, 4)), \
            "the base only crops (zero padding) and flips"


def test_none_policy_without_base_leaves_images_unchanged_in_training(
        tmp_path: Path, images: np.ndarray) -> None:
    path = write_policy(no_augment(), tmp_path / "none.json")
    for layer in (load_policy(path, seed=1), load_policy(path, base=True, seed=1)):
        assert layer.crop_padding == 0 and not layer.flip
        out = as_np(layer(images, training=True))
        assert np.array_equal(out, images.astype("float32"))


def test_round_trip_is_exact_for_long_floats(tmp_path: Path) -> None:
    """Optuna proposes 0.7000000000000001 for a 0.1-step range: the JSON form rounds it, and
    the policy in memory must equal the one read back from its file."""
    policy = autoaugment([[("Rotate", 0.1 * 7, 12.123456789)]])
    assert read_policy(write_policy(policy, tmp_path / "p.json")) == policy
    assert policy.sub_policies[0][0][1:] == (0.7, 12.1235)
    ra = randaugment(2, 9.000001, magnitude_std=0.1 + 0.2)
    assert Policy.from_dict(json.loads(ra.to_json())) == ra


def test_binary_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "image.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(PolicyFormatError) as err:
        read_policy(path)
    assert str(path) in str(err.value) and "not a JSON text file" in str(err.value)


# ----------------------------------------------------------------------------------------------
# Malformed files refused in one line (issues 16.14 and 12.9)


def test_devices_and_huge_files_are_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(PolicyFormatError, match="is not a regular file"):
        read_policy("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**valid_dict(), "source": {"note": "x" * (2 << 20)}}))
    with pytest.raises(PolicyFormatError, match="over the 1,048,576-byte limit"):
        read_policy(big)


def test_deeply_nested_json_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PolicyFormatError, match="nested too deeply"):
        read_policy(path)


@pytest.mark.parametrize("text, field", [
    ('"magnitude": 1e400', "magnitude"),
    ('"magnitude": 1' + "0" * 400, "magnitude"),
    ('"magnitude": -1' + "0" * 400, "magnitude"),
    ('"num_ops": 1' + "0" * 400, "num_ops"),
    ('"fill": 1' + "0" * 400, "fill"),
    ('"magnitude": Infinity', "magnitude"),
])
def test_huge_numbers_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    data = valid_dict()
    key = text.split(":")[0].strip('"')
    source = json.dumps(data).replace(f'"{key}": {json.dumps(data[key])}', text)
    assert text in source
    path = tmp_path / "huge.json"
    path.write_text(source)
    with pytest.raises(PolicyFormatError) as err:
        read_policy(path)
    assert f"field '{field}'" in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("base, field", [
    ({"flip": "false"}, "base.flip"),
    ({"flip": 0}, "base.flip"),
    ({"crop_padding": 4.5}, "base.crop_padding"),
    ({"crop_padding": -1}, "base.crop_padding"),
    ({"crop": 4}, "base.crop"),
])
def test_base_must_hold_real_types(base: dict, field: str) -> None:
    reject(valid_dict(base=base), field)


@pytest.mark.parametrize("source, field", [
    ({"image_size": 5}, "source.image_size"),
    ({"image_size": ["32", 32]}, "source.image_size[0]"),
    ({"image_size": [32, 0]}, "source.image_size[1]"),
    ({"val_accuracy_mean": "high"}, "source.val_accuracy_mean"),
    ({"dataset": 7}, "source.dataset"),
    ({"trial": True}, "source.trial"),
    ({"best_baseline": {"name": "x", "val_accuracy_mean": "a", "val_accuracy_std": 0}},
     "source.best_baseline.val_accuracy_mean"),
])
def test_source_fields_that_commands_read_are_typed(source: dict, field: str) -> None:
    reject(valid_dict(source=source), field)


def test_valid_base_and_unknown_source_fields_are_kept() -> None:
    data = valid_dict(base={"crop_padding": 4, "flip": False},
                      source={"image_size": [32, 32], "custom": {"anything": [1, "a"]}})
    policy = Policy.from_dict(data)
    assert policy.base == {"crop_padding": 4, "flip": False}
    assert policy.source["custom"] == {"anything": [1, "a"]}


# ----------------------------------------------------------------------------------------------
# The layer: per-policy flip, single images, saving


def test_crop_only_policy_turns_the_layers_flip_off(images: np.ndarray) -> None:
    from policysearch.policy.definition import crop_only
    from policysearch.policy.layer import PolicyAugmentation

    x = images.astype("float32")
    layer = PolicyAugmentation(crop_only(), flip=True, seed=0)
    assert np.array_equal(as_np(layer(images, training=True)), x), "no flip, no crop"
    dynamic = PolicyAugmentation(no_augment(), dynamic=True, flip=True, seed=0)
    flipped = as_np(dynamic(images, training=True))
    assert any(np.array_equal(o, i[:, ::-1]) for o, i in zip(flipped, x)), "crop+flip flips"
    dynamic.set_policy(crop_only())  # switched by a weight, no retrace
    assert np.array_equal(as_np(dynamic(images, training=True)), x)


def test_layer_accepts_a_single_unbatched_image(images: np.ndarray) -> None:
    import tensorflow as tf

    from policysearch.policy.layer import PolicyAugmentation

    layer = PolicyAugmentation(randaugment(2, 9), crop_padding=2, flip=True, seed=0)
    one = as_np(layer(images[0], training=True))
    assert one.shape == images[0].shape
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: layer(image, training=True)).batch(4)
    assert [tuple(b.shape) for b in dataset] == [(4, 32, 32, 3), (4, 32, 32, 3)]


def test_saved_model_with_the_layer_reloads_without_custom_objects(tmp_path: Path,
                                                                  images: np.ndarray) -> None:
    import subprocess
    import sys

    import keras

    from policysearch.policy.layer import PolicyAugmentation

    inputs = keras.Input((32, 32, 3))
    layer = PolicyAugmentation(randaugment(2, 9).with_source(dataset="d"), crop_padding=4,
                               flip=True, seed=3)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(layer(inputs))))
    path = tmp_path / "model.keras"
    model.save(path)
    code = ("import keras, policysearch.policy.layer;"
            f"m = keras.saving.load_model({str(path)!r});"
            "l = m.layers[1]; print(type(l).__name__, l.policy.label, l.crop_padding, l.flip)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["PolicyAugmentation", "RA(N=2,M=9)", "4", "True"]


# ----------------------------------------------------------------------------------------------
# Per-op magnitudes and a base that the policy turns off


def test_per_op_magnitudes_are_data_of_the_file(tmp_path: Path) -> None:
    policy = POLICIES["randaugment_groups_no_base"]
    data = json.loads(policy.to_json())
    assert data["schema"] == SCHEMA  # still v1: the field is optional
    assert data["op_magnitudes"] == {"ShearX": 17, "ShearY": 17, "TranslateX": 17,
                                     "TranslateY": 17, "Rotate": 17, "Posterize": 25}
    assert data["base"] == {"flip": False, "crop_padding": 0}
    again = read_policy(write_policy(policy, tmp_path / "p.json"))
    assert again == policy and again.magnitude_of("Rotate") == 17
    assert again.magnitude_of("Color") == 9 and not again.flips and not again.crops
    assert again.label == "RA(N=2,M=geometric 17/colour 9 (Posterize 25)) no crop/flip"
    assert repr(again).endswith("ops=[all 14]) no crop/flip")
    assert "  Rotate ±17.0°" in again.describe() and "  Posterize 5 bits" in again.describe()
    assert again.describe()[-1] == "base augmentation: no crop/flip (the policy turns it off)"


def test_per_op_magnitudes_have_one_canonical_form() -> None:
    """Equal magnitudes say one thing one way: a policy equal to a baseline is that baseline."""
    from policysearch.policy.baselines import same_baseline

    scaled = [op for op in randaugment().ops
              if op not in ("Identity", "AutoContrast", "Equalize")]
    everywhere_nine = randaugment(2, 4, op_magnitudes={op: 9 for op in scaled})
    assert everywhere_nine == randaugment(2, 9) and not everywhere_nine.op_magnitudes
    assert same_baseline(everywhere_nine, ["crop_flip", "randaugment_n2_m9"]) == (
        "randaugment_n2_m9", "RA(N=2,M=9)")
    assert randaugment(2, 9, op_magnitudes={"Rotate": 9}).to_dict() == randaugment(2, 9).to_dict()
    # every op overridden: the policy's own magnitude no longer matters to the key
    a = randaugment(2, 3, op_magnitudes={op: 5 + (op == "Rotate") for op in scaled})
    b = randaugment(2, 5, op_magnitudes={"Rotate": 6})
    assert a.key() == b.key()
    assert randaugment(2, 9, op_magnitudes={"Rotate": 10}).key() != randaugment(2, 9).key()
    flip_off = replace(randaugment(2, 9), base={"flip": False})
    assert same_baseline(flip_off, ["randaugment_n2_m9"]) == (None, "")
    assert same_baseline(replace(no_augment(), base={"flip": False, "crop_padding": 4}),
                         ["crop_flip", "crop_only"])[0] == "crop_only"
    assert replace(no_augment(), base={"crop_padding": 0}).label == "flip only"


@pytest.mark.parametrize("value, message", [
    ({"Nope": 3}, "field 'op_magnitudes.Nope': unknown op 'Nope'"),
    ({"Cutout": 3}, "field 'op_magnitudes.Cutout': Cutout is not in the policy's ops"),
    ({"Equalize": 3}, "field 'op_magnitudes.Equalize': Equalize takes no magnitude"),
    ({"Rotate": 31}, "field 'op_magnitudes.Rotate': 31 is outside 0..30"),
    ({"Rotate": "high"}, "field 'op_magnitudes.Rotate': expected a number"),
    ([14], "field 'op_magnitudes': expected an object of op name to magnitude"),
])
def test_bad_per_op_magnitudes_are_named(value: object, message: str) -> None:
    assert message in reject(valid_dict(op_magnitudes=value), message.split("'")[1])
    with pytest.raises(PolicyFormatError, match="not a field of a trivialaugment policy"):
        Policy.from_dict({**trivialaugment().to_dict(), "op_magnitudes": {"Rotate": 3}})


def test_an_exported_file_records_the_base_the_policy_trained_with() -> None:
    assert randaugment().trained_base(4, True) == {"crop_padding": 4, "flip": True}
    off = replace(randaugment(), base={"flip": False, "crop_padding": 0})
    assert off.trained_base(4, True) == {"crop_padding": 0, "flip": False}
    assert replace(randaugment(), base={"flip": False}).trained_base(4, False) == {
        "crop_padding": 4, "flip": False}
