"""Choosing the winner: a race on the selection split, paired by seed, and the export rule.

The top searched policies (distinct, by search-validation value), the best baselines and
crop+flip are re-trained with seeds ``RACE_SEED_BASE + i``; every contender at seed ``s`` starts
from the same weights and sees the same batches (common random numbers), and all are scored on
the selection split, which no trial has seen.

The race is a group-sequential test (``policysearch.evidence.sequential``): one look at every
seed count from ``min_seeds`` to ``max_seeds``, fixed in advance, and ``1 - confidence`` spent
over them. At each look the best candidate still in is exported when its paired one-sided
t-test over the best baseline still in, and over crop+flip, is below the look's nominal level
divided by the number of candidates (Bonferroni); so the chance of exporting a searched policy
that is not better stays at ``1 - confidence`` however the looks fall. Candidates and baselines
whose paired upper bound is below the best baseline leave the race (futility stops only lower
that chance); crop+flip never leaves, it is the reference. The seeds stop at a plan made at the
first look: enough for ``race.power`` at a gain of ``race.min_effect`` points, at most
``max_seeds``; the report states the smallest gain those seeds could detect.

Outcomes: ``export`` (a searched policy is exported), ``no gain`` (no candidate is left above
the best baseline) or ``undecided`` (the seeds ran out; the gain's bounds and what would decide
it are stated). When no candidate is exported, the best baseline still in is exported if it
beats crop+flip at the same level, else crop+flip. A policy that left the race is never
exported, and every bound in the report is at one level: the stopping look's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from policysearch.config.experiment import RaceConfig
from policysearch.evidence.stats import PairedGain, paired, summarize
from policysearch.policy.baselines import BASELINES
from policysearch.search.contenders import REFERENCE, Contender, Evaluate
from policysearch.training import interrupts

RACE_SEED_BASE = 10_000
@dataclass
class Decision:
    """The race's outcome: what is exported, and the evidence for it."""

    winner: dict[str, Any]
    searched_exported: bool
    reason: str
    sentence: str
    budget: str
    split: str
    test: str
    confidence: float
    """The one level of every bound in the report: 1 - the nominal error of the look the race
    stopped at, over the candidates (Bonferroni)."""
    looks: int
    seeds: list[int]
    table: list[dict[str, Any]] = field(default_factory=list)
    gain_over_baseline: dict[str, Any] | None = None
    gain_over_crop_flip: dict[str, Any] | None = None
    candidate: str | None = None
    candidate_policy: dict[str, Any] | None = None
    """The best searched candidate (exported or not), with its trial, for ``validate``."""
    baseline: str | None = None
    outcome: str = ""
    """``export`` (a searched policy beat the baselines), ``no gain`` (no candidate left
    above the best baseline) or ``undecided`` (the seeds ran out first)."""
    design: dict[str, Any] | None = None
    """The group-sequential design: looks, spending, nominal level at each look."""
    plan: dict[str, Any] | None = None
    """The seed plan: the measured paired spread, seeds for ``race.power`` at
    ``race.min_effect``, and the smallest gain the seeds run could detect."""
    screen: dict[str, Any] | None = None
    """The first round that chose the finalists (``screen_round``), when there was one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Standing:
    """The race's state at a look: scores by key and seed, who is out, seeds so far."""

    scores: dict[str, dict[int, float]]
    seeds: list[int]
    out: dict[str, int] = field(default_factory=dict)
    n: int = 0

    def mean(self, c: Contender) -> float:
        have = [self.scores[c.key][s] for s in self.seeds[: self.out.get(c.key, self.n)]
                if s in self.scores[c.key]]
        return summarize(have).mean if have else float("-inf")

    def gain(self, a: Contender, b: Contender, confidence: float) -> PairedGain:
        used = self.seeds[: self.n]
        return paired({s: self.scores[a.key][s] for s in used if s in self.scores[a.key]},
                      {s: self.scores[b.key][s] for s in used if s in self.scores[b.key]},
                      confidence)

    def best(self, group: list[Contender]) -> Contender | None:
        """The best by mean, those still in first."""
        return max(group, key=lambda c: (c.key not in self.out, self.mean(c)), default=None)


def race(entrants: list[Contender], evaluate: Evaluate, config: RaceConfig,
         known: dict[tuple[str, int], float] | None = None,
         log: Callable[[str], None] = print) -> Decision:
    """Race ``entrants`` (see the module docstring). ``known`` holds (key, seed) results of an
    earlier, interrupted race; ``evaluate`` trains one contender at one seed.

    Looks at every seed count from ``min_seeds`` to ``max_seeds``; at each, the best candidate
    still in is exported when its paired gain over the best baseline, and over crop+flip,
    crosses the look's group-sequential boundary (``race.spending`` of ``1 - confidence``,
    Bonferroni over the candidates). A candidate whose paired upper bound is below the best
    baseline leaves (futility: it can only lower the error); a baseline below the best baseline
    leaves too, crop+flip never (it is the reference). The seeds stop at the plan: enough for
    ``race.power`` at ``race.min_effect`` from the spread measured at the first look, at most
    ``max_seeds``.
    """
    st = _Standing({c.key: {} for c in entrants},
                   [RACE_SEED_BASE + i for i in range(config.max_seeds)])
    for (key, seed), value in (known or {}).items():
        if key in st.scores:
            st.scores[key][seed] = value
    racers = [c for c in entrants if c.role != "reference"]
    reference = next(c for c in entrants if c.key == BASELINES[REFERENCE].key())
    candidates = [c for c in racers if c.role == "candidate"]
    baselines = [c for c in racers if c.role == "baseline"] or [reference]
    design = race_design(config)
    split = max(1, len(candidates))
    plan: dict[str, Any] | None = None
    st.n = design.seeds[0]
    looks = 0
    while True:
        alive = [c for c in racers if c.key not in st.out]
        for seed in st.seeds[: st.n]:
            for c in [*alive, *([reference] if reference not in alive else [])]:
                if seed not in st.scores[c.key]:
                    interrupts.check()  # a safe point between two trainings
                    st.scores[c.key][seed] = evaluate(c, seed)
        looks += 1
        baseline = st.best([b for b in baselines if b.key not in st.out]) or reference
        for c in alive:
            if c is baseline or c.key == reference.key:
                continue
            if st.gain(c, baseline, config.confidence).upper < 0:
                st.out[c.key] = st.n
                log(f"race: {c.label} is out after {st.n} seeds (below {baseline.label})")
        if plan is None:
            plan = _plan(st, racers, reference, design, split, config)
            log(f"race: seed plan: {plan['text']}")
        candidate = st.best([c for c in candidates if c.key not in st.out])
        crossed = candidate is not None and _crosses(st, candidate, baseline, reference,
                                                     design.level(st.n) / split)
        if crossed or candidate is None or st.n >= min(plan["seeds"], config.max_seeds):
            break
        st.n += 1
    return _decide(entrants, racers, reference, baselines, candidates, st, looks, design, plan,
                   config)


def race_design(config: RaceConfig) -> Any:
    """The race's group-sequential design: a look at every seed count from ``min_seeds`` to
    ``max_seeds``, ``1 - confidence`` spent over them by ``race.spending``."""
    from policysearch.evidence.sequential import group_sequential

    first = min(config.min_seeds, config.max_seeds)
    return group_sequential(tuple(range(first, config.max_seeds + 1)),
                            round(1 - config.confidence, 12), config.spending)


def _crosses(st: _Standing, candidate: Contender, baseline: Contender, reference: Contender,
             level: float) -> bool:
    """The candidate beats the best baseline and crop+flip at the look's nominal level."""
    return all(st.gain(candidate, other, 1 - level).lower > 0
               for other in {baseline.key: baseline, reference.key: reference}.values())


def _plan(st: _Standing, racers: list[Contender], reference: Contender, design: Any,
          split: int, config: RaceConfig) -> dict[str, Any]:
    """Seeds for ``race.power`` at ``race.min_effect``, from the paired spread of every
    contender against crop+flip at the first look (pooled)."""
    from policysearch.evidence.sequential import (
        detectable_gain,
        pooled_paired_sd,
        seeds_for_power,
    )

    used = st.seeds[: st.n]
    diffs = [[st.scores[c.key][s] - st.scores[reference.key][s] for s in used]
             for c in racers if c.key != reference.key]
    sd, dof = pooled_paired_sd(diffs)
    level = design.nominal[-1] / split
    effect = config.min_effect / 100
    measured = math.isfinite(sd)
    needed = seeds_for_power(sd, effect, level, config.power) if measured else None
    seeds = max(st.n, min(config.max_seeds, needed or config.max_seeds))
    smallest = detectable_gain(seeds, sd, level, config.power) if measured else math.inf
    text = (f"paired spread {100 * sd:.2f} pts ({dof} df, first {st.n} seeds); "
            + (f"{needed} seeds detect a gain of {config.min_effect:g} pts with "
               f"{100 * config.power:.0f} % power" if needed is not None else
               f"no seed count up to 200 detects {config.min_effect:g} pts")
            + f"; the race runs up to {seeds} (race.max_seeds {config.max_seeds}): the "
            f"smallest gain it can detect is {100 * smallest:.2f} pts")
    return {"sd": sd, "dof": dof, "needed": needed, "seeds": seeds,
            "min_effect": config.min_effect, "power": config.power, "level": level,
            "detectable": smallest, "text": text}


def _decide(entrants: list[Contender], racers: list[Contender], reference: Contender,
            baselines: list[Contender], candidates: list[Contender], st: _Standing, looks: int,
            design: Any, plan: dict[str, Any], config: RaceConfig) -> Decision:
    """What is exported and why, every bound at one level: the stopping look's."""
    level = design.level(st.n) / max(1, len(candidates))
    confidence = 1 - level
    used = st.seeds[: st.n]
    baseline = st.best([b for b in baselines if b.key not in st.out]) or reference
    candidate = st.best(candidates)
    table = []
    for c in entrants:
        have = {s: st.scores[c.key][s] for s in used if s in st.scores[c.key]}
        summary = summarize(list(have.values()))
        row = {"key": c.key, "label": c.label, "role": c.role, "trial": c.trial,
               "search_value": c.value, "mean": summary.mean, "std": summary.std,
               "n": summary.n, "seeds": sorted(have), "accuracies": [have[s] for s in
                                                                     sorted(have)],
               "out_after": st.out.get(c.key)}
        if c is not baseline and len(have) >= 2:
            row["gain_over_baseline"] = asdict(st.gain(c, baseline, confidence))
        table.append(row)
    common = {"budget": config.budget, "split": "selection", "confidence": confidence,
              "test": (f"paired one-sided t over seeds (common random numbers), "
                       f"group-sequential: {design.describe()}; Bonferroni over "
                       f"{max(1, len(candidates))} candidate(s)"),
              "looks": looks, "seeds": used, "table": table, "design": design.to_dict(),
              "plan": dict(plan)}
    gain = None
    if candidate is None:
        winner, outcome = baseline, "no gain"
        reason = "no searched candidate completed"
    else:
        gain = st.gain(candidate, baseline, confidence)
        if candidate.key not in st.out and _crosses(st, candidate, baseline, reference, level):
            winner, outcome = candidate, "export"
            reason = f"{candidate.label} beats {baseline.label}: paired gain {gain.describe()}"
        elif candidate.key in st.out:
            winner, outcome = baseline, "no gain"
            reason = (f"no searched candidate is above {baseline.label}: the best, "
                      f"{candidate.label}, left after {st.out[candidate.key]} seeds (paired "
                      f"gain {gain.describe()})")
        else:
            winner, outcome = baseline, "undecided"
            reason = (f"undecided at this budget: {candidate.label}'s gain over "
                      f"{baseline.label} is between {100 * gain.lower:+.2f} and "
                      f"{100 * gain.upper:+.2f} pts ({st.n} seeds, each a "
                      f"{100 * confidence:.3g} % one-sided bound); {_what_decides(plan, gain)}")
    versus = None if winner.key == reference.key else st.gain(winner, reference, confidence)
    contender = winner
    if versus is not None and versus.lower <= 0 and winner.role != "candidate":
        reason += (f"; {winner.label} is not measurably better than crop+flip (paired gain "
                   f"{versus.describe()})")
        winner = reference
    reason += f": {winner.label} is exported"
    return Decision(winner=_winner(winner), searched_exported=winner.role == "candidate",
                    reason=reason, sentence=_sentence(winner, contender, versus, outcome,
                                                      config),
                    gain_over_baseline=None if gain is None else asdict(gain),
                    gain_over_crop_flip=None if versus is None else asdict(versus),
                    candidate=None if candidate is None else candidate.label,
                    candidate_policy=None if candidate is None else _winner(candidate),
                    baseline=baseline.label, outcome=outcome, **common)


def _what_decides(plan: dict[str, Any], gain: PairedGain) -> str:
    """What would tell the undecided pair apart: the seeds for the gain seen, at the plan's
    level and power."""
    from policysearch.evidence.sequential import seeds_for_power

    needed = seeds_for_power(gain.std, gain.mean, plan["level"], plan["power"]) \
        if gain.mean > 0 else None
    head = (f"the seeds run could detect {100 * plan['detectable']:.2f} pts"
            if math.isfinite(plan["detectable"]) else "the seeds run could detect no gain")
    if needed is None:
        return head + "; a larger selection split or more seeds (race.max_seeds) would narrow it"
    return (head + f"; about {needed} seeds (race.max_seeds) would detect the gain seen, or a "
            "larger selection split")


def _winner(c: Contender) -> dict[str, Any]:
    return {"key": c.key, "label": c.label, "policy": c.policy, "role": c.role,
            "trial": c.trial}


def _sentence(winner: Contender, best: Contender, versus: PairedGain | None, outcome: str,
              config: RaceConfig) -> str:
    """The decision in one sentence, against crop+flip."""
    where = (f"on the selection split at the {config.budget} budget"
             + (" (run `policysearch validate` for the target budget)"
                if config.budget == "proxy" else ""))
    if winner.key != BASELINES[REFERENCE].key() and versus is not None:
        return f"{winner.label} changes accuracy over crop+flip by {versus.describe()} {where}."
    measured = "" if versus is None else f" ({best.label}: {versus.describe()})"
    if outcome == "undecided":
        return (f"Undecided at this budget {where}: no policy is shown better than crop+flip; "
                f"keep crop+flip{measured}.")
    return f"No measurable gain over crop+flip {where}: keep crop+flip{measured}."
