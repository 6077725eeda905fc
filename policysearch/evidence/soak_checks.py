"""The soak's reading of a study after a round (policysearch/evidence/soak.py): trials left
running, the outcome (count, decision, exported policy), MLflow's runs per trial; its two
tools on PostgreSQL: terminating a worker's connections, deleting the soak's studies; and the
tracking server it kills and restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

APP = "policysearch-soak"
"""The application name of the soak searches' PostgreSQL connections (whose are terminated)."""


def load(storage: str, study: str) -> Any:
    import optuna

    from policysearch.study.storage import normalize_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=normalize_url(storage))


def running_trials(storage: str, study: str) -> list[int]:
    try:
        trials = load(storage, study).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []
    return [t.number for t in trials if t.state.name == "RUNNING"]


def outcome(storage: str, study: str, work: Path) -> dict[str, Any]:
    """What a finished study decided, exported and counted."""
    from policysearch.study.record import queued_baseline, read_study

    handle = load(storage, study)
    record = read_study(handle)
    trials = handle.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    decision = record.decision or {}
    exported = work / f"{study}.json"
    policy = json.loads(exported.read_text()) if exported.exists() else {}
    policy.pop("source", None)
    return {"finished": len(finished), "total": record.total_trials,
            "baselines": sorted(str(queued_baseline(t)) for t in finished),
            "winner": (decision.get("winner") or {}).get("key"),
            "reason": decision.get("reason"), "policy": policy,
            "race": sorted((r["key"], r["seed"], r["accuracy"]) for r in record.race_rows)}


def exactly_once(storage: str, study: str, uri: str) -> tuple[bool, str]:
    """Every finished trial has exactly one run in MLflow, and no other trial has one."""
    from policysearch.study.record import read_study
    from policysearch.tracking.client import Tracker

    handle = load(storage, study)
    record = read_study(handle)
    if not record.mlflow_parent_run_id or not record.mlflow_experiment:
        return False, "no study run in MLflow"
    tracker = Tracker(uri, record.mlflow_experiment, study)
    groups = tracker.trial_run_groups(record.mlflow_parent_run_id)
    finished = {t.number for t in handle.get_trials(deepcopy=False)
                if t.state.name in ("COMPLETE", "PRUNED", "FAIL")}
    counts = {n: len(groups.get(n, [])) for n in finished | set(groups)}
    wrong = {n: c for n, c in counts.items() if c != (1 if n in finished else 0)}
    return not wrong, (f"trial -> runs in MLflow: {wrong}" if wrong else "")


def terminate_backends(url: str, app: str) -> int:
    """``pg_terminate_backend`` every connection named ``app``; returns how many."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = %s", (app,)).fetchall()
    return len(rows)


def reference_seconds(storage: str, study: str, work: Path) -> float:
    """How long a finished search took: its first trial's start to its export."""
    trials = load(storage, study).get_trials(deepcopy=False)
    first = min(t.datetime_start for t in trials if t.datetime_start)
    return (work / f"{study}.json").stat().st_mtime - first.timestamp()


def delete_studies(storage: str, names: list[str]) -> None:
    import optuna

    from policysearch.study.storage import normalize_url

    for name in names:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=normalize_url(storage))


class Server:
    """``mlflow server`` on SQLite, in its own process group; killed and restarted at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
               f"sqlite:///{self.root}/mlflow.db", "--artifacts-destination",
               str(self.root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", "1"]
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server at {self.uri} did not start")

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
