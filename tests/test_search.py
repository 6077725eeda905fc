"""The search end to end on a tiny real dataset, through the command line.

Every search here is a real subprocess (TensorFlow, Optuna on SQLite, MLflow on SQLite), so
what the user runs is what is tested. The budget is tiny: the point is the plumbing and the
contracts (budget, common seeds, race, export rule, resume, the test split never read), not
accuracy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_experiment, write_image_folder

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
               POLICYSEARCH_CACHE_DIR=str(tmp / "cache"))
    env.update(extra)
    return env


def run_cli(tmp: Path, *args: str, check: bool = True,
            **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=tmp,
                          env=_env(tmp, **env), capture_output=True, text=True, timeout=600)
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
                             smoke={"search": {"trials": 1},
                                    "race": {"screen": {"top_k": 1, "seeds": 1}},
                                    "fidelity": {"seeds": 2,
                                                 "panel": ["crop_flip", "RA(1,5)", "TA"]}})
    return {"root": root, "dataset": dataset, "config": config}


def _study(tmp: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db")


def _search(tmp: Path, tiny: dict[str, Path], name: str, *extra: str, check: bool = True,
            config: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp, "search", "--experiment", str(config or tiny["config"]),
                   "--storage", f"sqlite:///{tmp}/optuna.db", "--study-name", name,
                   "--export", str(tmp / f"{name}.json"), *extra, check=check, **env)


def test_search_races_exports_with_evidence_and_resumes(tiny: dict[str, Path],
                                                        tmp_path: Path) -> None:
    proc = _search(tmp_path, tiny, "s1")
    lines = proc.stdout.splitlines()
    study = _study(tmp_path, "s1")
    trials = study.get_trials()
    # 3 baselines + 2 searched, each baseline exactly once, first.
    assert len(trials) == 5
    assert [t.user_attrs.get("ps.baseline") for t in trials[:3]] == [
        "crop_flip", "randaugment_n2_m9", "trivialaugment"]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # Common random numbers: every trial trains with the study's one seed.
    assert len({t.user_attrs["ps.seed"] for t in trials}) == 1
    # The first lines say what the search is for; the last ones state the decision.
    assert any(line.startswith("target (what the policy is for): 36 images x 2 epochs")
               for line in lines[:6]), lines[:6]
    # No fidelity measurement of this config: the pruner prunes nothing, and says so first.
    assert any(line.startswith("pruning: none; no fidelity measurement")
               for line in lines[:8]), lines[:8]
    assert study.user_attrs["ps.prune_rungs"] == []
    # The last lines count the searched trials apart and give their share of the time.
    tally = [line for line in lines if line.startswith("time: 2 searched policies scored")]
    assert tally and "3 baselines" in tally[0] and "searched trials took" in tally[0]
    assert lines.index(tally[0]) >= len(lines) - 12
    assert study.user_attrs["ps.race_seconds"] > 0
    assert "5/5" in proc.stdout and "best" in proc.stdout and "left" in proc.stdout
    decision = [line for line in lines if "crop+flip" in line and ("changes accuracy" in line
                                                                  or "No measurable" in line)]
    assert decision and lines.index(decision[-1]) >= len(lines) - 4, lines[-6:]

    exported = json.loads((tmp_path / "s1.json").read_text())
    assert exported["schema"].startswith("policysearch.policy/")
    source = exported["source"]
    assert source["study"] == "s1" and source["decision"] == decision[-1]
    evidence = source["evidence"]
    assert evidence["split"] == "selection" and evidence["budget"] == "proxy"
    assert "paired one-sided t" in evidence["test"] and len(evidence["seeds"]) >= 2
    if source["searched"]:
        assert evidence["gain_over_baseline"]["lower"] > 0
    assert source["experiment_config"]["target"]["train_size"] == 36
    assert exported["base"] == {"crop_padding": 2, "flip": True}
    rows = study.user_attrs["ps.race_rows"]
    assert {r["role"] for r in rows} >= {"baseline"} and all(r["seed"] >= 10_000 for r in rows)
    assert "reference" in {r["role"] for r in rows} or any(
        r["label"] == "baseline crop_flip" for r in rows), "crop+flip is always in the race"
    # The search never read the test split: only training-part caches were written.
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert cached and all(name.endswith("-train.npz") for name in cached), cached

    # The MLflow experiment the search names is the one it created, with the study's runs.
    from mlflow.tracking import MlflowClient

    name = proc.stdout.split("open the experiment ")[1].split("'")[1]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("policysearch.role") == "study"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id
                and r.data.tags.get("policysearch.role") in ("search", "baseline")]
    assert len(children) == 5

    # `validate` (the only reader of the test split) trains at the target budget of the
    # experiment that found the policy, read from the policy file; MLflow down only warns.
    val = run_cli(tmp_path, "validate", str(tmp_path / "s1.json"), "--seeds", "2",
                  "--tracking-uri", "http://127.0.0.1:9")
    assert "after 2 epochs on 36 training images (the target budget" in val.stdout
    assert "| policy | test accuracy (mean ± std)" in val.stdout
    assert "95 % lower bound" in val.stdout
    assert "warning" in val.stdout + val.stderr
    assert any(p.name.endswith("-test.npz") for p in (tmp_path / "cache").glob("*.npz"))

    # Running the same command again resumes: nothing is re-run, nothing exported twice.
    again = _search(tmp_path, tiny, "s1")
    assert "resumed" in again.stdout and "5/5 trials done" in again.stdout
    assert "not exporting it again" in again.stdout
    assert len(_study(tmp_path, "s1").get_trials()) == 5

    # A larger budget on resume runs only the extra trial, and proposes something new (the
    # resumed sampler is reseeded, not replayed).
    more = _search(tmp_path, tiny, "s1", "--trials", "3")
    trials = _study(tmp_path, "s1").get_trials()
    assert len(trials) == 6 and trials[-1].number == 5 and "6/6" in more.stdout
    assert trials[-1].params not in [t.params for t in trials[3:5]]


def measured(path: Path, config: Path, overrides: dict, faithful: dict[int, float]) -> Path:
    """A fidelity results JSON for ``config`` (with ``overrides``) whose rungs measured the
    single-seed Spearman ``faithful[epoch]``: what `policysearch fidelity` writes, in small."""
    from policysearch.config.experiment import load_experiment
    from policysearch.evidence.fidelity_runs import fingerprint

    experiment = load_experiment(str(config), overrides=overrides)
    rungs = [{"epoch": e, "pruning_spearman": rho, "single_seed_spearman": [rho, rho],
              "spearman": rho, "final": False} for e, rho in faithful.items()]
    path.write_text(json.dumps({
        "experiment": experiment.to_dict(), "fingerprint": fingerprint(experiment),
        "analysis": {"spearman": 0.9, "cost_ratio": 0.25, "cost_ratio_median": 0.25,
                     "policies": [], "rungs": rungs}}))
    return path


def test_the_pruner_stops_weak_trials_only_at_a_rung_measured_faithful(
        tiny: dict[str, Path], tmp_path: Path) -> None:
    # An extreme space (three destructive ops at the top magnitude) trains far worse than the
    # baselines; a measurement finds epoch 1 faithful and epochs 2 and 3 not: Hyperband stops
    # such trials at epoch 1, never later.
    space = tmp_path / "harsh.yaml"
    space.write_text(yaml.safe_dump({"type": "randaugment", "num_ops": 3, "magnitude": 30,
                                     "ops": ["Solarize", "Posterize", "Invert"]}))
    fidelity = measured(tmp_path / "fid.json", tiny["config"], {"trainer.epochs": 4},
                        {1: 0.9, 2: 0.5, 3: 0.4})
    proc = _search(tmp_path, tiny, "pr", "--space", str(space), "--trials", "4", "--epochs", "4",
                   "--top-k", "1", "--fidelity", str(fidelity))
    first = proc.stdout.splitlines()[:8]
    assert any(line.startswith("pruning (hyperband) at epoch 1 (+0.90) only") and
               "not at 2 (+0.50), 3 (+0.40)" in line for line in first), first
    trials = _study(tmp_path, "pr").get_trials()
    assert all(t.state.name == "COMPLETE" for t in trials if t.user_attrs.get("ps.baseline"))
    searched = [t for t in trials if not t.user_attrs.get("ps.baseline")]
    pruned = [t for t in searched if t.state.name == "PRUNED"]
    assert pruned, [(t.state.name, t.intermediate_values) for t in searched]
    assert all(max(t.intermediate_values) == 1 for t in pruned)
    assert _study(tmp_path, "pr").user_attrs["ps.prune_rungs"] == [1]


def test_search_is_reproducible(tiny: dict[str, Path], tmp_path: Path) -> None:
    for name in ("r1", "r2"):
        _search(tmp_path, tiny, name, "--smoke", "--pruner", "none")
    a, b = (_study(tmp_path, n).get_trials() for n in ("r1", "r2"))
    assert [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == pytest.approx([t.value for t in b], abs=1e-6)


def test_changed_data_is_not_resumed(tiny: dict[str, Path], tmp_path: Path) -> None:
    dataset = tmp_path / "data"
    shutil.copytree(tiny["dataset"], dataset)
    config = tiny_experiment(tmp_path / "exp.yaml", dataset, search={"trials": 0},
                             race={"top_k": 1, "min_seeds": 2, "max_seeds": 2})
    _search(tmp_path, tiny, "fp", config=config)
    # the same path, one class more: a resume would mix two datasets in one study
    for part in ("train", "test"):
        shutil.copytree(dataset / part / "class0", dataset / part / "class9")
    proc = _search(tmp_path, tiny, "fp", config=config, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the data changed" in proc.stderr.strip().splitlines()[-1]


def test_jax_search_with_augmentation_in_the_train_step(tiny: dict[str, Path],
                                                        tmp_path: Path) -> None:
    # The accelerator path (augmentation inside the compiled step) runs end to end on CPU.
    proc = _search(tmp_path, tiny, "jx", "--smoke", "--placement", "model",
                   KERAS_BACKEND="jax")
    study = _study(tmp_path, "jx")
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials())
    assert (tmp_path / "jx.json").exists() and "crop+flip" in proc.stdout


def test_shipped_cifar10_experiment_smoke_on_real_images(data_dir: Path, tmp_path: Path) -> None:
    # `make experiment EXPERIMENT=cifar10 SMOKE=1`: the shipped experiment, its smoke budget,
    # real CIFAR-10 images, validated on all 10,000 test images.
    out = tmp_path / "results" / "cifar10.md"
    run_cli(tmp_path, "experiment", "cifar10", "--smoke", "--data-dir", str(data_dir),
            "--storage", f"sqlite:///{tmp_path}/optuna.db", "--out", str(out))
    # `make experiment` end to end: fidelity, search with its two-round race, paired
    # validation on test, the policy in words and pictures
    text = out.read_text()
    for heading in ("## Test accuracy", "## Targets", "## The chosen policy", "## Config"):
        assert heading in text
    assert "| policy | test accuracy (mean ± std) | seeds | policy's paired gain |" in text
    assert "95 % lower bound" in text and "Wall time per stage: fidelity" in text
    assert "Search decision (selection split only): " in text
    assert any(words in text for words in ("changes accuracy over crop+flip",
                                           "No measurable gain", "Undecided at this budget"))
    # the race's design, its seed plan and every per-seed accuracy are in the results
    assert "## The race" in text and "Seed plan: paired spread" in text
    assert "Final race, selection accuracy per seed" in text
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["race"]["rows"] and all("accuracy" in r for r in raw["race"]["rows"])
    assert raw["race"]["decision"]["screen"]["table"], "the screen's table is kept"
    assert raw["race"]["decision"]["design"]["nominal"]
    # the race's best candidate is validated beside the export when it was not exported
    candidate = out.with_suffix(".candidate.json")
    if raw["race"]["candidate_file"]:
        assert candidate.is_file() and "## The race's best candidate on test" in text
        assert "candidate" in {r["role"] for r in raw["validate"]["rows"]}
        assert json.loads(candidate.read_text())["source"]["exported"] is False
    else:
        assert raw["race"]["decision"]["outcome"] == "export" and not candidate.exists()
    assert raw["validate"]["test_size"] == 10000
    rows = raw["validate"]["rows"]
    assert {r["seed"] for r in rows} == {20000, 20001}
    assert len({(r["key"], r["seed"]) for r in rows}) == len(rows)  # none trained twice
    assert set(raw["stages_seconds"]) == {"fidelity", "search", "validate"}
    fidelity = (out.parent / "cifar10-smoke-fidelity.md").read_text()
    assert "Spearman" in fidelity and "cost ratio" in fidelity
    assert "## Agreement at the pruner's rungs" in fidelity and "| 1 | " in fidelity
    assert "seed-resampling range" in fidelity and "bootstrap interval" not in fidelity
    # the search took its rungs from the fidelity run just made, and the results file shows
    # them, the searched trials apart from the baselines, and their share of the time
    assert re.search(r"\*\*\d+ searched policies scored\*\*", text)
    assert "besides 3 baselines" in text
    assert "of the search stage's" in text and "## The pruner's rungs" in text
    assert "- Pruner (hyperband): pruning" in text and "a first round of the top 2" in text
    assert raw["search"]["searched"]["trials"] == 2 and raw["search"]["baselines"]["trials"] == 3
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    study = _study(tmp_path, "cifar10-smoke-randaugment_groups")
    assert all("test" not in k for t in study.get_trials() for k in t.user_attrs)
    assert {r["stage"] for r in study.user_attrs["ps.race_rows"]} == {"screen", "race"}
    _names_the_policy_and_shows_it(out)
    assert not any(", flip off" in r["role"] for r in rows)  # not asked


def _names_the_policy_and_shows_it(out: Path) -> None:
    """The results file names the exported policy in words (as `show` does) and links a grid
    of what it does to the dataset's images, beside it."""
    from policysearch.policy.definition import read_policy
    from policysearch.policy.explain import show_lines

    text = out.read_text()
    policy = read_policy(out.with_suffix(".policy.json"))
    assert f"- Exported policy: {policy!r}" in text
    words = show_lines(policy)
    assert words[0] in text and words[1] in text
    assert "probability an image passes an epoch unchanged by the policy" in text
    grid = out.with_name(f"{out.stem}-samples.png")
    assert f"]({grid.name})" in text
    assert grid.read_bytes().startswith(b"\x89PNG")


def test_shipped_mnist_experiment_smoke_on_real_digits(mnist_dir: Path, tmp_path: Path) -> None:
    # `make experiment EXPERIMENT=mnist SMOKE=1`: the shipped digits experiment, its smoke
    # budget, the real digits found by name in the data directory, validated on all 2,000
    # test images; crop_only (the flip off) is among the baselines the study runs first.
    out = tmp_path / "results" / "mnist.md"
    run_cli(tmp_path, "experiment", "mnist", "--smoke", "--data-dir", str(mnist_dir),
            "--storage", f"sqlite:///{tmp_path}/optuna.db", "--out", str(out))
    text = out.read_text()
    for heading in ("## Test accuracy", "## Targets", "## The chosen policy", "## Config"):
        assert heading in text
    raw = json.loads(out.with_suffix(".json").read_text())
    assert raw["experiment"]["dataset"] == "mnist"
    assert raw["experiment"]["base_augment"] == {"crop_padding": 4, "flip": True}
    assert raw["validate"]["test_size"] == 2000
    assert {r["seed"] for r in raw["validate"]["rows"]} == {20000, 20001}
    study = _study(tmp_path, "mnist-smoke-randaugment_groups")  # flip and crop searched
    assert [t.user_attrs.get("ps.baseline") for t in study.get_trials()[:4]] == [
        "crop_flip", "crop_only", "randaugment_n2_m9", "trivialaugment"]
    assert "Spearman" in (out.parent / "mnist-smoke-fidelity.md").read_text()
    # validate.flip_variants: the stock policies are also trained with the flip off, each once
    rows = raw["validate"]["rows"]
    assert {"randaugment_n2_m9, flip off", "trivialaugment, flip off"} <= {r["role"] for r in rows}
    assert "(baseline trivialaugment, flip off)" in text
    assert len({(r["key"], r["seed"]) for r in rows}) == len(rows)  # none trained twice
    _names_the_policy_and_shows_it(out)


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", "-1"], "--trials"),
    (["--top-k", "0"], "--top-k"),
    (["--min-seeds", "1"], "--min-seeds"),
    (["--max-seeds", "2", "--min-seeds", "3"], "race.max_seeds"),
    (["--space", "no_such_space"], "no_such_space"),
    (["--dataset", "/no/such/folder"], "/no/such/folder"),
    (["--train-size", "100000"], "train_size"),
    (["--storage", "notadb://x"], "notadb"),
    (["--fidelity", "/no/such/fidelity.json"], "--fidelity /no/such/fidelity.json: no such"),
])
def test_bad_input_is_one_line(tiny: dict[str, Path], tmp_path: Path, args: list[str],
                               message: str, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from policysearch.cli.main import main

    monkeypatch.chdir(tmp_path)
    code = main(["search", "--experiment", str(tiny["config"]), "--storage",
                 f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db", "--study-name", "bad", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines[-1].startswith(("policysearch: error:", "policysearch search: error:"))
    assert message in lines[-1], lines


def test_failed_start_leaves_nothing_behind(tiny: dict[str, Path], tmp_path: Path) -> None:
    bad = _search(tmp_path, tiny, "again", "--dataset", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2
    good = _search(tmp_path, tiny, "again", "--smoke")
    assert "created" in good.stdout and (tmp_path / "again.json").exists()


def test_two_searches_started_at_once_share_one_study(tiny: dict[str, Path],
                                                      tmp_path: Path) -> None:
    # Same command, same default-style storage, started together: one study is created, the
    # two processes propose different policies, and exactly one of them exports.
    args = [sys.executable, "-m", "policysearch", "search", "--experiment", str(tiny["config"]),
            "--storage", f"sqlite:///{tmp_path}/optuna.db", "--study-name", "both",
            "--export", str(tmp_path / "both.json"), "--trials", "4"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=_env(tmp_path), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stdout = [out for out, _ in outs]
    assert sum("created in" in out for out in stdout) == 1
    assert sum(out.count("\npolicy: ") for out in stdout) == 1, stdout
    assert sum("not exporting it again" in out for out in stdout) == 1
    trials = _study(tmp_path, "both").get_trials()
    assert len(trials) == 7 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    searched = [tuple(sorted(t.params.items())) for t in trials if t.params]
    assert len(set(searched)) == len(searched), "each process samples its own policies"
    assert json.loads((tmp_path / "both.json").read_text())["source"]["study"] == "both"


def test_the_groups_space_searches_flip_and_crop_end_to_end(tiny: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """`--space randaugment_groups`: every searched trial asks the same parameters, trains the
    policy they say (the base flip and crop included) and the exported file parses."""
    from policysearch.policy.definition import Policy, read_policy
    from policysearch.study.record import read_trial

    _search(tmp_path, tiny, "g", "--smoke", "--space", "randaugment_groups", "--trials", "2",
            "--pruner", "none")
    searched = [t for t in _study(tmp_path, "g").get_trials()
                if not t.user_attrs.get("ps.baseline")]
    assert len(searched) == 2 and all(t.state.name == "COMPLETE" for t in searched)
    names = {"num_ops", "group_geometric", "magnitude_geometric", "group_colour",
             "magnitude_colour", "flip", "crop_padding"}
    for trial in searched:
        assert names <= set(trial.params)
        policy = Policy.from_dict(read_trial(trial).policy)
        assert policy.flips == trial.params["flip"]
        assert policy.crops == (trial.params["crop_padding"] != 0)
    exported = read_policy(tmp_path / "g.json")
    assert set(exported.base) == {"crop_padding", "flip"}


def test_the_cli_with_no_size_options_trains_the_calibrated_cifar10_proxy(
        tmp_path: Path, data_dir: Path) -> None:
    """`policysearch search --dataset cifar10` with no size options: the study records, and the
    first lines state, the proxy `calibrate` picked (500 images x 150 epochs), not the file's
    250 x 40 (the unset options used to overwrite the calibrated keys). The search is stopped
    by SIGTERM once it has said what it trains."""
    import signal
    import time

    pick = yaml.safe_load((ROOT / "experiments" / "results" / "cifar10-calibration.yaml")
                          .read_text())["proxy"]
    env = _env(tmp_path, PYTHONUNBUFFERED="1",
               POLICYSEARCH_CACHE_DIR=os.environ["POLICYSEARCH_CACHE_DIR"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "policysearch", "search", "--dataset", "cifar10", "--data-dir",
         str(data_dir), "--storage", f"sqlite:///{tmp_path}/optuna.db", "--study-name", "cal",
         "--export", str(tmp_path / "cal.json")],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    deadline = time.monotonic() + 400
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.startswith("target (what the policy is for)") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(seen) + (rest or "")
    size, epochs = pick["data"]["train_size"], pick["trainer"]["epochs"]
    budgets = next(line for line in seen if line.startswith("target (what the policy is for)"))
    assert f"proxy (scores each trial): {size} images x {epochs} epochs" in budgets, text
    assert "picked by `calibrate`" in text
    assert "selection 10000 images" in budgets, "grown to data.selection_max"
    from policysearch.study.record import read_study

    config = read_study(_study(tmp_path, "cal")).experiment  # what every worker trains
    assert config["data"]["train_size"] == size
    assert config["trainer"]["epochs"] == epochs
