"""The typed study and trial records: the one schema of what policysearch keeps in Optuna.

Everything the search writes into an Optuna study goes through this module: one user
attribute per field, named ``ps.<field>``, so concurrent workers never overwrite each other's
fields, and every reader gets typed values instead of loose string keys. ``SCHEMA_VERSION``
changes when a field changes meaning; a study of another version is refused on resume.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field, fields
from typing import Any

from policysearch.errors import PolicySearchError

SCHEMA_VERSION = 2
PREFIX = "ps."


@dataclass
class StudyRecord:
    """What a study is: its config, space, data and budget, and where it is viewed."""

    experiment: dict[str, Any]
    experiment_source: str
    space_name: str
    space_raw: dict[str, Any]
    data_fingerprint: str
    image_shape: list[int]
    classes: list[str]
    total_trials: int
    created_at: str
    trial_seed: int
    """Every search trial trains with this seed (common random numbers)."""
    schema_version: int = SCHEMA_VERSION
    ready: bool = False
    mlflow_experiment: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_parent_run_id: str | None = None
    race_rows: list[dict[str, Any]] = field(default_factory=list)
    decision: dict[str, Any] | None = None
    exported_policy: str | None = None
    exported_by: str | None = None
    fidelity: dict[str, Any] | None = None
    """The proxy's measured fidelity (``policysearch fidelity``), when known for this config."""
    exported_for: int | None = None
    """The trial budget the export was made for (a resume with more trials exports again)."""
    prune_rungs: list[int] = field(default_factory=list)
    """The epochs the pruner may stop a trial at: the rungs measured faithful (none: no
    pruning). Every process of the study builds its pruner from it."""
    prune_reason: str | None = None
    """Why the pruner prunes there (or nowhere): the sentence the search states first."""
    trial_seconds: float | None = None
    """Wall seconds of the trial phase (first trial started to last trial finished)."""
    race_seconds: float | None = None
    """Training seconds of the race (every stage), summed over its runs."""


@dataclass
class TrialRecord:
    """What one trial ran and how it went (besides Optuna's own params, values and state)."""

    policy: dict[str, Any]
    label: str
    seed: int
    worker: str
    baseline: str | None = None
    device: str | None = None
    mlflow_run_id: str | None = None
    train_loss: list[float | None] = field(default_factory=list)
    """Mean training loss over each stretch of epochs, ending at ``loss_epochs``."""
    loss_epochs: list[int] = field(default_factory=list)
    train_seconds: float | None = None
    paired_gain: float | None = None
    """Accuracy minus crop+flip's at the same seed (None until crop+flip has completed)."""
    fail_reason: str | None = None
    interrupted: bool = False

    @property
    def role(self) -> str:
        return "baseline" if self.baseline else "search"


_STUDY_FIELDS = {f.name for f in fields(StudyRecord)}
_TRIAL_FIELDS = {f.name for f in fields(TrialRecord)}


def _read(cls: type, attrs: dict[str, Any], names: set[str]) -> Any:
    values = {k[len(PREFIX):]: v for k, v in attrs.items() if k.startswith(PREFIX)}
    return cls(**{k: v for k, v in values.items() if k in names})


def has_record(study: Any) -> bool:
    return bool(study.user_attrs.get(PREFIX + "ready"))


def read_study(study: Any) -> StudyRecord:
    """The study's record; one clear error for a study of another tool or schema."""
    attrs = study.user_attrs
    version = attrs.get(PREFIX + "schema_version")
    if version is None:
        raise PolicySearchError(f"study {study.study_name!r} has no policysearch record "
                                "(created by another tool, or by policysearch before 0.2); "
                                "pick another --study-name")
    if version != SCHEMA_VERSION:
        raise PolicySearchError(f"study {study.study_name!r} has record schema {version}, this "
                                f"policysearch writes {SCHEMA_VERSION}; pick another --study-name")
    return _read(StudyRecord, attrs, _STUDY_FIELDS)


def write_study(study: Any, record: StudyRecord) -> None:
    """Write every field (on creation); ``ready`` last, so joiners never see half a record."""
    for key, value in dataclasses.asdict(record).items():
        if key != "ready":
            study.set_user_attr(PREFIX + key, value)
    study.set_user_attr(PREFIX + "ready", True)


def _update(target: Any, record: type, names: set[str], values: dict[str, Any]) -> None:
    """Set some fields of a study's or a trial's record; an unknown field is a bug."""
    for key, value in values.items():
        if key not in names:
            raise KeyError(f"{record.__name__} has no field {key!r}")
        target.set_user_attr(PREFIX + key, value)


def update_study(study: Any, **values: Any) -> None:
    _update(study, StudyRecord, _STUDY_FIELDS, values)


def read_trial(trial: Any) -> TrialRecord | None:
    """The trial's record, or ``None`` for a trial that has not started (a queued one)."""
    if PREFIX + "policy" not in trial.user_attrs:
        return None
    return _read(TrialRecord, trial.user_attrs, _TRIAL_FIELDS)


def write_trial(trial: Any, record: TrialRecord) -> None:
    for key, value in dataclasses.asdict(record).items():
        trial.set_user_attr(PREFIX + key, value)


def update_trial(trial: Any, **values: Any) -> None:
    _update(trial, TrialRecord, _TRIAL_FIELDS, values)


def queued_baseline(trial: Any) -> str | None:
    """The baseline a queued trial was enqueued for (``None``: a searched trial)."""
    return trial.user_attrs.get(PREFIX + "baseline")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
