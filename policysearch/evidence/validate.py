"""Validation: the only place the test split is read.

The policy and the baselines are each trained at the *target* budget (the training the policy
is meant for) with the same seeds, on the target's training images, and scored on the test
split. Gains are paired by seed (every policy at seed ``s`` starts from the same weights and
sees the same batches), with one-sided lower bounds.

With ``validate.flip_variants`` (and the experiment's base flip on) each stock baseline is also
trained with the base flip off, labelled e.g. ``TA no flip``: the reader sees what the search
found beside what guessing the flip would have given. Each distinct augmentation is trained once
(``Policy.key``): a baseline or variant that another entry already is (crop+flip without its
flip is crop only) is named in the result's ``same`` instead of trained again.
"""

from __future__ import annotations

import time
from typing import Any

from policysearch.config.experiment import Experiment
from policysearch.evidence.stats import paired, summarize
from policysearch.policy.baselines import BASELINES, on_base
from policysearch.policy.definition import Policy

VALIDATE_SEED_BASE = 20_000
FLIP_OFF = ", flip off"
"""Suffix of a flip-off variant's role: ``trivialaugment, flip off``."""


def flip_off(policy: Policy) -> Policy:
    """``policy`` with the base flip turned off (its crop as it was)."""
    return on_base(policy, {"flip": False})


def entries(policy: Policy, experiment: Experiment
            ) -> tuple[list[tuple[str, str, Policy]], list[dict[str, str]]]:
    """What validation trains, as (role, label, policy), and the entries left out because
    another one is the same augmentation, as {role, label, as}: the policy first, then the
    experiment's baselines, then (``validate.flip_variants`` with the base flip on) each
    baseline with the flip off."""
    exp = experiment
    wanted = [("policy", policy.label, policy)]
    wanted += [(name, BASELINES[name].label, BASELINES[name]) for name in exp.search.baselines]
    if exp.validate.flip_variants and exp.base_augment.flip:
        for name in exp.search.baselines:
            variant = flip_off(BASELINES[name])
            if variant.key() != BASELINES[name].key():  # crop_only has no flip to turn off
                wanted.append((name + FLIP_OFF, variant.label, variant))
    kept: dict[str, tuple[str, str, Policy]] = {}
    same = []
    for role, label, candidate in wanted:
        key = candidate.key()
        if key in kept:
            same.append({"role": role, "label": label, "as": kept[key][0]})
        else:
            kept[key] = (role, label, candidate)
    return list(kept.values()), same


def validate(policy: Policy, experiment: Experiment, *, seeds: int,
             tracking_uri: str | None = None, log: Any = print,
             also: list[tuple[str, str, Policy]] | None = None) -> dict[str, Any]:
    """Train ``policy`` and the baselines at the target budget; test accuracy per seed.

    ``also``: more entries (role, label, policy) trained at the same seeds, for example the
    race's best candidate when it was not exported (``candidate``); each gets its own paired
    summary against the baselines in ``summaries[role]``."""
    from policysearch.data.datasets import load_test_part
    from policysearch.data.splits import Split, load_splits
    from policysearch.training.trainer import trainer_for

    exp = experiment
    splits = load_splits(exp)
    part = load_test_part(exp.dataset, splits.classes, exp.data.data_dir, exp.data.image_size)
    test = Split(part.x, part.y)
    trainer = trainer_for(exp, "target", splits)
    trained, same = entries(policy, exp)  # each augmentation once
    for role, label, extra in also or []:
        twin = next((r for r, _, p in trained if p.key() == extra.key()), None)
        if twin is None:
            trained.append((role, label, extra))
        else:
            same.append({"role": role, "label": label, "as": twin})
    rows = []
    started = time.monotonic()
    budget = exp.target_budget
    for s in range(seeds):
        seed = VALIDATE_SEED_BASE + s
        for role, label, candidate in trained:
            result = trainer.train(candidate, splits.target, splits.val, seed)
            accuracy = trainer.evaluate(test)
            rows.append({"role": role, "label": label, "key": candidate.key(),
                         "policy": candidate.to_dict(), "seed": seed, "budget": "target",
                         "epochs": budget.trainer.epochs, "accuracy": accuracy,
                         "val_accuracy": result.final_accuracy,
                         "seconds": round(result.seconds, 2)})
            log(f"validate: {label} seed {seed}: test {accuracy:.4f} "
                f"({result.seconds:.0f}s, {time.monotonic() - started:.0f}s so far)")
    summary = summarize_rows(rows)
    summaries = {role: summarize_rows(rows, subject=role)
                 for role, _, _ in also or [] if any(r["role"] == role for r in rows)}
    _track(policy, exp, rows, tracking_uri, log)
    return {"rows": rows, "summary": summary, "summaries": summaries, "same": same,
            "epochs": budget.trainer.epochs, "seeds": seeds,
            "train_size": len(splits.target), "test_size": len(test),
            "selection_size": len(splits.selection),
            "seconds": time.monotonic() - started, "dataset": exp.dataset,
            "image_shape": list(splits.image_shape)}


def summarize_rows(rows: list[dict[str, Any]], confidence: float = 0.95,
                   subject: str = "policy") -> list[dict[str, Any]]:
    """Mean ± std per policy, and the paired gain of ``subject`` (a role) over each other."""
    by_role: dict[str, dict[int, float]] = {}
    labels: dict[str, str] = {}
    for row in rows:
        by_role.setdefault(row["role"], {})[row["seed"]] = row["accuracy"]
        labels[row["role"]] = row["label"]
    out = []
    policy = by_role.get(subject, {})
    for role, values in by_role.items():
        s = summarize(list(values.values()))
        entry: dict[str, Any] = {"role": role, "label": labels[role], "mean": s.mean,
                                 "std": s.std, "n": s.n}
        if role != subject and len(set(policy) & set(values)) >= 2:
            gain = paired(policy, values, confidence)
            entry.update(gain=gain.mean, gain_lower=gain.lower, gain_upper=gain.upper,
                         gain_std=gain.std, p_value=gain.p_value)
        out.append(entry)
    return out


def table(summary: list[dict[str, Any]], subject: str = "policy") -> str:
    """The results as a Markdown table (gains are ``subject``'s)."""
    whose = "policy's" if subject == "policy" else f"{subject}'s"
    lines = [f"| policy | test accuracy (mean ± std) | seeds | {whose} paired gain | "
             "95 % lower bound | one-sided p |", "|---|---|---|---|---|---|"]
    for s in summary:
        name = (s["label"] if s["role"] == subject else
                f"{s['label']} (the export)" if s["role"] == "policy" else
                f"{s['label']} (candidate)" if s["role"] == "candidate" else
                f"{s['label']} (baseline {s['role']})")
        if "gain" in s:
            gain = (f"{100 * s['gain']:+.2f} pts | {100 * s['gain_lower']:+.2f} pts | "
                    f"{s['p_value']:.3g}")
        else:
            gain = "— | — | —"
        lines.append(f"| {name} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} % | {s['n']} "
                     f"| {gain} |")
    return "\n".join(lines)


def same_notes(same: list[dict[str, str]]) -> list[str]:
    """A line for each entry not trained because another entry is the same augmentation."""
    return [f"{s['label']} ({s['role']}) is "
            f"{'the exported policy' if s['as'] == 'policy' else 'baseline ' + s['as']} itself: "
            "trained once, its row stands for both" for s in same]


def _track(policy: Policy, exp: Experiment, rows: list[dict[str, Any]],
           tracking_uri: str | None, log: Any) -> None:
    """Nest the validation runs under the study's run when the policy names one (a view:
    any failure only warns)."""
    from policysearch.errors import TrackingError
    from policysearch.tracking import StudyView, Tracker
    from policysearch.tracking.client import mlflow_experiment_name

    source = policy.source
    uri = tracking_uri or source.get("mlflow_tracking_uri")
    tracker = Tracker(uri, mlflow_experiment_name(exp.dataset), source.get("study", "validate"))
    try:
        tracker.connect()
    except TrackingError as err:
        log(f"warning: {err}; the validation results are printed only")
        return

    def parent() -> str:
        run_id = source.get("mlflow_run_id")
        if run_id and tracker.run_exists(run_id):
            return run_id
        run = tracker.client.create_run(tracker.experiment_id, run_name="validate",
                                        tags={"policysearch.role": "validate-group"})
        tracker.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    run_id = tracker.safe("the validation run", parent)
    if run_id:
        StudyView(tracker, None).log_evaluations("validate", rows, parent=run_id)
