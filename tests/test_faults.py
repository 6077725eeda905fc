"""Bad input never passes (issue 38): each case, run as a user runs it, ends in one line naming
the problem, a non-zero exit, no traceback, and nothing written where it must not be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_EXPERIMENT, write_image_folder

from policysearch import randaugment, write_policy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    """``policysearch ARGS`` as a user runs it, from ``tmp_path``, as a finished process (a
    process of its own: the command line installs signal handlers and output filters)."""
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return run(tmp_path, *args, module="policysearch")

    return call


def run(cwd: Path, *args: str, module: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_TRACKING_URI=f"sqlite:///{cwd}/mlflow.db",
               POLICYSEARCH_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("faults") / "data", classes=3,
                              per_class=24, size=16, test_per_class=4)


def experiment(tmp: Path, dataset: Path, changes: dict) -> Path:
    config = {**TINY_EXPERIMENT, "dataset": str(dataset)}
    for key, value in changes.items():
        config[key] = ({**config.get(key, {}), **value} if isinstance(value, dict)
                       and isinstance(config.get(key), dict) else value)
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SMOKE = {"data": {"train_size": 12, "val_size": 6, "selection_size": 6},
         "trainer": {"epochs": 1}, "search": {"trials": 1}}


CASES = [
    ({"name": "../../../escape"}, "fidelity", ("key 'name'", "is not a usable name")),
    ({"name": "x" * 300}, "search", ("key 'name'", "at most 100 characters")),
    ({"name": "a/b"}, "experiment", ("key 'name'", "is not a usable name")),
    ({"trainer": {"epochs": "ten"}, "smoke": SMOKE}, "search", ("trainer.epochs",)),
    ({"data": {"train_size": -100}, "smoke": SMOKE}, "search", ("data.train_size",)),
    ({"trainer": {"batch_size": 0}, "smoke": {"trainer": {"batch_size": 8}}}, "search",
     ("trainer.batch_size",)),
    ({"target": None, "smoke": {"target": {"train_size": 8}}}, "search", ("key 'target'",)),
    ({"race": {"min_seeds": 4, "max_seeds": 3}, "smoke": SMOKE}, "search",
     ("race.max_seeds", "below race.min_seeds")),
    ({"trainer": {"lr": 1e30}}, "search", ("trainer.lr", "above the maximum 10")),
]
THROUGH_THE_CLI = {0, 1, 3}
"""The cases also run as a user runs them (a process each); the rest load the file here."""


@pytest.mark.parametrize(("changes", "command", "needles"), CASES)
def test_a_bad_experiment_file_is_refused(tmp_path: Path, data: Path, changes: dict,
                                          command: str, needles: tuple[str, ...]) -> None:
    from policysearch.config.experiment import load_experiment
    from policysearch.errors import ConfigError

    path = experiment(tmp_path, data, changes)
    with pytest.raises(ConfigError) as refused:
        load_experiment(str(path), smoke=True)
    assert "\n" not in str(refused.value)
    for needle in needles:
        assert needle in str(refused.value)


@pytest.mark.parametrize(("changes", "command", "needles"),
                         [case for i, case in enumerate(CASES) if i in THROUGH_THE_CLI])
def test_a_bad_experiment_file_is_refused_before_anything_trains(
        tmp_path: Path, data: Path, cli: Any, changes: dict, command: str,
        needles: tuple[str, ...]) -> None:
    path = experiment(tmp_path, data, changes)
    args = {"search": ["search", "--experiment", str(path), "--smoke",
                       "--storage", f"sqlite:///{tmp_path}/optuna.db"],
            "fidelity": ["fidelity", str(path), "--smoke"],
            "experiment": ["experiment", str(path), "--smoke"]}[command]
    results = sorted((ROOT / "experiments" / "results").iterdir())
    one_line(cli(*args), *needles)
    assert not list(ROOT.parent.glob("escape*")), "nothing written outside the project"
    assert sorted((ROOT / "experiments" / "results").iterdir()) == results
    assert not (tmp_path / "policies").exists() and not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize(("flag", "value"), [("--storage", ""), ("--export", ""),
                                             ("--dataset", ""), ("--data-dir", " ")])
def test_an_empty_option_is_not_the_default(cli: Any, data: Path, flag: str,
                                            value: str) -> None:
    args = ["search", "--dataset", str(data), flag, value]
    if flag == "--dataset":
        args = ["search", flag, value]
    one_line(cli(*args), f"argument {flag}: is empty")


def test_a_step_larger_than_its_range_is_refused(tmp_path: Path, data: Path, cli: Any) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("type: randaugment\nnum_ops: {int: [1, 3]}\n"
                     "magnitude: {int: [0, 30], step: 1000}\nmagnitude_std: 0.0\nops: all\n")
    one_line(cli("search", "--dataset", str(data), "--space", str(space)),
             "magnitude", "step 1000 is larger than the range 0..30")


@pytest.mark.parametrize("where", ["file-parent", "folder"])
def test_validate_out_is_checked_before_training(tmp_path: Path, data: Path, cli: Any,
                                                 where: str) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    (tmp_path / "afile").write_text("x")
    out = "afile/result.json" if where == "file-parent" else str(tmp_path)
    result = cli("validate", "p.json", "--dataset", str(data), "--out", out)
    one_line(result, "--out")
    assert "validate: " not in result.stdout.replace("validate: the search", ""), \
        "refused before any training"


def test_a_policy_file_with_a_byte_order_mark_is_read(tmp_path: Path, cli: Any) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "p.json").read_bytes())
    result = cli("show", "bom.json")
    assert result.returncode == 0 and "RandAugment" in result.stdout, result.stderr


def test_an_empty_class_folder_is_named(tmp_path: Path, cli: Any) -> None:
    data = write_image_folder(tmp_path / "data", classes=3, per_class=10, size=16,
                              test_per_class=2)
    (data / "train" / "zebra").mkdir()
    one_line(cli("search", "--dataset", str(data)),
             "class folder train/zebra has no images")


@pytest.mark.parametrize("damage", ["[]", "{\"search\": ", "{\"search\": {\"searched\": 1}, "
                                    "\"validate\": {}, \"stages_seconds\": {}}"])
def test_make_readme_names_a_damaged_results_file(tmp_path: Path, damage: str) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "broken.json").write_text(damage)
    readme = tmp_path / "README.md"
    from policysearch.search.side_by_side import BEGIN, END

    text = f"x\n{BEGIN}\nold\n{END}\n"
    readme.write_text(text)
    result = run(tmp_path, "--readme", str(readme), "--results", str(results),
                 module="policysearch.search.side_by_side")
    if damage == "[]":  # not a results file: skipped, the table says none ran
        assert result.returncode == 0 and "No proof experiment" in readme.read_text()
        return
    one_line(result, "broken.json")
    assert readme.read_text() == text, "the README is left as it was"


@pytest.mark.parametrize("rounds", ["0", "-1"])
def test_soak_refuses_no_rounds(tmp_path: Path, rounds: str) -> None:
    out = tmp_path / "reliability.md"
    one_line(run(tmp_path, "--rounds", rounds, "--out", str(out),
                 module="policysearch.evidence.soak"), "at least 1 round")
    assert not out.exists()


def test_results_json_is_never_half_written(tmp_path: Path) -> None:
    from policysearch.paths import write_atomic

    target = tmp_path / "r.json"
    write_atomic(target, json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"], "no temporary left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it


def test_a_full_disk_is_one_line_and_leaves_no_half_file(tmp_path: Path) -> None:
    """A write the machine refuses (here a file size limit, as a full disk would) names the
    file, exits non-zero and leaves neither half a file nor a temporary one."""
    import resource
    import signal

    policy = tmp_path / "p.json"
    write_policy(randaugment(2, 9), policy)
    out = tmp_path / "grid" / "preview.png"

    def limit() -> None:  # writes past 2 KB fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", POLICYSEARCH_CACHE_DIR=str(tmp_path / "cache"))
    images = write_image_folder(tmp_path / "data", classes=2, per_class=2, size=16)
    result = subprocess.run([sys.executable, "-m", "policysearch", "preview", str(policy),
                             "--dataset", str(images), "--images", "2", "--out", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=limit)
    # the decoded-data cache, refused too, is a warning it goes on without; then the error
    *warnings, error = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert all(w.startswith("policysearch: warning: cannot cache") for w in warnings), warnings
    assert error == f"policysearch: error: --out {out}: cannot write it (File too large)"
    assert list(out.parent.iterdir()) == []
