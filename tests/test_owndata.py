"""Own data in the first hour, with the defaults: split sizes and batch that fit the dataset,
`validate` as the search prints it, a bad export path refused before any training, and a
budget that cannot learn stopped before any searched trial."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_image_folder

from policysearch.config.auto import resolve_batch_size, resolve_lr
from policysearch.config.experiment import load_experiment
from policysearch.data.splits import auto_sizes, load_splits
from policysearch.errors import DataError, PolicySearchError
from policysearch.evidence.learning import ALPHA, learning_bar
from policysearch.paths import check_writable_file

FAST = {  # a budget of seconds; no split sizes: they are chosen from the data
    "name": "fast",
    "trainer": {"epochs": 2, "model": {"widths": [8, 16]}},
    "search": {"trials": 0, "baselines": ["crop_flip"]},
    "race": {"top_k": 1, "min_seeds": 2, "max_seeds": 2},
    "validate": {"seeds": 2},
}


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_TRACKING_URI=f"sqlite:///{cwd}/mlflow.db",
               POLICYSEARCH_STORAGE=f"sqlite:///{cwd}/optuna.db")
    return subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def noise_folder(root: Path, classes: int = 2, per_class: int = 40, size: int = 16) -> Path:
    """Class folders of the same random noise: nothing to learn (labels are random)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for part, count in (("train", per_class), ("test", 5)):
        for c in range(classes):
            folder = root / part / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3)).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


# -- sizes --------------------------------------------------------------------------------------


def test_auto_sizes_fit_a_small_folder_and_keep_cifar_scale() -> None:
    small = np.repeat([0, 1], 40)
    val, selection, proxy, note = auto_sizes(small, val_size="auto", selection_size="auto",
                                             target_size=None, proxy_size="auto")
    assert (val, selection, proxy) == (16, 12, None)  # the proxy trains on all 52 others
    assert "80 training images in 2 classes" in note and "search validation 16" in note
    large = np.repeat(np.arange(10), 5000)
    assert auto_sizes(large, val_size="auto", selection_size="auto", target_size=None,
                      proxy_size="auto")[:3] == (5000, 2000, 10000)
    given = auto_sizes(small, val_size=20, selection_size=10, target_size=30, proxy_size=None)
    assert given == (20, 10, None, ""), "given sizes are kept, and nothing is said"
    # at least 5 images a class in a held-out split, even where 20 % is fewer
    assert auto_sizes(np.repeat(np.arange(10), 12), val_size="auto", selection_size="auto",
                      target_size=None, proxy_size="auto")[:2] == (50, 50)


def test_auto_sizes_that_cannot_fit_are_one_clear_line() -> None:
    with pytest.raises(DataError, match="16 images in 2 classes: too few for automatic split"):
        auto_sizes(np.repeat([0, 1], 8), val_size="auto", selection_size="auto",
                   target_size=None, proxy_size="auto")


def test_load_splits_writes_the_chosen_sizes_back(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "mydata", classes=2, per_class=40, size=8)
    exp = load_experiment(None, dataset=str(root))
    assert exp.data.val_size == exp.data.selection_size == exp.data.train_size == "auto"
    splits = load_splits(exp)
    assert (len(splits.val), len(splits.selection), len(splits.target)) == (16, 12, 52)
    assert (exp.data.val_size, exp.data.selection_size, exp.data.train_size) == (16, 12, None)
    assert splits.sizing.startswith("split sizes chosen for 80 training images")


def test_auto_batch_keeps_steps_on_small_data() -> None:
    assert resolve_batch_size("auto", 52) == 16 and resolve_lr("auto", 16) == pytest.approx(0.05)
    assert resolve_batch_size("auto", 10000) == 256 and resolve_lr("auto", 256) == 0.2
    assert resolve_batch_size("auto", 1000) == 64  # 15.6 steps an epoch; 128 would give 7.8
    assert resolve_batch_size(128, 50) == 50 and resolve_lr(0.1, 50) == 0.1


def test_smoke_budgets_warn_instead_of_stopping(tmp_path: Path) -> None:
    assert load_experiment(None).search.learning_check == "stop"
    assert load_experiment(None, smoke=True).search.learning_check == "warn"
    config = tmp_path / "e.yaml"
    config.write_text(yaml.safe_dump({"smoke": {"search": {"learning_check": "stop"}}}))
    assert load_experiment(str(config), smoke=True).search.learning_check == "stop"


# -- the learning bar ---------------------------------------------------------------------------


def test_learning_bar_is_statistical_on_few_images_and_practical_on_many() -> None:
    from scipy import stats

    few = learning_bar(np.repeat([0, 1], 8))
    assert few.chance == 0.5 and few.bar == 14 / 16
    # a model at chance clears it with probability at most ALPHA; one image less, more
    assert stats.binom.sf(14 - 1, 16, 0.5) <= ALPHA < stats.binom.sf(13 - 1, 16, 0.5)
    many = learning_bar(np.repeat(np.arange(10), 100))
    assert many.bar == pytest.approx(0.19)  # chance + a tenth of the headroom
    assert learning_bar(np.array([0] * 90 + [1] * 10)).chance == 0.9  # the majority class


# -- the export path ----------------------------------------------------------------------------


def read_only_place(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "p.json"
    return Path("/sys/policysearch-test.json")  # root ignores file modes; sysfs refuses


@pytest.mark.parametrize("case, needle", [
    ("parent_is_file", "is a file, not a folder"),
    ("existing_dir", "is a folder; give a file name"),
    ("trailing_slash", "is a folder; give a file name"),
    ("read_only", "cannot write in"),
])
def test_bad_export_path_is_one_line_before_any_training(
        tmp_path: Path, case: str, needle: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from policysearch.cli.main import main

    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    export = {"parent_is_file": str(tmp_path / "afile" / "p.json"),
              "existing_dir": str(tmp_path / "adir"),
              "trailing_slash": str(tmp_path / "new") + "/",
              "read_only": str(read_only_place(tmp_path))}[case]
    dataset = write_image_folder(tmp_path / "mydata", classes=2, per_class=6, size=8)
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--dataset", str(dataset), "--storage",
                 f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db", "--export", export])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("policysearch: error: export path ") and needle in lines[0]
    assert not (tmp_path / "optuna.db").exists(), "refused before the study or any training"
    assert check_writable_file(tmp_path / "adir" / "p.json", "x") == tmp_path / "adir" / "p.json"
    with pytest.raises(PolicySearchError):
        check_writable_file(export, "export path")


# -- end to end ---------------------------------------------------------------------------------


def test_own_folder_searches_with_no_size_flags_and_validates_as_printed(
        tmp_path: Path) -> None:
    write_image_folder(tmp_path / "mydata", classes=2, per_class=40, size=16,
                       test_per_class=10)
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST))
    search = run_cli(tmp_path, "search", "--dataset", "mydata", "--experiment", "fast.yaml")
    assert search.returncode == 0, search.stdout + search.stderr
    out = search.stdout
    assert "split sizes chosen for 80 training images in 2 classes: search validation 16" in out
    assert "batch 16" in out and "learning check: crop+flip reaches" in out
    printed = next(line for line in out.splitlines() if "policysearch validate " in line)
    command = shlex.split(printed[printed.index("policysearch validate "):])
    validate = run_cli(tmp_path, *command[1:])
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "the search's experiment 'fast' as recorded in" in validate.stdout
    assert "test accuracy on 20 test images after 2 epochs on 52 training images" in \
        validate.stdout


def test_a_budget_that_cannot_learn_stops_before_any_searched_trial(tmp_path: Path) -> None:
    noise_folder(tmp_path / "noise")
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST))
    result = run_cli(tmp_path, "search", "--dataset", "noise", "--experiment", "fast.yaml",
                     "--trials", "2")
    # TensorFlow's start-up notices aside (issue 23 item 2), the tool says one line
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith(("WARNING: All log messages", "I0000 "))]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("policysearch: error: this budget cannot tell policies apart: "
                               "the proxy's crop+flip training reaches ")
    assert "--epochs 10" in lines[0] and "the study held only baselines and is removed" in lines[0]
    trials = [line for line in result.stdout.splitlines() if line.startswith("[w0]")]
    assert len(trials) == 1 and "baseline crop_flip" in trials[0], result.stdout
    assert "/3 trial" in trials[0], "two searched trials were asked for, none ran"
    # --smoke checks the plumbing: the same budget warns and goes on
    smoke = run_cli(tmp_path, "search", "--dataset", "noise", "--experiment", "fast.yaml",
                    "--smoke", "--trials", "0")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "warning: this budget cannot tell policies apart" in smoke.stdout
