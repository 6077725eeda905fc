"""The MLflow client side: reach the store, create runs, log batches; failures only warn.

Default store: ``sqlite:///runs/mlflow.db`` (artifacts in ``runs/mlartifacts``), or
``$MLFLOW_TRACKING_URI`` (a team's tracking server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Fail fast instead of retrying for minutes when the server is away.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # keeps progress readable
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from policysearch._version import __version__  # noqa: E402
from policysearch.errors import TrackingError  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"
DEFAULT_ARTIFACTS = "runs/mlartifacts"
ROLE = "policysearch.role"
TRIAL = "optuna.trial_number"
STUDY = "optuna.study_name"
PARENT = "mlflow.parentRunId"
ATTEMPT = "policysearch.trial_attempt"
"""A trial attempt's identity (study, trial number, storage id): looked up before a run is
created, so a run whose creation reply was lost is found again, never created twice."""


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

            quiet_mlflow_logs()  # mlflow resets its logger on import
            if self.uri.startswith("sqlite:///"):
                Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                       exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def connect(self) -> None:
        """Reach the store and find or create the experiment; one clear error if it cannot.

        A local SQLite store is set up under a file lock: two searches started at once would
        otherwise race in MLflow's table creation."""
        try:
            with _store_lock(self.uri), warnings.catch_warnings():
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
                                f"({reason(err)}); start it or set MLFLOW_TRACKING_URI") from None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self.connect()
        return self._experiment_id  # type: ignore[return-value]

    def safe(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn()
        except Exception as err:
            self.missed.append(what)
            print(f"warning: MLflow: {what} not logged ({reason(err)}); the study is safe in the "
                  f"Optuna storage: run `policysearch sync-mlflow --study-name {self.study_name}`"
                  " later", flush=True)
            return None

    def run_exists(self, run_id: str) -> bool:
        """Whether the run exists and is not deleted (a merged duplicate is deleted)."""
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except Exception:
            return False

    def log_png(self, run_id: str, png: bytes, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(png)
            self.client.log_artifact(run_id, str(path))

    def trial_runs(self, parent_id: str) -> dict[int, Any]:
        """Trial number -> its nested run under ``parent_id`` (the finished one if several)."""
        out: dict[int, Any] = {}
        for number, runs in self.trial_run_groups(parent_id).items():
            out[number] = next((r for r in runs if r.info.status != "RUNNING"), runs[0])
        return out

    def trial_run_groups(self, parent_id: str) -> dict[int, list[Any]]:
        """Trial number -> every nested trial run under ``parent_id`` (oldest first)."""
        runs = self.children(parent_id, "search") | self.children(parent_id, "baseline")
        out: dict[int, list[Any]] = {}
        for run in sorted(runs.values(), key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            out.setdefault(int(run.data.tags.get(TRIAL, -1)), []).append(run)
        return out

    def find_attempt(self, parent_id: str, number: int, attempt: str) -> str | None:
        """The run of this trial attempt, if one was created (its reply lost or not)."""
        query = f"tags.`{PARENT}` = '{parent_id}' and tags.`{TRIAL}` = '{number}'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=100)
        # a run without the tag was made by an older version for the same (parent, number)
        found = sorted((r for r in runs if r.data.tags.get(ATTEMPT, attempt) == attempt),
                       key=lambda r: (r.info.status == "RUNNING", r.info.start_time or 0))
        return found[0].info.run_id if found else None

    def children(self, parent_id: str, role: str) -> dict[str, Any]:
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


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a local SQLite store (nothing for other stores)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _OneLine(logging.Filter):
    """A log record in one line: no traceback, no SQL statement under the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.stack_info or "\n" in record.getMessage():
            lines = record.getMessage().strip().splitlines()
            record.msg, record.args = (lines[0] if lines else record.levelname), None
            record.exc_info = record.exc_text = record.stack_info = None
        return True


def quiet_mlflow_logs() -> None:
    """MLflow's own log lines: warnings and worse, one line each. A failed write to its
    database (a full disk) is not logged at all by MLflow: the error reaches ``Tracker.safe``,
    which prints one warning line for it."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    for name in ("mlflow", "alembic", "sqlalchemy.engine"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _OneLine) for f in handler.filters):
                handler.addFilter(_OneLine())


quiet_mlflow_logs()


def ms(when: Any) -> int:
    return int(when.timestamp() * 1000) if when is not None else 0


def param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def reason(err: BaseException) -> str:
    """The first line of the root cause: the database's own words ("database or disk is
    full") rather than the wrapper's ("raised as a result of Query-invoked autoflush")."""
    seen = {id(err)}
    while True:
        inner = getattr(err, "orig", None) or err.__cause__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            break
        seen.add(id(inner))
        err = inner
    text = str(err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return first[:200]


def mlflow_experiment_name(dataset: str) -> str:
    """The MLflow experiment a dataset's studies log to."""
    from policysearch.data.datasets import slug

    return f"policysearch-{slug(dataset)}"
