"""``make soak``: faults injected into real searches, many times, under load; writes
docs/reliability.md.

A CPU hog keeps one core busy. One undisturbed search (the reference) runs first: 8 searched
trials and 3 baselines, two workers, PostgreSQL, an MLflow server over HTTP. Then every round
runs the same search under a study of its own and, at a random moment, injects one fault:
SIGTERM to the search (a clean stop), SIGKILL of its second worker, the tracking server killed
and restarted, the workers' PostgreSQL connections terminated (``pg_terminate_backend``), or
the results folder filled up (a tmpfs of its own) until the search ends. The search is then
resumed until it finishes, ``sync-mlflow`` runs, and the round checks: the documented exit
codes, no trial left running after the grace period, every finished trial exactly once in
MLflow (no run without a trial, no trial without a run), every searched proposal of the
reference finished exactly once (none lost, none duplicated), and the reference's decision and
exported policy.

The searched trials are proposed by the random sampler, whose k-th proposal is a function of
the study's seed and k (``config/samplers.py``): a search that lost a worker or was resumed
proposes what the undisturbed one proposed, so "the same decision" is a fair check. The report
states the margin of that decision (the finalist's lead over the runner-up on validation).
"""

from __future__ import annotations

import argparse
import contextlib
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
from pathlib import Path
from typing import Any

from policysearch.evidence.soak_checks import (
    APP,
    Disk,
    Server,
    delete_studies,
    exactly_once,
    load,
    outcome,
    running_trials,
    searched_once,
    terminate_backends,
)
from policysearch.evidence.soak_report import (
    ATTEMPTS,
    CHECKS,
    EXPECTED,
    FAULTS,
    HEARTBEAT,
    SEARCHED,
    Round,
    report,
)
from policysearch.paths import PROJECT_ROOT, write_atomic


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.storage = args.storage
        self.server = Server(work / "mlflow")
        self.disk = Disk(work / "results")
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
        """A budget below the smoke one: a round is about process start-ups and faults."""
        import yaml

        config = {
            "name": "soak", "dataset": self.args.dataset,
            "data": {"train_size": 128, "val_size": 256, "selection_size": 128,
                     "selection_max": 128, "image_size": 16, "split_seed": 0,
                     "data_dir": self.args.data_dir},
            "base_augment": {"crop_padding": 2, "flip": True},
            "trainer": {"epochs": 2, "batch_size": 32, "lr": 0.05, "warmup_epochs": 0,
                        "validate_every": 2, "model": {"name": "cnn", "widths": [8, 16],
                                                       "depth": 1}},
            "target": {"train_size": 128, "trainer": {"epochs": 2}},
            "search": {"trials": SEARCHED, "sampler": "random", "pruner": "none",
                       "learning_check": "off", "seed": self.args.seed,
                       "baselines": ["crop_flip", "randaugment_n2_m9", "trivialaugment"]},
            "race": {"top_k": 1, "min_seeds": 2, "max_seeds": 2, "budget": "proxy",
                     "screen": {"top_k": 0}},
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
                str(self.config), "--storage", storage, "--study-name", study, "--workers", "2",
                "--tracking-uri", self.server.uri,
                "--export", str(self.disk.folder / f"{study}.json")]

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
        for pid in self.workers_of(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def workers_of(procs: list[subprocess.Popen[str]]) -> list[int]:
        """The worker processes the searches spawned (children running ``policysearch
        worker``)."""
        pids = []
        for proc in procs:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
                for pid in map(int, children.split()):
                    with contextlib.suppress(OSError):
                        alive = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
                        if alive and b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            pids.append(pid)
        return pids

    # -- the undisturbed reference ---------------------------------------------------------------

    def reference(self) -> tuple[dict[str, Any], float, float, float]:
        """The undisturbed search: its outcome, its seconds, the seconds from its first
        running trial to its end (the window a fault can hit) and to its last trial's end
        (the window in which its second worker runs trials)."""
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
        got = outcome(self.storage, study, self.disk.folder / f"{study}.json")
        trials = [t for t in load(self.storage, study).get_trials(deepcopy=False)
                  if t.datetime_start and t.datetime_complete]
        phase = (max(t.datetime_complete for t in trials)
                 - min(t.datetime_start for t in trials)).total_seconds()
        if got["draws"] != list(range(SEARCHED)):
            raise RuntimeError(f"the undisturbed search finished draws {got['draws']}, not "
                               f"0-{SEARCHED - 1}: see {self.work}/{study}.log")
        return got, end - tic, end - first, phase

    # -- one round -------------------------------------------------------------------------------

    def round(self, number: int, fault: str, delay: float,
              reference: dict[str, Any]) -> Round:
        """A search hit by ``fault`` ``delay`` seconds after its first trial started.

        A search that ends before its fault (or, for SIGKILL worker, whose second worker runs
        no trial within 30 s of the moment) is no round: it runs again, under a study of its
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
            if fault == "SIGKILL worker":  # killed while it runs a trial: wait for one
                wait = time.monotonic() + 30
                while proc.poll() is None and time.monotonic() < wait \
                        and not running_trials(self.storage, study, "w1"):
                    time.sleep(0.2)
            if proc.poll() is None and (fault != "SIGKILL worker" or (
                    self.workers_of([proc]) and running_trials(self.storage, study, "w1"))):
                break
            proc.wait()  # the search ended (or its worker held no trial) before the fault
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
        if fault == "disk full":
            self.disk.free()
            last = log.read_text(errors="replace").strip().splitlines()[-1:]
            if code == 1:
                result.notes.append(f"its last line: {last[0][:160] if last else ''}")
        result.codes.append(code)
        expected = EXPECTED[fault]
        exit_ok = code in expected
        if code in (130, 143) and running_trials(self.storage, study):
            result.notes.append("a trial was left running after a clean stop")
            exit_ok = False
        for _ in range(3):  # resume until it finishes
            if code == 0:
                break
            code = self.start(study, log).wait()
            result.codes.append(code)
        exit_ok = exit_ok and code == 0
        lost = log.read_text(errors="replace").count("lost its worker")
        if lost:
            result.notes.append(f"{lost} trial(s) lost their worker and were retried")
        result.held["exit code"] = exit_ok
        if not exit_ok:
            result.notes.append(f"exit codes {result.codes}, expected one of {expected} then "
                                f"0; see {log.name}")
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
        if fault == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        elif fault == "SIGKILL worker":
            for pid in self.workers_of([proc]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif fault == "tracking server":
            with self.lock:
                self.server.kill()
                time.sleep(random.uniform(1, 6))
                self.server.start()
        elif fault == "disk full":
            result.notes.append(f"results folder full ({self.disk.fill() >> 20} MiB written) "
                                "until the search ended")
        else:  # a search between database calls may hold no connection: wait for one
            killed, wait = 0, time.monotonic() + 30
            while not killed and proc.poll() is None and time.monotonic() < wait:
                killed = terminate_backends(self.storage, f"{APP}-{result.study}")
                time.sleep(0 if killed else 0.2)
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
        got = outcome(self.storage, study, self.disk.folder / f"{study}.json")
        result.held["searched once"], why = searched_once(got, reference)
        if why:
            result.notes.append(why)
        same = (got["decision"], got["policy"]) == (reference["decision"], reference["policy"])
        result.held["same decision"] = same
        if not same:
            result.notes.append(f"decision: {got['reason']} (reference: {reference['reason']})")
        elif got["race"] != reference["race"]:
            result.notes.append("same decision, race accuracies differ from the reference's")


# -- the command --------------------------------------------------------------------------------


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
    parser.add_argument("--keep", action="store_true",
                        help="keep the studies and the logs (kept anyway when a round fails)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print(f"soak: --rounds {args.rounds}: at least 1 round is needed (make soak ROUNDS=20); "
              "docs/reliability.md is left as it is", file=sys.stderr)
        return 2
    unknown = [f for f in args.faults.split(",") if f not in FAULTS]
    if unknown:
        print(f"soak: --faults: unknown {unknown}; choose among {FAULTS}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even started in the background
    if args.data_dir:  # the searches run in a work folder of their own
        args.data_dir = str(Path(args.data_dir).resolve())
    args.stopped = None
    args.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%m%d%H%M%S")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="policysearch-soak-"))
    soak = Soak(args, work)
    kinds = args.faults.split(",")
    skipped = ""
    if "disk full" in kinds and not soak.disk.mounted:
        kinds.remove("disk full")
        skipped = f"a tmpfs for the results folder could not be mounted: {soak.disk.why}"
        if not kinds:
            print(f"soak: no fault left to inject ({skipped})", file=sys.stderr)
            return 2
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    rng = random.Random(args.seed)
    plan = [kinds[i % len(kinds)] for i in range(args.rounds)]
    rng.shuffle(plan)
    rounds: list[Round] = []
    try:
        soak.server.start()
        print(f"soak: work folder {work}; the undisturbed reference first", flush=True)
        reference, seconds, window, phase = soak.reference()
        print(f"soak: the reference took {seconds:.0f} s: {reference['reason']}", flush=True)
        # a moment inside the window in which the reference ran (a worker is killed while
        # trials run); rounds start warmer than the reference and can be shorter: a round
        # that ends first runs again
        delays = [rng.uniform(0, 0.8) * (phase if fault == "SIGKILL worker" else window)
                  for fault in plan]
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
        text = report(rounds, final, reference, seconds, args, started, skipped)
        write_atomic(Path(args.out), text)
        print(f"soak: {sum(r.ok for r in rounds)}/{len(rounds)} rounds held; wrote {args.out}")
        return 0 if all(r.ok for r in rounds) and all(final.values()) else 1
    finally:
        hog.kill()
        hog.wait()
        soak.kill_all()
        soak.server.kill()
        soak.disk.unmount()
        if not args.keep and rounds and all(r.ok for r in rounds):
            delete_studies(soak.storage, soak.studies)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
