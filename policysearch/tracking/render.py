"""A trial as the runs table shows it: a name that reads as the policy, the policy as parameters
(``type``, ``num_ops``, ``magnitude``, ``ops``, one ``op_<Name>`` = in/out per op, each op's own
magnitude as ``magnitude_<Name>`` in a study that searches them, ``flip`` and ``crop`` on or
off), its curve and paired gain as metrics, its state and why it stopped as tags. Pure
functions of the trial."""

from __future__ import annotations

import math
from typing import Any

from policysearch.augment.ops import RANDAUGMENT_OPS, takes_magnitude
from policysearch.policy.definition import Policy
from policysearch.study.record import TrialRecord
from policysearch.tracking.client import ms

NAME_LIMIT = 200


def ops_text(policy: dict[str, Any]) -> str:
    """The policy's ops as one readable string."""
    if policy.get("type") == "autoaugment":
        return " | ".join(" + ".join(f"{op}(p={p:g},m={m:g})" for op, p, m in sub)
                          for sub in policy.get("sub_policies", []))
    ops = list(policy.get("ops", []))
    return ", ".join(ops) if ops else "none (crop+flip only)"


def policy_name(policy: dict[str, Any]) -> str:
    """``RA N=2 M=9: Rotate, Color``, ``TA: all 14 ops``, ``crop+flip``."""
    kind = policy.get("type")
    ops = list(policy.get("ops", []))
    listed = "all 14 ops" if set(ops) == set(RANDAUGMENT_OPS) else ", ".join(ops)
    base = policy.get("base") or {}
    off = [name for name, on in (("crop", base.get("crop_padding") != 0),
                                 ("flip", base.get("flip") is not False)) if not on]
    suffix = f" · no {'/'.join(off)}" if off else ""
    if kind == "randaugment":
        magnitude = f"{policy.get('magnitude'):g}"
        if policy.get("op_magnitudes"):  # per group, e.g. geometric 14/colour 5
            magnitude = Policy.from_dict(policy, "trial policy").magnitude_text()
        return f"RA N={policy.get('num_ops')} M={magnitude}: {listed}{suffix}"
    if kind == "trivialaugment":
        return f"TA: {listed}{suffix}"
    if kind == "autoaugment":
        return f"AA: {ops_text(policy)}{suffix}"
    return {"": "crop+flip", " · no flip": "crop only", " · no crop": "flip only"}.get(
        suffix, "no augmentation")


def run_name(number: int, record: TrialRecord | None) -> str:
    if record is None:
        return f"trial {number}"
    prefix = "baseline " if record.baseline else ""
    name = f"{prefix}{policy_name(record.policy)}"
    suffix = f" · trial {number}"
    if len(name) + len(suffix) > NAME_LIMIT:
        name = name[: NAME_LIMIT - len(suffix) - 1] + "…"
    return name + suffix


def op_universe(trial_params: dict[str, Any], policy: dict[str, Any]) -> list[str]:
    """Every op a trial of this study could hold: the space's switches, else RandAugment's 14
    (plus any other op the policy holds), so all runs of a study have the same columns."""
    names = [k[3:] for k in trial_params if k.startswith("op_")]
    if not names:
        names = list(RANDAUGMENT_OPS)
    held = set(policy.get("ops", []))
    for sub in policy.get("sub_policies", []):
        held.update(op for op, _, _ in sub)
    return names + sorted(held - set(names))


def policy_params(policy: dict[str, Any], switches: dict[str, Any] | None = None
                  ) -> dict[str, str]:
    """The policy as run parameters: ``type``, ``num_ops``, ``magnitude``, ``ops`` and one
    ``op_<Name>`` = in/out per op (``switches``: the trial's Optuna params, naming the space's
    op switches)."""
    out = {"type": str(policy.get("type", "")),
           "num_ops": str(policy.get("num_ops", "—")),
           "magnitude": f"{policy['magnitude']:g}" if "magnitude" in policy else "—",
           "ops": ops_text(policy)[:6000]}
    if policy.get("magnitude_std"):
        out["magnitude_std"] = f"{policy['magnitude_std']:g}"
    base = policy.get("base") or {}
    out["flip"] = "off" if base.get("flip") is False else "on"
    out["crop"] = "off" if base.get("crop_padding") == 0 else "on"
    own = policy.get("op_magnitudes") or {}
    per_op = own or any(k.startswith("magnitude_") and k != "magnitude_std"
                        for k in switches or {})
    universe = op_universe(switches or {}, policy)
    for name in universe if per_op else []:  # every op's magnitude, column by column
        if takes_magnitude(name):
            held = policy.get("type") == "randaugment" and name in policy.get("ops", [])
            out[f"magnitude_{name}"] = (f"{own.get(name, policy['magnitude']):g}" if held
                                        else "—")
    held = set(policy.get("ops", []))
    for sub in policy.get("sub_policies", []):
        held.update(op for op, _, _ in sub)
    for name in universe:
        out[f"op_{name}"] = "in" if name in held else "out"
    return out


def trial_params(trial_params: dict[str, Any], record: TrialRecord) -> dict[str, str]:
    """A trial's run parameters: its policy, role and seed (what the runs table shows)."""
    out = {**policy_params(record.policy, trial_params), "role": record.role,
           "seed": str(record.seed)}
    if record.baseline:
        out["baseline"] = record.baseline
    return out


def evaluation_name(role: str, row: dict[str, Any]) -> str:
    """``race · baseline crop+flip · seed 10000``: a race or validation run."""
    policy = row.get("policy") or {}
    what = policy_name(policy) if policy.get("type") else row.get("label", "")
    if row.get("role") in ("baseline", "reference") and policy.get("type"):
        what = f"baseline {what}"
    return f"{role} · {what} · seed {row['seed']}"[:NAME_LIMIT]


def stop_reason(trial: Any, record: TrialRecord | None, pruner: str) -> str | None:
    """Why a trial did not complete: the pruner's cut or the failure."""
    if record is not None and record.fail_reason:
        return record.fail_reason[:5000]
    if trial.state.name == "PRUNED":
        steps = sorted(trial.intermediate_values)
        if steps:
            last = steps[-1]
            value = trial.intermediate_values[last]
            return (f"pruned by {pruner} after epoch {last}: validation accuracy {value:.4f} "
                    "was below what the pruner kept")
        return f"pruned by {pruner}"
    return None


def trial_tags(trial: Any, record: TrialRecord | None, pruner: str) -> dict[str, str]:
    tags = {"state": trial.state.name, "policy": record.label if record else ""}
    reason = stop_reason(trial, record, pruner)
    if reason:
        tags["prune_reason" if trial.state.name == "PRUNED" else "fail_reason"] = reason
    if record and record.interrupted:
        tags["interrupted"] = "true"
    if trial.system_attrs.get("failed_trial") is not None:
        tags["retry_of_trial"] = str(trial.system_attrs["failed_trial"])
    return tags


def trial_metrics(trial: Any, record: TrialRecord | None) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step): the per-epoch curve, the loss, the final value and the
    paired gain over crop+flip (same seed), the duration."""
    start = ms(trial.datetime_start)
    end = ms(trial.datetime_complete) or start
    out = [("val_accuracy", float(v), start + 1000 * int(step), int(step))
           for step, v in sorted(trial.intermediate_values.items())]
    losses = record.train_loss if record else []
    epochs = (record.loss_epochs if record else []) or range(1, len(losses) + 1)
    out += [("train_loss", float(v), start + 1000 * step, step)
            for step, v in zip(epochs, losses) if v is not None and math.isfinite(v)]
    last = max(trial.intermediate_values, default=0)
    if trial.value is not None:
        out.append(("value", float(trial.value), end, last))
    if record and record.paired_gain is not None:
        out.append(("paired_gain_over_crop_flip", float(record.paired_gain), end, last))
    if trial.duration is not None:
        out.append(("duration_s", trial.duration.total_seconds(), end, 0))
    return out
