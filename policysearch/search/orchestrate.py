"""The whole search, start to end: data, study, workers, race, export.

``run_search`` loads the data (before the study exists, so bad data leaves nothing behind),
creates or resumes the study, runs trials in this process and in ``workers - 1`` spawned ones,
waits for every trial still held by another worker, races the best candidates on the selection
split and exports the winner once (whichever process gets there first under the study's lock).
``run_worker`` is what a joining worker runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from policysearch.config.experiment import Experiment
from policysearch.config.samplers import PrunePlan, prune_plan
from policysearch.errors import PolicySearchError, env_int
from policysearch.policy.definition import Policy
from policysearch.search.base_choice import BaseChoice, choose_base
from policysearch.search.contenders import Contender, contenders, screen_round
from policysearch.search.learning_check import BudgetCannotLearn, check_learning
from policysearch.search.provenance import export_policy
from policysearch.search.race import race, race_design
from policysearch.search.tally import describe_tally, search_tally
from policysearch.search.worker import (
    Interrupted,
    Runner,
    configure_threads,
    device_for,
    interruptible,
    spawn_workers,
    stop_workers,
    terminate,
)
from policysearch.study.cost import cost_text
from policysearch.study.record import read_study, read_trial, update_study
from policysearch.study.spaces import SearchSpace
from policysearch.study.storage import budget_lock, redact
from policysearch.study.store import StudyHandle, new_record, open_study
from policysearch.tracking.client import mlflow_experiment_name
from policysearch.training import interrupts


def _tracker(uri: str, name: str, study_name: str) -> Any:
    """A connected tracker: raises if the MLflow server is away."""
    from policysearch.tracking import Tracker

    tracker = Tracker(uri, name, study_name)
    tracker.connect()
    return tracker


def _view(tracker: Any, study: Any, storage_url: str) -> Any:
    from policysearch.tracking import StudyView

    return StudyView(tracker, study, redact(storage_url))


def run_search(experiment: Experiment, space: SearchSpace, *, storage_url: str,
               study_name: str, export_path: Path, tracking_uri: str | None,
               mlflow_experiment: str | None = None, workers: int = 1,
               devices: list[str] | None = None, system_metrics: bool = False,
               fidelity_path: Path | None = None, log: Any = print) -> Policy | None:
    """Run (or resume) a whole search and export its winner; ``None`` when another process
    of the same study exported it. ``fidelity_path``: the fidelity JSON whose rung agreement
    decides where the pruner may prune (default: the experiment's own, when it matches)."""
    from policysearch.data.splits import load_splits
    from policysearch.paths import check_writable_file
    from policysearch.tracking import tracking_uri as resolve_uri

    check_writable_file(export_path, "export path")  # before any training, not after it
    uri = resolve_uri(tracking_uri)
    experiment_name = mlflow_experiment or mlflow_experiment_name(experiment.dataset)
    tracker = _tracker(uri, experiment_name, study_name)  # refuse to start if MLflow is away
    device = device_for(0, devices)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    splits = load_splits(experiment)
    from policysearch.training.models import check_models

    check_models(experiment, splits.image_shape, len(splits.classes))
    if experiment.auto_epochs:  # no schedule given: a new study picks one, a resume reads it
        from policysearch.search.schedule import schedule_for, stored_schedule, with_epochs

        stored = stored_schedule(storage_url, study_name)
        experiment = (with_epochs(experiment, stored) if stored
                      else schedule_for(experiment, splits, log))
    total = len(experiment.search.baselines) + experiment.search.trials
    from policysearch.evidence.fidelity import known_fidelity

    fidelity = known_fidelity(experiment, fidelity_path)
    plan = pruning(experiment, fidelity)
    record = new_record(experiment, space, fingerprint=splits.fingerprint,
                        image_shape=splits.image_shape, classes=splits.classes,
                        total_trials=total, prune=plan)
    handle = open_study(storage_url, study_name, record, experiment=experiment)
    study = handle.study
    update_study(study, fidelity=fidelity)
    if fidelity:
        log(f"proxy fidelity (policysearch fidelity {experiment.name}): Spearman "
            f"{fidelity['spearman']:+.2f} over {len(fidelity.get('policies', []))} policies, "
            f"cost ratio (median seconds) {cost_text(fidelity)}")
    view = _view(tracker, study, storage_url)
    configure_threads(workers)
    runner = Runner(handle, splits, view, "w0", log)
    params = {**experiment.flat(), **{f"space.{k}": v for k, v in space.summary().items()},
              "workers": workers}
    parent = view.start_study(params, {"storage": redact(storage_url),
                                       "dataset": experiment.dataset})
    monitor = None
    if system_metrics and parent:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(parent, sampling_interval=5)
        monitor.start()
    verb = "created" if handle.created else "resumed"
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    log(f"study {study_name!r} {verb} in {redact(storage_url)}: {done}/{total} trials done "
        f"({len(experiment.search.baselines)} baselines + {experiment.search.trials} searched); "
        f"space {space.name}; {workers} worker(s)")
    log(describe_budgets(experiment, splits))
    log(plan.reason)
    log(f"MLflow: {uri}, experiment {experiment_name!r}, run {parent}; trials table: "
        f"{view.table_url()}")
    timeout = experiment.search.timeout_minutes
    deadline = time.time() + 60 * timeout if timeout else None
    procs: list[Any] = []
    forget = interrupts.on_signal(lambda: terminate(procs))  # the workers stop with this one
    status = "FAILED"
    stopped: BudgetCannotLearn | None = None
    try:
        with interruptible():
            check_learning(handle, runner, deadline, log)  # before any searched trial
            procs = spawn_workers(study_name, storage_url, workers - 1, uri, devices, deadline)
            run_until_settled(runner, deadline, procs)
            stop_workers(procs)
            policy = select_and_export(handle, runner, view, export_path, uri, log)
        status = "FINISHED"
        return policy
    except BaseException as err:
        status = "KILLED" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "FAILED"
        stopped = err if isinstance(err, BudgetCannotLearn) else None
        raise
    finally:
        forget()
        stop_workers(procs)
        if monitor is not None:
            monitor.finish()
        view.end_study(status)
        if stopped is not None:
            stopped.remove_study()


def pruning(experiment: Experiment, fidelity: dict[str, Any] | None) -> PrunePlan:
    """Where the pruner may stop trials: the rungs the fidelity measurement found faithful."""
    from policysearch.config.experiment import find_experiment

    source = experiment.source
    if source in ("", "defaults") or Path(source) == find_experiment(experiment.name):
        source = experiment.name
    return prune_plan(experiment.search.pruner, experiment.trainer.epochs,
                      experiment.trainer.validate_every, experiment.search.prune_min_spearman,
                      None if fidelity is None else fidelity.get("rungs") or [], source)


def describe_budgets(experiment: Experiment, splits: Any) -> str:
    """The first lines' statement of what the search is for (and which sizes were chosen
    automatically, and why)."""
    from policysearch.config.auto import resolve_batch_size, resolve_lr
    from policysearch.training.models import describe_model

    def one(name: str) -> str:
        b = experiment.budget(name)
        images = len(splits.training(name))
        batch = resolve_batch_size(b.trainer.batch_size, images)
        return (f"{images} images x {b.trainer.epochs} epochs, batch {batch}, lr "
                f"{resolve_lr(b.trainer.lr, batch):.3g}, "
                f"{describe_model(b.trainer.model, splits.image_shape)}")

    auto = sorted({k for name in ("proxy", "target") for k in ("batch_size", "lr")
                   if getattr(experiment.budget(name).trainer, k) == "auto"})
    why = []
    if getattr(splits, "sizing", ""):
        why.append(splits.sizing)
    if auto:
        why.append(f"{' and '.join(auto)} auto: batch 256, halved down to 16 until an epoch "
                   "has 8 steps; lr 0.2 x sqrt(batch / 256)")

    why.append(race_reach(experiment, len(splits.selection)))
    base = experiment.base_augment
    h, w, c = splits.image_shape
    return (f"target (what the policy is for): {one('target')}; proxy (scores each trial): "
            f"{one('proxy')}; search validation {len(splits.val)} images, selection "
            f"{len(splits.selection)} images (the race; one accuracy's sampling noise is at "
            f"most {50 / max(1, len(splits.selection)) ** 0.5:.2f} pts sd, 50/sqrt(images)), "
            "test split: never read; base "
            f"augmentation: crop padding {base.crop_padding} px, flip "
            f"{'on' if base.flip else 'off'}; images decoded at {h}x{w}x{c}"
            + "".join(f"\n{line}" for line in why))


def race_reach(experiment: Experiment, selection: int) -> str:
    """What the race could tell apart at its seed cap if evaluation noise were all of it."""
    from policysearch.evidence.sequential import detectable_gain

    race = experiment.race
    design = race_design(race)
    sd = 0.5 * (2 / max(1, selection)) ** 0.5  # a paired difference, errors independent, p=0.5
    gain = detectable_gain(race.max_seeds, sd, design.nominal[-1] / max(1, race.top_k),
                           race.power)
    return (f"race: {race.max_seeds} seeds at most on {selection} selection images; with "
            f"evaluation noise alone (at most {100 * sd:.2f} pts a paired difference) they "
            f"detect gains of {100 * gain:.2f} pts with {100 * race.power:.0f} % power; "
            "training noise adds to that: the race measures both at its first look and plans "
            f"its seeds for race.min_effect ({race.min_effect:g} pts)")


def run_until_settled(runner: Runner, deadline: float | None, procs: list[Any]) -> None:
    """Run trials here until the budget, then wait for trials other workers still hold (a
    killed worker's trial goes stale after the grace period and is retried here)."""
    from optuna.storages import fail_stale_trials

    from policysearch.study.storage import GRACE_PERIOD

    study = runner.handle.study
    told = False
    while True:
        runner.run(deadline)
        fail_stale_trials(study)
        held = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        waiting = any(t.state.name == "WAITING" for t in study.get_trials(deepcopy=False))
        alive = any(p.poll() is None for p in procs)
        if not held and not waiting and not alive:
            return
        if deadline is not None and time.time() > deadline and not alive and not held:
            return
        if held and not told:
            numbers = ", ".join(str(t.number) for t in held)
            runner.log(f"waiting for trial(s) {numbers} still held by other workers (a dead "
                       f"worker's trial is failed after {GRACE_PERIOD}s without heartbeat and "
                       "retried)")
            told = True
        time.sleep(1.0)
        interrupts.check()


def select_and_export(handle: StudyHandle, runner: Runner, view: Any, export_path: Path,
                      uri: str | None, log: Any) -> Policy | None:
    """Race the best candidates on the selection split and export the winner (once)."""
    study = handle.study
    exp = handle.experiment
    screened = exp.race.screen.top_k > 0
    log(f"base augmentation: {searched_base(study).sentence()}; the race runs the stock "
        "baselines on every base its candidates train on, beside the experiment's")
    entrants = contenders(study, exp.race.screen.top_k if screened else exp.race.top_k,
                          every_baseline=screened)
    if not any(c.role != "reference" for c in entrants):
        raise PolicySearchError(f"study {handle.name!r}: no trial completed, nothing to "
                                "export; see the failure reasons above")
    decision = race_on_selection(handle, runner, entrants, log).to_dict()
    view.log_evaluations("race", read_study(study).race_rows)
    tally = search_tally(study)
    update_study(study, trial_seconds=tally["trial_phase_seconds"],
                 race_seconds=tally["reevaluation_seconds"])
    with budget_lock(study._storage, handle.storage_url, study.study_name):
        current = read_study(study)
        if (current.exported_for == current.total_trials and current.exported_policy
                and Path(current.exported_policy).exists() and current.decision is not None):
            log(f"study {handle.name!r} was exported by {current.exported_by} to "
                f"{current.exported_policy}; not exporting it again")
            log(describe_tally(tally))
            print_decision(current.decision, log)
            return None
        policy = export_policy(handle, decision, export_path, uri)
        update_study(study, decision=decision, exported_policy=str(export_path),
                     exported_by=f"{runner.worker}@{os.uname().nodename}:{os.getpid()}",
                     exported_for=current.total_trials)
    view.log_summary(decision, policy.to_json(), sample(runner))
    log(describe_tally(tally))
    print_decision(decision, log)
    return policy


def searched_base(study: Any) -> BaseChoice:
    """The base flip and crop the completed searched trials chose (``search.base_choice``)."""
    trials = []
    for t in study.get_trials(deepcopy=False):
        record = read_trial(t)
        if t.state.name == "COMPLETE" and t.value is not None and record is not None \
                and not record.baseline:
            trials.append((Policy.from_dict(record.policy), float(t.value)))
    return choose_base(trials)


def sample(runner: Runner) -> Any:
    from policysearch.tracking.view import sample_images

    return sample_images(runner.splits, 4)


def race_on_selection(handle: StudyHandle, runner: Runner, entrants: list[Contender],
                      log: Any) -> Any:
    """The race, with its first round (the screen) when configured, resumable: every (stage,
    policy, seed) result is kept in the study record."""
    from policysearch.training.trainer import trainer_for

    exp = handle.experiment
    rows = list(read_study(handle.study).race_rows)
    splits = runner.splits
    trainers: dict[str, Any] = {}

    def trainer(budget: str) -> Any:
        if budget not in trainers:
            trainers[budget] = (runner.trainer if budget == "proxy"
                                else trainer_for(exp, budget, splits))
        return trainers[budget]

    def known(stage: str, budget: str) -> dict[tuple[str, int], float]:
        return {(r["key"], r["seed"]): r["accuracy"] for r in rows
                if r["budget"] == budget and r.get("stage", "race") == stage}

    def evaluator(stage: str, budget: str) -> Any:
        def evaluate(c: Contender, seed: int) -> float:
            interrupts.check()  # and after every batch of the training
            result = trainer(budget).train(Policy.from_dict(c.policy),
                                           splits.training(budget), splits.selection, seed)
            row = {"key": c.key, "label": c.label, "policy": c.policy, "role": c.role,
                   "seed": seed, "budget": budget, "stage": stage,
                   "accuracy": result.final_accuracy, "seconds": round(result.seconds, 2)}
            rows.append(row)
            update_study(handle.study, race_rows=rows)
            log(f"{stage}: {c.label} seed {seed}: selection accuracy {row['accuracy']:.4f}")
            return row["accuracy"]
        return evaluate

    screen = None
    first = exp.race.screen
    if first.top_k:
        log(f"race, first round (screen) on the selection split ({len(splits.selection)} "
            f"images, {first.budget} budget, {first.seeds} seeds each; the best "
            f"{exp.race.top_k} go on): " + ", ".join(c.label for c in entrants))
        entrants, screen = screen_round(entrants, evaluator("screen", first.budget), exp.race,
                                        known("screen", first.budget), log)
    budget = exp.race.budget
    log(f"race on the selection split ({len(splits.selection)} images, {budget} budget): "
        + ", ".join(c.label for c in entrants))
    decision = race(entrants, evaluator("race", budget), exp.race, known("race", budget), log)
    decision.screen = screen
    return decision


def print_decision(decision: dict[str, Any], log: Any) -> None:
    log(f"race ({decision['split']} split, {decision['budget']} budget, "
        f"{decision['test']}):")
    for row in sorted(decision["table"], key=lambda r: -r["mean"]):
        gain = row.get("gain_over_baseline")
        text = (f"  gain over the baseline {100 * gain['mean']:+.2f} pts, lower bound "
                f"{100 * gain['lower']:+.2f}" if gain else "")
        out = f", out after {row['out_after']} seeds" if row.get("out_after") else ""
        log(f"  {row['role']:9s} {row['label']:40s} {100 * row['mean']:.2f} ± "
            f"{100 * row['std']:.2f} % (n={row['n']}{out}){text}")
    log(f"decision: {decision['reason']}")
    log(decision["sentence"])


def run_worker(study_name: str, storage_url: str, tracking_uri: str | None, worker_id: str,
               deadline: float | None = None, log: Any = print,
               wait_for_study: float = 0.0) -> int:
    """Join a study (its stored config) and run trials until its budget is reached; a study
    that does not exist is refused at once, or waited for ``wait_for_study`` seconds."""
    from policysearch.data.splits import load_splits

    handle = open_study(storage_url, study_name, wait_for_study=wait_for_study, log=log)
    record = handle.record
    splits = load_splits(handle.experiment)
    if splits.fingerprint != record.data_fingerprint:
        raise PolicySearchError(f"study {study_name!r}: this machine's copy of "
                                f"{handle.experiment.dataset!r} differs from the study's data")
    uri = tracking_uri or record.mlflow_tracking_uri
    view = None
    if uri and record.mlflow_experiment:
        view = _view(_tracker(uri, record.mlflow_experiment, study_name), handle.study,
                     storage_url)
    configure_threads(env_int("POLICYSEARCH_WORKERS", 1))
    runner = Runner(handle, splits, view, worker_id, log)
    with interruptible():
        ran = runner.run(deadline)
    log(f"[{worker_id}] done: ran {ran} trial(s)")
    return ran
