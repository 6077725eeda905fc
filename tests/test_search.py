"""The search engine end to end on a tiny real dataset, through the command line.

Every search here is a real subprocess (TensorFlow, Optuna on SQLite, MLflow on SQLite), so
what the user runs is what is tested. The budget is tiny: the point is the plumbing and the
contracts (budget, resume, export, pruning, the test split never read), not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_experiment, write_image_folder

ROOT = Path(__file__).resolve().parent.parent



def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
    return env


def run_cli(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=tmp,
                          env=_env(tmp), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-class 16x16 dataset and an experiment file sized for seconds per trial."""
    root = tmp_path_factory.mktemp("tiny")
    dataset = write_image_folder(root / "data", classes=3, per_class=24, size=16,
                                 test_per_class=6)
    config = tiny_experiment(root / "tiny.yaml", dataset,
                             validate={"epochs": 1, "seeds": 2},
                             smoke={"search": {"trials": 1}})
    return {"root": root, "dataset": dataset, "config": config}


def _study(tmp: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db")


def _search(tmp: Path, tiny: dict[str, Path], name: str, *extra: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp, "search", "--experiment", str(tiny["config"]),
                   "--storage", f"sqlite:///{tmp}/optuna.db", "--study-name", name,
                   "--export", str(tmp / f"{name}.json"), *extra, check=check)


def test_search_runs_budget_exports_and_resumes(tiny: dict[str, Path], tmp_path: Path) -> None:
    proc = _search(tmp_path, tiny, "s1")
    study = _study(tmp_path, "s1")
    trials = study.get_trials()
    # 3 baselines + 2 searched, each baseline exactly once, first.
    assert len(trials) == 5
    assert [t.user_attrs.get("baseline") for t in trials[:3]] == [
        "crop_flip", "randaugment_n2_m9", "trivialaugment"]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert "5/5" in proc.stdout and "best" in proc.stdout and "left" in proc.stdout
    exported = json.loads((tmp_path / "s1.json").read_text())
    assert exported["schema"].startswith("policysearch.policy/")
    assert exported["source"]["study"] == "s1"
    assert exported["source"]["n_seeds"] == 2
    assert exported["base"] == {"crop_padding": 2, "flip": True}
    rows = study.user_attrs["reevaluation"]["rows"]
    assert {r["role"] for r in rows} == {"candidate", "baseline"}
    # Re-evaluation seeds differ from the search's trial seeds.
    assert not {r["seed"] for r in rows} & {t.user_attrs["seed"] for t in trials}

    # The default local MLflow store holds the same structure as a tracking server: one
    # parent run for the study, one nested run per trial with its per-epoch curve.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = [r for r in runs if r.data.tags.get("policysearch.role") == "study"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id
                and r.data.tags.get("policysearch.role") in ("search", "baseline")]
    assert len(children) == 5
    done = [r for r in children if r.data.tags.get("optuna.trial_number") == "0"][0]
    assert len(client.get_metric_history(done.info.run_id, "val_accuracy")) == 2

    # `validate` (the only reader of the test split) prints the table.
    val = run_cli(tmp_path, "validate", str(tmp_path / "s1.json"), "--experiment",
                  str(tiny["config"]), "--epochs", "1", "--seeds", "1")
    assert "| policy | test accuracy (mean ± std)" in val.stdout and "crop+flip" in val.stdout

    # Running the same command again resumes: nothing is re-run, the same policy comes out.
    again = _search(tmp_path, tiny, "s1")
    assert "resumed" in again.stdout and "5/5 trials done" in again.stdout
    assert len(_study(tmp_path, "s1").get_trials()) == 5
    assert json.loads((tmp_path / "s1.json").read_text())["type"] == exported["type"]

    # A larger budget on resume runs only the extra trials; numbering continues.
    more = _search(tmp_path, tiny, "s1", "--trials", "3")
    trials = _study(tmp_path, "s1").get_trials()
    assert len(trials) == 6 and trials[-1].number == 5
    assert "6/6" in more.stdout


def test_pruner_stops_weak_trials(tiny: dict[str, Path], tmp_path: Path) -> None:
    # An extreme space (every op at the top magnitude, 3 per image) trains far worse than the
    # baselines; the median pruner, comparing per epoch, stops such trials early.
    space = tmp_path / "harsh.yaml"
    space.write_text(yaml.safe_dump({"type": "randaugment", "num_ops": 3, "magnitude": 30,
                                     "ops": ["Solarize", "Posterize", "Equalize"]}))
    _search(tmp_path, tiny, "pr", "--space", str(space), "--pruner", "median", "--trials", "3",
            "--epochs", "3", "--top-k", "1", "--reeval-seeds", "1")
    trials = _study(tmp_path, "pr").get_trials()
    searched = [t for t in trials if not t.user_attrs.get("baseline")]
    assert all(t.user_attrs.get("baseline") is None or t.state.name == "COMPLETE"
               for t in trials), "baselines are never pruned"
    pruned = [t for t in searched if t.state.name == "PRUNED"]
    assert pruned, [(t.state.name, t.intermediate_values) for t in searched]
    assert all(len(t.intermediate_values) < 3 for t in pruned)


def test_search_is_reproducible(tiny: dict[str, Path], tmp_path: Path) -> None:
    for name in ("r1", "r2"):
        _search(tmp_path, tiny, name, "--smoke", "--pruner", "none", "--top-k", "0")
    a, b = (_study(tmp_path, n).get_trials() for n in ("r1", "r2"))
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == pytest.approx([t.value for t in b], abs=1e-6)


def test_validate_and_experiment_use_test_split_only_there(tiny: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "results" / "tiny.md"
    proc = run_cli(tmp_path, "experiment", str(tiny["config"]), "--smoke",
                   "--storage", f"sqlite:///{tmp_path}/optuna.db", "--out", str(out))
    text = out.read_text()
    assert "| policy | test accuracy" in text and "## Targets" in text
    assert "crop+flip" in text and "TA" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    rows = raw["validate"]["rows"]
    assert {r["seed"] for r in rows} == {20000, 20001}
    assert raw["validate"]["test_size"] == 18  # 3 classes x 6 test images
    assert out.with_suffix(".policy.json").exists()
    assert "wrote" in proc.stdout
    # The search never loads the test part: the study holds no test figures.
    study = _study(tmp_path, "tiny-smoke-randaugment_subset")
    assert all("test" not in k for t in study.get_trials() for k in t.user_attrs)


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "-1"], "search.trials"),
    (["--space", "no_such_space"], "no_such_space"),
    (["--dataset", "/no/such/folder"], "/no/such/folder"),
    (["--train-size", "100000"], "train_size"),
    (["--storage", "notadb://x"], "notadb"),
])
def test_bad_input_is_one_line(tiny: dict[str, Path], tmp_path: Path, args: list[str],
                               message: str, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from policysearch.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["search", "--experiment", str(tiny["config"]), "--storage",
                 f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db", "--study-name", "bad", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines[-1].startswith("policysearch: error:") and message in lines[-1], lines


def test_failed_start_leaves_nothing_behind(tiny: dict[str, Path], tmp_path: Path) -> None:
    bad = _search(tmp_path, tiny, "again", "--dataset", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2
    good = _search(tmp_path, tiny, "again", "--smoke", "--top-k", "0")
    assert "created" in good.stdout and (tmp_path / "again.json").exists()


def test_choose_winner_by_mean_and_noise() -> None:
    from policysearch.study import choose_winner

    def rows(key: str, role: str, values: list[float]) -> list[dict]:
        return [{"key": key, "label": key, "policy": {}, "role": role, "seed": i,
                 "accuracy": v} for i, v in enumerate(values)]

    # One lucky seed does not win: b has the better mean.
    decision = choose_winner(rows("a", "candidate", [0.9, 0.5, 0.5])
                             + rows("b", "candidate", [0.7, 0.7, 0.7])
                             + rows("base", "baseline", [0.6, 0.6, 0.62]))
    assert decision["winner"]["key"] == "b" and decision["gain_exceeds_noise"]
    # A candidate below the baseline never replaces it.
    decision = choose_winner(rows("a", "candidate", [0.5, 0.52])
                             + rows("base", "baseline", [0.6, 0.61]))
    assert decision["winner"]["key"] == "base" and not decision["beats_baseline"]
    # Ahead, but within the noise: exported, and said so.
    decision = choose_winner(rows("a", "candidate", [0.7, 0.5])
                             + rows("base", "baseline", [0.6, 0.58]))
    assert decision["winner"]["key"] == "a" and not decision["gain_exceeds_noise"]
    assert "not by more than the seed noise" in decision["note"]
