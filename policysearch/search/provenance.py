"""The exported policy with its evidence: how it was found and how sure the choice is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from policysearch.policy.definition import Policy, write_policy
from policysearch.study.record import now
from policysearch.study.storage import redact
from policysearch.study.store import StudyHandle


def budget_facts(experiment: Any, name: str) -> dict[str, Any]:
    budget = experiment.budget(name)
    model = budget.trainer.model
    return {"train_size": budget.train_size, "epochs": budget.trainer.epochs,
            "batch_size": budget.trainer.batch_size, "model": model.name,
            "widths": list(model.widths), "depth": model.depth}


def export_policy(handle: StudyHandle, decision: dict[str, Any], path: Path,
                  tracking_uri: str | None) -> Policy:
    """Write the winner as ``policysearch.policy/v1`` JSON with its provenance and evidence."""
    from policysearch._version import __version__

    exp = handle.experiment
    record = handle.record
    winner = decision["winner"]
    source = {
        "dataset": exp.dataset,
        "image_size": record.image_shape[:2],
        "classes": record.classes,
        "data_fingerprint": record.data_fingerprint,
        "experiment": exp.name,
        "experiment_config": exp.to_dict(),
        "space": handle.space.name,
        "study": handle.name,
        "storage": redact(handle.storage_url),
        "trial": winner.get("trial"),
        "searched": decision["searched_exported"],
        "decision": decision["sentence"],
        "reason": decision["reason"],
        "evidence": {k: decision.get(k) for k in (
            "split", "budget", "test", "confidence", "looks", "seeds", "outcome",
            "gain_over_baseline", "gain_over_crop_flip", "candidate", "candidate_policy",
            "baseline", "table", "design", "plan", "screen")},
        "proxy": budget_facts(exp, "proxy"),
        "target": budget_facts(exp, "target"),
        "mlflow_run_id": record.mlflow_parent_run_id,
        "mlflow_tracking_uri": tracking_uri,
        "package_version": __version__,
        "created_at": now(),
    }
    winner_policy = Policy.from_dict(winner["policy"])
    base = winner_policy.trained_base(exp.base_augment.crop_padding, exp.base_augment.flip)
    policy = replace(winner_policy, base=base, source=source)
    write_policy(policy, path)
    return policy
