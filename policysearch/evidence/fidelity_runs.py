"""The fidelity runs on disk: which saved runs still count, and how they are keyed.

A run is saved at once in the results JSON, keyed by (policy, budget, seed). Saved runs count
again at each budget whose configuration is unchanged (``config.calibration``'s stamps), so an
interrupted ``fidelity`` resumes, and a new proxy keeps the target's runs. Runs that
``calibrate`` trained at the same budgets (its ``<name>-calibration.json``: the rung it picked is
the proxy the search now trains) count too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policysearch.config.calibration import proxy_stamp, target_stamp
from policysearch.config.experiment import Experiment
from policysearch.errors import PolicySearchError
from policysearch.paths import write_atomic
from policysearch.policy.definition import Policy

BUDGETS = ("proxy", "target")


def fingerprint(experiment: Experiment) -> str:
    """Changes when anything that changes a run's accuracy changes (not the panel, not seeds)."""
    data = experiment.to_dict()
    relevant = {"dataset": data["dataset"], "base_augment": data["base_augment"],
                "data": {k: v for k, v in data["data"].items() if k != "data_dir"},
                "proxy": data["trainer"], "target": data["target"]}
    for trainer in (relevant["proxy"], relevant["target"]["trainer"]):
        trainer.pop("placement", None)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def load_runs(path: Path, experiment: Experiment,
              log: Callable[..., Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs saved by earlier (possibly interrupted) invocations, at each budget whose
    configuration is still the same (a new proxy keeps the target's runs), and those
    invocations (date, wall seconds, runs trained) when both budgets are the same."""
    if not path.exists():
        return [], []
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        log(f"fidelity: {path} is unreadable; starting afresh")
        return [], []
    now = budget_stamps(experiment.to_dict())
    try:
        then = budget_stamps(saved["experiment"])
    except (KeyError, TypeError, AttributeError):
        then = {}
    same = [b for b in BUDGETS if then.get(b) == now[b]]
    if not same:
        log(f"fidelity: {path} holds runs of another configuration; starting afresh")
        return [], []
    runs = [r for r in saved.get("runs", []) if isinstance(r, dict) and "accuracy" in r
            and r.get("budget") in same]
    if len(same) < len(BUDGETS):
        changed = next(b for b in BUDGETS if b not in same)
        log(f"fidelity: the {changed} changed; reusing the {same[0]} runs saved in {path}")
        return [{k: v for k, v in r.items() if k != "same_as"} for r in runs], []
    invocations = saved.get("invocations")
    if invocations is None and "wall_seconds" in saved:  # written before invocations were kept
        invocations = [{"date": saved.get("date"), "wall_seconds": saved["wall_seconds"],
                        "trained": saved.get("trained_now"), "commit": saved.get("commit")}]
    return runs, list(invocations or [])


def calibration_runs(path: Path, experiment: Experiment, have: set[tuple[str, str, int]],
                     seeds: set[int] | None = None) -> list[dict[str, Any]]:
    """The runs a ``calibrate`` JSON holds at this proxy's or this target's budget (by stamp),
    as fidelity runs, of ``seeds`` (all when ``None``: calibrate's confirmation seeds are not the
    panel's), leaving out those in ``have``; none when it is missing or unreadable."""
    try:
        saved = json.loads(path.read_text())
        runs = saved["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    by_stamp = {stamp: budget for budget, stamp in budget_stamps(experiment.to_dict()).items()}
    seen = set(have)
    out = []
    for run in runs if isinstance(runs, list) else []:
        if not isinstance(run, dict) or not {"stamp", "key", "seed", "accuracy"} <= run.keys():
            continue
        budget = by_stamp.get(run["stamp"])
        if budget is None or (seeds is not None and int(run["seed"]) not in seeds):
            continue
        record = {k: v for k, v in run.items() if k not in ("stamp", "rung")}
        record.update(budget=budget, **{"from": path.name})
        if run_key_of(record) not in seen:
            out.append(record)
            seen.add(run_key_of(record))
    return out


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: an interrupt never leaves a truncated file."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def budget_stamps(config: dict[str, Any]) -> dict[str, str]:
    """What each budget's runs depend on (``config.calibration``'s stamps)."""
    return {"proxy": proxy_stamp(config), "target": target_stamp(config)}


def proxy_is_target(experiment: Experiment) -> bool:
    """The proxy trains the target's images exactly as the target does (as on small data)."""
    proxy, target = experiment.budget("proxy"), experiment.budget("target")
    return proxy.train_size == target.train_size and proxy.trainer == target.trainer


def run_key(policy: Policy, budget: str, seed: int) -> tuple[str, str, int]:
    return (policy.key(), budget, int(seed))


def run_key_of(run: dict[str, Any]) -> tuple[str, str, int]:
    return (run["key"], run["budget"], int(run["seed"]))


def same_config(saved: dict[str, Any], stamp: str) -> bool:
    """Whether saved runs measured the configuration ``stamp`` fingerprints, as this version
    fingerprints the stored config (a stamp of an older version is not a difference)."""
    from policysearch.config.experiment import experiment_from_dict

    try:
        return fingerprint(experiment_from_dict(saved["experiment"], "saved runs")) == stamp
    except (KeyError, TypeError, PolicySearchError):
        return False
