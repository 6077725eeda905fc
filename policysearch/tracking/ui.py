"""What MLflow's web UI shows without the user configuring it: the experiment's kind, a saved
view of each study's runs table, and links into the UI.

The values here are MLflow's own (read from its UI source, MLflow 3.x):

- ``mlflow.experimentKind = custom_model_development`` is the experiment tag the UI writes for a
  "Machine learning" (model training) experiment (``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT``);
  versions that read it open the experiment on its runs table instead of the GenAI pages.
  Since the UI's global workflow switch (GenAI / Machine learning), the URL parameter
  ``workflowType=machine_learning`` selects the same view; the links below carry it.
- A saved view is the experiment tag ``mlflow.sharedViewState.<id>`` holding
  ``{"name", "createdAt", "state"}``, ``state`` being the JSON of the runs page's UI state
  (``selectedColumns``, ``runsExpanded``...) and search facets, the same form the UI's
  "Save & share view" writes. ``?viewStateShareKey=<id>`` opens it; the UI lists it by name.
  Columns are canonical keys: ``params.`name```, ``metrics.`name```, ``tags.`name```.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlencode

EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
WORKFLOW = {"workflowType": "machine_learning"}
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
DEFAULT_UI = "http://127.0.0.1:5000"
"""Where ``make ui`` serves a local (SQLite) tracking store."""

TRIAL_COLUMNS = (
    ("params", "type"), ("params", "num_ops"), ("params", "magnitude"), ("params", "ops"),
    ("metrics", "val_accuracy"), ("metrics", "paired_gain_over_crop_flip"),
    ("metrics", "selection_accuracy"),
    ("tags", "state"), ("tags", "prune_reason"),
)
"""The runs table's columns in a study's view: the policy, how it scored (a trial on the
search-validation split, a race run on the selection split), how it ended."""


def column_key(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def view_id(study_name: str) -> str:
    """The saved view's id: the study's name in the characters a URL keeps as they are."""
    return "study-" + re.sub(r"[^A-Za-z0-9_-]+", "-", study_name).strip("-")


def study_view_tag(study_name: str, parent_run_id: str) -> tuple[str, str]:
    """The experiment tag (key, value) of the study's saved view: its runs only, the study run
    expanded to show its trials, with the policy, score and state columns."""
    state = {
        "searchFilter": f"tags.`optuna.study_name` = '{study_name}'",
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "selectedColumns": [column_key(k, n) for k, n in TRIAL_COLUMNS],
        # Saved views keep no expanded rows (MLflow drops ``runsExpanded``), so nested trial
        # runs would hide under the study run: group rows by role instead (study, baseline,
        # search, race), which lists every run of each group.
        "groupBy": {"aggregateFunction": "max",
                    "groupByKeys": [{"mode": "tag", "groupByData": "policysearch.role"}]},
        "groupsExpanded": {},
    }
    envelope = {"name": f"study {study_name}", "createdAt": int(time.time() * 1000),
                "state": json.dumps(state)}
    return SHARED_VIEW_PREFIX + view_id(study_name), json.dumps(envelope)


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the tracking server itself, or ``make ui`` for a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_UI


def experiment_url(tracking_uri: str, experiment_id: str, study_name: str | None = None) -> str:
    """The experiment's runs table, in its study's saved view when ``study_name`` is given."""
    query = dict(WORKFLOW)
    if study_name:
        query["viewStateShareKey"] = view_id(study_name)
    return f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    return (f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"
            f"?{urlencode(WORKFLOW)}")


def mark_experiment(client: Any, experiment_id: str) -> None:
    """Tag the experiment as model training, unless someone chose a kind explicitly (the UI's
    inferred kinds end in ``_inferred`` and are replaced)."""
    kind = client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND)
    if kind is None or kind.endswith("_inferred") or kind in ("", "no_inferred_type"):
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
