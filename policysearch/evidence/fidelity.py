"""Fidelity: does the proxy rank policies as the target training does?

A fixed panel of policies is trained at the proxy budget (on the proxy's training images) and at
the target budget (on the target's), with the same seeds at both (common random numbers: at
seed ``s`` every policy starts from the same weights and sees the same batches). Every run is
scored on the search-validation split; the test split is never loaded. The proxy is faithful
when the order of the policies' mean accuracies agrees across the two budgets.

Panel entries (``fidelity.panel`` in the experiment, or ``--panel``):

- a baseline name: ``crop_flip``, ``randaugment_n2_m9``, ``trivialaugment``;
- ``RA(N,M)``: RandAugment with N ops at magnitude M over its 14 ops;
- ``TA``: TrivialAugment;
- either followed by an op subset in brackets: ``RA(2,9)[geometric]`` (shears, translations,
  rotation), ``RA(2,9)[colour]`` (the 8 pixel ops), or a list of op names
  ``TA[Rotate,Contrast,Equalize]``.

Every finished (policy, budget, seed) run is saved in the results JSON at once, so an
interrupted run resumes where it stopped when the same command is run again.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from policysearch.augment.ops import RANDAUGMENT_OPS, check_op_names, group_ops
from policysearch.config.experiment import Experiment
from policysearch.errors import ConfigError, PolicyFormatError, PolicySearchError
from policysearch.evidence.fidelity_runs import (
    BUDGETS,
    calibration_runs,
    fingerprint,
    load_runs,
    proxy_is_target,
    run_key,
    run_key_of,
    same_config,
    save_json,
)
from policysearch.evidence.rungs import run_curve, rung_agreement
from policysearch.evidence.runinfo import git_commit, machine
from policysearch.evidence.stats import paired, pooled_std, rank_agreement, summarize
from policysearch.paths import RESULTS_DIR, write_atomic
from policysearch.policy.definition import Policy, randaugment, trivialaugment
from policysearch.study.cost import cost_text, estimate, ratios
from policysearch.training import interrupts

REFERENCE = "crop_flip"
RESOLVE_CONFIDENCE = 0.95
DEFAULT_PANEL = ("crop_flip", "RA(1,2)", "RA(1,5)", "RA(2,9)", "RA(2,14)", "RA(3,20)", "TA",
                 "RA(2,9)[geometric]", "RA(2,9)[colour]")
"""The baselines, RandAugment from weak to strong, and two op subsets (nine policies)."""

OP_GROUPS: dict[str, tuple[str, ...]] = {
    "geometric": group_ops("geometric", RANDAUGMENT_OPS),
    "colour": group_ops("colour", RANDAUGMENT_OPS),
}
OP_GROUPS["color"] = OP_GROUPS["colour"]

_ENTRY = re.compile(r"^(?:(?P<ra>RA)\(\s*(?P<n>\d+)\s*,\s*(?P<m>\d+(?:\.\d+)?)\s*\)|(?P<ta>TA))"
                    r"(?:\[(?P<ops>[^\]]*)\])?$", re.IGNORECASE)


@dataclass(frozen=True)
class PanelEntry:
    name: str
    policy: Policy


def parse_entry(text: str, where: str = "fidelity.panel") -> Policy:
    """The policy a panel entry names; a ConfigError naming ``where`` if it names none."""
    from policysearch.policy.baselines import BASELINES

    text = str(text).strip()
    if text in BASELINES:
        return BASELINES[text]
    match = _ENTRY.match(text)
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not a panel entry; expected a baseline name "
                          f"({', '.join(BASELINES)}), RA(N,M) or TA, optionally followed by "
                          "[geometric], [colour] or [Op1,Op2,...]")
    ops: tuple[str, ...] = RANDAUGMENT_OPS
    if match["ops"] is not None:
        group = match["ops"].strip().lower()
        if group in OP_GROUPS:
            ops = OP_GROUPS[group]
        else:
            try:
                ops = check_op_names(op.strip() for op in match["ops"].split(",") if op.strip())
            except ValueError as err:
                raise ConfigError(f"{where}: {text!r}: {err}") from None
            if not ops:
                raise ConfigError(f"{where}: {text!r}: the op list is empty")
    try:
        if match["ta"]:
            return trivialaugment(ops=ops)
        return randaugment(int(match["n"]), float(match["m"]), ops=ops)
    except PolicyFormatError as err:
        raise ConfigError(f"{where}: {text!r}: {err}") from None


def build_panel(entries: Sequence[str]) -> list[PanelEntry]:
    """Parse the panel; at least 3 distinct policies (a rank correlation needs them)."""
    panel: list[PanelEntry] = []
    seen: dict[str, str] = {}
    for i, text in enumerate(entries):
        policy = parse_entry(text, f"fidelity.panel[{i}]")
        if policy.key() in seen:
            raise ConfigError(f"fidelity.panel[{i}]: {text!r} is the same policy as "
                              f"{seen[policy.key()]!r}")
        seen[policy.key()] = str(text)
        panel.append(PanelEntry(str(text).strip(), policy))
    if len(panel) < 3:
        raise ConfigError(f"fidelity.panel: {len(panel)} policies; a rank correlation needs at "
                          "least 3 (8 or more to mean something)")
    return panel


def _estimate(experiment: Experiment) -> float | None:
    """The proxy's cost in target runs from its budget; None when a size is not a number in the
    config (the target's images are all those outside the held-apart splits)."""
    config = experiment.to_dict()
    proxy_size, target_size = config["data"]["train_size"], config["target"]["train_size"]
    if not isinstance(target_size, int) or not isinstance(proxy_size, (int, type(None))):
        return None
    return estimate(proxy_size, config["trainer"], target_size, config["target"]["trainer"])


# ----------------------------------------------------------------------------------------------
# Analysis


def analyse(panel: Sequence[PanelEntry], runs: Sequence[dict[str, Any]],
            seeds: Sequence[int]) -> dict[str, Any]:
    """Every figure of the report, from the runs of the panel at ``seeds``.

    ``rungs`` holds the agreement at every epoch the proxy validated at (the pruner's rungs):
    see ``policysearch.evidence.rungs.rung_agreement``."""
    acc: dict[tuple[str, str], dict[int, float]] = {}
    timed: dict[str, list[dict[str, Any]]] = {b: [] for b in BUDGETS}
    by_key = {run_key_of(r): r for r in runs}
    for entry in panel:
        for budget in BUDGETS:
            values = {}
            for seed in seeds:
                run = by_key[(entry.policy.key(), budget, seed)]
                values[seed] = float(run["accuracy"])
                timed[budget].append(run)
            acc[(entry.name, budget)] = values
    reference = next((e.name for e in panel if e.policy.key() == _reference_key()), None)
    rows = []
    for entry in panel:
        row: dict[str, Any] = {"policy": entry.name, "label": entry.policy.label,
                               "spec": entry.policy.to_dict()}
        for budget in BUDGETS:
            values = acc[(entry.name, budget)]
            summary = summarize(list(values.values()))
            row[budget] = {"by_seed": {str(s): v for s, v in values.items()},
                           "mean": summary.mean, "std": summary.std}
            if reference is not None and entry.name != reference:
                gain = paired(values, acc[(reference, budget)], RESOLVE_CONFIDENCE)
                row[budget]["gain"] = {"mean": gain.mean, "lower": gain.lower,
                                       "p_value": gain.p_value}
        rows.append(row)
    for budget in BUDGETS:
        order = sorted(rows, key=lambda r, b=budget: -r[b]["mean"])
        for rank, row in enumerate(order, 1):
            row[budget]["rank"] = rank
    rungs = rung_agreement(
        [{s: run_curve(by_key[(e.policy.key(), "proxy", s)]) for s in seeds} for e in panel],
        [acc[(e.name, "target")] for e in panel], level=0.90,
        fallback=[acc[(e.name, "proxy")] for e in panel])
    agreement = rank_agreement([list(acc[(e.name, "proxy")].values()) for e in panel],
                               [list(acc[(e.name, "target")].values()) for e in panel],
                               level=0.90)
    twins = any("same_as" in r for r in runs)  # the proxy is the target: the same runs
    if twins:  # resampling the two budgets apart would invent a disagreement
        agreement = replace(agreement, spearman_interval=(1.0, 1.0),
                            kendall_interval=(1.0, 1.0))
    best = min(rows, key=lambda r: r["target"]["rank"])
    return {
        "policies": rows,
        "reference": reference,
        "seeds": list(seeds),
        "spearman": agreement.spearman, "kendall": agreement.kendall,
        "spearman_interval": list(agreement.spearman_interval),
        "kendall_interval": list(agreement.kendall_interval),
        "interval_level": agreement.level,
        "proxy_is_target": twins,
        "seed_std": {b: pooled_std([acc[(e.name, b)] for e in panel]) for b in BUDGETS},
        "resolvable": {b: resolvable(panel, acc, b) for b in BUDGETS},
        **ratios(timed["proxy"], timed["target"]),  # seconds of one machine only
        "best_at_target": best["policy"], "its_rank_at_proxy": best["proxy"]["rank"],
        "diverged": sum(bool(r.get("diverged")) for r in runs),
        "rungs": rungs,
    }


def other(budget: str) -> str:
    return "target" if budget == "proxy" else "proxy"


def _reference_key() -> str:
    from policysearch.policy.baselines import BASELINES

    return BASELINES[REFERENCE].key()


def resolvable(panel: Sequence[PanelEntry], acc: dict[tuple[str, str], dict[int, float]],
               budget: str) -> dict[str, Any]:
    """The smallest paired difference the budget resolves with these seeds.

    For every pair of panel policies, the one-sided 95 % half-width of the mean paired
    difference (Student's t over the common seeds: t(0.95, n-1) * sd(diff) / sqrt(n)); a mean
    difference larger than it would be called real. Reported: the mean and the median over
    all pairs.
    """
    widths = [paired(acc[(a.name, budget)], acc[(b.name, budget)], RESOLVE_CONFIDENCE).half_width
              for a, b in combinations(panel, 2)]
    widths.sort()
    mid = len(widths) // 2
    median = widths[mid] if len(widths) % 2 else (widths[mid - 1] + widths[mid]) / 2
    return {"mean": sum(widths) / len(widths), "median": median, "pairs": len(widths),
            "confidence": RESOLVE_CONFIDENCE}


# ----------------------------------------------------------------------------------------------
# The command


def run_fidelity(experiment: Experiment, panel: Sequence[PanelEntry], seeds: Sequence[int],
                 out: Path, *, tracking_uri: str | None = None, command: str = "",
                 log: Callable[..., Any] = print) -> Path:
    """Train the panel at both budgets (resuming saved runs), write the report, log to MLflow.

    Returns the path of the Markdown report; its JSON (every run) and scatter plot lie beside.
    """
    from policysearch.data.splits import load_splits
    from policysearch.evidence.fidelity_report import log_mlflow, render, scatter_png
    from policysearch.training.trainer import TrainingDiverged, trainer_for

    started = time.perf_counter()
    seeds = [int(s) for s in seeds]
    json_path = out.with_suffix(".json")
    data = experiment.data
    if "auto" in (data.val_size, data.selection_size, data.train_size):
        load_splits(experiment)  # auto sizes become the numbers that get fingerprinted
    stamp = fingerprint(experiment)
    runs, invocations = load_runs(json_path, experiment, log)
    calibration = json_path.with_name(json_path.name.replace("-fidelity.json",
                                                             "-calibration.json"))
    borrowed = calibration_runs(calibration, experiment, {run_key_of(r) for r in runs},
                                set(seeds))
    if borrowed:
        runs += borrowed
        log(f"fidelity: {len(borrowed)} runs at these budgets reused from {calibration.name}")
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = git_commit()

    def history(trained: int) -> list[dict[str, Any]]:
        return [*invocations, {"date": date, "wall_seconds": time.perf_counter() - started,
                               "trained": trained, "commit": commit}]

    done = {run_key_of(r) for r in runs}
    todo = [(e, b, s) for s in seeds for e in panel for b in BUDGETS
            if run_key(e.policy, b, s) not in done]
    twins = proxy_is_target(experiment)
    to_train = len(todo)
    if twins:  # the proxy is the target: one run serves both budgets
        log("fidelity: the proxy is the target (same images, same training): each run counts "
            "at both budgets")
        to_train = len({(e.policy.key(), s) for e, _, s in todo}
                       - {(key, s) for key, _, s in done})
    reused = len(panel) * len(BUDGETS) * len(seeds) - len(todo)
    saved = f", {reused} saved in {json_path}" if reused else ""
    log(f"fidelity: {experiment.name}: {len(panel)} policies x {len(seeds)} seeds x proxy and "
        f"target; {to_train} runs to train{saved}")
    header = {"experiment": experiment.to_dict(), "fingerprint": stamp,
              "panel": [e.name for e in panel], "seeds": list(seeds)}
    compile_seconds: dict[str, float] = {}
    cpu = str(machine().get("cpu", "unknown"))
    if todo:
        splits = load_splits(experiment)
        log(f"fidelity: proxy {len(splits.proxy)} images, target {len(splits.target)} images, "
            f"scored on {len(splits.val)} search-validation images")
        trainers = {}
        for budget in ("target",) if twins else BUDGETS:  # twins: one trainer serves both
            tic = time.perf_counter()
            trainers[budget] = trainer_for(experiment, budget, splits)
            compile_seconds[budget] = time.perf_counter() - tic
        trainers.setdefault("proxy", trainers["target"])
        for i, (entry, budget, seed) in enumerate(todo, 1):
            interrupts.check()  # a safe point between runs (and after every batch)
            twin = next((r for r in runs if run_key_of(r) == (entry.policy.key(), other(budget),
                                                              seed)), None) if twins else None
            if twin is not None:  # the same run, saved under the other budget
                runs.append({**twin, "budget": budget, "same_as": twin["budget"]})
                continue
            record = {"policy": entry.name, "key": entry.policy.key(), "budget": budget,
                      "seed": seed, "cpu": cpu}  # seconds compare on one CPU only
            try:
                result = trainers[budget].train(entry.policy, splits.training(budget),
                                                splits.val, seed)
                record.update(accuracy=result.final_accuracy, seconds=result.seconds,
                              curve=dict(zip(result.val_epochs, result.val_accuracy)))
            except TrainingDiverged as err:
                # a policy that makes training diverge is a real outcome: chance accuracy
                record.update(accuracy=1.0 / len(splits.classes), seconds=math.nan,
                              diverged=str(err))
            runs.append(record)
            save_json(json_path, {**header, "invocations": history(i), "runs": runs})
            log(f"fidelity: [{i}/{len(todo)}] {entry.name:>20} {budget:>6} seed {seed}: "
                f"{100 * record['accuracy']:.1f} % ({record['seconds']:.0f} s)")
    analysis = analyse(panel, runs, seeds)
    analysis["cost_estimate"] = _estimate(experiment)
    wanted = {run_key(e.policy, b, s) for e in panel for b in BUDGETS for s in seeds}
    every = history(to_train)
    meta = {"machine": machine(), "commit": commit, "command": command, "date": date,
            "wall_seconds": every[-1]["wall_seconds"], "trained_now": to_train, "reused": reused,
            "invocations": every,
            "total_wall_seconds": sum(float(v.get("wall_seconds") or 0) for v in every),
            "train_seconds": sum(float(r["seconds"]) for r in runs if run_key_of(r) in wanted
                                 and math.isfinite(float(r["seconds"]))
                                 and "same_as" not in r),
            "compile_seconds": compile_seconds}
    save_json(json_path, {**header, **meta, "analysis": analysis, "runs": runs})
    plot_path = out.with_suffix(".png")
    write_atomic(plot_path, scatter_png(analysis, experiment.name))
    write_atomic(out, render(experiment, analysis, meta, json_path.name, plot_path.name))
    log(f"fidelity: Spearman {analysis['spearman']:+.2f} "
        f"[{analysis['spearman_interval'][0]:+.2f}, {analysis['spearman_interval'][1]:+.2f}], "
        f"Kendall {analysis['kendall']:+.2f}, cost ratio (median seconds) "
        f"{cost_text(analysis)}")
    for rung in analysis["rungs"]:
        log(f"fidelity: at epoch {rung['epoch']}: single-seed Spearman "
            f"{rung['pruning_spearman']:+.2f} (seeds "
            + ", ".join(f"{v:+.2f}" for v in rung["single_seed_spearman"])
            + f"), Spearman of the means {rung['spearman']:+.2f}")
    log(f"fidelity: wrote {out}, {json_path.name} and {plot_path.name}")
    log_mlflow(experiment, analysis, [out, json_path, plot_path], tracking_uri, log)
    return out


def default_out(experiment: Experiment, smoke: bool) -> Path:
    return RESULTS_DIR / f"{experiment.name}{'-smoke' if smoke else ''}-fidelity.md"


def known_fidelity(experiment: Experiment, path: Path | None = None) -> dict[str, Any] | None:
    """The analysis of this experiment's last fidelity run (``path``, a fidelity JSON, or the
    experiment's default one), if it measured this very proxy and target (same fingerprint);
    ``None`` otherwise. A file written before rungs were measured gets them from its runs."""
    path = path or default_out(experiment, smoke=False).with_suffix(".json")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not same_config(saved, fingerprint(experiment)):
        return None
    analysis = saved.get("analysis")
    if not isinstance(analysis, dict):
        return None
    if "rungs" not in analysis:
        try:
            panel = build_panel(saved["panel"])
            analysis["rungs"] = analyse(panel, saved["runs"], saved["seeds"])["rungs"]
        except (KeyError, TypeError, ValueError, PolicySearchError):
            analysis["rungs"] = []
    return analysis
