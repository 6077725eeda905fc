"""MLflow as a view of the study, against a real ``mlflow server`` process.

The server stores runs in SQLite and proxies artifacts (``--artifacts-destination``), so every
artifact here was uploaded over HTTP. The search is a real ``policysearch`` subprocess on a tiny
dataset; the server is killed in the middle of it, the search goes on, and ``sync-mlflow`` (with
the dataset gone) fills in what was missed. What was logged is read back with ``MlflowClient``.
The live path of the summary (sample grids, the exported policy's epochs) is checked by
``test_ui.py``; the rendering of a trial and of the description is checked here without a server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, tiny_experiment, write_image_folder
from mlflow_server import MlflowServer

PNG = b"\x89PNG\r\n\x1a\n"
NOTE = "mlflow.note.content"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tracking")
    dataset = write_image_folder(root / "data", classes=3, per_class=24, size=16,
                                 test_per_class=6)
    config = tiny_experiment(root / "tiny.yaml", dataset,
                             search={"trials": 2, "pruner": "none", "baselines": ["crop_flip"]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    return {"root": root, "config": config, "env": env, "dataset": dataset}


def policysearch(tiny: dict[str, Any], *args: str, **popen: Any) -> Any:
    """Run ``policysearch ARGS`` (``popen``: start it in the background instead)."""
    cmd = [sys.executable, "-m", "policysearch", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=tiny["root"], env=tiny["env"], text=True, **popen)
    return subprocess.run(cmd, cwd=tiny["root"], env=tiny["env"], capture_output=True, text=True,
                          timeout=600)


def search_args(tiny: dict[str, Any], tmp: Path, name: str, uri: str) -> list[str]:
    return ["search", "--dataset", str(tiny["dataset"]), "--experiment", str(tiny["config"]),
            "--storage", f"sqlite:///{tmp}/optuna.db", "--tracking-uri", uri,
            "--study-name", name, "--export", str(tmp / "p.json")]


def load_study(tmp: Path, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db")


def record(study: Any) -> dict[str, Any]:
    return {k[3:]: v for k, v in study.user_attrs.items() if k.startswith("ps.")}


def trial_record(trial: Any) -> dict[str, Any]:
    return {k[3:]: v for k, v in trial.user_attrs.items() if k.startswith("ps.")}


def nested_runs(client: Any, experiment_id: str, parent: str) -> list[Any]:
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                              max_results=1000)


def trial_runs(client: Any, experiment_id: str, parent: str) -> dict[int, list[Any]]:
    """Trial number -> the trial runs nested under ``parent``."""
    out: dict[int, list[Any]] = {}
    for run in nested_runs(client, experiment_id, parent):
        if run.data.tags.get("policysearch.role") in ("search", "baseline"):
            out.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    return out


def fetch(client: Any, run_id: str, path: str, dst: Path) -> bytes:
    """An artifact's bytes, downloaded through the server."""
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst))).read_bytes()


def note_of(client: Any, run_id: str) -> str:
    return client.get_run(run_id).data.tags.get(NOTE, "")


def test_unreachable_server_is_one_line_and_leaves_nothing(tiny: dict[str, Any],
                                                           tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failed = policysearch(tiny, *search_args(tiny, tmp_path, "t1", down))
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("policysearch: error:") and down in lines[0]
    assert not (tmp_path / "optuna.db").exists() or not _study_names(tmp_path)


def _study_names(tmp: Path) -> list[str]:
    import optuna

    return optuna.get_all_study_names(f"sqlite:///{tmp}/optuna.db")


def wait_for_note(client: Any, tmp: Path, text: str, search: Any, timeout: float = 900) -> str:
    """The study run's description once it contains ``text`` (the search still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and search.poll() is None:
        try:
            parent = record(load_study(tmp, "lost")).get("mlflow_parent_run_id")
            if parent and text in (note := note_of(client, parent)):
                return note
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"the study run's description never said {text!r}")


@pytest.mark.timeout(1800)  # minutes per search on a loaded machine: fail on faults, not load
def test_server_lost_mid_search_then_synced_without_the_data(tiny: dict[str, Any],
                                                             tmp_path: Path) -> None:
    from mlflow import MlflowClient

    srv = MlflowServer(tmp_path / "server").start()
    client = MlflowClient(tracking_uri=srv.uri)
    data = tmp_path / "data"
    shutil.copytree(tiny["dataset"], data)
    local = {**tiny, "dataset": data}
    try:
        with (tmp_path / "search.out").open("w") as log:
            search = policysearch(local, *search_args(local, tmp_path, "lost", srv.uri),
                                  stdout=log, stderr=subprocess.PIPE)
        # While the study runs, its description says how far it is.
        running = wait_for_note(client, tmp_path, "Running: 1 of 3 trials done", search)
        assert "best so far" in running and "Reproducing the study" in running
        srv.stop(signal.SIGKILL)
        _, stderr = search.communicate(timeout=1500)
        out = (tmp_path / "search.out").read_text()
        # The search finished and exported; the missed logging is a warning naming the fix.
        assert search.returncode == 0, out + stderr
        assert "Traceback" not in stderr
        assert (tmp_path / "p.json").exists()
        assert "warning: MLflow:" in out and "policysearch sync-mlflow --study-name lost" in out
        study = load_study(tmp_path, "lost")
        rec = record(study)
        finished = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED",
                                                                     "FAIL")]
        assert len(finished) == 3 and rec["decision"] is not None

        shutil.rmtree(data)  # sync needs no data
        srv.start()  # the same database, the same port
        exp = client.get_experiment_by_name(rec["mlflow_experiment"])
        parent = rec["mlflow_parent_run_id"]
        logged = {n for n, rs in trial_runs(client, exp.experiment_id, parent).items()
                  if any(r.info.status == "FINISHED" for r in rs)}
        missing = {t.number for t in finished} - logged
        assert missing, "the server was killed, yet every trial was logged"
        assert "Running:" in note_of(client, parent)  # the decision never reached MLflow

        sync = ["sync-mlflow", "--study-name", "lost", "--storage",
                f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", srv.uri]
        first = policysearch(local, *sync)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"synced {len(missing)} trial(s)" in first.stdout
        check_study(client, exp, study, parent, tmp_path, live=logged)
        runs_before = sorted(r.info.run_id for r in nested_runs(client, exp.experiment_id,
                                                                parent))
        description = note_of(client, parent)

        second = policysearch(local, *sync)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "synced 0 trial(s)" in second.stdout
        assert sorted(r.info.run_id for r in nested_runs(client, exp.experiment_id,
                                                         parent)) == runs_before
        assert note_of(client, parent) == description
        assert all(len(rs) == 1
                   for rs in trial_runs(client, exp.experiment_id, parent).values())
    finally:
        srv.stop(signal.SIGKILL)


def test_one_run_per_trial_attempt_duplicates_merged_by_sync(tiny: dict[str, Any],
                                                              tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from policysearch.tracking.view import attempt_key

    srv = MlflowServer(tmp_path / "server").start()
    client = MlflowClient(tracking_uri=srv.uri)
    try:
        done = policysearch(tiny, *search_args(tiny, tmp_path, "dup", srv.uri))
        assert done.returncode == 0, done.stdout + done.stderr
        study = load_study(tmp_path, "dup")
        rec = record(study)
        exp = client.get_experiment_by_name(rec["mlflow_experiment"])
        parent = rec["mlflow_parent_run_id"]
        before = trial_runs(client, exp.experiment_id, parent)
        assert all(len(rs) == 1 for rs in before.values()) and len(before) == 3
        trials = study.get_trials()
        tags = {"mlflow.parentRunId": parent, "policysearch.role": "search",
                "optuna.study_name": "dup"}
        # Trial 1: two extra runs, as an older version left them (no identity tag).
        original = before[1][0].info.run_id
        for _ in range(2):
            client.create_run(exp.experiment_id, tags={**tags, "optuna.trial_number": "1"})
        # Trial 2: its run's creation "reply was lost": the run the trial recorded is gone and
        # the server holds another run of the same attempt; sync finds it instead of adding one.
        client.delete_run(before[2][0].info.run_id)
        lost = client.create_run(exp.experiment_id, tags={
            **tags, "optuna.trial_number": "2",
            "policysearch.trial_attempt": attempt_key("dup", trials[2])}).info.run_id

        sync = ["sync-mlflow", "--study-name", "dup", "--storage",
                f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", srv.uri]
        first = policysearch(tiny, *sync)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"trial 1: merged 3 runs into one: kept {original}" in first.stdout
        assert "deleted 2 extra trial run(s)" in first.stdout
        assert "synced 1 trial(s)" in first.stdout  # trial 2, rendered into the found run
        after = trial_runs(client, exp.experiment_id, parent)
        assert {n: [r.info.run_id for r in rs] for n, rs in after.items()} == {
            0: [before[0][0].info.run_id], 1: [original], 2: [lost]}
        assert all(rs[0].info.status == "FINISHED" for rs in after.values())
        assert after[2][0].data.metrics["val_accuracy"] == pytest.approx(trials[2].value)

        second = policysearch(tiny, *sync)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "merged" not in second.stdout and "synced 0 trial(s)" in second.stdout
    finally:
        srv.stop(signal.SIGKILL)


def check_study(client: Any, exp: Any, study: Any, parent_id: str, tmp: Path,
                live: set[int]) -> None:
    """Everything MLflow shows of a finished study equals what the Optuna storage holds."""
    rec = record(study)
    # The experiment opens as model training, with a saved view of this study's runs table.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags["mlflow.sharedViewState.study-lost"])
    state = json.loads(view["state"])
    assert "params.`num_ops`" in state["selectedColumns"]
    assert "metrics.`paired_gain_over_crop_flip`" in state["selectedColumns"]
    assert state["searchFilter"] == "tags.`optuna.study_name` = 'lost'"

    # One study run, the one the study points at, finished, with the decision first.
    parents = client.search_runs([exp.experiment_id], "tags.`policysearch.role` = 'study' and "
                                 "tags.`optuna.study_name` = 'lost'")
    assert [r.info.run_id for r in parents] == [parent_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["trainer.epochs"] == "2"
    decision = rec["decision"]
    assert parent.data.tags["decision"] == decision["sentence"]
    note = parent.data.tags[NOTE]
    assert note.startswith(f"### {decision['sentence']}\n")
    assert "| policy | role | accuracy, mean ± std (%) |" in note
    for row in decision["table"]:
        assert f"| {row['label']} | {row['role']} |" in note
    assert "Running:" not in note and "load_transform" in note and "load_policy" in note
    assert "policysearch search --experiment experiment.yaml" in note
    assert "optimization_history.png" in note and "viewStateShareKey=study-lost" in note
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    names = {a.path for a in client.list_artifacts(parent_id)}
    assert {"policy.json", "trials.csv", "experiment.yaml", "optimization_history.png"} <= names
    dst = tmp / "dl" / "parent"
    assert fetch(client, parent_id, "optimization_history.png", dst).startswith(PNG)
    assert json.loads(fetch(client, parent_id, "policy.json", dst)) == json.loads(
        (tmp / "p.json").read_text())
    import yaml

    assert yaml.safe_load(fetch(client, parent_id, "experiment.yaml", dst)) == rec["experiment"]

    # One nested run per finished trial, rendered from the trial.
    runs = trial_runs(client, exp.experiment_id, parent_id)
    trials = [t for t in study.get_trials() if t.state.name != "RUNNING"]
    assert sorted(runs) == [t.number for t in trials]
    for trial in trials:
        [run] = runs[trial.number]
        tr = trial_record(trial)
        policy = tr["policy"]
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent_id
        assert tags["state"] == trial.state.name and tags["optuna.study_name"] == "lost"
        assert tags["policysearch.role"] == ("baseline" if tr.get("baseline") else "search")
        assert run.info.run_name.endswith(f"· trial {trial.number}")
        assert params["type"] == policy["type"] and params["seed"] == str(tr["seed"])
        if policy["type"] == "randaugment":
            assert params["num_ops"] == str(policy["num_ops"])
            assert float(params["magnitude"]) == policy["magnitude"]
            assert params["ops"] == ", ".join(policy["ops"])
            assert f"RA N={policy['num_ops']}" in run.info.run_name
        ops = {k[3:]: v for k, v in params.items() if k.startswith("op_")}
        assert len(ops) >= 14 and set(ops.values()) <= {"in", "out"}
        assert {k for k, v in ops.items() if v == "in"} == set(policy.get("ops", []))
        # The per-epoch curve is Optuna's, step for step.
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in history] == [
            (s, pytest.approx(v)) for s, v in sorted(trial.intermediate_values.items())]
        assert run.data.metrics["value"] == pytest.approx(trial.value)
        if tr.get("paired_gain") is not None:
            assert run.data.metrics["paired_gain_over_crop_flip"] == pytest.approx(
                tr["paired_gain"])
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "policy.json" in names
        if trial.number in live:  # logged by the search itself: it had the images
            assert "samples.png" in names
        got = json.loads(fetch(client, run.info.run_id, "policy.json",
                               tmp / "dl" / str(trial.number)))
        assert got == policy
    searched = [t for t in trials if not trial_record(t).get("baseline")]
    assert all(trial_record(t).get("paired_gain") is not None for t in searched)

    # Race runs nest under the study too: one per (policy, seed).
    race = [r for r in nested_runs(client, exp.experiment_id, parent_id)
            if r.data.tags.get("policysearch.role") == "race"]
    assert len(race) == len(rec["race_rows"]) == 4
    assert {(r.data.tags["policy_key"], int(r.data.tags["seed"])) for r in race} == {
        (row["key"], row["seed"]) for row in rec["race_rows"]}
    for run in race:
        row = next(r for r in rec["race_rows"] if r["key"] == run.data.tags["policy_key"]
                   and r["seed"] == int(run.data.tags["seed"]))
        assert run.data.metrics["selection_accuracy"] == pytest.approx(row["accuracy"])
        assert run.data.params["type"] == row["policy"]["type"]
        assert run.info.run_name.endswith(f"· seed {row['seed']}")


# ----------------------------------------------------------------------------------------------
# Rendering, without a server: real Optuna trials, the real race


def _trials(pruner_cuts: bool) -> Any:
    import optuna

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    for name in ("Rotate", "Color", "ShearX"):
        trial.suggest_categorical(f"op_{name}", [False, True])
    trial.report(0.4, 1)
    trial.report(0.5, 2)
    state = optuna.trial.TrialState.PRUNED if pruner_cuts else optuna.trial.TrialState.COMPLETE
    study.tell(trial, None if pruner_cuts else 0.5, state=state)
    return study.trials[0]


def test_a_trial_reads_as_its_policy() -> None:
    from policysearch.study.record import TrialRecord
    from policysearch.tracking import render

    policy = {"type": "randaugment", "num_ops": 2, "magnitude": 9.0, "magnitude_std": 0.0,
              "ops": ["Rotate", "Color"]}
    rec = TrialRecord(policy=policy, label="RA(N=2,M=9,2 ops)", seed=7, worker="w0",
                      paired_gain=0.0125)
    trial = _trials(pruner_cuts=False)
    assert render.run_name(3, rec) == "RA N=2 M=9: Rotate, Color · trial 3"
    params = render.trial_params(trial.params, rec)
    assert params["type"] == "randaugment" and params["num_ops"] == "2"
    assert params["magnitude"] == "9" and params["ops"] == "Rotate, Color"
    assert {k: v for k, v in params.items() if k.startswith("op_")} == {
        "op_Rotate": "in", "op_Color": "in", "op_ShearX": "out"}
    metrics = {(k, s): v for k, v, _, s in render.trial_metrics(trial, rec)}
    assert metrics[("val_accuracy", 1)] == 0.4 and metrics[("val_accuracy", 2)] == 0.5
    assert metrics[("paired_gain_over_crop_flip", 2)] == 0.0125
    assert render.trial_tags(trial, rec, "hyperband")["state"] == "COMPLETE"

    baseline = TrialRecord(policy={"type": "none"}, label="baseline crop_flip", seed=7,
                           worker="w0", baseline="crop_flip")
    assert render.run_name(0, baseline) == "baseline crop+flip · trial 0"
    ops = render.trial_params({}, baseline)
    assert len([k for k in ops if k.startswith("op_")]) == 14 and set(
        v for k, v in ops.items() if k.startswith("op_")) == {"out"}

    reference = {"policy": {"type": "none"}, "label": "baseline crop_flip",
                 "role": "reference", "seed": 10000}
    assert render.evaluation_name("race", reference) == "race · baseline crop+flip · seed 10000"

    pruned = _trials(pruner_cuts=True)
    tags = render.trial_tags(pruned, rec, "hyperband")
    assert tags["state"] == "PRUNED"
    assert tags["prune_reason"].startswith("pruned by hyperband after epoch 2: validation "
                                           "accuracy 0.5000")


def _decision(candidate: list[float], crop_flip: list[float]) -> dict[str, Any]:
    from policysearch.config.experiment import RaceConfig
    from policysearch.policy.baselines import BASELINES
    from policysearch.policy.definition import randaugment
    from policysearch.search.contenders import Contender
    from policysearch.search.race import race

    ra = randaugment(2, 9, ops=("Rotate", "Color"))
    cf = BASELINES["crop_flip"]
    entrants = [Contender(ra.key(), "RA(N=2,M=9,2 ops)", ra.to_dict(), "candidate", 3, 0.5),
                Contender(cf.key(), "baseline crop_flip", cf.to_dict(), "baseline", 0, 0.45)]
    scores = {ra.key(): candidate, cf.key(): crop_flip}
    config = RaceConfig(top_k=1, min_seeds=3, max_seeds=3)
    return race(entrants, lambda c, s: scores[c.key][s - 10_000], config,
                log=lambda _: None).to_dict()


def test_the_description_states_the_decision_and_how_to_use_it() -> None:
    from policysearch.tracking.note import study_note

    experiment = {"dataset": "cifar10", "search": {"space": "randaugment_subset", "trials": 20,
                                                   "baselines": ["crop_flip"],
                                                   "sampler": "tpe", "pruner": "hyperband"}}
    common = {"study_name": "s", "experiment": experiment, "source": "experiments/c.yaml",
              "storage": "sqlite:///runs/optuna.db"}
    # A real gain: the sentence first, the table with the paired gain and its interval.
    won = _decision([0.60, 0.62, 0.61], [0.50, 0.51, 0.505])
    text = study_note(decision=won, policy_path="policies/s.json", **common)
    assert text.startswith(f"### {won['sentence']}\n")
    assert "changes accuracy over crop+flip by" in won["sentence"]
    assert "| RA(N=2,M=9,2 ops) | candidate | 61.00 ± 1.00 | +10.50 pts [+" in text
    assert "load_policy('policies/s.json')" in text
    assert "load_transform('policies/s.json')" in text and "PyTorch" in text
    assert "policysearch search --experiment experiments/c.yaml --dataset cifar10 " \
           "--study-name s --storage sqlite:///runs/optuna.db" in text
    for plot in ("optimization_history.png", "param_importances.png", "op_in_out.png",
                 "exported_policy_epochs.png"):
        assert f"- `{plot}`: " in text
    assert "Fidelity" not in text
    # No gain: keep crop+flip, said first.
    lost = _decision([0.40, 0.42, 0.41], [0.51, 0.50, 0.50])
    text = study_note(decision=lost, **common)
    assert text.startswith("### No measurable gain over crop+flip")
    assert "keep crop+flip" in text.splitlines()[0]
    # The fidelity figure, when one is known.
    fidelity = {"spearman": 0.94, "spearman_interval": [0.71, 1.0], "kendall": 0.83,
                "kendall_interval": [0.5, 1.0], "interval_level": 0.9, "cost_ratio": 0.31,
                "seeds": [1, 2, 3], "policies": [{}] * 9}
    text = study_note(decision=lost, fidelity=fidelity, **common)
    assert "Spearman +0.94 [+0.71, +1.00]" in text and "cost proxy/target 0.31" in text
    assert "9 policies x 3 seeds" in text
    # While running: progress instead of a decision.
    text = study_note(decision=None, progress={"done": 4, "total": 23, "best": {
        "number": 2, "value": 0.55, "label": "TA: all 14 ops", "gain": 0.01}}, **common)
    assert text.startswith("### Running: 4 of 23 trials done")
    assert "best so far **TA: all 14 ops** (trial 2)" in text and "+1.00 pts" in text


def test_a_grouped_trial_shows_each_ops_magnitude_and_the_base_it_turns_off() -> None:
    from policysearch import randaugment
    from policysearch.tracking import render

    policy = randaugment(2, 9, ops=["Identity", "Rotate", "Color", "Equalize"],
                         op_magnitudes={"Rotate": 14}).to_dict()
    policy["base"] = {"flip": False}
    switches = {"group_geometric": True, "magnitude_geometric": 14, "op_Rotate": True,
                "op_Color": True, "op_Identity": True, "op_Equalize": True, "op_ShearX": False}
    params = render.policy_params(policy, switches)
    assert params["magnitude_Rotate"] == "14" and params["magnitude_Color"] == "9"
    assert params["magnitude_ShearX"] == "—" and "magnitude_Equalize" not in params
    assert params["flip"] == "off" and params["crop"] == "on"
    assert render.policy_name(policy) == ("RA N=2 M=geometric 14/colour 9: Identity, Rotate, "
                                          "Color, Equalize · no flip")
    plain = render.policy_params(randaugment(2, 9).to_dict())
    assert not any(k.startswith("magnitude_") for k in plain) and plain["flip"] == "on"


def test_op_in_out_counts_the_ops_the_policy_held() -> None:
    """With op groups, an op whose switch is on is out when its group is off."""
    import optuna

    from policysearch.study.record import TrialRecord, write_trial
    from policysearch.tracking.plots import op_effects

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction="maximize")
    for value, group, ops in ((0.6, True, ["Rotate", "Color"]),
                              (0.4, False, ["Color", "Identity"])):
        study.enqueue_trial({"op_Rotate": True, "group_geometric": group})
        trial = study.ask()
        trial.suggest_categorical("op_Rotate", [True, False])  # on in both trials
        trial.suggest_categorical("group_geometric", [True, False])
        write_trial(trial, TrialRecord(policy={"type": "randaugment", "ops": ops}, label="",
                                       seed=1, worker="w"))
        study.tell(trial, value)
    assert op_effects(study.get_trials()) == {"Rotate": (0.6, 0.4, 1, 1)}
