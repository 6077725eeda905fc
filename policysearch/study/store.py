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
from policysearch.config.samplers import PRUNERS, SAMPLERS
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
from policysearch.study.storage import budget_lock, open_storage

warnings.filterwarnings("ignore", message=".*is experimental.*")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


def make_sampler(experiment: Experiment, seed: int | None) -> Any:
    return SAMPLERS[experiment.search.sampler](seed)


def make_pruner(experiment: Experiment) -> Any:
    trainer = experiment.trainer
    first = min(trainer.validate_every, trainer.epochs)
    return PRUNERS[experiment.search.pruner](first, trainer.epochs)


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
               total_trials: int) -> StudyRecord:
    return StudyRecord(
        experiment=experiment.to_dict(), experiment_source=experiment.source,
        space_name=space.name, space_raw=space.raw, data_fingerprint=fingerprint,
        image_shape=list(image_shape), classes=list(classes), total_trials=total_trials,
        created_at=now(), trial_seed=trial_seed(experiment.search.seed))


def trial_seed(search_seed: int) -> int:
    """The seed every search trial of a study trains with."""
    return 1 + 1000 * search_seed


def open_study(storage_url: str, study_name: str, record: StudyRecord | None = None, *,
               experiment: Experiment | None = None, wait_seconds: float = 60.0) -> StudyHandle:
    """Create the study from ``record`` (with its baselines, once) or join it.

    Joining with a record checks that the stored one matches it (a larger ``total_trials`` is
    a resume that adds trials, and is stored). Joining without one takes the stored config.
    The sampler is seeded with the study's seed only in the process that creates the study;
    every other process (workers, resumes) reseeds it, so nobody re-proposes what ran.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
    stored = _wait_for_record(storage, study_name, wait_seconds)
    stored_experiment = experiment_from_dict(stored.experiment, f"study {study_name}")
    stored_experiment.source = stored.experiment_source
    space = parse_space(stored.space_raw, f"study {study_name}", stored.space_name)
    if record is not None and experiment is not None and not created:
        check_compatible(study_name, stored, record)
    exp = experiment or stored_experiment
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=make_sampler(stored_experiment,
                                                   exp.search.seed if created else None),
                              pruner=make_pruner(stored_experiment))
    if record is not None and not created and record.total_trials != stored.total_trials:
        from policysearch.study.record import update_study

        update_study(study, total_trials=record.total_trials)
    return StudyHandle(study, storage_url, exp, space, created)


def write_baselines_and_record(study: Any, experiment: Experiment, record: StudyRecord) -> None:
    for name in experiment.search.baselines:
        study.enqueue_trial({}, user_attrs={PREFIX + "baseline": name})
    write_study(study, record)


def _wait_for_record(storage: Any, study_name: str, wait_seconds: float) -> StudyRecord:
    """The study's record, waiting briefly for a creator that is still writing it."""
    import optuna

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            study = None
        if study is not None and has_record(study):
            return read_study(study)
        if study is not None and not any(k.startswith(PREFIX) for k in study.user_attrs):
            read_study(study)  # raises: a study of another tool or an older schema
        if time.monotonic() > deadline:
            if study is None:
                raise PolicySearchError(f"study {study_name!r} does not exist in this storage; "
                                        "start it with `policysearch search`")
            raise PolicySearchError(f"study {study_name!r} is still being created; try again")
        time.sleep(0.5)


COMPARED = ("experiment_source", "space_name", "space_raw", "data_fingerprint", "image_shape",
            "classes", "trial_seed")
"""Fields that must match on resume or join, besides the experiment's settings."""
MAY_CHANGE = ("search.trials", "search.timeout_minutes", "search.max_failures",
              "search.learning_check", "race",
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
    for key in sorted(set(old) | set(new)):
        if any(key == m or key.startswith(m + ".") for m in MAY_CHANGE):
            continue
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
