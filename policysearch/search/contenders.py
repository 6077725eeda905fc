"""Who races: the contenders a study offers, and the screen that picks the finalists.

``contenders`` takes the best searched policies (distinct, by search-validation value), the
study's baselines (on the experiment's base and on every base a chosen candidate trains on) and
crop+flip, the reference. ``screen_round`` is the race's cheap first round: every entrant at a
few paired seeds, the best go on. Neither decides the export: ``policysearch.search.race`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from policysearch.config.experiment import RaceConfig
from policysearch.evidence.stats import summarize
from policysearch.policy.baselines import BASELINES, on_base
from policysearch.policy.definition import Policy
from policysearch.study.record import read_trial

SCREEN_SEED_BASE = 11_000
"""The screen's seeds: other seeds than the race's, so its choice is not re-used as evidence."""
REFERENCE = "crop_flip"
"""The reference every decision is stated against."""


@dataclass
class Contender:
    key: str
    label: str
    policy: dict[str, Any]
    role: str  # candidate | baseline | reference
    trial: int | None = None
    value: float | None = None
    """Its search-validation value (how it got into the race)."""
    base: str = ""
    """A baseline's base in words (``flip off``); empty on the experiment's base."""


def base_changes(policy: Policy) -> dict[str, Any]:
    """The base changes a policy makes: ``{"flip": False}`` and/or ``{"crop_padding": 0}``."""
    return {**({"flip": False} if not policy.flips else {}),
            **({"crop_padding": 0} if not policy.crops else {})}


def base_words(changes: dict[str, Any]) -> str:
    """``flip off``, ``crop off``, ``flip and crop off``; empty for the experiment's base."""
    off = [name for name, key in (("flip", "flip"), ("crop", "crop_padding")) if key in changes]
    return " and ".join(off) + " off" if off else ""


def contenders(study: Any, top_k: int, every_baseline: bool = False) -> list[Contender]:
    """The top-k distinct searched policies, the best baseline and crop+flip (the reference);
    with ``every_baseline``, every baseline of the study (the screen ranks them itself).

    Whatever the count of trials on each side, every base the chosen candidates train on
    (the flip or the crop turned off) gets every baseline of the study on that base too, as a
    baseline labelled ``baseline <name>, flip off``: the race ranks them on seeds beside the
    same policies on the experiment's base, so a candidate's lead is not the base's alone and
    the report shows how much the base is worth.

    A searched policy that equals a baseline is that baseline: one key, one row.
    """
    baseline_keys = {BASELINES[name].key(): name for name in BASELINES}
    best: dict[str, Contender] = {}
    ran: list[str] = []  # the study's baselines, in trial order
    for t in study.get_trials(deepcopy=False):
        record = read_trial(t)
        if t.state.name != "COMPLETE" or t.value is None or record is None:
            continue
        if record.baseline in BASELINES and record.baseline not in ran:
            ran.append(record.baseline)
        policy = Policy.from_dict(record.policy)
        key = policy.key()
        name = record.baseline or baseline_keys.get(key)
        role = "baseline" if name else "candidate"
        label = f"baseline {name}" if name else record.label
        seen = best.get(key)
        if seen is None or t.value > (seen.value or 0.0):
            best[key] = Contender(key, label, record.policy, role, t.number, t.value,
                                  base=base_words(base_changes(policy)) if name else "")
    ranked = sorted(best.values(), key=lambda c: (-(c.value or 0.0), c.trial or 0))
    chosen = [c for c in ranked if c.role == "candidate"][:top_k]
    bases: list[dict[str, Any]] = []
    for c in chosen:
        changes = base_changes(Policy.from_dict(c.policy))
        if changes and changes not in bases:
            bases.append(changes)
    baselines = [c for c in ranked if c.role == "baseline"]
    chosen += baselines if every_baseline else baselines[:1]
    for changes in bases:
        for name in ran:
            variant = on_base(BASELINES[name], changes)
            key = variant.key()
            if any(c.key == key for c in chosen):
                continue
            if key in best:  # a trial ran it already (crop+flip with the flip off is crop only)
                if best[key].role == "baseline":
                    chosen.append(best[key])
                continue
            chosen.append(Contender(key, f"baseline {name}, {base_words(changes)}",
                                    variant.to_dict(), "baseline", base=base_words(changes)))
    reference = BASELINES[REFERENCE]
    if all(c.key != reference.key() for c in chosen):
        trial = best.get(reference.key())  # its search trial, when it ran one
        chosen.append(Contender(reference.key(), f"baseline {REFERENCE}", reference.to_dict(),
                                "reference", trial.trial if trial else None,
                                trial.value if trial else None))
    return chosen


Evaluate = Callable[["Contender", int], float]
"""Trains one contender at one seed; returns its selection accuracy."""


def screen_round(entrants: list[Contender], evaluate: Evaluate, config: RaceConfig,
                 known: dict[tuple[str, int], float] | None = None,
                 log: Callable[[str], None] = print) -> tuple[list[Contender], dict[str, Any]]:
    """The race's cheap first round: every entrant at ``config.screen.seeds`` paired seeds (at
    the screen's budget); the best ``config.top_k`` searched candidates by mean go on, with the
    best baseline by mean (and the best on the searched base, when some are) and crop+flip. It
    decides nothing about the export: the race that follows, on other seeds, does, by its
    paired rule. Returns the finalists and the round's table."""
    seeds = [SCREEN_SEED_BASE + i for i in range(config.screen.seeds)]
    scores: dict[str, dict[int, float]] = {c.key: {} for c in entrants}
    for (key, seed), value in (known or {}).items():
        if key in scores and seed in seeds:
            scores[key][seed] = value
    for seed in seeds:
        for c in entrants:
            if seed not in scores[c.key]:
                scores[c.key][seed] = evaluate(c, seed)
    means = {c.key: summarize([scores[c.key][s] for s in seeds]).mean for c in entrants}

    def by_mean(group: list[Contender]) -> list[Contender]:
        return sorted(group, key=lambda c: (-means[c.key], c.trial or 0))

    candidates = by_mean([c for c in entrants if c.role == "candidate"])[:config.top_k]
    baselines = by_mean([c for c in entrants if c.role != "candidate"])
    # the best on the experiment's base, and the best on each base the finalists train on:
    # the screen's budget may be the proxy's, so the race decides between them
    finalist_bases = {base_words(base_changes(Policy.from_dict(c.policy))) for c in candidates}
    best = [next((c for c in baselines if not c.base), baselines[0])]
    for words in sorted(finalist_bases - {""}):
        best += [c for c in baselines if c.base == words and c not in best][:1]
    # crop+flip is the best baseline, or the reference the decision is stated against
    reference_key = BASELINES[REFERENCE].key()
    finalists = [*candidates, *(replace(c, role="baseline") for c in best)]
    if all(c.key != reference_key for c in finalists):
        finalists += [replace(c, role="reference") for c in entrants if c.key == reference_key]
    chosen = {c.key for c in finalists}
    table = []
    for c in by_mean(entrants):
        summary = summarize([scores[c.key][s] for s in seeds])
        table.append({"key": c.key, "label": c.label, "role": c.role, "trial": c.trial,
                      "search_value": c.value, "mean": summary.mean, "std": summary.std,
                      "n": summary.n, "finalist": c.key in chosen})
    log("race: screen (" + f"{config.screen.budget} budget, {len(seeds)} seeds): finalists "
        + ", ".join(c.label for c in finalists))
    return finalists, {"budget": config.screen.budget, "split": "selection", "seeds": seeds,
                       "table": table, "finalists": config.top_k}
