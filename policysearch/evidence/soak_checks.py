"""The soak's reading of a study after a round (policysearch/evidence/soak.py): trials left
running, the outcome (searched draws, baselines, decision, exported policy), searched trials
lost or duplicated, MLflow's runs per trial; its tools on PostgreSQL: terminating a worker's
connections, deleting the soak's studies; the tracking server it kills and restarts; and the
full disk it makes of the results folder."""

from __future__ import annotations

import contextlib
import functools
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


@functools.lru_cache(maxsize=8)
def _storage(url: str) -> Any:
    """One Optuna storage (one connection pool) per database for the whole soak: the checks
    poll, and a storage per call left a pool open each until PostgreSQL ran out of clients."""
    import optuna

    from policysearch.study.storage import normalize_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(normalize_url(url))


def load(storage: str, study: str) -> Any:
    import optuna

    return optuna.load_study(study_name=study, storage=_storage(storage))


def running_trials(storage: str, study: str, worker: str | None = None) -> list[int]:
    """The study's RUNNING trials (those ``worker``, such as ``w1``, runs)."""
    from policysearch.study.record import PREFIX

    try:
        trials = load(storage, study).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []
    return [t.number for t in trials if t.state.name == "RUNNING" and (
        worker is None or t.user_attrs.get(PREFIX + "worker") == worker)]


def outcome(storage: str, study: str, exported: Path) -> dict[str, Any]:
    """What a finished study decided, exported and counted: its searched trials by draw (the
    random sampler's ordinal: the same draw is the same policy), its baselines, the decision,
    and the margin of the choice of the finalist."""
    from policysearch.config.samplers import DRAW
    from policysearch.study.record import queued_baseline, read_study

    handle = load(storage, study)
    record = read_study(handle)
    trials = handle.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    decision = record.decision or {}
    policy = json.loads(exported.read_text()) if exported.exists() else {}
    policy.pop("source", None)
    searched = sorted(((t.value or 0.0), t.user_attrs.get(DRAW, -1)) for t in finished
                      if not queued_baseline(t))
    lead = 100 * (searched[-1][0] - searched[-2][0]) if len(searched) > 1 else None
    return {"finished": len(finished), "total": record.total_trials,
            "draws": sorted(d for _, d in searched),
            "baselines": sorted(str(queued_baseline(t)) for t in finished if queued_baseline(t)),
            "decision": (decision.get("outcome"), decision.get("candidate"),
                         (decision.get("winner") or {}).get("key")),
            "reason": decision.get("reason"), "policy": policy, "lead": lead,
            "race": sorted((r["key"], r["seed"], r["accuracy"]) for r in record.race_rows)}


def searched_once(got: dict[str, Any], reference: dict[str, Any]) -> tuple[bool, str]:
    """Every searched proposal of the undisturbed search finished exactly once here (none
    lost, none duplicated, none that it did not make), and every baseline once."""
    from collections import Counter

    have, want = Counter(got["draws"]), Counter(reference["draws"])
    lost = sorted((want - have).elements())
    extra = sorted((have - want).elements())
    twice = sorted(d for d, n in have.items() if n > 1)
    problems = []
    if lost:
        problems.append(f"searched draws lost: {lost}")
    if twice:
        problems.append(f"searched draws finished more than once: {twice}")
    if [d for d in extra if d not in twice]:
        problems.append(f"searched draws the reference never made: {extra}")
    if got["baselines"] != reference["baselines"]:
        problems.append(f"baselines {got['baselines']} (reference {reference['baselines']})")
    return not problems, "; ".join(problems)


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


def delete_studies(storage: str, names: list[str]) -> None:
    import optuna

    for name in names:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=_storage(storage))


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


class Disk:
    """The results folder (the searches' exports) on a small tmpfs of its
    own, so that a round can fill it and free it. Mounting needs root; without it the folder
    is a plain one and the "disk full" fault is not offered."""

    SIZE = "8m"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE}", "tmpfs",
                               str(folder)], capture_output=True, text=True)
        self.mounted = done.returncode == 0
        self.why = "" if self.mounted else (done.stderr.strip() or "mount failed")[:200]
        self.filler = folder / ".soak-filler"

    def fill(self) -> int:
        """Write zeros until the disk is full; returns the bytes written."""
        written = 0
        block = b"\0" * (1 << 20)
        with contextlib.suppress(OSError), self.filler.open("ab") as out:
            while True:
                out.write(block)
                out.flush()
                written += len(block)
        with contextlib.suppress(OSError), self.filler.open("ab") as out:  # the last bytes
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)
            self.mounted = False
