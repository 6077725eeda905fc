"""A search that is legal but hostile (issue 24), run as a user runs it, in one small search.

The inputs: a class folder with a single image, the largest search seed, a dataset given as a
relative path and resumed under its absolute path, and an MLflow store that cannot be written
(the process may not write past 512 KiB into any file, as on a full disk: MLflow's database is
larger, so every write MLflow makes fails). What must hold: one warning line for the small class,
one warning line per MLflow write that failed and never a traceback, every trial trained at the
largest seed, the policy exported, the study resumed under the other spelling of its path, and
``sync-mlflow`` catching up once MLflow can be written again.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_EXPERIMENT, write_image_folder

from policysearch.config.experiment import MAX_SEED

NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")
"""TensorFlow's C++ start-up lines, which its own settings do not silence."""


def cli(cwd: Path, *args: str, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               POLICYSEARCH_CACHE_DIR=str(cwd / "cache"))

    def limit() -> None:  # as on a full disk: no file grows or is written past the limit
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, preexec_fn=limit)


def problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not NOISE.match(line)]


def test_hostile_but_legal_search_is_quiet_exports_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_image_folder(tmp_path / "data" / "small", classes=3, per_class=12, size=16,
                              test_per_class=2)
    for extra in sorted((data / "train" / "class2").glob("*.png"))[1:]:
        extra.unlink()  # class2 keeps a single training image
    config = {**TINY_EXPERIMENT,
              "data": {"train_size": 12, "val_size": 6, "selection_size": 6, "split_seed": 0},
              "target": {"train_size": 12, "trainer": {"epochs": 2}},
              "search": {**TINY_EXPERIMENT["search"], "trials": 1,
                         "baselines": ["crop_flip", "randaugment_n2_m9"],
                         "learning_check": "off"}}  # 6 validation images: no bar is meaningful
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    # The MLflow store and its experiment exist, as after an earlier search; then the disk fills.
    from policysearch.tracking.client import Tracker

    monkeypatch.chdir(tmp_path)  # the experiment's artifacts go to ./runs/mlartifacts
    Tracker(f"sqlite:///{tmp_path}/runs/mlflow.db", "policysearch-small", "hostile").connect()
    assert (tmp_path / "runs" / "mlflow.db").stat().st_size > 512 << 10
    search = ["search", "--experiment", "exp.yaml", "--study-name", "hostile",
              "--seed", str(MAX_SEED)]

    first = cli(tmp_path, *search, "--dataset", "data/small", file_limit=512 << 10)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Traceback" not in first.stderr + first.stdout, first.stderr[-3000:]
    [warning] = problems(first.stderr)
    assert warning.startswith("policysearch: warning: dataset data/small: not every class is "
                              "in every split: 'class2' (1 image) is not in "), warning
    failed = [line for line in first.stdout.splitlines() if line.startswith("warning: MLflow:")]
    assert failed, "MLflow could not write: each failed write is said"
    assert all("not logged (" in line and "autoflush" not in line for line in failed), failed
    assert len(first.stdout.splitlines()) < 60, first.stdout
    assert (tmp_path / "policies" / "hostile.json").is_file()

    import optuna

    study = optuna.load_study(study_name="hostile", storage=f"sqlite:///{tmp_path}/runs/optuna.db")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert {t.user_attrs["ps.seed"] for t in trials} == {1 + 1000 * MAX_SEED}
    assert 1 + 1000 * MAX_SEED < 2**32 <= 1 + 1000 * (MAX_SEED + 1)

    # The disk has room again: the same study resumes under the absolute path of its folder,
    # and sync-mlflow logs what MLflow missed.
    again = cli(tmp_path, *search, "--dataset", str(data.resolve()))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "study 'hostile' resumed" in again.stdout, again.stdout
    assert "Traceback" not in again.stderr and len(problems(again.stderr)) == 1, again.stderr
    synced = cli(tmp_path, "sync-mlflow", "--study-name", "hostile")
    assert synced.returncode == 0 and problems(synced.stderr) == [], synced.stderr


def test_an_mlflow_failure_is_one_line_naming_its_root_cause(
        capfd: pytest.CaptureFixture[str]) -> None:
    """MLflow's database error, as MLflow raises and logs it on a full disk."""
    import logging
    import sqlite3

    import mlflow  # noqa: F401  (configures MLflow's loggers, as in a search)
    import sqlalchemy
    from mlflow.exceptions import MlflowException

    from policysearch.tracking.client import quiet_mlflow_logs, reason

    quiet_mlflow_logs()
    full = sqlalchemy.exc.OperationalError("UPDATE runs SET status=?", {},
                                           sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise full
        except sqlalchemy.exc.OperationalError as err:
            logging.getLogger("mlflow.store.db.utils").exception("SQLAlchemy error\n%s", err)
            raise MlflowException(message=err) from err
    except MlflowException as err:
        assert reason(err) == "database or disk is full"
        logging.getLogger("mlflow.tracking").warning("not logged\n%s", err, exc_info=True)
    err_text = capfd.readouterr().err
    assert "Traceback" not in err_text and "UPDATE" not in err_text, err_text
    assert len(err_text.strip().splitlines()) == 1 and "not logged" in err_text, err_text
