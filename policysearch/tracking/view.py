"""The study as MLflow shows it: rendered from the Optuna storage, never its source of truth.

Every study has one parent run (the study run); every finished trial becomes one nested run,
rendered from the trial's record (see ``render``: the policy as parameters, per-epoch curves,
state and stop reason, a grid of augmented samples). Race and validation runs nest under the
same parent, tagged by role. The study run's description (``note``) states the decision and its
evidence, and while the study runs, how far it is. The experiment is tagged as model training
and gets a saved view of each study's runs table (``ui``). Because runs are rendered from the
storage, ``sync`` logs later whatever an unreachable tracking server missed, and never logs a
trial twice. Every call here warns on failure and never stops the search.
"""

from __future__ import annotations

import time
from typing import Any

from policysearch.study.record import read_study, read_trial, update_study
from policysearch.tracking import note, render, ui
from policysearch.tracking.client import (
    ATTEMPT,
    PARENT,
    ROLE,
    STUDY,
    TRIAL,
    Tracker,
    code_version,
    ms,
    param,
)

NOTE = "mlflow.note.content"


class StudyView:
    """One study's runs in one MLflow experiment."""

    def __init__(self, tracker: Tracker, study: Any, storage: str | None = None) -> None:
        self.tracker = tracker
        self.study = study
        self.storage = storage
        """The study's storage URL, redacted (for the description's commands)."""

    @property
    def parent(self) -> str | None:
        return read_study(self.study).mlflow_parent_run_id

    # -- the study run ---------------------------------------------------------------------------

    def start_study(self, params: dict[str, Any], tags: dict[str, str]) -> str | None:
        """The study's parent run: created once (its id kept in the study), reopened on resume.
        Also marks the experiment as model training and saves the study's runs-table view."""
        t = self.tracker
        self.storage = tags.get("storage", self.storage)

        def start() -> str:
            run_id = self.parent
            if run_id and t.run_exists(run_id):
                t.client.update_run(run_id, status="RUNNING")
            else:
                run_id = self._create_parent(params, tags)
            self.decorate(run_id)
            return run_id

        run_id = t.safe("the study run", start)
        if run_id:
            self.refresh_note()
        return run_id

    def _create_parent(self, params: dict[str, Any], tags: dict[str, str]) -> str:
        import yaml
        from mlflow.entities import Param

        t = self.tracker
        record = read_study(self.study)
        run = t.client.create_run(t.experiment_id, run_name=f"study {t.study_name}",
                                  tags={ROLE: "study", STUDY: t.study_name,
                                        "policysearch.version": code_version(), **tags})
        run_id = run.info.run_id
        t.client.log_batch(run_id, params=[Param(k, param(v)) for k, v in params.items()])
        t.client.log_text(run_id, yaml.safe_dump(record.experiment, sort_keys=False),
                          "experiment.yaml")
        update_study(self.study, mlflow_parent_run_id=run_id, mlflow_tracking_uri=t.uri,
                     mlflow_experiment=t.experiment_name)
        return run_id

    def decorate(self, run_id: str) -> None:
        """The experiment's kind and the study's saved runs-table view (idempotent)."""
        t = self.tracker
        ui.mark_experiment(t.client, t.experiment_id)
        key, value = ui.study_view_tag(t.study_name, run_id)
        t.client.set_experiment_tag(t.experiment_id, key, value)

    def end_study(self, status: str = "FINISHED") -> None:
        parent = self.parent
        if parent:
            self.tracker.safe("the study run's end",
                              lambda: self.tracker.client.set_terminated(parent, status))

    def table_url(self) -> str:
        """This study's runs table in the UI (its saved view: trials, policy columns)."""
        t = self.tracker
        return ui.experiment_url(t.uri, t.experiment_id, t.study_name)

    def links(self) -> dict[str, str]:
        """Where to look in the UI: this study's trials table, and the study run."""
        t = self.tracker
        out = {"this study's trials as a table": self.table_url()}
        if self.parent:
            out["this study run"] = ui.run_url(t.uri, t.experiment_id, self.parent)
        return out

    def refresh_note(self, fidelity: dict[str, Any] | None = None) -> None:
        """Rewrite the study run's description from the study (progress, or the decision)."""
        parent = self.parent
        if not parent:
            return
        t = self.tracker

        def write() -> None:
            record = read_study(self.study)
            if self.storage is None:
                self.storage = t.client.get_run(parent).data.tags.get("storage")
            text = note.study_note(
                study_name=t.study_name, experiment=record.experiment,
                source=record.experiment_source, storage=self.storage,
                decision=record.decision,
                progress=progress(self.study, record.total_trials) if running(record) else None,
                fidelity=fidelity or record.fidelity,
                policy_path=record.exported_policy, links=self.links())
            t.client.set_tag(parent, NOTE, text)

        t.safe("the study run's description", write)

    # -- trials ----------------------------------------------------------------------------------

    def start_trial(self, trial: Any, record: Any) -> str | None:
        """Open the trial's nested run as it starts (so the UI shows running trials, with their
        policy as parameters)."""
        parent, t = self.parent, self.tracker
        if not parent:
            return None

        def start() -> str:
            from mlflow.entities import Param

            attempt = attempt_key(t.study_name, trial)
            run_id = t.find_attempt(parent, trial.number, attempt)
            if run_id is None:
                tags = {PARENT: parent, ROLE: record.role, STUDY: t.study_name,
                        TRIAL: str(trial.number), ATTEMPT: attempt, "state": "RUNNING",
                        "policy": record.label}
                run_id = t.client.create_run(t.experiment_id, tags=tags,
                                             run_name=render.run_name(trial.number,
                                                                      record)).info.run_id
            params = render.trial_params(trial.params, record)
            t.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
            return run_id

        return t.safe(f"trial {trial.number}'s start", start)

    def finish_trial(self, trial: Any, splits: Any | None = None) -> str | None:
        """Render a finished trial into its run (created here if it has none), close it, and
        bring the study run's progress up to date.

        With ``splits`` the run gets a grid of augmented training images."""
        parent = self.parent
        if not parent:
            return None
        run_id = self.tracker.safe(f"trial {trial.number}",
                                   lambda: self._finish_trial(parent, trial, splits))
        if run_id and running(read_study(self.study)):
            self.refresh_note()
        return run_id

    def _finish_trial(self, parent: str, trial: Any, splits: Any | None) -> str:
        from mlflow.entities import Metric, Param, RunTag

        t = self.tracker
        record = read_trial(trial)
        study = read_study(self.study)
        attempt = attempt_key(t.study_name, trial)
        tags = {PARENT: parent, ROLE: record.role if record else "search", STUDY: t.study_name,
                TRIAL: str(trial.number), ATTEMPT: attempt,
                **render.trial_tags(trial, record, study.experiment["search"]["pruner"])}
        run_id = record.mlflow_run_id if record else None
        if run_id is None or not t.run_exists(run_id):
            run_id = t.find_attempt(parent, trial.number, attempt)
        if run_id is None:
            run = t.client.create_run(t.experiment_id, start_time=ms(trial.datetime_start),
                                      tags=tags, run_name=render.run_name(trial.number, record))
            run_id = run.info.run_id
        params = render.trial_params(trial.params, record) if record else {}
        metrics = [Metric(*m) for m in render.trial_metrics(trial, record)]
        t.client.log_batch(run_id, metrics=metrics,
                           params=[Param(k, v) for k, v in params.items()],
                           tags=[RunTag(k, v) for k, v in tags.items() if k != PARENT])
        policy = record.policy if record else {}
        if policy:
            t.client.log_dict(run_id, policy, "policy.json")
        if splits is not None and policy:
            from policysearch.policy.definition import Policy
            from policysearch.tracking.plots import sample_grid

            base = study.experiment["base_augment"]
            grid = sample_grid(Policy.from_dict(policy), sample_images(splits), seed=0,
                               crop_padding=base["crop_padding"], flip=base["flip"])
            t.log_png(run_id, grid, "samples.png")
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}.get(trial.state.name, "FAILED")
        end = ms(trial.datetime_complete) or ms(trial.datetime_start)
        t.client.set_terminated(run_id, status, end_time=end)
        return run_id

    # -- race, validation, summary ---------------------------------------------------------------

    def log_evaluations(self, role: str, rows: list[dict[str, Any]],
                        parent: str | None = None) -> None:
        """One nested run per (policy, seed) row, skipping rows already logged."""
        parent = parent or self.parent
        if not parent:
            return
        t = self.tracker

        def log() -> None:
            from mlflow.entities import Metric, Param

            done = {(r.data.tags.get("policy_key"), r.data.tags.get("seed"))
                    for r in t.children(parent, role).values()}
            for row in rows:
                if (row["key"], str(row["seed"])) in done:
                    continue
                tags = {PARENT: parent, ROLE: role, STUDY: t.study_name,
                        "policy": row["label"], "policy_key": row["key"], "seed": str(row["seed"])}
                now = int(time.time() * 1000)
                seconds = float(row.get("seconds", 0.0))
                run = t.client.create_run(t.experiment_id, tags=tags,
                                          start_time=now - int(1000 * seconds),
                                          run_name=render.evaluation_name(role, row))
                metric = "test_accuracy" if role == "validate" else "selection_accuracy"
                params = {**render.policy_params(row.get("policy") or {}),
                          "seed": str(row["seed"]), "budget": str(row.get("budget", ""))}
                t.client.log_batch(
                    run.info.run_id,
                    metrics=[Metric(metric, float(row["accuracy"]), now, 0),
                             Metric("duration_s", seconds, now, 0)],
                    params=[Param(k, v) for k, v in params.items()],
                )
                t.client.log_dict(run.info.run_id, row["policy"], "policy.json")
                t.client.set_terminated(run.info.run_id, "FINISHED", end_time=now)

        t.safe(f"{role} runs", log)

    def log_summary(self, decision: Any, policy_json: str | None, images: Any | None,
                    fidelity: dict[str, Any] | None = None) -> None:
        """The study run's results: the decision (metrics, tag and description), the exported
        policy, the trials table and the plots. ``fidelity``: the proxy's measured fidelity
        (``policysearch fidelity``'s figures), when known."""
        parent = self.parent
        if not parent:
            return
        t = self.tracker

        def log() -> None:
            from mlflow.entities import Metric

            from policysearch.policy.definition import Policy
            from policysearch.tracking.plots import epochs_grid, figure_png, study_figures

            now = int(time.time() * 1000)
            metrics = {}
            if decision is not None:
                for name in ("gain_over_baseline", "gain_over_crop_flip"):
                    gain = decision.get(name)
                    if gain:
                        metrics[name] = gain["mean"]
                        metrics[f"{name}_lower"] = gain["lower"]
                t.client.set_tag(parent, "decision", decision["sentence"][:5000])
            t.client.log_batch(parent, metrics=[Metric(k, float(v), now, 0)
                                                for k, v in metrics.items()])
            if policy_json is not None:
                t.client.log_text(parent, policy_json, "policy.json")
            t.client.log_text(parent, trials_table(self.study).to_csv(index=False),
                              "trials.csv")
            if policy_json is not None and images is not None:
                import json

                policy = Policy.from_dict(json.loads(policy_json))
                base = policy.base
                grid = epochs_grid(policy, images, epochs=8, seed=0,
                                   crop_padding=int(base.get("crop_padding", 0)),
                                   flip=bool(base.get("flip", False)))
                t.log_png(parent, grid, "exported_policy_epochs.png")
            for name, fig in study_figures(self.study).items():
                t.log_png(parent, figure_png(fig), name)

        t.safe("the study summary", log)
        self.refresh_note(fidelity)


def attempt_key(study_name: str, trial: Any) -> str:
    """One trial attempt's identity: a retried trial is a new trial (a new number and id)."""
    return f"{study_name}:trial {trial.number}:id {trial._trial_id}"


def running(record: Any) -> bool:
    """Whether the study has not yet decided for its current budget (a resumed study with more
    trials decides again)."""
    return record.decision is None or record.exported_for != record.total_trials


def progress(study: Any, total: int) -> dict[str, Any]:
    """Trials done of the budget and the best so far (for the description while it runs)."""
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    best = max((t for t in trials if t.state.name == "COMPLETE" and t.value is not None),
               key=lambda t: t.value, default=None)
    out: dict[str, Any] = {"done": done, "total": total, "best": None}
    if best is not None:
        record = read_trial(best)
        out["best"] = {"number": best.number, "value": best.value,
                       "label": render.policy_name(record.policy) if record else "",
                       "gain": record.paired_gain if record else None}
    return out


def sample_images(splits: Any, count: int = 8) -> Any:
    """One proxy training image per class (as far as there are classes), always the same."""
    import numpy as np

    y = splits.proxy.y
    picks = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)][:count]
    return splits.proxy.x[picks]


def trials_table(study: Any) -> Any:
    """Every trial as a row: number, role, policy, params, state, value, duration."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        record = read_trial(t)
        rows.append({
            "number": t.number,
            "role": record.role if record else "",
            "policy": record.label if record else "",
            "state": t.state.name,
            "value": t.value,
            "paired_gain_over_crop_flip": record.paired_gain if record else None,
            "validations": len(t.intermediate_values),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "fail_reason": (record.fail_reason or "") if record else "",
            **{f"param.{k}": v for k, v in t.params.items()},
        })
    return pd.DataFrame(rows)
