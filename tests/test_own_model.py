"""The user's own network as the target (and the proxy): a ``keras.applications`` model by name
and a builder by import path (``tests/models/tiny_net.py``), real training at a tiny size,
through the command line as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_EXPERIMENT, write_image_folder

ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               MLFLOW_TRACKING_URI=f"sqlite:///{cwd}/mlflow.db",
               POLICYSEARCH_CACHE_DIR=str(cwd / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def experiment(tmp: Path, data: Path, proxy: str, target: str, **extra: dict) -> Path:
    config = {**TINY_EXPERIMENT, "dataset": str(data), "name": "own"}
    config["trainer"] = {**TINY_EXPERIMENT["trainer"], "model": {"name": proxy}}
    config["target"] = {"train_size": 36, "trainer": {"epochs": 1, "model": {"name": target}}}
    config["search"] = {**TINY_EXPERIMENT["search"], "trials": 1, "learning_check": "off",
                        "baselines": ["crop_flip", "trivialaugment"]}
    config.update(extra)
    path = tmp / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 96-pixel images, as a user's own data would come."""
    return write_image_folder(tmp_path_factory.mktemp("own") / "data96", classes=3,
                              per_class=24, size=96, test_per_class=4)


NAMES = {"MobileNetV3Small": "MobileNetV3Small (keras.applications, random weights)",
         "models.tiny_net:build": "models.tiny_net:build (your builder)"}


@pytest.mark.parametrize(("proxy", "target", "side"),
                         [("models.tiny_net:build", "MobileNetV3Small", 96),
                          ("MobileNetV3Small", "models.tiny_net:build", 32)])
def test_an_application_and_a_builder_search_and_validate_in_either_role(
        tmp_path: Path, large: Path, proxy: str, target: str, side: int) -> None:
    """Each kind of network serves as the proxy of a smoke search and as the target that
    ``validate`` trains, with no size flags (on 96-pixel images, and on 32-pixel ones, the
    smallest MobileNetV3Small takes, where it is the proxy that every trial trains)."""
    data = large if side == 96 else write_image_folder(tmp_path / "data32", classes=3,
                                                       per_class=24, size=32, test_per_class=4)
    # the race on the cheaper network: the application trains only what its role needs
    cheap = "proxy" if proxy == "models.tiny_net:build" else "target"
    path = experiment(tmp_path, data, proxy, target,
                      race={**TINY_EXPERIMENT["race"], "budget": cheap})
    proc = run(tmp_path, "search", "--experiment", str(path), "--storage",
               f"sqlite:///{tmp_path}/optuna.db", "--export", str(tmp_path / "own.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    budgets = next(line for line in proc.stdout.splitlines()
                   if line.startswith("target (what the policy is for)"))
    # no size flags: the first lines state the decode size and each network in its role
    target_part, proxy_part = budgets.split("; proxy (scores each trial)")
    assert NAMES[target] in target_part and NAMES[proxy] in proxy_part, budgets
    assert f"images decoded at {side}x{side}x3" in budgets
    # and what a trial of that network on those images costs, measured from the first trial on
    first = next(line for line in proc.stdout.splitlines() if " 1/" in line and " trial " in line)
    assert re.search(r"\| \d+\.\d s a trial \(median\) \|", first), first
    policy = json.loads((tmp_path / "own.json").read_text())
    assert policy["source"]["target"]["model"] == target
    # the exported policy, validated at the target: the user's network, not ours
    checked = run(tmp_path, "validate", "own.json", "--seeds", "2")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "test accuracy on 12 test images" in checked.stdout


def test_fidelity_measures_a_cnn_proxy_against_a_users_target(tmp_path: Path) -> None:
    """The small CNN as the proxy, the user's builder as the target: fidelity says whether the
    one ranks policies as the other does."""
    data = write_image_folder(tmp_path / "data", classes=3, per_class=24, size=16,
                              test_per_class=2)
    path = experiment(tmp_path, data, "cnn", "models.tiny_net:build",
                      fidelity={"seeds": 2, "panel": ["crop_flip", "RA(1,5)", "TA"]})
    out = tmp_path / "own-fidelity.md"
    proc = run(tmp_path, "fidelity", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Spearman" in out.read_text()
    saved = (tmp_path / "own-fidelity.json").read_text()
    assert "models.tiny_net:build" in saved and '"cnn"' in saved  # both networks, recorded


@pytest.mark.parametrize(("name", "needle"), [
    ("MobileNet9", "model.name 'MobileNet9': not a model; expected cnn, resnet, a "
                   "keras.applications model"),
    ("nowhere.models:build", "cannot import 'nowhere.models'"),
    ("models.tiny_net:missing", "'models.tiny_net' has no function 'missing'"),
    ("models.tiny_net:not_a_model", "returned str, not a keras.Model"),
])
def test_a_bad_model_is_one_line_before_anything_trains(tmp_path: Path, name: str,
                                                        needle: str) -> None:
    data = write_image_folder(tmp_path / "data", classes=3, per_class=24, size=16,
                              test_per_class=2)
    path = experiment(tmp_path, data, "cnn", name)
    proc = run(tmp_path, "search", "--experiment", str(path), "--storage",
               f"sqlite:///{tmp_path}/optuna.db")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "crop_flip" not in proc.stdout, "refused before any trial"


def test_model_input_size_resizes_for_every_kind_of_network() -> None:
    """``model.input_size`` is the side the network sees, for our CNN as for an application or
    a builder: a resize layer in front, said in the first lines; unset, nothing changes."""
    from policysearch.config.experiment import ModelConfig
    from policysearch.training.models import build_model, describe_model

    for config in (ModelConfig(input_size=16), ModelConfig(name="models.tiny_net:build",
                                                           input_size=16)):
        model = build_model(config, (32, 32, 3), 10, seed=1)
        assert model.get_layer("resize").output.shape[1:3] == (16, 16)
        assert "images resized 32->16 px" in describe_model(config, (32, 32, 3))
    plain = build_model(ModelConfig(), (32, 32, 3), 10, seed=1)
    assert "resize" not in [layer.name for layer in plain.layers]
    assert describe_model(ModelConfig(), (32, 32, 3)) == "cnn 16/32/64x1"


def test_pretrained_backbone_weights_are_restored_at_every_seed(tmp_path: Path) -> None:
    """``model.weights``: a keras.applications backbone's weights (here a .weights.h5 file;
    ``imagenet`` is the same path after Keras' download) are the same at every seed, while the
    head is drawn from the seed; a file that is not the backbone's, or weights for our own CNN,
    are one line."""
    import keras
    import numpy as np

    from policysearch.config.experiment import ModelConfig
    from policysearch.errors import ConfigError
    from policysearch.training.models import build_model, describe_model

    def backbone(model: keras.Model) -> keras.Model:
        return next(layer for layer in model.layers if isinstance(layer, keras.Model))

    donor = backbone(build_model(ModelConfig(name="MobileNetV3Small"), (32, 32, 3), 3, seed=9))
    path = tmp_path / "backbone.weights.h5"
    donor.save_weights(path)
    config = ModelConfig(name="MobileNetV3Small", weights=str(path))
    one, two = (build_model(config, (32, 32, 3), 3, seed=s) for s in (1, 2))
    for model in (one, two):
        assert all(np.array_equal(a, b) for a, b in zip(backbone(model).get_weights(),
                                                          donor.get_weights(), strict=True))
    assert not np.array_equal(one.get_layer("logits").get_weights()[0],
                              two.get_layer("logits").get_weights()[0])
    assert describe_model(config, (32, 32, 3)) == (f"MobileNetV3Small (keras.applications, "
                                                   f"weights from {path})")
    (tmp_path / "not.weights.h5").write_text("not weights")
    for bad, needle in ((ModelConfig(name="MobileNetV3Small",
                                     weights=str(tmp_path / "not.weights.h5")),
                         "model.weights"),
                        (ModelConfig(weights="imagenet"), "only a keras.applications model")):
        with pytest.raises(ConfigError, match=needle) as err:
            build_model(bad, (32, 32, 3), 3, seed=1)
        assert "\n" not in str(err.value)
