"""The search: an Optuna study of policies, scored by the proxy trainer.

``search`` is the whole run: open (or resume) the study, run its trials in one or more workers,
re-train the top candidates with several seeds, and export the winner. ``run_worker`` is one
worker's loop; any number of them, on any machines, may serve one study through a shared
storage. The Optuna storage holds everything (config, trials, curves, re-evaluation results);
MLflow is rendered from it.

How a worker claims a trial: under a lock named after the study, it counts the trials that
count towards the budget (complete, pruned, running, waiting) and asks for a new one only if the
budget is not reached, so many workers finish exactly the requested number. Failed trials do
not count; a trial whose worker died is failed by the storage heartbeat and retried once.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import signal
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policysearch.config import Experiment
from policysearch.errors import ConfigError, PolicySearchError
from policysearch.policy import Policy, write_policy
from policysearch.spaces import BASELINES, SearchSpace, parse_space
from policysearch.storage import GRACE_PERIOD, _redact, budget_lock, open_storage

warnings.filterwarnings("ignore", message=".*is experimental.*")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
REEVAL_SEED_BASE = 10_000
VALIDATE_SEED_BASE = 20_000


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived; the running trial is recorded and the worker stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into ``Interrupted`` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------------
# Opening a study


def make_sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "tpe":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/group are marked experimental
            return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed,
                                              constant_liar=True, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise ConfigError(f"sampler {name!r}: expected tpe, random or qmc")


def make_pruner(name: str, epochs: int) -> Any:
    import optuna

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1),
                                              reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner {name!r}: expected hyperband, median or none")


@dataclass
class StudyHandle:
    study: Any
    storage_url: str
    experiment: Experiment
    space: SearchSpace
    created: bool

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def total_trials(self) -> int:
        return int(self.study.user_attrs.get("total_trials", 0))


def open_study(storage_url: str, study_name: str, experiment: Experiment | None = None,
               space: SearchSpace | None = None, *, total_trials: int | None = None,
               wait_seconds: float = 60.0) -> StudyHandle:
    """Create the study (the creator stores the config and enqueues the baselines, once) or
    join it. Joining without an experiment takes the one stored in the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    created = False
    if experiment is not None and space is not None:
        try:
            study = optuna.create_study(
                study_name=study_name, storage=storage, direction="maximize",
                sampler=make_sampler(experiment.search.sampler, experiment.search.seed),
                pruner=make_pruner(experiment.search.pruner, experiment.trainer.epochs),
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass
    if created:
        study.set_user_attr("experiment", experiment.to_dict())
        study.set_user_attr("experiment_source", experiment.source)
        study.set_user_attr("space", {"name": space.name, "raw": _space_raw(space)})
        study.set_user_attr("created_at", _now())
        study.set_user_attr("total_trials",
                            total_trials if total_trials is not None else _budget(experiment))
        for name in experiment.search.baselines:
            study.enqueue_trial({}, user_attrs={"baseline": name})
        study.set_user_attr("ready", True)
        return StudyHandle(study, storage_url, experiment, space, True)

    stored = _wait_for_config(storage, study_name, wait_seconds)
    stored_experiment = _experiment_from(stored.user_attrs["experiment"],
                                         stored.user_attrs.get("experiment_source", "study"))
    stored_space = parse_space(stored.user_attrs["space"]["raw"], f"study {study_name}",
                               stored.user_attrs["space"]["name"])
    if experiment is not None:
        _check_compatible(study_name, stored_experiment, experiment, stored_space, space)
    exp = stored_experiment
    study = optuna.load_study(
        study_name=study_name, storage=storage,
        sampler=make_sampler(exp.search.sampler, exp.search.seed),
        pruner=make_pruner(exp.search.pruner, exp.trainer.epochs),
    )
    if total_trials is not None:
        study.set_user_attr("total_trials", total_trials)
    if experiment is not None:
        # Resuming with other budgets (trials, re-evaluation, validation) is allowed.
        exp = experiment
    return StudyHandle(study, storage_url, exp, stored_space, False)


def _budget(experiment: Experiment) -> int:
    return len(experiment.search.baselines) + experiment.search.trials


def _space_raw(space: SearchSpace) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(space.path).read_text()) if Path(space.path).exists() else {}


def _experiment_from(data: dict[str, Any], source: str) -> Experiment:
    from policysearch.config import _build

    experiment = _build(Experiment, data, f"study config ({source})", "")
    experiment.source = source
    return experiment


def _wait_for_config(storage: Any, study_name: str, wait_seconds: float) -> Any:
    """The study's stored attributes, waiting briefly for a creator that is still writing."""
    import optuna

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            summary = optuna.load_study(study_name=study_name, storage=storage)
            if summary.user_attrs.get("ready"):
                return summary
        except KeyError:
            summary = None
        if time.monotonic() > deadline:
            if summary is None:
                raise PolicySearchError(f"study {study_name!r} does not exist in this storage; "
                                        "start it with `policysearch search`")
            raise PolicySearchError(f"study {study_name!r} exists but has no policysearch "
                                    "configuration; was it created by another tool?")
        time.sleep(0.5)


def _check_compatible(name: str, stored: Experiment, given: Experiment,
                      stored_space: SearchSpace, space: SearchSpace | None) -> None:
    problems = []
    if stored.dataset != given.dataset:
        problems.append(f"dataset {stored.dataset!r}, not {given.dataset!r}")
    if space is not None and (stored_space.type != space.type
                              or stored_space.summary() != {**space.summary(),
                                                            "name": stored_space.name}):
        problems.append(f"search space {stored_space.name!r}, not {space.name!r}")
    for key in ("train_size", "val_size", "split_seed"):
        if getattr(stored.data, key) != getattr(given.data, key):
            problems.append(f"data.{key}={getattr(stored.data, key)}, "
                            f"not {getattr(given.data, key)}")
    if stored.trainer != given.trainer:
        problems.append("other trainer settings")
    if problems:
        raise PolicySearchError(f"study {name!r} already exists with {'; '.join(problems)}: "
                                "resume it with the same settings or pick another --study-name")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# Running trials


class Runner:
    """What one process needs to run trials: data, the compiled trainer, the tracker."""

    def __init__(self, handle: StudyHandle, tracker: Any | None, worker: str = "w0",
                 log: Any = print, splits: Any = None) -> None:
        from policysearch.data import load_splits

        self.handle = handle
        self.experiment = handle.experiment
        self.tracker = tracker
        self.worker = worker
        self.log = log
        exp = self.experiment
        self.splits = splits or load_splits(
            exp.dataset, train_size=exp.data.train_size, val_size=exp.data.val_size,
            seed=exp.data.split_seed, data_dir=exp.data.data_dir)
        self._trainer: Any = None
        self.started = time.monotonic()

    @property
    def trainer(self) -> Any:
        if self._trainer is None:
            from policysearch.trainer import ProxyTrainer

            self._trainer = ProxyTrainer(self.experiment.trainer, self.experiment.base_augment,
                                         self.splits.image_shape, len(self.splits.classes),
                                         len(self.splits.x_train))
        return self._trainer

    @property
    def parent_run_id(self) -> str | None:
        return self.handle.study.user_attrs.get("mlflow_parent_run_id")

    def seed_for(self, number: int) -> int:
        return self.experiment.search.seed * 100_003 + number

    def sample_images(self, count: int = 8) -> Any:
        """One training image per class (as far as there are classes), always the same."""
        import numpy as np

        y = self.splits.y_train
        picks = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)][:count]
        return self.splits.x_train[picks]

    # -- the worker loop -------------------------------------------------------------------------

    def run(self, deadline: float | None = None) -> int:
        """Claim and run trials until the budget is reached; returns how many this ran."""
        from optuna.storages import fail_stale_trials

        study = self.handle.study
        ran = 0
        while True:
            running = {t.number for t in study.get_trials(deepcopy=False)
                       if t.state.name == "RUNNING"}
            fail_stale_trials(study)
            for t in study.get_trials(deepcopy=False):
                if t.number in running and t.state.name == "FAIL":
                    self.log(f"[{self.worker}] trial {t.number} lost its worker (no heartbeat "
                             f"for {GRACE_PERIOD}s): failed and queued for one retry")
                    self.render(t)
            with budget_lock(study._storage, self.handle.storage_url, study.study_name):
                trials = study.get_trials(deepcopy=False)
                states = [t.state.name for t in trials]
                waiting = "WAITING" in states
                counted = sum(s in COUNTED for s in states)
                failed = states.count("FAIL")
                total = self.handle.total_trials
                if deadline is not None and time.monotonic() > deadline:
                    self.log(f"[{self.worker}] time budget reached")
                    return ran
                if failed > self.experiment.search.max_failures:
                    self.log(f"[{self.worker}] stopping: {failed} trials failed "
                             f"(search.max_failures={self.experiment.search.max_failures})")
                    return ran
                if not waiting and counted >= total:
                    return ran
                trial = study.ask()
                # A first beat at once: a worker that dies before its heartbeat thread starts
                # still leaves a trial that goes stale and is retried.
                with contextlib.suppress(Exception):
                    study._storage.record_heartbeat(trial._trial_id)
            self.run_trial(trial)
            ran += 1

    def run_trial(self, trial: Any) -> None:
        """Train one proposed policy, report it to Optuna, then render it to MLflow.

        Interrupted at any point, a running trial is failed and queued again (the resumed search
        runs it; a baseline is never sampled), so no trial is left running."""
        try:
            self._run_trial(trial)
        except Interrupted as stop:
            frozen = self.handle.study._storage.get_trial(trial._trial_id)
            if frozen.state.name == "RUNNING":
                self._finish(trial, "FAIL", None, f"interrupted by {stop}", None)
                baseline = frozen.user_attrs.get("baseline")
                self.handle.study.enqueue_trial(frozen.params, user_attrs={"baseline": baseline}
                                                if baseline else None)
            else:  # stopped while logging a finished trial
                self.render(frozen)
            raise

    def _run_trial(self, trial: Any) -> None:
        study = self.handle.study
        baseline = trial.user_attrs.get("baseline")
        policy = BASELINES[baseline] if baseline else self.handle.space.sample(trial)
        seed = self.seed_for(trial.number)
        label = f"baseline {baseline}" if baseline else policy.label
        trial.set_user_attr("policy", policy.to_dict())
        trial.set_user_attr("policy_label", label)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("worker", self.worker)
        if self.tracker is not None and self.parent_run_id:
            run_id = self.tracker.start_trial(self.parent_run_id, trial,
                                              "baseline" if baseline else "search", label)
            if run_id:
                trial.set_user_attr("mlflow_run_id", run_id)

        def on_epoch(epoch: int, loss: float, accuracy: float) -> bool:
            trial.report(accuracy, epoch)
            return not baseline and trial.should_prune()

        state, value, reason = "COMPLETE", None, None
        result = None
        with _heartbeat(study, trial):
            try:
                result = self.trainer.train(policy, self.splits.x_train, self.splits.y_train,
                                            self.splits.x_val, self.splits.y_val, seed, on_epoch)
                value = result.final_accuracy
                if result.stopped_early:
                    state = "PRUNED"
            except Exception as err:  # recorded as the trial's failure; the search goes on
                state, reason = "FAIL", _failure_reason(err)
        self._finish(trial, state, value, reason, result)

    def _finish(self, trial: Any, state: str, value: float | None, reason: str | None,
                result: Any) -> None:
        import optuna

        study = self.handle.study
        if result is not None:
            trial.set_user_attr("train_loss", [round(v, 6) if math.isfinite(v) else None
                                               for v in result.train_loss])
            trial.set_user_attr("train_seconds", round(result.seconds, 3))
        if state == "COMPLETE" and (value is None or not math.isfinite(value)):
            state, reason = "FAIL", "validation accuracy is not a number"
        if reason:
            trial.set_user_attr("fail_reason", reason)
        states = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
                  "PRUNED": optuna.trial.TrialState.PRUNED,
                  "FAIL": optuna.trial.TrialState.FAIL}
        study.tell(trial, value if state == "COMPLETE" else None, state=states[state])
        frozen = study._storage.get_trial(trial._trial_id)
        self.report_progress(frozen)
        self.render(frozen)

    def render(self, frozen: Any, run_id: str | None = None) -> None:
        """Log a finished trial to MLflow (a view; failures only warn)."""
        if self.tracker is None or self.parent_run_id is None:
            return
        from policysearch.plots import sample_grid

        grid = None
        policy_data = frozen.user_attrs.get("policy")
        if policy_data:
            grid = sample_grid(Policy.from_dict(policy_data), self.sample_images(),
                               seed=frozen.user_attrs.get("seed", 0),
                               crop_padding=self.experiment.base_augment.crop_padding,
                               flip=self.experiment.base_augment.flip)
        self.tracker.finish_trial(self.parent_run_id, frozen, grid,
                                  run_id or frozen.user_attrs.get("mlflow_run_id"))

    def report_progress(self, frozen: Any) -> None:
        study = self.handle.study
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        total = self.handle.total_trials
        best = max((t for t in trials if t.state.name == "COMPLETE" and t.value is not None),
                   key=lambda t: t.value, default=None)
        durations = [t.duration.total_seconds() for t in done if t.duration]
        running = max(sum(t.state.name == "RUNNING" for t in trials), 1)
        left = max(total - len(done), 0)
        eta = (statistics.median(durations) * left / running) if durations else float("nan")
        what = frozen.user_attrs.get("policy_label", "")
        value = f"{frozen.value:.4f}" if frozen.value is not None else "-"
        status = frozen.state.name.lower()
        if frozen.user_attrs.get("fail_reason"):
            status += f" ({frozen.user_attrs['fail_reason']})"
        best_text = (f"best {best.value:.4f} (trial {best.number})" if best else "best -")
        self.log(f"[{self.worker}] {len(done)}/{total} trial {frozen.number} {status}: {what} "
                 f"val {value} | {best_text} | {_clock(time.monotonic() - self.started)} "
                 f"elapsed, ~{_clock(eta)} left")


@contextmanager
def _heartbeat(study: Any, trial: Any) -> Iterator[None]:
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


def _failure_reason(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    if "RESOURCE_EXHAUSTED" in text or isinstance(err, MemoryError) or "out of memory" in text:
        return "out of memory: " + text.splitlines()[0][:300]
    return text.splitlines()[0][:500]


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


# ----------------------------------------------------------------------------------------------
# Re-evaluation and the winner


def candidates(study: Any, top_k: int) -> tuple[list[Any], Any | None]:
    """The top-k searched trials (distinct policies) and the best baseline trial."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and t.value is not None]
    searched, seen = [], set()
    for t in sorted((t for t in done if not t.user_attrs.get("baseline")),
                    key=lambda t: (-t.value, t.number)):
        policy = Policy.from_dict(t.user_attrs["policy"])
        if policy.key() not in seen:
            seen.add(policy.key())
            searched.append(t)
    baselines = [t for t in done if t.user_attrs.get("baseline")]
    best_baseline = max(baselines, key=lambda t: (t.value, -t.number), default=None)
    return searched[:top_k], best_baseline


def summarize(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def choose_winner(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the candidate with the best mean over seeds and compare it with the baseline.

    ``rows``: one per (policy, seed) with ``key``, ``role`` (candidate or baseline),
    ``accuracy``. The gain is "larger than the seed noise" when it exceeds two standard errors
    of the difference of the two means.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["key"], []).append(row)

    def stats(key: str) -> dict[str, Any]:
        values = [r["accuracy"] for r in groups[key]]
        mean, std = summarize(values)
        first = groups[key][0]
        return {"key": key, "label": first["label"], "policy": first["policy"],
                "role": first["role"], "trial": first.get("trial"), "mean": mean, "std": std,
                "n": len(values), "seeds": [r["seed"] for r in groups[key]]}

    table = [stats(k) for k in groups]
    cands = sorted((s for s in table if s["role"] == "candidate"), key=lambda s: -s["mean"])
    base = next((s for s in table if s["role"] == "baseline"), None)
    best = cands[0] if cands else None
    out: dict[str, Any] = {"table": table, "candidate": best, "baseline": base}
    if best is None:
        out.update(winner=base, beats_baseline=False, gain=None, gain_se=None,
                   gain_exceeds_noise=False, note="no searched candidate completed")
        return out
    if base is None:
        out.update(winner=best, beats_baseline=None, gain=None, gain_se=None,
                   gain_exceeds_noise=None, note="no baseline completed")
        return out
    gain = best["mean"] - base["mean"]
    se = math.sqrt(best["std"] ** 2 / best["n"] + base["std"] ** 2 / base["n"])
    beats = gain > 0
    out.update(gain=gain, gain_se=se, beats_baseline=beats,
               gain_exceeds_noise=bool(beats and gain > 2 * se),
               winner=best if beats else base,
               note=("the best candidate beats the best baseline"
                     + (" by more than the seed noise" if beats and gain > 2 * se
                        else ", but not by more than the seed noise") if beats
                     else "no candidate beat the best baseline; the baseline is exported"))
    return out


def reevaluation_rows(study: Any) -> list[dict[str, Any]]:
    """The stored re-evaluation results, one per (policy, seed): the first result counts.

    Keys are recomputed from the stored policies, so rows survive a change of key format.
    """
    rows: list[dict[str, Any]] = []
    done: set[tuple[str, int]] = set()
    for r in (study.user_attrs.get("reevaluation") or {}).get("rows", []):
        row = {**r, "key": Policy.from_dict(r["policy"]).key()}
        if (row["key"], row["seed"]) not in done:
            done.add((row["key"], row["seed"]))
            rows.append(row)
    return rows


def reevaluate(runner: Runner, top_k: int, seeds: int) -> dict[str, Any]:
    """Re-train the top-k candidates and the best baseline with ``seeds`` seeds each.

    Results are kept in the study (``reevaluation``), so a resumed search re-uses them.
    """
    study = runner.handle.study
    top, best_baseline = candidates(study, top_k)
    plan = [(t, "candidate") for t in top]
    if best_baseline is not None:
        plan.append((best_baseline, "baseline"))
    rows = reevaluation_rows(study)
    done = {(r["key"], r["seed"]) for r in rows}
    epochs = runner.experiment.trainer.epochs
    for trial, role in plan:
        policy = Policy.from_dict(trial.user_attrs["policy"])
        label = trial.user_attrs.get("policy_label", policy.label)
        for s in range(seeds):
            seed = REEVAL_SEED_BASE + s
            if (policy.key(), seed) in done:
                continue
            with interruptible():
                result = runner.trainer.train(policy, runner.splits.x_train,
                                              runner.splits.y_train, runner.splits.x_val,
                                              runner.splits.y_val, seed)
            row = {"key": policy.key(), "label": label, "policy": policy.to_dict(),
                   "role": role, "trial": trial.number, "seed": seed, "epochs": epochs,
                   "accuracy": result.final_accuracy, "seconds": round(result.seconds, 2)}
            rows.append(row)
            study.set_user_attr("reevaluation", {"rows": rows})
            runner.log(f"re-evaluation: {label} seed {seed}: val {row['accuracy']:.4f}")
    keys = {Policy.from_dict(t.user_attrs["policy"]).key() for t, _ in plan}
    chosen = [r for r in rows if r["key"] in keys and r["seed"] < REEVAL_SEED_BASE + seeds]
    decision = choose_winner(chosen) if chosen else {"winner": None, "table": []}
    if runner.tracker is not None and runner.parent_run_id:
        runner.tracker.log_evaluations(runner.parent_run_id, "reevaluate", chosen)
    return decision


def export_policy(handle: StudyHandle, decision: dict[str, Any], path: Path,
                  tracker_uri: str | None) -> Policy:
    """Write the winner with its provenance: how it was found and how it compares."""
    from policysearch._version import __version__

    winner = decision["winner"]
    exp = handle.experiment
    study = handle.study
    baseline = decision.get("baseline")
    image_shape = study.user_attrs.get("image_shape")
    policy = Policy.from_dict(winner["policy"])
    source = {
        "dataset": exp.dataset,
        "image_size": image_shape[:2] if image_shape else None,
        "experiment": exp.name,
        "space": handle.space.name,
        "study": study.study_name,
        "storage": _redact(handle.storage_url),
        "trial": winner.get("trial"),
        "seeds": winner["seeds"],
        "n_seeds": winner["n"],
        "val_accuracy_mean": round(winner["mean"], 6),
        "val_accuracy_std": round(winner["std"], 6),
        "proxy": {"epochs": exp.trainer.epochs, "train_size": exp.data.train_size,
                  "val_size": exp.data.val_size, "widths": exp.trainer.model.widths},
        "best_baseline": None if baseline is None else {
            "name": baseline["label"], "val_accuracy_mean": round(baseline["mean"], 6),
            "val_accuracy_std": round(baseline["std"], 6), "n_seeds": baseline["n"]},
        "gain_over_best_baseline": None if decision.get("gain") is None
        else round(decision["gain"], 6),
        "gain_standard_error": None if decision.get("gain_se") is None
        else round(decision["gain_se"], 6),
        "gain_exceeds_noise": decision.get("gain_exceeds_noise"),
        "beats_best_baseline": decision.get("beats_baseline"),
        "note": decision.get("note", ""),
        "mlflow_run_id": study.user_attrs.get("mlflow_parent_run_id"),
        "mlflow_tracking_uri": tracker_uri,
        "package_version": __version__,
        "created_at": _now(),
    }
    base = {"crop_padding": exp.base_augment.crop_padding, "flip": exp.base_augment.flip}
    from dataclasses import replace

    policy = replace(policy, base=base, source=source)
    write_policy(policy, path)
    study.set_user_attr("exported_policy", str(path))
    return policy


# ----------------------------------------------------------------------------------------------
# The whole search


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


def spawn_workers(study_name: str, storage_url: str, count: int, tracking: str | None,
                  devices: list[str] | None, first_index: int = 1) -> list[Any]:
    """Start ``count`` worker processes on this machine for the study."""
    import subprocess

    procs = []
    for i in range(count):
        index = first_index + i
        env = dict(os.environ)
        env["POLICYSEARCH_WORKERS"] = str(count + first_index)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
        cmd = [sys.executable, "-m", "policysearch", "worker", "--study-name", study_name,
               "--storage", storage_url, "--worker-id", f"w{index}"]
        if tracking:
            cmd += ["--tracking-uri", tracking]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def plots_for(study: Any) -> dict[str, Any]:
    from policysearch.plots import history_figure, importance_figure, op_effect_figure, op_effects

    trials = study.get_trials(deepcopy=False)
    figures = {"optimization_history.png": history_figure(trials)}
    try:
        import optuna

        searched = [t for t in trials if t.state.name == "COMPLETE" and t.params]
        if len(searched) >= 3:
            importances = optuna.importance.get_param_importances(study)
            if importances:
                figures["param_importances.png"] = importance_figure(importances)
    except Exception:  # too few or too uniform trials: no importance plot
        pass
    effects = op_effects(trials)
    if effects:
        figures["op_in_out.png"] = op_effect_figure(effects)
    return figures


def mlflow_experiment_name(experiment: Experiment) -> str:
    from policysearch.data import _slug

    return f"policysearch-{_slug(experiment.dataset)}"


def run_search(experiment: Experiment, space: SearchSpace, *, storage_url: str,
               study_name: str, export_path: Path, tracking_uri: str | None,
               mlflow_experiment: str | None = None, workers: int = 1,
               devices: list[str] | None = None, system_metrics: bool = False,
               log: Any = print) -> Policy:
    """Run (or resume) a whole search and export its winner."""
    from policysearch.tracking import Tracker
    from policysearch.tracking import tracking_uri as resolve_uri

    uri = resolve_uri(tracking_uri)
    tracker = Tracker(uri, mlflow_experiment or mlflow_experiment_name(experiment), study_name)
    tracker.connect()
    from policysearch.data import load_splits

    # Load the data before the study exists, so a bad dataset leaves nothing behind.
    exp = experiment
    splits = load_splits(exp.dataset, train_size=exp.data.train_size,
                         val_size=exp.data.val_size, seed=exp.data.split_seed,
                         data_dir=exp.data.data_dir)
    handle = open_study(storage_url, study_name, experiment, space,
                        total_trials=_budget(experiment))
    study = handle.study
    study.set_user_attr("mlflow_experiment", tracker.experiment_name)
    configure_threads(workers)
    runner = Runner(handle, tracker, "w0", log, splits=splits)
    study.set_user_attr("image_shape", list(runner.splits.image_shape))
    params = {**experiment.flat(), **{f"space.{k}": v for k, v in space.summary().items()},
              "workers": workers}
    parent = tracker.start_parent(study, params, {"storage": _redact(storage_url),
                                                  "dataset": experiment.dataset})
    monitor = None
    if system_metrics:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(parent, sampling_interval=5)
        monitor.start()
    verb = "created" if handle.created else "resumed"
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    log(f"study {study_name!r} {verb} in {_redact(storage_url)}: {done}/{handle.total_trials} "
        f"trials done ({len(experiment.search.baselines)} baselines + "
        f"{experiment.search.trials} searched); space {space.name}; {workers} worker(s)")
    log(f"MLflow: {uri}, experiment {tracker.experiment_name!r}, run {parent}")
    procs = spawn_workers(study_name, storage_url, workers - 1, uri, devices)
    status = "FAILED"
    try:
        with interruptible():
            timeout = experiment.search.timeout_minutes
            deadline = time.monotonic() + 60 * timeout if timeout else None
            runner.run(deadline)
            while any(p.poll() is None for p in procs):
                time.sleep(0.5)
            decision = reevaluate(runner, experiment.reevaluate.top_k,
                                  experiment.reevaluate.seeds)
            if decision.get("winner") is None:
                raise PolicySearchError(f"study {study_name!r}: no trial completed, nothing to "
                                        "export; see the failure reasons above")
            policy = export_policy(handle, decision, export_path, uri)
            _log_summary(runner, decision, policy)
        status = "FINISHED"
        _print_decision(decision, log)
        log(f"exported {policy.label} to {export_path}")
        return policy
    except Interrupted:
        status = "KILLED"
        raise
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except Exception:
                proc.kill()
        if monitor is not None:
            monitor.finish()
        tracker.end_parent(parent, status)


def _log_summary(runner: Runner, decision: dict[str, Any], policy: Policy) -> None:
    from policysearch.plots import epochs_grid

    study = runner.handle.study
    tracker = runner.tracker
    if tracker is None or runner.parent_run_id is None:
        return
    metrics = {"best_trial_value": study.best_value} if _has_complete(study) else {}
    winner = decision["winner"]
    metrics.update(exported_val_accuracy_mean=winner["mean"],
                   exported_val_accuracy_std=winner["std"])
    if decision.get("gain") is not None:
        metrics.update(gain_over_best_baseline=decision["gain"],
                       gain_standard_error=decision["gain_se"])
    base = runner.experiment.base_augment
    grid = epochs_grid(policy, runner.sample_images(4), epochs=8, seed=0,
                       crop_padding=base.crop_padding, flip=base.flip)
    tracker.log_summary(runner.parent_run_id, study, policy.to_json(), metrics,
                        {"exported_policy_epochs.png": grid}, plots_for(study))


def _has_complete(study: Any) -> bool:
    return any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


def _print_decision(decision: dict[str, Any], log: Any) -> None:
    log("re-evaluation (validation accuracy, mean ± std over seeds):")
    for row in sorted(decision["table"], key=lambda r: -r["mean"]):
        log(f"  {row['role']:9s} {row['label']:40s} {row['mean']:.4f} ± {row['std']:.4f} "
            f"(n={row['n']})")
    if decision.get("gain") is not None:
        log(f"gain of the best candidate over the best baseline: {decision['gain']:+.4f} "
            f"(standard error {decision['gain_se']:.4f}): {decision['note']}")


def run_worker(study_name: str, storage_url: str, tracking_uri: str | None, worker_id: str,
               log: Any = print) -> int:
    """Join a study (its stored config) and run trials until its budget is reached."""
    from policysearch.tracking import Tracker

    handle = open_study(storage_url, study_name)
    study = handle.study
    # the sampler was seeded with the study's seed, as in every worker: reseed it, or all workers
    # propose the same policies (the search process keeps the seed: one worker is reproducible)
    study.sampler.reseed_rng()
    uri = tracking_uri or study.user_attrs.get("mlflow_tracking_uri")
    tracker = None
    if uri and study.user_attrs.get("mlflow_experiment"):
        tracker = Tracker(uri, study.user_attrs["mlflow_experiment"], study_name)
        tracker.connect()
    configure_threads(int(os.environ.get("POLICYSEARCH_WORKERS", "1")))
    runner = Runner(handle, tracker, worker_id, log)
    with interruptible():
        ran = runner.run()
    log(f"[{worker_id}] done: ran {ran} trial(s)")
    return ran


def sync_mlflow(study_name: str, storage_url: str, tracking_uri: str | None,
                log: Any = print) -> int:
    """Log to MLflow every finished trial that is not there yet; returns how many."""
    from policysearch.tracking import Tracker
    from policysearch.tracking import tracking_uri as resolve_uri

    handle = open_study(storage_url, study_name)
    study = handle.study
    uri = resolve_uri(tracking_uri or study.user_attrs.get("mlflow_tracking_uri"))
    tracker = Tracker(uri, study.user_attrs.get("mlflow_experiment")
                      or mlflow_experiment_name(handle.experiment), study_name)
    tracker.connect()
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None or not tracker._run_exists(parent):
        parent = tracker.start_parent(study, handle.experiment.flat(),
                                      {"storage": _redact(storage_url)})
        tracker.end_parent(parent, "FINISHED")
    runner = Runner(handle, tracker, "sync", log)
    runs = tracker.trial_runs(parent)
    count = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name not in ("COMPLETE", "PRUNED", "FAIL"):
            continue
        run = runs.get(trial.number)
        if run is None or run.info.status == "RUNNING":
            runner.render(trial, run.info.run_id if run is not None else None)
            count += 1
    rows = study.user_attrs.get("reevaluation", {}).get("rows", [])
    if rows:
        tracker.log_evaluations(parent, "reevaluate", rows)
    if tracker.missed:
        raise PolicySearchError(f"MLflow at {uri}: {len(tracker.missed)} item(s) still not "
                                "logged; is the tracking server up?")
    log(f"synced {count} trial(s) of study {study_name!r} to {uri}")
    return count
