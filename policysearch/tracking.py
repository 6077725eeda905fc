"""MLflow: a view of the Optuna study, never its source of truth.

Every study has one parent run; every finished trial becomes one nested run, rendered from the
trial as Optuna stored it (params, per-epoch curves, state, a grid of augmented samples).
Re-evaluation and validation runs are nested under the same parent, tagged by role. Because
runs are rendered from the storage, ``sync`` can log later whatever an unreachable tracking
server missed, and never logs a trial twice.

Default store: ``sqlite:///runs/mlflow.db`` (artifacts in ``runs/mlartifacts``), or
``$MLFLOW_TRACKING_URI`` (a team's tracking server).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Fail fast instead of retrying for minutes when the server is away.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # keeps progress readable
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)

from policysearch._version import __version__  # noqa: E402
from policysearch.errors import TrackingError  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
DEFAULT_ARTIFACTS = "runs/mlartifacts"
ROLE = "policysearch.role"
TRIAL = "optuna.trial_number"
STUDY = "optuna.study_name"
PARENT = "mlflow.parentRunId"


def tracking_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent)
        if commit.returncode == 0:
            return f"{__version__}+{commit.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


class Tracker:
    """Logs a study to MLflow; a failure to log warns and never stops the search."""

    def __init__(self, uri: str | None, experiment: str, study_name: str) -> None:
        self.uri = tracking_uri(uri)
        self.experiment_name = experiment
        self.study_name = study_name
        self.missed: list[str] = []
        self._client: Any = None
        self._experiment_id: str | None = None

    # -- setup -----------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            if self.uri.startswith("sqlite:///"):
                Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                       exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def connect(self) -> None:
        """Reach the store and find or create the experiment; one clear error if it cannot."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    location = None
                    if not self.uri.startswith(("http://", "https://", "databricks")):
                        location = Path(DEFAULT_ARTIFACTS).resolve().joinpath(
                            self.experiment_name).as_uri()
                    self._experiment_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=location)
                else:
                    self._experiment_id = experiment.experiment_id
        except Exception as err:
            raise TrackingError(f"MLflow tracking store {self.uri} is unreachable "
                                f"({_reason(err)}); start it or set MLFLOW_TRACKING_URI") from None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self.connect()
        return self._experiment_id  # type: ignore[return-value]

    def _safe(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn()
        except Exception as err:
            self.missed.append(what)
            print(f"warning: MLflow: {what} not logged ({_reason(err)}); the study is safe in the "
                  f"Optuna storage: run `policysearch sync-mlflow --study-name {self.study_name}`"
                  " later", flush=True)
            return None

    # -- study parent run ------------------------------------------------------------------------

    def start_parent(self, study: Any, params: dict[str, Any], tags: dict[str, str]) -> str:
        """The study's parent run: created once (its id kept in the study), reopened on resume."""
        run_id = study.user_attrs.get("mlflow_parent_run_id")
        if run_id and self._run_exists(run_id):
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=f"study {self.study_name}",
                                     tags={ROLE: "study", STUDY: self.study_name,
                                           "policysearch.version": code_version(), **tags})
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in params.items()])
        study.set_user_attr("mlflow_parent_run_id", run_id)
        study.set_user_attr("mlflow_tracking_uri", self.uri)
        return run_id

    def _run_exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:
            return False

    def end_parent(self, run_id: str, status: str = "FINISHED") -> None:
        self._safe("the study run's end", lambda: self.client.set_terminated(run_id, status))

    # -- trials ----------------------------------------------------------------------------------

    def start_trial(self, parent_id: str, trial: Any, role: str, label: str) -> str | None:
        """Open the trial's nested run as it starts (so the UI shows running trials)."""
        def start() -> str:
            tags = {PARENT: parent_id, ROLE: role, STUDY: self.study_name,
                    TRIAL: str(trial.number), "optuna.state": "RUNNING", "policy": label}
            run = self.client.create_run(self.experiment_id, tags=tags,
                                         run_name=f"trial {trial.number} · {label}")
            return run.info.run_id

        return self._safe(f"trial {trial.number}'s start", start)

    def finish_trial(self, parent_id: str, trial: Any, grid: bytes | None,
                     run_id: str | None = None) -> str | None:
        """Render a finished trial into its run (created here if it has none) and close it."""
        return self._safe(f"trial {trial.number}",
                          lambda: self._finish_trial(parent_id, trial, grid, run_id))

    def _finish_trial(self, parent_id: str, trial: Any, grid: bytes | None,
                      run_id: str | None) -> str:
        from mlflow.entities import Metric, Param, RunTag

        attrs = trial.user_attrs
        role = "baseline" if attrs.get("baseline") else "search"
        state = trial.state.name
        start = _ms(trial.datetime_start)
        end = _ms(trial.datetime_complete) or start
        label = attrs.get("policy_label", "")
        tags = {PARENT: parent_id, ROLE: role, STUDY: self.study_name, TRIAL: str(trial.number),
                "optuna.state": state, "policy": label}
        if attrs.get("baseline"):
            tags["baseline"] = attrs["baseline"]
        if attrs.get("fail_reason"):
            tags["fail_reason"] = attrs["fail_reason"][:5000]
        if trial.system_attrs.get("failed_trial") is not None:
            tags["retry_of_trial"] = str(trial.system_attrs["failed_trial"])
        if run_id is None:
            run = self.client.create_run(self.experiment_id, start_time=start, tags=tags,
                                         run_name=f"trial {trial.number} · {label}")
            run_id = run.info.run_id
        params = {**trial.params, "seed": attrs.get("seed", ""), "role": role}
        policy = attrs.get("policy") or {}
        for key in ("type", "num_ops", "magnitude", "magnitude_std"):
            if key in policy:
                params[f"policy.{key}"] = policy[key]
        if "ops" in policy:
            params["policy.ops"] = ",".join(policy["ops"])
        metrics = [Metric("val_accuracy", float(v), start + 1000 * (step + 1), int(step))
                   for step, v in sorted(trial.intermediate_values.items())]
        metrics += [Metric("train_loss", float(v), start + 1000 * (step + 1), step)
                    for step, v in enumerate(attrs.get("train_loss", []))
                    if v is not None and math.isfinite(v)]
        if trial.value is not None:
            metrics.append(Metric("value", float(trial.value), end, 0))
        if trial.duration is not None:
            metrics.append(Metric("duration_s", trial.duration.total_seconds(), end, 0))
        self.client.log_batch(run_id, metrics=metrics,
                              params=[Param(k, _param(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items() if k != PARENT])
        if policy:
            self.client.log_dict(run_id, policy, "policy.json")
        if grid is not None:
            self._log_png(run_id, grid, "samples.png")
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status, end_time=end)
        return run_id

    def _log_png(self, run_id: str, png: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(png)
            self.client.log_artifact(run_id, str(path))

    def trial_runs(self, parent_id: str) -> dict[int, Any]:
        """Trial number -> its nested run under ``parent_id`` (the finished one if several)."""
        runs = self._children(parent_id, "search") | self._children(parent_id, "baseline")
        out: dict[int, Any] = {}
        for run in runs.values():
            number = int(run.data.tags.get(TRIAL, -1))
            if number not in out or out[number].info.status == "RUNNING":
                out[number] = run
        return out

    def _children(self, parent_id: str, role: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        token = None
        query = f"tags.`{PARENT}` = '{parent_id}' and tags.`{ROLE}` = '{role}'"
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000,
                                           page_token=token)
            found.update({r.info.run_id: r for r in page})
            token = page.token
            if not token:
                return found

    # -- re-evaluation, validation, summary ------------------------------------------------------

    def log_evaluations(self, parent_id: str, role: str, rows: list[dict[str, Any]]) -> None:
        """One nested run per (policy, seed) row, skipping rows already logged."""
        def log() -> None:
            from mlflow.entities import Metric, Param

            done = {(r.data.tags.get("policy_key"), r.data.tags.get("seed"))
                    for r in self._children(parent_id, role).values()}
            for row in rows:
                key = (row["key"], str(row["seed"]))
                if key in done:
                    continue
                tags = {PARENT: parent_id, ROLE: role, STUDY: self.study_name,
                        "policy": row["label"], "policy_key": row["key"], "seed": str(row["seed"])}
                name = f"{role} · {row['label']} · seed {row['seed']}"
                run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
                metric = "test_accuracy" if role == "validate" else "val_accuracy"
                now = int(time.time() * 1000)
                self.client.log_batch(
                    run.info.run_id,
                    metrics=[Metric(metric, float(row["accuracy"]), now, 0),
                             Metric("duration_s", float(row.get("seconds", 0.0)), now, 0)],
                    params=[Param("seed", str(row["seed"])), Param("epochs", str(row["epochs"]))],
                )
                self.client.log_dict(run.info.run_id, row["policy"], "policy.json")
                self.client.set_terminated(run.info.run_id, "FINISHED")

        self._safe(f"{role} runs", log)

    def log_summary(self, parent_id: str, study: Any, policy_json: str | None,
                    metrics: dict[str, float], artifacts: dict[str, bytes],
                    figures: dict[str, Any]) -> None:
        """The parent run's results: metrics, the exported policy, the trials table, plots."""
        def log() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(parent_id, metrics=[Metric(k, float(v), now, 0)
                                                      for k, v in metrics.items()])
            if policy_json is not None:
                self.client.log_text(parent_id, policy_json, "policy.json")
            self.client.log_text(parent_id, trials_table(study).to_csv(index=False),
                                 "trials.csv")
            for name, data in artifacts.items():
                self._log_png(parent_id, data, name)
            for name, fig in figures.items():
                from policysearch.plots import figure_png

                self._log_png(parent_id, figure_png(fig), name)

        self._safe("the study summary", log)


def trials_table(study: Any) -> Any:
    """Every trial as a row: number, role, policy, params, state, value, duration."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number,
            "role": "baseline" if t.user_attrs.get("baseline") else "search",
            "policy": t.user_attrs.get("policy_label", ""),
            "state": t.state.name,
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "fail_reason": t.user_attrs.get("fail_reason", ""),
            **{f"param.{k}": v for k, v in t.params.items()},
        })
    return pd.DataFrame(rows)


def _ms(when: Any) -> int:
    return int(when.timestamp() * 1000) if when is not None else 0


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return first[:200]


def png_bytes(array: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
