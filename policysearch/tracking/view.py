"""The study as MLflow shows it: rendered from the Optuna storage, never its source of truth.

Every study has one parent run; every finished trial becomes one nested run, rendered from the
trial's record (params, per-epoch curves, state, a grid of augmented samples). Race and
validation runs nest under the same parent, tagged by role. Because runs are rendered from the
storage, ``sync`` logs later whatever an unreachable tracking server missed, and never logs a
trial twice. Every call here warns on failure and never stops the search.
"""

from __future__ import annotations

import math
import time
from typing import Any

from policysearch.search.record import read_study, read_trial, update_study
from policysearch.tracking.client import (
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

    def __init__(self, tracker: Tracker, study: Any) -> None:
        self.tracker = tracker
        self.study = study

    @property
    def parent(self) -> str | None:
        return read_study(self.study).mlflow_parent_run_id

    # -- the study run ---------------------------------------------------------------------------

    def start_study(self, params: dict[str, Any], tags: dict[str, str]) -> str | None:
        """The study's parent run: created once (its id kept in the study), reopened on resume."""
        t = self.tracker

        def start() -> str:
            run_id = self.parent
            if run_id and t.run_exists(run_id):
                t.client.update_run(run_id, status="RUNNING")
                return run_id
            from mlflow.entities import Param

            run = t.client.create_run(t.experiment_id, run_name=f"study {t.study_name}",
                                      tags={ROLE: "study", STUDY: t.study_name,
                                            "policysearch.version": code_version(), **tags})
            t.client.log_batch(run.info.run_id,
                               params=[Param(k, param(v)) for k, v in params.items()])
            update_study(self.study, mlflow_parent_run_id=run.info.run_id,
                         mlflow_tracking_uri=t.uri, mlflow_experiment=t.experiment_name)
            return run.info.run_id

        return t.safe("the study run", start)

    def end_study(self, status: str = "FINISHED") -> None:
        parent = self.parent
        if parent:
            self.tracker.safe("the study run's end",
                              lambda: self.tracker.client.set_terminated(parent, status))

    # -- trials ----------------------------------------------------------------------------------

    def start_trial(self, trial: Any, record: Any) -> str | None:
        """Open the trial's nested run as it starts (so the UI shows running trials)."""
        parent, t = self.parent, self.tracker
        if not parent:
            return None

        def start() -> str:
            tags = {PARENT: parent, ROLE: record.role, STUDY: t.study_name,
                    TRIAL: str(trial.number), "optuna.state": "RUNNING", "policy": record.label}
            run = t.client.create_run(t.experiment_id, tags=tags,
                                      run_name=f"trial {trial.number} · {record.label}")
            return run.info.run_id

        return t.safe(f"trial {trial.number}'s start", start)

    def finish_trial(self, trial: Any, splits: Any | None = None) -> str | None:
        """Render a finished trial into its run (created here if it has none) and close it.

        With ``splits`` the run gets a grid of augmented training images."""
        parent = self.parent
        if not parent:
            return None
        return self.tracker.safe(f"trial {trial.number}",
                                 lambda: self._finish_trial(parent, trial, splits))

    def _finish_trial(self, parent: str, trial: Any, splits: Any | None) -> str:
        from mlflow.entities import Metric, Param, RunTag

        t = self.tracker
        record = read_trial(trial)
        state = trial.state.name
        start = ms(trial.datetime_start)
        end = ms(trial.datetime_complete) or start
        label = record.label if record else ""
        role = record.role if record else "search"
        tags = {PARENT: parent, ROLE: role, STUDY: t.study_name, TRIAL: str(trial.number),
                "optuna.state": state, "policy": label}
        if record and record.baseline:
            tags["baseline"] = record.baseline
        if record and record.fail_reason:
            tags["fail_reason"] = record.fail_reason[:5000]
        if trial.system_attrs.get("failed_trial") is not None:
            tags["retry_of_trial"] = str(trial.system_attrs["failed_trial"])
        run_id = record.mlflow_run_id if record else None
        if run_id is None:
            run = t.client.create_run(t.experiment_id, start_time=start, tags=tags,
                                      run_name=f"trial {trial.number} · {label}")
            run_id = run.info.run_id
        params: dict[str, Any] = {**trial.params, "role": role}
        policy = record.policy if record else {}
        if record:
            params["seed"] = record.seed
        for key in ("type", "num_ops", "magnitude", "magnitude_std"):
            if key in policy:
                params[f"policy.{key}"] = policy[key]
        if "ops" in policy:
            params["policy.ops"] = ",".join(policy["ops"])
        metrics = [Metric("val_accuracy", float(v), start + 1000 * int(step), int(step))
                   for step, v in sorted(trial.intermediate_values.items())]
        losses = record.train_loss if record else []
        metrics += [Metric("train_loss", float(v), start + 1000 * (step + 1), step + 1)
                    for step, v in enumerate(losses) if v is not None and math.isfinite(v)]
        if trial.value is not None:
            metrics.append(Metric("value", float(trial.value), end, 0))
        if record and record.paired_gain is not None:
            metrics.append(Metric("paired_gain_over_crop_flip", record.paired_gain, end, 0))
        if trial.duration is not None:
            metrics.append(Metric("duration_s", trial.duration.total_seconds(), end, 0))
        t.client.log_batch(run_id, metrics=metrics,
                           params=[Param(k, param(v)) for k, v in params.items()],
                           tags=[RunTag(k, v) for k, v in tags.items() if k != PARENT])
        if policy:
            t.client.log_dict(run_id, policy, "policy.json")
        if splits is not None and policy:
            from policysearch.plots import sample_grid
            from policysearch.policy import Policy

            base = read_study(self.study).experiment["base_augment"]
            grid = sample_grid(Policy.from_dict(policy), sample_images(splits), seed=0,
                               crop_padding=base["crop_padding"], flip=base["flip"])
            t.log_png(run_id, grid, "samples.png")
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}.get(state, "FAILED")
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
                name = f"{role} · {row['label']} · seed {row['seed']}"
                run = t.client.create_run(t.experiment_id, tags=tags, run_name=name)
                metric = "test_accuracy" if role == "validate" else "selection_accuracy"
                now = int(time.time() * 1000)
                t.client.log_batch(
                    run.info.run_id,
                    metrics=[Metric(metric, float(row["accuracy"]), now, 0),
                             Metric("duration_s", float(row.get("seconds", 0.0)), now, 0)],
                    params=[Param("seed", str(row["seed"])),
                            Param("budget", str(row.get("budget", "")))],
                )
                t.client.log_dict(run.info.run_id, row["policy"], "policy.json")
                t.client.set_terminated(run.info.run_id, "FINISHED")

        t.safe(f"{role} runs", log)

    def log_summary(self, decision: Any, policy_json: str | None, images: Any | None) -> None:
        """The parent run's results: the decision, the exported policy, the trials, plots."""
        parent = self.parent
        if not parent:
            return
        t = self.tracker

        def log() -> None:
            from mlflow.entities import Metric

            from policysearch.plots import epochs_grid, figure_png, study_figures
            from policysearch.policy import Policy

            now = int(time.time() * 1000)
            metrics = {}
            if decision is not None:
                for name in ("gain_over_baseline", "gain_over_crop_flip"):
                    gain = decision.get(name)
                    if gain:
                        metrics[f"{name}"] = gain["mean"]
                        metrics[f"{name}_lower"] = gain["lower"]
                t.client.set_tag(parent, NOTE, decision_note(decision))
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


def decision_note(decision: dict[str, Any]) -> str:
    """The study run's description (Markdown): the decision and its evidence."""
    lines = [f"**{decision['sentence']}**", "", decision["reason"] + ".", "",
             f"Race on the {decision['split']} split at the {decision['budget']} budget; "
             f"{decision['test']}; seeds {decision['seeds']}.", "",
             "| policy | role | mean | std | seeds | paired gain over the baseline |",
             "|---|---|---|---|---|---|"]
    for row in decision["table"]:
        gain = row.get("gain_over_baseline")
        text = (f"{100 * gain['mean']:+.2f} pts (lower bound {100 * gain['lower']:+.2f})"
                if gain else "—")
        lines.append(f"| {row['label']} | {row['role']} | {100 * row['mean']:.2f} % | "
                     f"{100 * row['std']:.2f} | {row['n']} | {text} |")
    return "\n".join(lines)


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
