"""The study in its Optuna storage: create it once, join or resume it, check it is the same.

The creator writes the ``StudyRecord`` (config, space, data fingerprint, budget) and enqueues
the baselines, under the study's lock, so two processes started at once create one study.
Joining compares the whole record with what the joiner was given and names every difference.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from policysearch.config.experiment import Experiment, experiment_from_dict
from policysearch.config.samplers import REPRODUCIBLE, SAMPLERS, PrunePlan, rung_pruner
from policysearch.errors import PolicySearchError
from policysearch.study.record import (
    PREFIX,
    StudyRecord,
    has_record,
    now,
    read_study,
    write_study,
)
from policysearch.study.spaces import SearchSpace, parse_space
from policysearch.study.storage import budget_lock, open_storage, redact, storage_exists

warnings.filterwarnings("ignore", message=".*is experimental.*")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def make_sampler(experiment: Experiment, seed: int | None) -> Any:
    return SAMPLERS[experiment.search.sampler](seed)


def make_pruner(experiment: Experiment, rungs: list[int] | tuple[int, ...]) -> Any:
    """The experiment's pruner, allowed to prune only at ``rungs`` (the study record's
    ``prune_rungs``: the rungs measured faithful); no rungs, no pruning."""
    return rung_pruner(experiment.search.pruner, rungs, experiment.trainer.epochs)


@dataclass
class StudyHandle:
    """An open study and its record (the record is re-read where it may have changed)."""

    study: Any
    storage_url: str
    experiment: Experiment
    space: SearchSpace
    created: bool

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def record(self) -> StudyRecord:
        return read_study(self.study)


def new_record(experiment: Experiment, space: SearchSpace, *, fingerprint: str,
               image_shape: tuple[int, ...], classes: tuple[str, ...],
               total_trials: int, prune: PrunePlan | None = None) -> StudyRecord:
    return StudyRecord(
        experiment=experiment.to_dict(), experiment_source=experiment.source,
        space_name=space.name, space_raw=space.raw, data_fingerprint=fingerprint,
        image_shape=list(image_shape), classes=list(classes), total_trials=total_trials,
        created_at=now(), trial_seed=trial_seed(experiment.search.seed),
        prune_rungs=list(prune.steps) if prune else [],
        prune_reason=prune.reason if prune else None)


def trial_seed(search_seed: int) -> int:
    """The seed every search trial of a study trains with."""
    return 1 + 1000 * search_seed


def open_study(storage_url: str, study_name: str, record: StudyRecord | None = None, *,
               experiment: Experiment | None = None, wait_seconds: float = 60.0,
               wait_for_study: float = 0.0, log: Any = None) -> StudyHandle:
    """Create the study from ``record`` (with its baselines, once) or join it.

    Joining with a record checks that the stored one matches it (a larger ``total_trials`` is
    a resume that adds trials, and is stored). Joining without one takes the stored config.
    The sampler is seeded with the study's seed only in the process that creates the study;
    every other process (workers, resumes) reseeds it, so nobody re-proposes what ran; a
    reproducible sampler (``random``: its proposals numbered in the study) is seeded alike in
    every process.
    A study that does not exist is refused at once, unless ``wait_for_study`` seconds are
    given (a worker started before its search: it says so once through ``log``, then waits).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if record is None and not wait_for_study and not storage_exists(storage_url):
        raise PolicySearchError(f"study {study_name!r} does not exist: there is no storage "
                                f"{redact(storage_url)}; start it with `policysearch search`")
    storage = open_storage(storage_url)
    created = False
    if record is not None and experiment is not None:
        with budget_lock(storage, storage_url, study_name):
            try:
                study = optuna.create_study(study_name=study_name, storage=storage,
                                            direction="maximize")
            except optuna.exceptions.DuplicatedStudyError:
                pass
            else:
                write_baselines_and_record(study, experiment, record)
                created = True
    stored = _wait_for_record(storage, study_name, wait_seconds, wait_for_study, log)
    stored_experiment = experiment_from_dict(stored.experiment, f"study {study_name}")
    stored_experiment.source = stored.experiment_source
    space = parse_space(stored.space_raw, f"study {study_name}", stored.space_name)
    if record is not None and experiment is not None and not created:
        check_compatible(study_name, stored, record)
    exp = experiment or stored_experiment
    rungs = stored.prune_rungs if record is None else record.prune_rungs
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=make_sampler(stored_experiment, exp.search.seed
                                                   if created or stored_experiment.search.sampler
                                                   in REPRODUCIBLE else None),
                              pruner=make_pruner(stored_experiment, rungs))
    if record is not None and not created:
        from policysearch.study.record import update_study

        if record.total_trials != stored.total_trials:
            update_study(study, total_trials=record.total_trials)
        if (record.prune_rungs, record.prune_reason) != (stored.prune_rungs,
                                                         stored.prune_reason):
            # a resume after a new fidelity measurement prunes where that one says
            update_study(study, prune_rungs=record.prune_rungs, prune_reason=record.prune_reason)
    return StudyHandle(study, storage_url, exp, space, created)


def write_baselines_and_record(study: Any, experiment: Experiment, record: StudyRecord) -> None:
    for name in experiment.search.baselines:
        study.enqueue_trial({}, user_attrs={PREFIX + "baseline": name})
    write_study(study, record)


def _wait_for_record(storage: Any, study_name: str, wait_seconds: float,
                     wait_for_study: float = 0.0, log: Any = None) -> StudyRecord:
    """The study's record, waiting briefly for a creator that is still writing it (its creator
    makes the study and its record under one lock), and for a study that does not exist only
    ``wait_for_study`` seconds."""
    import optuna

    started = time.monotonic()
    told = False
    while True:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            if time.monotonic() - started >= wait_for_study:
                waited = f" after {wait_for_study:.0f} s" if wait_for_study else ""
                raise PolicySearchError(f"study {study_name!r} does not exist in this storage"
                                        f"{waited}; start it with `policysearch search`") from None
            if not told and log is not None:
                log(f"study {study_name!r} does not exist yet; waiting up to "
                    f"{wait_for_study:.0f} s for `policysearch search` to create it")
                told = True
            time.sleep(1.0)
            continue
        if has_record(study):
            return read_study(study)
        if not any(k.startswith(PREFIX) for k in study.user_attrs):
            read_study(study)  # raises: a study of another tool or an older schema
        if time.monotonic() > started + wait_for_study + wait_seconds:
            raise PolicySearchError(f"study {study_name!r} is still being created; try again")
        time.sleep(0.5)


COMPARED = ("experiment_source", "space_name", "space_raw", "data_fingerprint", "image_shape",
            "classes", "trial_seed")
"""Fields that must match on resume or join, besides the experiment's settings."""
MAY_CHANGE = ("search.trials", "search.timeout_minutes", "search.max_failures",
              "search.prune_min_spearman", "search.learning_check", "race",
              "validate", "fidelity", "smoke", "name", "data.data_dir")
"""Experiment keys a resume may change (budgets of later stages, where the data lives)."""


def check_compatible(study_name: str, stored: StudyRecord, given: StudyRecord) -> None:
    """Refuse to resume or join with other settings, naming each difference."""
    problems = []
    for key in COMPARED:
        if key == "experiment_source":
            continue  # the same config may come from another path
        if getattr(stored, key) != getattr(given, key):
            what = {"data_fingerprint": "the data changed (other images or classes)",
                    "space_raw": f"the search space {stored.space_name!r} differs"}.get(
                key, f"{key} {getattr(stored, key)!r}, not {getattr(given, key)!r}")
            problems.append(what)
    old, new = _flat(stored.experiment), _flat(given.experiment)
    same_data = stored.data_fingerprint == given.data_fingerprint
    for key in sorted(set(old) | set(new)):
        if any(key == m or key.startswith(m + ".") for m in MAY_CHANGE):
            continue
        if key == "dataset" and same_data:
            continue  # the same images (pixels, labels, classes), spelled another way
        if old.get(key) != new.get(key):
            problems.append(f"{key}={old.get(key)!r}, not {new.get(key)!r}")
    if problems:
        raise PolicySearchError(f"study {study_name!r} already exists with "
                                f"{'; '.join(problems[:6])}: resume it with the same settings or "
                                "pick another --study-name")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
