"""Validation: the only place the test split is read.

A policy and the baselines are each trained with several seeds at a larger budget than the
proxy, on the same training images the search used, and scored on the test split.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from policysearch.config import Experiment
from policysearch.policy import Policy
from policysearch.spaces import BASELINES


def validate(policy: Policy, experiment: Experiment, *, epochs: int, seeds: int,
             tracking_uri: str | None = None, log: Any = print) -> dict[str, Any]:
    """Train ``policy`` and the baselines; return test accuracy per policy and seed."""
    import numpy as np

    from policysearch.data import load_part, load_test_part, split_indices
    from policysearch.study import VALIDATE_SEED_BASE
    from policysearch.trainer import ProxyTrainer

    exp = experiment
    size = exp.data.image_size
    train = load_part(exp.dataset, "train", exp.data.data_dir, size)
    train_idx, val_idx = split_indices(train.y, train_size=exp.validate.train_size,
                                       val_size=exp.data.val_size, seed=exp.data.split_seed)
    test = load_test_part(exp.dataset, train.classes, exp.data.data_dir, size)
    x_train, y_train = train.x[train_idx], train.y[train_idx]
    x_val, y_val = train.x[val_idx], train.y[val_idx]
    trainer = ProxyTrainer(exp.trainer, exp.base_augment, x_train.shape[1:], len(train.classes),
                           len(x_train), epochs=epochs)
    entries = [("policy", policy.label, policy)]
    for name in exp.search.baselines:
        baseline = BASELINES[name]
        if baseline.key() != policy.key():
            entries.append((name, baseline.label, baseline))
    rows = []
    started = time.monotonic()
    for role, label, candidate in entries:
        for s in range(seeds):
            seed = VALIDATE_SEED_BASE + s
            result = trainer.train(candidate, x_train, y_train, x_val, y_val, seed)
            accuracy = trainer.evaluate(test.x, test.y)
            rows.append({"role": role, "label": label, "key": candidate.key(),
                         "policy": candidate.to_dict(), "seed": seed, "epochs": epochs,
                         "accuracy": accuracy, "val_accuracy": result.final_accuracy,
                         "seconds": round(result.seconds, 2)})
            log(f"validate: {label} seed {seed}: test {accuracy:.4f} "
                f"({result.seconds:.0f}s, {time.monotonic() - started:.0f}s so far)")
    summary = summarize_rows(rows)
    _track(policy, exp, rows, tracking_uri, log)
    return {"rows": rows, "summary": summary, "epochs": epochs, "seeds": seeds,
            "train_size": len(x_train), "test_size": len(test.x),
            "seconds": time.monotonic() - started, "dataset": exp.dataset,
            "image_shape": list(np.asarray(x_train.shape[1:]))}


def summarize_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std per policy, and the gain of the policy over each baseline ± its std. error."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["role"], []).append(row)
    out = []
    for role, items in groups.items():
        values = [r["accuracy"] for r in items]
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append({"role": role, "label": items[0]["label"], "mean": mean, "std": std,
                    "n": len(values)})
    policy = next((s for s in out if s["role"] == "policy"), None)
    for s in out:
        if policy is not None and s is not policy:
            s["gain"] = policy["mean"] - s["mean"]
            s["gain_se"] = math.sqrt(policy["std"] ** 2 / policy["n"] + s["std"] ** 2 / s["n"])
    return out


def table(summary: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = ["| policy | test accuracy (mean ± std) | seeds | policy's gain (± std. error) |",
             "|---|---|---|---|"]
    for s in summary:
        gain = (f"{100 * s['gain']:+.2f} ± {100 * s['gain_se']:.2f} pts" if "gain" in s
                else "—")
        name = s["label"] if s["role"] == "policy" else f"{s['label']} (baseline {s['role']})"
        lines.append(f"| {name} | {100 * s['mean']:.2f} ± {100 * s['std']:.2f} % | {s['n']} "
                     f"| {gain} |")
    return "\n".join(lines)


def _track(policy: Policy, exp: Experiment, rows: list[dict[str, Any]],
           tracking_uri: str | None, log: Any) -> None:
    """Nest the validation runs under the study's parent run when the policy names one."""
    from policysearch.errors import TrackingError
    from policysearch.study import mlflow_experiment_name
    from policysearch.tracking import Tracker

    source = policy.source
    uri = tracking_uri or source.get("mlflow_tracking_uri")
    tracker = Tracker(uri, mlflow_experiment_name(exp), source.get("study", "validate"))
    try:
        tracker.connect()
    except TrackingError as err:
        log(f"warning: {err}; the validation results are printed only")
        return
    parent = source.get("mlflow_run_id")
    if not parent or not tracker._run_exists(parent):
        run = tracker.client.create_run(tracker.experiment_id, run_name="validate",
                                        tags={"policysearch.role": "validate-group"})
        parent = run.info.run_id
        tracker.client.set_terminated(parent, "FINISHED")
    tracker.log_evaluations(parent, "validate", rows)
