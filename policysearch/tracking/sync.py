"""``sync-mlflow``: log what an unreachable tracking server missed, from the Optuna storage.

It needs no data: trial runs are rendered from their records (without the sample grid, which
needs the images), the race runs from the stored rows, and the study run's summary and
description from the stored decision. Running it twice logs nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policysearch.errors import PolicySearchError


def sync_mlflow(study_name: str, storage_url: str, tracking_uri: str | None,
                log: Any = print) -> int:
    """Log every finished trial MLflow lacks, the race, the summary and the description;
    returns how many trials were logged."""
    from policysearch.study.record import update_study
    from policysearch.study.storage import redact
    from policysearch.study.store import open_study
    from policysearch.tracking.client import Tracker, mlflow_experiment_name
    from policysearch.tracking.client import tracking_uri as resolve
    from policysearch.tracking.ui import experiment_url
    from policysearch.tracking.view import StudyView

    handle = open_study(storage_url, study_name)
    record = handle.record
    uri = resolve(tracking_uri or record.mlflow_tracking_uri)
    tracker = Tracker(uri, record.mlflow_experiment
                      or mlflow_experiment_name(handle.experiment.dataset), study_name)
    tracker.connect()
    view = StudyView(tracker, handle.study, redact(storage_url))
    parent = record.mlflow_parent_run_id
    if parent is not None and tracker.run_exists(parent):
        tracker.safe("the experiment's view", lambda: view.decorate(parent))
    else:
        update_study(handle.study, mlflow_parent_run_id=None)
        view.start_study(handle.experiment.flat(), {"storage": redact(storage_url),
                                                    "dataset": handle.experiment.dataset})
    parent = view.parent
    if parent:
        merge_duplicates(tracker, handle.study, parent, log)
    runs = tracker.trial_runs(parent) if parent else {}
    count = 0
    for trial in handle.study.get_trials(deepcopy=False):
        if trial.state.name not in ("COMPLETE", "PRUNED", "FAIL"):
            continue
        run = runs.get(trial.number)
        if run is None or run.info.status == "RUNNING":
            view.finish_trial(trial)
            count += 1
    record = handle.record
    if record.race_rows:
        view.log_evaluations("race", record.race_rows)
    if record.decision is not None:
        policy_json = None
        if record.exported_policy and Path(record.exported_policy).is_file():
            policy_json = Path(record.exported_policy).read_text()
        view.log_summary(record.decision, policy_json, None)
    else:
        view.refresh_note()
    if record.decision is not None and parent and tracker.safe(
            "the study run", lambda: tracker.client.get_run(parent).info.status) == "RUNNING":
        view.end_study("FINISHED")  # the search ended while the server was away
    if tracker.missed:
        raise PolicySearchError(f"MLflow at {uri}: {len(tracker.missed)} item(s) still not "
                                "logged; is the tracking server up?")
    log(f"synced {count} trial(s) of study {study_name!r} to {uri}")
    log(f"trials table: {experiment_url(uri, tracker.experiment_id, study_name)}")
    return count


def merge_duplicates(tracker: Any, study: Any, parent: str, log: Any = print) -> int:
    """One run per trial attempt: of several runs for one trial (left by older versions, or by
    a creation whose reply was lost), keep one (a finished one, the trial's recorded one first,
    then the oldest) and delete the others; returns how many were deleted."""
    from policysearch.study.record import read_trial

    recorded = {}
    for trial in study.get_trials(deepcopy=False):
        record = read_trial(trial)
        recorded[trial.number] = record.mlflow_run_id if record else None
    deleted = 0
    for number, runs in sorted(tracker.trial_run_groups(parent).items()):
        if len(runs) < 2:
            continue
        keep = min(runs, key=lambda r: (r.info.status != "FINISHED",
                                        r.info.run_id != recorded.get(number),
                                        r.info.start_time or 0))
        extra = [r.info.run_id for r in runs if r is not keep]
        for run_id in extra:
            tracker.client.delete_run(run_id)
        deleted += len(extra)
        log(f"trial {number}: merged {len(runs)} runs into one: kept {keep.info.run_id}, "
            f"deleted {', '.join(extra)}")
    if deleted:
        log(f"merged duplicates: deleted {deleted} extra trial run(s); one run per trial now")
    return deleted
