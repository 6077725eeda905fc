"""Choosing the winner: a race on the selection split, paired by seed, and the export rule.

The top searched policies (distinct, by search-validation value) and the best baseline are
re-trained with seeds ``RACE_SEED_BASE + i``; every contender at seed ``s`` starts from the same
weights and sees the same batches (common random numbers), and all are scored on the selection
split, which no trial has seen. After ``min_seeds`` seeds each, the race is a sequence of paired
one-sided t-tests against the leader: a contender whose paired gain's upper bound is below zero
is out; seeds are added to the others, one at a time, until the best candidate and the best
baseline are separated (or only one contender is left) or ``max_seeds`` is reached.

The export rule: the best searched candidate is exported only when the one-sided lower bound of
its paired gain over the best baseline is above zero, at the configured confidence divided by the
number of times the race looked (Bonferroni), so adding seeds cannot manufacture a gain.
Otherwise the best baseline is exported, and the decision says so and why. Crop+flip is trained
at every seed too: it is the reference the decision is stated against, and whatever would be
exported must beat it by the same rule, else crop+flip is exported ("no measurable gain").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from policysearch.config.experiment import RaceConfig
from policysearch.evidence.stats import PairedGain, paired, summarize
from policysearch.policy.baselines import BASELINES, on_base
from policysearch.policy.definition import Policy
from policysearch.study.record import read_trial
from policysearch.training import interrupts

RACE_SEED_BASE = 10_000
SCREEN_SEED_BASE = 11_000
"""The screen's seeds: other seeds than the race's, so its choice is not re-used as evidence."""
REFERENCE = "crop_flip"


@dataclass
class Contender:
    key: str
    label: str
    policy: dict[str, Any]
    role: str  # candidate | baseline | reference
    trial: int | None = None
    value: float | None = None
    """Its search-validation value (how it got into the race)."""
    on_searched_base: bool = False
    """A stock baseline on the base the searched trials chose, not on the experiment's."""


def contenders(study: Any, top_k: int, every_baseline: bool = False,
               base: dict[str, Any] | None = None, suffix: str = "") -> list[Contender]:
    """The top-k distinct searched policies, the best baseline and crop+flip (the reference);
    with ``every_baseline``, every baseline of the study (the screen ranks them itself); with
    ``base`` (the base changes the searched trials chose, ``search.base_choice``), also every
    baseline of the study on that base, as a baseline labelled ``baseline <name>, <suffix>``:
    the race ranks them on seeds, with no search-validation value.

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
            best[key] = Contender(key, label, record.policy, role, t.number, t.value)
    ranked = sorted(best.values(), key=lambda c: (-(c.value or 0.0), c.trial or 0))
    chosen = [c for c in ranked if c.role == "candidate"][:top_k]
    baselines = [c for c in ranked if c.role == "baseline"]
    chosen += baselines if every_baseline else baselines[:1]
    for name in ran if base else []:
        variant = on_base(BASELINES[name], base or {})
        key = variant.key()
        if any(c.key == key for c in chosen):
            continue
        if key in best:  # a trial ran it already (crop+flip with the flip off is crop only)
            if best[key].role == "baseline":
                chosen.append(best[key])
            continue
        chosen.append(Contender(key, f"baseline {name}, {suffix}", variant.to_dict(),
                                "baseline", on_searched_base=True))
    reference = BASELINES[REFERENCE]
    if all(c.key != reference.key() for c in chosen):
        trial = best.get(reference.key())  # its search trial, when it ran one
        chosen.append(Contender(reference.key(), f"baseline {REFERENCE}", reference.to_dict(),
                                "reference", trial.trial if trial else None,
                                trial.value if trial else None))
    return chosen


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
    looks: int
    seeds: list[int]
    table: list[dict[str, Any]] = field(default_factory=list)
    gain_over_baseline: dict[str, Any] | None = None
    gain_over_crop_flip: dict[str, Any] | None = None
    candidate: str | None = None
    baseline: str | None = None
    screen: dict[str, Any] | None = None
    """The first round that chose the finalists (``screen_round``), when there was one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Evaluate = Callable[[Contender, int], float]


def race(entrants: list[Contender], evaluate: Evaluate, config: RaceConfig,
         known: dict[tuple[str, int], float] | None = None,
         log: Callable[[str], None] = print) -> Decision:
    """Race ``entrants`` (see the module docstring). ``known`` holds (key, seed) results of an
    earlier, interrupted race; ``evaluate`` trains one contender at one seed."""
    scores: dict[str, dict[int, float]] = {c.key: {} for c in entrants}
    for (key, seed), value in (known or {}).items():
        if key in scores:
            scores[key][seed] = value
    seeds = [RACE_SEED_BASE + i for i in range(config.max_seeds)]

    def ensure(group: list[Contender], n: int) -> None:
        for seed in seeds[:n]:
            for c in group:
                if seed not in scores[c.key]:
                    interrupts.check()  # a safe point between two trainings
                    scores[c.key][seed] = evaluate(c, seed)

    def mean(c: Contender, n: int) -> float:
        return summarize([scores[c.key][s] for s in seeds[:n]]).mean

    racers = [c for c in entrants if c.role != "reference"]
    reference = next(c for c in entrants if c.key == BASELINES[REFERENCE].key())
    out: dict[str, int] = {}
    n = min(config.min_seeds, config.max_seeds)
    looks = 0
    while True:
        alive = [c for c in racers if c.key not in out]
        ensure(alive + ([reference] if reference not in alive else []), n)
        looks += 1
        leader = max(alive, key=lambda c: mean(c, n))
        for c in alive:
            if c is not leader and _gain(scores, c, leader, seeds[:n], config.confidence).upper < 0:
                out[c.key] = n
                log(f"race: {c.label} is out after {n} seeds (below {leader.label})")
        alive = [c for c in racers if c.key not in out]
        candidate, baseline = _pair(racers, alive, scores, seeds, out, n)
        settled = len(alive) == 1
        if candidate is not None and baseline is not None:
            gain = _gain(scores, candidate, baseline, seeds[:n], config.confidence)
            others = [c for c in alive if c not in (candidate, baseline)]
            settled = settled or ((gain.lower > 0 or gain.upper < 0) and not others)
        if settled or n >= config.max_seeds:
            break
        n += 1
    return _decide(entrants, racers, reference, scores, seeds, out, n, looks, config)


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
    # the best on the experiment's base, and the best on the searched base when there is one:
    # the screen's budget may be the proxy's, so the race decides between the two
    best = [next(c for c in baselines if not c.on_searched_base),
            *[c for c in baselines if c.on_searched_base][:1]]
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


def _gain(scores: dict[str, dict[int, float]], a: Contender, b: Contender, seeds: list[int],
          confidence: float) -> PairedGain:
    return paired({s: scores[a.key][s] for s in seeds if s in scores[a.key]},
                  {s: scores[b.key][s] for s in seeds if s in scores[b.key]}, confidence)


def _pair(racers: list[Contender], alive: list[Contender], scores: dict[str, dict[int, float]],
          seeds: list[int], out: dict[str, int], n: int) -> tuple[Any, Any]:
    """The best searched candidate (alive ones first) and the best baseline, by mean."""
    def rank(c: Contender) -> tuple[int, float]:
        have = [scores[c.key][s] for s in seeds[: out.get(c.key, n)]]
        return (c.key not in out, summarize(have).mean)

    candidates = [c for c in racers if c.role == "candidate"]
    baselines = [c for c in racers if c.role == "baseline"]
    return (max(candidates, key=rank, default=None), max(baselines, key=rank, default=None))


def _decide(entrants: list[Contender], racers: list[Contender], reference: Contender,
            scores: dict[str, dict[int, float]], seeds: list[int], out: dict[str, int], n: int,
            looks: int, config: RaceConfig) -> Decision:
    alive = [c for c in racers if c.key not in out]
    candidate, baseline = _pair(racers, alive, scores, seeds, out, n)
    level = 1 - (1 - config.confidence) / looks
    used = seeds[:n]
    table = []
    for c in entrants:
        have = {s: scores[c.key][s] for s in used if s in scores[c.key]}
        summary = summarize(list(have.values()))
        row = {"key": c.key, "label": c.label, "role": c.role, "trial": c.trial,
               "search_value": c.value, "mean": summary.mean, "std": summary.std,
               "n": summary.n, "seeds": sorted(have), "out_after": out.get(c.key)}
        if baseline is not None and c is not baseline and len(have) >= 2:
            row["gain_over_baseline"] = asdict(_gain(scores, c, baseline, used, level))
        table.append(row)
    common = {"budget": config.budget, "split": "selection", "confidence": level,
              "test": "paired one-sided t over seeds (common random numbers), Bonferroni over "
                      f"{looks} look(s)", "looks": looks, "seeds": used, "table": table}
    gain = None
    if candidate is None:
        winner = baseline or reference
        reason = "no searched candidate completed"
    else:
        baseline = baseline or reference
        gain = _gain(scores, candidate, baseline, used, level)
        winner = candidate if gain.lower > 0 else baseline
        reason = (f"{candidate.label} beats {baseline.label}: paired gain {gain.describe()}"
                  if gain.lower > 0 else
                  f"{candidate.label} does not beat {baseline.label} beyond the seed noise "
                  f"(paired gain {gain.describe()})")
    versus = None if winner.key == reference.key else _gain(scores, winner, reference, used,
                                                            level)
    contender = winner
    if versus is not None and versus.lower <= 0:
        reason += (f"; {winner.label} is not measurably better than crop+flip (paired gain "
                   f"{versus.describe()})")
        winner = reference
    reason += f": {winner.label} is exported"
    return Decision(winner=_winner(winner), searched_exported=winner.role == "candidate",
                    reason=reason, sentence=_sentence(winner, contender, versus, config),
                    gain_over_baseline=None if gain is None else asdict(gain),
                    gain_over_crop_flip=None if versus is None else asdict(versus),
                    candidate=None if candidate is None else candidate.label,
                    baseline=None if baseline is None else baseline.label, **common)


def _winner(c: Contender) -> dict[str, Any]:
    return {"key": c.key, "label": c.label, "policy": c.policy, "role": c.role,
            "trial": c.trial}


def _sentence(winner: Contender, best: Contender, versus: PairedGain | None,
              config: RaceConfig) -> str:
    """The decision in one sentence, against crop+flip."""
    where = (f"on the selection split at the {config.budget} budget"
             + (" (run `policysearch validate` for the target budget)"
                if config.budget == "proxy" else ""))
    if winner.key != BASELINES[REFERENCE].key() and versus is not None:
        return f"{winner.label} changes accuracy over crop+flip by {versus.describe()} {where}."
    measured = "" if versus is None else f" ({best.label}: {versus.describe()})"
    return f"No measurable gain over crop+flip {where}: keep crop+flip{measured}."
