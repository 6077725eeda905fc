"""``make soak``: faults injected into real searches, many times, under load; writes
docs/reliability.md.

A CPU hog keeps one core busy. One undisturbed search (the reference) runs first; then every
round runs the same search under a study of its own and, at a random moment, injects one fault:
SIGTERM or SIGINT (a clean stop), SIGKILL (the worker dies; it is restarted), the tracking
server killed and restarted, or the worker's PostgreSQL connections terminated
(``pg_terminate_backend``). The search is then resumed until it finishes, ``sync-mlflow`` runs,
and the round checks: the documented exit codes, no trial left running after the grace period,
every finished trial exactly once in MLflow, the exact trial count, and the decision and the
exported policy equal to the reference's.

Every trial is a queued baseline (``--trials 0``): a resumed process reseeds its sampler by
design (nobody re-proposes what ran), so searched proposals after a fault differ from the
reference's, and only fixed policies make "the same decision" a fair check.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policysearch.evidence.soak_checks import (
    APP,
    Server,
    delete_studies,
    exactly_once,
    outcome,
    reference_seconds,
    running_trials,
    terminate_backends,
)
from policysearch.paths import PROJECT_ROOT

FAULTS = ["SIGTERM", "SIGINT", "SIGKILL", "tracking server", "pg_terminate_backend"]
EXPECTED = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -9, "tracking server": 0,
            "pg_terminate_backend": 0}
HEARTBEAT = 1  # seconds; a dead worker's trial is stale after 3
ATTEMPTS = 4  # searches a round may start before its fault lands in one
CHECKS = ["exit code", "none running", "MLflow exactly once", "trial count", "same decision"]


@dataclass
class Round:
    study: str
    number: int
    fault: str
    moment: float
    codes: list[int] = field(default_factory=list)
    held: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(self.held.get(c, False) for c in CHECKS)


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.storage = args.storage
        self.server = Server(work / "mlflow")
        self.lock = threading.Lock()  # the tracking server: one fault at a time
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
                        POLICYSEARCH_HEARTBEAT_SECONDS=str(HEARTBEAT),
                        PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                                    ""))
        self.studies: list[str] = []
        self.config = self.experiment()
        self.procs: list[subprocess.Popen[str]] = []
        self.stopping = False

    def experiment(self) -> Path:
        """A budget far below the smoke one: a round is about process start-ups and faults."""
        import yaml

        config = {
            "name": "soak", "dataset": self.args.dataset,
            "data": {"train_size": 64, "val_size": 64, "selection_size": 64, "image_size": 16,
                     "split_seed": 0, "data_dir": self.args.data_dir},
            "base_augment": {"crop_padding": 2, "flip": True},
            "trainer": {"epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_epochs": 0,
                        "validate_every": 2, "model": {"name": "cnn", "widths": [8, 16],
                                                       "depth": 1}},
            "target": {"train_size": 64, "trainer": {"epochs": 2}},
            "search": {"trials": 0, "baselines": ["crop_flip", "randaugment_n2_m9",
                                                  "trivialaugment"], "seed": self.args.seed},
            "race": {"top_k": 1, "min_seeds": 2, "max_seeds": 2, "budget": "proxy"},
        }
        if not self.args.data_dir:
            del config["data"]["data_dir"]
        path = self.work / "soak.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def command(self, study: str) -> list[str]:
        # each study's connections carry its name: a round terminates only its own
        storage = f"{self.storage}?application_name={APP}-{study}"
        return [sys.executable, "-m", "policysearch", "search", "--experiment",
                str(self.config), "--storage", storage, "--study-name", study,
                "--tracking-uri", self.server.uri, "--export", str(self.work / f"{study}.json")]

    def start(self, study: str, log: Path) -> subprocess.Popen[str]:
        if self.stopping:
            raise RuntimeError("the soak is stopping")
        out = log.open("a")
        proc = subprocess.Popen(self.command(study), cwd=self.work, env=self.env, text=True,
                                stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()

    # -- the undisturbed reference ---------------------------------------------------------------

    def reference(self) -> tuple[dict[str, Any], float, float]:
        """The undisturbed search: its outcome, its seconds, and the seconds from its first
        running trial to its end (the window a fault can hit)."""
        if self.args.reference:  # a finished reference of the same config: STUDY@FOLDER
            study, folder = self.args.reference.split("@")
            seconds = reference_seconds(self.storage, study, Path(folder))
            return outcome(self.storage, study, Path(folder)), seconds, 0.6 * seconds
        study = f"soak-{self.args.stamp}-reference"
        self.studies.append(study)
        tic = time.monotonic()
        proc = self.start(study, self.work / f"{study}.log")
        while proc.poll() is None and not running_trials(self.storage, study):
            time.sleep(0.5)
        first = time.monotonic()
        if proc.wait() != 0:
            raise RuntimeError(f"the undisturbed search failed: see {self.work}/{study}.log")
        end = time.monotonic()
        return outcome(self.storage, study, self.work), end - tic, end - first

    # -- one round -------------------------------------------------------------------------------

    def round(self, number: int, fault: str, delay: float,
              reference: dict[str, Any]) -> Round:
        """A search hit by ``fault`` ``delay`` seconds after its first trial started.

        A search that ends before its fault is no round: it runs again, under a study of its
        own, with the fault a third as late (at most ``ATTEMPTS`` times, then the round fails).
        """
        tic = time.monotonic()
        for attempt in range(ATTEMPTS):
            study = f"soak-{self.args.stamp}-{number:02d}" + (f"-{attempt}" if attempt else "")
            self.studies.append(study)
            log = self.work / f"{study}.log"
            proc = self.start(study, log)
            started = time.monotonic()
            while proc.poll() is None and not running_trials(self.storage, study):
                time.sleep(0.5)
            time.sleep(delay)
            result = Round(study, number, fault, round(time.monotonic() - started, 1))
            if proc.poll() is None:
                break
            result.notes.append(f"the search ended ({proc.returncode}) before the fault at "
                                f"{delay:.1f} s after its first trial started")
            proc.wait()
            delay /= 3
        else:
            result.held = {c: False for c in CHECKS}
            result.notes.append(f"the fault was never injected in {ATTEMPTS} searches")
            result.seconds = time.monotonic() - tic
            return result
        if attempt:
            result.notes.append(f"injected at attempt {attempt + 1}: the earlier searches "
                                "ended before their fault")
        self.inject(fault, proc, result)
        code = proc.wait()
        result.codes.append(code)
        expected = EXPECTED[fault]
        exit_ok = code == expected
        if code in (130, 143) and running_trials(self.storage, study):
            result.notes.append("a trial was left running after a clean stop")
            exit_ok = False
        for _ in range(3):  # resume until it finishes
            if code == 0:
                break
            code = self.start(study, log).wait()
            result.codes.append(code)
        exit_ok = exit_ok and code == 0
        result.held["exit code"] = exit_ok
        if not exit_ok:
            result.notes.append(f"exit codes {result.codes}, expected {expected} then 0; "
                                f"see {log.name}")
        with self.lock:
            if self.server.proc is None:
                self.server.start()
        result.seconds = time.monotonic() - tic
        try:
            self.check(study, result, reference)
        except Exception as err:  # a check that cannot even read the study failed
            result.notes.append(f"check failed: {type(err).__name__}: {err}"[:300])
        return result

    def inject(self, fault: str, proc: subprocess.Popen[str], result: Round) -> None:
        if fault in ("SIGTERM", "SIGINT", "SIGKILL"):
            proc.send_signal(getattr(signal, fault))
        elif fault == "tracking server":
            with self.lock:
                self.server.kill()
                time.sleep(random.uniform(1, 6))
                self.server.start()
        else:
            killed = terminate_backends(self.storage, f"{APP}-{result.study}")
            result.notes.append(f"{killed} connection(s) terminated")

    def check(self, study: str, result: Round, reference: dict[str, Any]) -> None:
        time.sleep(3 * HEARTBEAT + 1)  # the grace period
        result.held["none running"] = not running_trials(self.storage, study)
        said: list[str] = []
        synced = True
        try:  # what `policysearch sync-mlflow` runs, in this process (one start-up less)
            from policysearch.tracking.sync import sync_mlflow

            sync_mlflow(study, self.storage, self.server.uri, log=said.append)
        except Exception as err:
            synced = False
            result.notes.append(f"sync-mlflow failed: {err}"[:300])
        result.notes += [line for line in said if "merged" in line]
        once, why = exactly_once(self.storage, study, self.server.uri)
        result.held["MLflow exactly once"] = synced and once
        if why:
            result.notes.append(why)
        got = outcome(self.storage, study, self.work)
        result.held["trial count"] = got["finished"] == reference["finished"] \
            and got["baselines"] == reference["baselines"]
        same = (got["winner"], got["policy"]) == (reference["winner"], reference["policy"])
        result.held["same decision"] = same
        if not same:
            result.notes.append(f"decision: {got['reason']} (reference: {reference['reason']})")
        elif got["race"] != reference["race"]:
            result.notes.append("same decision, race accuracies differ from the reference's")


# -- the report and the command ----------------------------------------------------------------


def report(rounds: list[Round], final: dict[str, bool], reference: dict[str, Any],
           ref_seconds: float, args: argparse.Namespace, started: str) -> str:
    from policysearch.evidence.runinfo import git_commit, machine

    info = machine()
    passed = sum(r.ok for r in rounds)
    mark = {True: "yes", False: "**NO**"}
    lines = [
        "# Reliability: the fault soak", "",
        "Generated by `make soak` (policysearch/evidence/soak.py); do not edit by hand.", "",
        f"- date: {started} (UTC), commit {git_commit()}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['accelerator']}, a CPU hog "
        "busy on one core throughout (and whatever else the machine ran)",
        f"- search: `{args.dataset}` at a budget below the smoke one (64 training images of "
        f"16x16, 2 epochs, a small CNN), every trial a queued baseline "
        f"({reference['total']} trials), race on the proxy with 2 seeds, seed {args.seed}, "
        f"storage PostgreSQL, MLflow server over HTTP, heartbeat {HEARTBEAT} s (grace "
        f"{3 * HEARTBEAT} s); the undisturbed reference took {ref_seconds:.0f} s and decided: "
        f"{reference['reason']}",
        *([f"- **{args.stopped}**"] if args.stopped else []),
        f"- **{passed} of {len(rounds)} rounds held every check**; at the end, over all "
        "studies: " + ", ".join(f"{k} {mark[v]}" for k, v in final.items()), "",
        "Each round: one fault at a random moment of the search, then the same command until "
        "it finishes, `sync-mlflow`, and the checks: the exit code (SIGTERM 143, SIGINT 130, "
        "SIGKILL -9 then a restart, tracking server or database connection lost: 0; every "
        "resume 0), no trial RUNNING after the grace period, every finished trial exactly once "
        "in MLflow, the exact trial count, and the reference's decision and exported policy. "
        "`at (s)`: seconds after the round's first trial started. A search that ended before "
        "its fault landed is no round: it runs again under a new study with the fault a third "
        f"as late (at most {ATTEMPTS} searches; the notes say so).",
        "",
        "| round | fault | at (s) | exit codes | " + " | ".join(CHECKS) + " | s | notes |",
        "|---|---|---|---|" + "---|" * len(CHECKS) + "---|---|",
    ]
    for r in rounds:
        cells = [mark[r.held.get(c, False)] for c in CHECKS]
        notes = "; ".join(r.notes).replace("|", "/")
        lines.append(f"| {r.number} | {r.fault} | {r.moment:g} | "
                     f"{', '.join(map(str, r.codes))} | " + " | ".join(cells)
                     + f" | {r.seconds:.0f} | {notes} |")
    faults = {f: sum(r.fault == f for r in rounds) for f in FAULTS}
    lines += ["", "Faults injected: " + ", ".join(f"{f} x{n}" for f, n in faults.items()) + ".",
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir", default=os.environ.get("POLICYSEARCH_DATA_DIR"))
    parser.add_argument("--storage", default=os.environ.get(
        "POLICYSEARCH_SOAK_POSTGRES", "postgresql://root@127.0.0.1:5432/test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help="the faults to cycle through, comma-separated (default: all)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "docs" / "reliability.md"))
    parser.add_argument("--parallel", type=int, default=1,
                        help="rounds run at once (each its own study; more load, less time)")
    parser.add_argument("--reference", help="STUDY@FOLDER: reuse a finished undisturbed "
                                            "search of the same config (its export in FOLDER)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the studies and the logs (kept anyway when a round fails)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print(f"soak: --rounds {args.rounds}: at least 1 round is needed (make soak ROUNDS=20); "
              "docs/reliability.md is left as it is", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even started in the background
    if args.data_dir:  # the searches run in a work folder of their own
        args.data_dir = str(Path(args.data_dir).resolve())
    args.stopped = None
    args.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%m%d%H%M%S")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="policysearch-soak-"))
    soak = Soak(args, work)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    rng = random.Random(args.seed)
    kinds = [f for f in args.faults.split(",") if f in FAULTS] or FAULTS
    plan = [kinds[i % len(kinds)] for i in range(args.rounds)]
    rng.shuffle(plan)
    rounds: list[Round] = []
    try:
        soak.server.start()
        print(f"soak: work folder {work}; the undisturbed reference first", flush=True)
        reference, seconds, window = soak.reference()
        # a moment inside the window in which the reference ran trials (rounds start warmer
        # than the reference and can be shorter: a round that ends first runs again)
        delays = [rng.uniform(0, 0.8) * window for _ in plan]
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            futures = [pool.submit(soak.round, i, fault, delay, reference)
                       for i, (fault, delay) in enumerate(zip(plan, delays), 1)]
            try:
                for future in as_completed(futures):
                    r = future.result()
                    rounds.append(r)
                    print(f"soak: round {r.number}/{len(plan)} {r.fault} at {r.moment:g} s: "
                          f"exit {r.codes}, " + ("held" if r.ok else "FAILED: " + ", ".join(
                              c for c in CHECKS if not r.held.get(c)))
                          + f" ({r.seconds:.0f} s) " + "; ".join(r.notes), flush=True)
            except KeyboardInterrupt:  # stopped early: report the rounds that finished
                soak.stopping = True
                for future in futures:
                    future.cancel()
                soak.kill_all()
        rounds.sort(key=lambda r: r.number)
        if len(rounds) < len(plan):
            args.stopped = f"stopped by hand after {len(rounds)} of {len(plan)} rounds"
        final = {"none running": not any(running_trials(soak.storage, s) for s in soak.studies),
                 "MLflow exactly once": all(exactly_once(soak.storage, s, soak.server.uri)[0]
                                            for s in soak.studies)}
        text = report(rounds, final, reference, seconds, args, started)
        Path(args.out).write_text(text)
        print(f"soak: {sum(r.ok for r in rounds)}/{len(rounds)} rounds held; wrote {args.out}")
        return 0 if all(r.ok for r in rounds) and all(final.values()) else 1
    finally:
        hog.kill()
        hog.wait()
        soak.kill_all()
        soak.server.kill()
        if not args.keep and rounds and all(r.ok for r in rounds):
            delete_studies(soak.storage, soak.studies)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
