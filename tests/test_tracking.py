"""MLflow as a view of the study, against a real ``mlflow server`` process.

The server stores runs in SQLite and proxies artifacts (``--artifacts-destination``), so every
artifact here was uploaded over HTTP. Searches are real ``policysearch`` subprocesses on a tiny
dataset; what they logged is read back with ``MlflowClient`` and the REST API.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, tiny_experiment, write_image_folder

PNG = b"\x89PNG\r\n\x1a\n"


class MlflowServer:
    """``mlflow server`` on SQLite with proxied artifacts, in its own process group."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline_s: float = 180) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner processes
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db",
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("mlflow server exited:\n"
                                     + (self.root / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise AssertionError(f"mlflow server at {self.uri} did not answer /health")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and its workers (the whole process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tracking")
    dataset = write_image_folder(root / "data", classes=3, per_class=24, size=16,
                                 test_per_class=6)
    config = tiny_experiment(root / "tiny.yaml", dataset, reevaluate={"top_k": 1, "seeds": 1},
                             search={"trials": 1, "pruner": "none", "baselines": ["crop_flip"]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               POLICYSEARCH_CACHE_DIR=str(root / "cache"))
    return {"root": root, "config": config, "env": env}


@pytest.fixture(scope="module")
def server(tiny: dict[str, Any]) -> Iterator[MlflowServer]:
    running = MlflowServer(tiny["root"] / "server").start()
    yield running
    running.stop()


def policysearch(tiny: dict[str, Any], *args: str, **popen: Any) -> Any:
    """Run ``policysearch ARGS`` (``popen``: start it in the background instead)."""
    cmd = [sys.executable, "-m", "policysearch", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=tiny["root"], env=tiny["env"], text=True, **popen)
    return subprocess.run(cmd, cwd=tiny["root"], env=tiny["env"], capture_output=True, text=True,
                          timeout=600)


def search_args(tiny: dict[str, Any], tmp: Path, name: str, uri: str, *extra: str) -> list[str]:
    return ["search", "--dataset", str(tiny["root"] / "data"), "--experiment",
            str(tiny["config"]), "--storage", f"sqlite:///{tmp}/optuna.db",
            "--tracking-uri", uri, "--study-name", name, "--export", str(tmp / "p.json"), *extra]


def load_study(tmp: Path, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db")


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


@pytest.fixture(scope="module")
def searched(tiny: dict[str, Any], server: MlflowServer,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A search first started while its tracking server is down, then run again against the
    live server: the same command, storage and study name."""
    tmp = tmp_path_factory.mktemp("searched")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failed = policysearch(tiny, *search_args(tiny, tmp, "t1", down))
    study_after_failure = (tmp / "optuna.db").exists() and "t1" in _study_names(tmp)
    ok = policysearch(tiny, *search_args(tiny, tmp, "t1", server.uri))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    return {"tmp": tmp, "down": down, "failed": failed, "ok": ok,
            "study_after_failure": study_after_failure}


def _study_names(tmp: Path) -> list[str]:
    import optuna

    return optuna.get_all_study_names(f"sqlite:///{tmp}/optuna.db")


def test_search_logs_the_study_to_the_server(searched: dict[str, Any],
                                             server: MlflowServer) -> None:
    from mlflow import MlflowClient

    tmp = searched["tmp"]
    study = load_study(tmp, "t1")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    client = MlflowClient(tracking_uri=server.uri)
    experiment = client.get_experiment_by_name(study.user_attrs["mlflow_experiment"])
    exp_id = experiment.experiment_id

    # One parent run for the study, the one the study points at, finished.
    parents = client.search_runs([exp_id], "tags.`policysearch.role` = 'study'")
    assert [r.info.run_id for r in parents] == [study.user_attrs["mlflow_parent_run_id"]]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.study_name"] == "t1"
    assert parent.data.params["trainer.epochs"] == "2"
    assert parent.data.metrics["exported_val_accuracy_mean"] > 0
    # Artifacts went through the server's proxy into its artifacts destination.
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    assert any((server.root / "artifacts").rglob("samples.png"))

    # One nested run per trial, tagged with its trial, its state and its role.
    runs = trial_runs(client, exp_id, parent.info.run_id)
    assert sorted(runs) == [t.number for t in trials]
    for trial in trials:
        [run] = runs[trial.number]
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["optuna.state"] == "COMPLETE" and tags["optuna.study_name"] == "t1"
        assert tags["policysearch.role"] == ("baseline" if trial.user_attrs.get("baseline")
                                             else "search")
        assert tags["policy"] == trial.user_attrs["policy_label"]
        assert run.data.params["seed"] == str(trial.user_attrs["seed"])
        assert run.data.metrics["value"] == pytest.approx(trial.value)
        # The per-epoch curve, one point per epoch.
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [0, 1]
        assert [m.value for m in history] == pytest.approx(
            [trial.intermediate_values[s] for s in (0, 1)])
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"samples.png", "policy.json"} <= names
        dst = tmp / "dl" / str(trial.number)
        assert fetch(client, run.info.run_id, "samples.png", dst).startswith(PNG)
        policy = json.loads(fetch(client, run.info.run_id, "policy.json", dst))
        assert policy == trial.user_attrs["policy"]
    searched_run = next(r for [r] in runs.values()
                        if r.data.tags["policysearch.role"] == "search")
    assert searched_run.data.params["policy.type"] == "randaugment"

    # Re-evaluation runs are nested too; the parent holds the exported policy and the plots.
    reeval = [r for r in nested_runs(client, exp_id, parent.info.run_id)
              if r.data.tags.get("policysearch.role") == "reevaluate"]
    assert len(reeval) == len(study.user_attrs["reevaluation"]["rows"]) == 2
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"policy.json", "trials.csv", "exported_policy_epochs.png",
            "optimization_history.png"} <= names
    dst = tmp / "dl" / "parent"
    for png in ("exported_policy_epochs.png", "optimization_history.png"):
        assert fetch(client, parent.info.run_id, png, dst).startswith(PNG)
    logged = json.loads(fetch(client, parent.info.run_id, "policy.json", dst))
    exported = json.loads((tmp / "p.json").read_text())
    assert logged == exported
    assert exported["source"]["mlflow_run_id"] == parent.info.run_id
    assert exported["source"]["mlflow_tracking_uri"] == server.uri

    # The REST API says the same.
    url = f"{server.uri}/api/2.0/mlflow/runs/get?run_id={parent.info.run_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        info = json.loads(response.read())["run"]["info"]
    assert info["status"] == "FINISHED" and info["experiment_id"] == exp_id


def test_unreachable_server_is_one_line_and_leaves_nothing(searched: dict[str, Any]) -> None:
    failed = searched["failed"]
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("policysearch: error:") and searched["down"] in lines[0]
    # No study was left behind: the rerun (same command, live server) created it afresh.
    assert not searched["study_after_failure"]
    assert "'t1' created" in searched["ok"].stdout


def test_server_lost_mid_search_then_synced(tiny: dict[str, Any], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    srv = MlflowServer(tmp_path / "server").start()
    try:
        with (tmp_path / "search.out").open("w") as log:
            search = policysearch(tiny, *search_args(tiny, tmp_path, "lost", srv.uri,
                                                     "--trials", "2", "--top-k", "0"),
                                  stdout=log, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and search.poll() is None:
            try:
                if any(t.state.name == "COMPLETE" for t in load_study(tmp_path, "lost")
                       .get_trials()):
                    break
            except KeyError:  # not created yet
                pass
            time.sleep(0.2)
        assert search.poll() is None, "the search ended before the server could be killed"
        srv.stop(signal.SIGKILL)
        _, stderr = search.communicate(timeout=600)
        out = (tmp_path / "search.out").read_text()
        # The search finished and exported; the missed logging is a warning naming the fix.
        assert search.returncode == 0, out + stderr
        assert "Traceback" not in stderr
        assert (tmp_path / "p.json").exists()
        assert "warning: MLflow:" in out and "policysearch sync-mlflow --study-name lost" in out
        study = load_study(tmp_path, "lost")
        finished = [t.number for t in study.get_trials()
                    if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
        assert len(finished) == 3

        srv.start()  # the same database, the same port
        client = MlflowClient(tracking_uri=srv.uri)
        exp_id = client.get_experiment_by_name(study.user_attrs["mlflow_experiment"]).experiment_id
        parent = study.user_attrs["mlflow_parent_run_id"]
        missing = set(finished) - {n for n, rs in trial_runs(client, exp_id, parent).items()
                                   if any(r.info.status == "FINISHED" for r in rs)}
        assert missing, "the server was killed, yet every trial was logged"

        sync = ["sync-mlflow", "--study-name", "lost", "--storage",
                f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri", srv.uri]
        first = policysearch(tiny, *sync)
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"synced {len(missing)} trial(s)" in first.stdout
        runs = trial_runs(client, exp_id, parent)
        assert sorted(runs) == finished
        for number in finished:
            [run] = runs[number]
            assert run.info.status == "FINISHED"
            assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
        count = len(nested_runs(client, exp_id, parent))

        second = policysearch(tiny, *sync)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "synced 0 trial(s)" in second.stdout
        assert len(nested_runs(client, exp_id, parent)) == count
        assert all(len(rs) == 1 for rs in trial_runs(client, exp_id, parent).values())
    finally:
        srv.stop(signal.SIGKILL)
