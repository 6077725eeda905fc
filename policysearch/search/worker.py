"""One worker: claim trials under the study's lock, train them, report them, until the budget.

Any number of workers, on any machines, serve one study through a shared storage. Under a lock
named after the study a worker counts the trials that count towards the budget (complete,
pruned, running, waiting) and asks for a new one only if the budget is not reached, so many
workers finish exactly the requested number. A trial whose worker died stops beating and is
failed by the storage after the grace period, then retried once by another worker. A trial cut
short by SIGTERM/SIGINT is failed, marked interrupted and queued again under the same lock; it
does not count towards ``search.max_failures``. The signal is only recorded when it arrives
(``training.interrupts``); the loop here and every training batch are the safe points that act
on it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from policysearch.config.samplers import DRAW
from policysearch.policy.baselines import BASELINES
from policysearch.study.record import (
    PREFIX,
    TrialRecord,
    queued_baseline,
    read_study,
    read_trial,
    update_trial,
    write_trial,
)
from policysearch.study.storage import GRACE_PERIOD, budget_lock, reset_connections
from policysearch.study.store import StudyHandle
from policysearch.training import interrupts
from policysearch.training.interrupts import Interrupted, interruptible

__all__ = ["Interrupted", "Runner", "interruptible", "spawn_workers", "stop_workers"]

COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
Log = Callable[[str], None]


class Runner:
    """What one process needs to run trials: the study, its data, the trainer, the view."""

    def __init__(self, handle: StudyHandle, splits: Any, view: Any | None = None,
                 worker: str = "w0", log: Log = print) -> None:
        self.handle = handle
        self.experiment = handle.experiment
        self.splits = splits
        self.view = view
        self.worker = worker
        self.log = log
        self.seed = handle.record.trial_seed
        self._trainer: Any = None
        self.started = time.monotonic()
        self.deadline_told = False
        self._recording = threading.Lock()

    @property
    def trainer(self) -> Any:
        if self._trainer is None:
            from policysearch.training.trainer import trainer_for

            self._trainer = trainer_for(self.experiment, "proxy", self.splits)
        return self._trainer

    # -- the claim loop --------------------------------------------------------------------------

    def run(self, deadline: float | None = None, at_most: int | None = None) -> int:
        """Claim and run trials until the budget is reached (or ``at_most`` trials ran here);
        returns how many this ran."""

        study = self.handle.study
        ran = 0
        while at_most is None or ran < at_most:
            interrupts.check()
            self.reap()
            with budget_lock(study._storage, self.handle.storage_url, study.study_name):
                trials = study.get_trials(deepcopy=False)
                states = [t.state.name for t in trials]
                counted = sum(s in COUNTED for s in states)
                failed = sum(t.state.name == "FAIL" and not t.user_attrs.get(PREFIX + "interrupted")
                             for t in trials)
                total = read_study(study).total_trials
                limit = self.experiment.search.max_failures
                if deadline is not None and time.time() > deadline:
                    if not self.deadline_told:
                        self.log(f"[{self.worker}] time budget reached")
                        self.deadline_told = True
                    return ran
                if failed > limit:
                    self.log(f"[{self.worker}] stopping: {failed} trials failed "
                             f"(search.max_failures={limit})")
                    return ran
                if "WAITING" not in states and counted >= total:
                    return ran
                trial = study.ask()
                # A first beat at once: a worker that dies before its heartbeat thread starts
                # still leaves a trial that goes stale and is retried.
                with contextlib.suppress(Exception):
                    study._storage.record_heartbeat(trial._trial_id)
            self.run_trial(trial)
            ran += 1
        return ran

    def reap(self) -> None:
        """Fail the trials whose worker died (no heartbeat): each is queued for one retry."""
        from optuna.storages import fail_stale_trials

        study = self.handle.study
        running = {t.number for t in study.get_trials(deepcopy=False)
                   if t.state.name == "RUNNING"}
        fail_stale_trials(study)
        for t in study.get_trials(deepcopy=False):
            if t.number in running and t.state.name == "FAIL":
                self.log(f"[{self.worker}] trial {t.number} lost its worker (no heartbeat "
                         f"for {GRACE_PERIOD}s): failed and queued for one retry")
                self.render(t)

    def run_trial(self, trial: Any) -> None:
        """Train one proposed policy, report it to Optuna, then render it to the view.

        Interrupted at any point, a running trial is failed, marked interrupted and queued
        again (a baseline stays a baseline), so no trial is left running."""
        # if the process is forced out before a safe point (a slow compile on a loaded
        # machine), the trial is still recorded as interrupted, from the timer's thread
        remove = interrupts.on_hard_stop(lambda: self._record_interrupted(
            trial, Interrupted(interrupts.requested() or signal.SIGTERM)))
        try:
            interrupts.check()
            self._run_trial(trial)
        except Interrupted as stop:
            # the signal may have cut a database call short: start from fresh connections
            reset_connections(self.handle.study._storage)
            try:
                self._record_interrupted(trial, stop)
            except Exception as err:  # the storage is away: the heartbeat fails the trial later
                self.log(f"[{self.worker}] trial {trial.number} could not be recorded as "
                         f"interrupted ({failure_reason(err)}); it is failed and retried once "
                         "its heartbeat goes stale")
            raise
        finally:
            remove()

    def _record_interrupted(self, trial: Any, stop: Interrupted) -> None:
        with self._recording:  # the safe point and the hard stop's thread: one records
            self._record_interrupted_once(trial, stop)

    def _record_interrupted_once(self, trial: Any, stop: Interrupted) -> None:
        study = self.handle.study
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state.name == "RUNNING":
            update_trial(trial, interrupted=True)
            with budget_lock(study._storage, self.handle.storage_url, study.study_name):
                # rendered without its sample grid: the process is stopping, be quick
                self._finish(trial, "FAIL", None, f"interrupted by {stop}", None, grid=False)
                baseline = queued_baseline(frozen)
                keep = {PREFIX + "baseline": baseline} if baseline else {}
                if DRAW in frozen.user_attrs:  # the retry is the same proposal
                    keep[DRAW] = frozen.user_attrs[DRAW]
                study.enqueue_trial(frozen.params, user_attrs=keep or None)
        else:  # stopped while rendering a finished trial
            self.render(frozen, grid=False)

    def _run_trial(self, trial: Any) -> None:
        baseline = queued_baseline(trial)
        policy = BASELINES[baseline] if baseline else self.handle.space.sample(trial)
        label = f"baseline {baseline}" if baseline else policy.label
        record = TrialRecord(policy=policy.to_dict(), label=label, seed=self.seed,
                             worker=self.worker, baseline=baseline,
                             device=os.environ.get("CUDA_VISIBLE_DEVICES"))
        write_trial(trial, record)  # a retried trial starts a record (and a run) of its own
        if self.view is not None:
            run_id = self.view.start_trial(trial, record)
            if run_id:
                update_trial(trial, mlflow_run_id=run_id)

        def on_epoch(epoch: int, loss: float, accuracy: float) -> bool:
            trial.report(accuracy, epoch)
            # asked for every trial, so that baselines fill the pruner's rungs too; a baseline
            # always runs to the end
            prune = trial.should_prune()
            return prune and not baseline

        state, value, reason, result = "COMPLETE", None, None, None
        with heartbeat(self.handle.study, trial):
            try:
                result = self.trainer.train(policy, self.splits.proxy, self.splits.val,
                                            self.seed, on_epoch)
                value = result.final_accuracy
                if result.stopped_early:
                    state = "PRUNED"
            except Exception as err:  # recorded as the trial's failure; the search goes on
                state, reason = "FAIL", failure_reason(err)
        self._finish(trial, state, value, reason, result)

    def _finish(self, trial: Any, state: str, value: float | None, reason: str | None,
                result: Any, grid: bool = True) -> None:
        import optuna

        study = self.handle.study
        if result is not None:
            update_trial(trial, train_seconds=round(result.seconds, 3),
                         train_loss=[round(v, 6) if math.isfinite(v) else None
                                     for v in result.train_loss],
                         loss_epochs=list(result.loss_epochs))
        if state == "COMPLETE" and (value is None or not math.isfinite(value)):
            state, reason = "FAIL", "validation accuracy is not a number"
        if state == "COMPLETE":
            reference = crop_flip_value(study)
            if reference is not None:
                update_trial(trial, paired_gain=value - reference)
        if reason:
            update_trial(trial, fail_reason=reason)
        states = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
                  "PRUNED": optuna.trial.TrialState.PRUNED,
                  "FAIL": optuna.trial.TrialState.FAIL}
        study.tell(trial, value if state == "COMPLETE" else None, state=states[state])
        frozen = study._storage.get_trial(trial._trial_id)
        self.report_progress(frozen)
        self.render(frozen, grid)

    def render(self, frozen: Any, grid: bool = True) -> None:
        """Show a finished trial in the view (MLflow); a failure there only warns."""
        if self.view is not None:
            self.view.finish_trial(frozen, self.splits if grid else None)

    def report_progress(self, frozen: Any) -> None:
        trials = self.handle.study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        total = read_study(self.handle.study).total_trials
        best = max((t for t in trials if t.state.name == "COMPLETE" and t.value is not None),
                   key=lambda t: t.value, default=None)
        durations = [t.duration.total_seconds() for t in done if t.duration]
        running = max(sum(t.state.name == "RUNNING" for t in trials), 1)
        left = max(total - len(done), 0)
        per_trial = statistics.median(durations) if durations else float("nan")
        eta = per_trial * left / running
        per_text = f"{per_trial:.1f}" if math.isfinite(per_trial) else "?"
        record = read_trial(frozen)
        what = record.label if record else ""
        value = f"{frozen.value:.4f}" if frozen.value is not None else "-"
        status = frozen.state.name.lower()
        if record and record.fail_reason:
            status += f" ({record.fail_reason})"
        gain = ""
        if record and record.paired_gain is not None and not record.baseline:
            gain = f" ({100 * record.paired_gain:+.1f} pts vs crop+flip, same seed)"
        best_text = f"best {best.value:.4f} (trial {best.number})" if best else "best -"
        self.log(f"[{self.worker}] {len(done)}/{total} trial {frozen.number} {status}: {what} "
                 f"val {value}{gain} | {best_text} | {per_text} s a trial (median) | "
                 f"{clock(time.monotonic() - self.started)} elapsed, ~{clock(eta)} left")


def crop_flip_value(study: Any) -> float | None:
    """The completed crop+flip baseline's value (the paired reference of every trial)."""
    for t in study.get_trials(deepcopy=False):
        if t.state.name == "COMPLETE" and queued_baseline(t) == "crop_flip":
            return t.value
    return None


@contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat in a thread while it runs (relational storages)."""
    storage = study._storage
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            # a missed beat is retried; the grace period covers it
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial._trial_id)
            stop.wait(interval)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def failure_reason(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    if "RESOURCE_EXHAUSTED" in text or isinstance(err, MemoryError) or "out of memory" in text:
        return "out of memory: " + text.splitlines()[0][:300]
    return text.splitlines()[0][:500]


def clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def configure_threads(workers: int) -> None:
    """Share the CPU between ``workers`` processes (TensorFlow's thread pools)."""
    try:
        import tensorflow as tf
    except ImportError:
        return
    cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, cores // max(workers, 1)))
        tf.config.threading.set_inter_op_parallelism_threads(2)
    except RuntimeError:
        pass  # already initialised in this process


def device_for(index: int, devices: list[str] | None) -> str | None:
    """The device worker ``index`` is pinned to (``CUDA_VISIBLE_DEVICES``), in turn."""
    return devices[index % len(devices)] if devices else None


def spawn_workers(study_name: str, storage_url: str, count: int, tracking: str | None,
                  devices: list[str] | None, deadline: float | None) -> list[Any]:
    """Start ``count`` worker processes (indices 1..count) on this machine for the study.

    They run in a session of their own, so a terminal's Ctrl-C reaches this process only, which
    passes its first SIGTERM or SIGINT on to them (``terminate``) as one SIGTERM each."""
    procs = []
    for index in range(1, count + 1):
        env = dict(os.environ)
        env["POLICYSEARCH_WORKERS"] = str(count + 1)
        device = device_for(index, devices)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        cmd = [sys.executable, "-m", "policysearch", "worker", "--study-name", study_name,
               "--storage", storage_url, "--worker-id", f"w{index}"]
        if tracking:
            cmd += ["--tracking-uri", tracking]
        if deadline is not None:
            cmd += ["--deadline", f"{deadline:.0f}"]
        procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
    return procs


def terminate(procs: list[Any]) -> None:
    """Send each running worker one SIGTERM (never a second: that would end it at once)."""
    for proc in procs:
        if proc.poll() is None and not getattr(proc, "policysearch_stopped", False):
            proc.policysearch_stopped = True
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)


def stop_workers(procs: list[Any]) -> None:
    """Stop the workers and wait for them (each records its running trial as interrupted);
    one still running after the hard-stop time is killed."""
    terminate(procs)
    deadline = time.monotonic() + interrupts.stop_seconds() + 5
    for proc in procs:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
