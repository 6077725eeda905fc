"""The race and the export rule, on synthetic accuracies (the training is tested elsewhere).

Accuracies are drawn as ``quality + seed effect + noise``: the seed effect is shared by every
policy at that seed (what common random numbers buy), the noise is not.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from policysearch.config.experiment import RaceConfig, ScreenConfig
from policysearch.evidence.stats import paired
from policysearch.policy.baselines import BASELINES, on_base
from policysearch.policy.definition import Policy, randaugment
from policysearch.search.contenders import (
    SCREEN_SEED_BASE,
    Contender,
    contenders,
    screen_round,
)
from policysearch.search.race import RACE_SEED_BASE, race
from policysearch.study.record import TrialRecord, write_trial


def entrant(name: str, role: str) -> Contender:
    policy = BASELINES[name] if role != "candidate" else randaugment(1, int(name[2:]))
    label = f"baseline {name}" if role != "candidate" else name
    return Contender(policy.key(), label, policy.to_dict(), role)


def simulate(quality: dict[str, float], noise: float, seed_spread: float = 0.03):
    calls: list[tuple[str, int]] = []

    def evaluate(c: Contender, seed: int) -> float:
        calls.append((c.label, seed))
        shared = np.random.default_rng(seed).normal(0, seed_spread)
        own = np.random.default_rng([seed, zlib.crc32(c.label.encode())]).normal(0, noise)
        return quality[c.label] + shared + own

    return evaluate, calls


CONFIG = RaceConfig(top_k=2, min_seeds=3, max_seeds=8, confidence=0.95)


def entrants() -> list[Contender]:
    return [entrant("RA9", "candidate"), entrant("RA5", "candidate"),
            entrant("trivialaugment", "baseline"), entrant("crop_flip", "reference")]


def test_a_clear_gain_is_exported_after_the_minimum_seeds() -> None:
    evaluate, calls = simulate({"RA9": 0.60, "RA5": 0.50, "baseline trivialaugment": 0.52,
                                "baseline crop_flip": 0.50}, noise=0.002)
    decision = race(entrants(), evaluate, CONFIG, log=lambda _: None)
    assert decision.searched_exported and decision.winner["label"] == "RA9"
    assert decision.gain_over_baseline["lower"] > 0
    assert decision.gain_over_crop_flip["lower"] > 0
    assert decision.looks == 1 and len(decision.seeds) == 3 and decision.outcome == "export"
    assert decision.sentence.startswith("RA9 changes accuracy over crop+flip by +9.")
    # one level everywhere: the first look's nominal level over 2 candidates
    level = 100 * decision.confidence
    assert f"{level:.3g} % lower bound" in decision.sentence and level > 99
    assert decision.gain_over_baseline["confidence"] == decision.confidence
    assert all(r["gain_over_baseline"]["confidence"] == decision.confidence
               for r in decision.table if "gain_over_baseline" in r)
    assert "selection split" in decision.sentence


def test_a_gain_inside_the_noise_exports_the_baseline_and_says_why() -> None:
    evaluate, _ = simulate({"RA9": 0.52, "RA5": 0.40, "baseline trivialaugment": 0.52,
                            "baseline crop_flip": 0.46}, noise=0.02)
    decision = race(entrants(), evaluate, CONFIG, log=lambda _: None)
    assert not decision.searched_exported
    assert decision.winner["label"] == "baseline trivialaugment"
    assert decision.gain_over_baseline["lower"] <= 0
    if decision.outcome == "undecided":
        assert "undecided at this budget: RA9's gain over baseline trivialaugment is between" \
            in decision.reason and "the seeds run could detect" in decision.reason
    else:  # this draw put it below the baseline before the seeds ran out
        assert decision.outcome == "no gain"
        assert "no searched candidate is above baseline trivialaugment" in decision.reason


def test_an_undecided_race_says_what_it_could_detect_and_what_would_decide() -> None:
    # a small true gain, well inside the noise of 3-4 seeds
    evaluate, _ = simulate({"RA9": 0.505, "baseline trivialaugment": 0.50,
                            "baseline crop_flip": 0.49}, noise=0.01, seed_spread=0.0)
    config = RaceConfig(top_k=1, min_seeds=3, max_seeds=4, confidence=0.95)
    trio = [entrant("RA9", "candidate"), entrant("trivialaugment", "baseline"),
            entrant("crop_flip", "reference")]
    decision = race(trio, evaluate, config, log=lambda _: None)
    assert decision.outcome == "undecided", decision.reason
    assert decision.winner["label"] in ("baseline trivialaugment", "baseline crop_flip")
    assert "is between" in decision.reason and "seeds (race.max_seeds) would detect" \
        in decision.reason or "more seeds" in decision.reason
    assert decision.sentence.startswith("Undecided at this budget")
    assert decision.plan["detectable"] > 0.005


def test_no_measurable_gain_keeps_crop_flip() -> None:
    evaluate, _ = simulate({"RA9": 0.50, "RA5": 0.49, "baseline trivialaugment": 0.50,
                            "baseline crop_flip": 0.50}, noise=0.01)
    decision = race(entrants(), evaluate, CONFIG, log=lambda _: None)
    assert decision.winner["label"] == "baseline crop_flip"
    assert decision.sentence.startswith("No measurable gain over crop+flip")
    assert "keep crop+flip" in decision.sentence


def test_close_contenders_get_more_seeds_and_separated_ones_leave() -> None:
    # RA9 and TrivialAugment are equally good: only more seeds can tell (they cannot).
    evaluate, calls = simulate({"RA9": 0.52, "RA5": 0.30, "baseline trivialaugment": 0.52,
                                "baseline crop_flip": 0.45}, noise=0.02)
    decision = race(entrants(), evaluate, CONFIG, log=lambda _: None)
    per = {label: len({s for l, s in calls if l == label}) for label, _ in calls}
    assert per["RA5"] == CONFIG.min_seeds, "a clearly worse contender leaves after the minimum"
    assert per["RA9"] > CONFIG.min_seeds, "the close pair gets more seeds"
    assert per["RA9"] == per["baseline trivialaugment"] == per["baseline crop_flip"]
    out = {row["label"]: row["out_after"] for row in decision.table}
    assert out["RA5"] == CONFIG.min_seeds
    assert decision.looks > 1 and decision.confidence > CONFIG.confidence  # spent, Bonferroni
    assert decision.winner["label"] == "baseline trivialaugment"
    assert decision.plan["seeds"] >= per["RA9"] and "seeds detect a gain" in decision.plan["text"]


def test_results_of_an_interrupted_race_are_reused() -> None:
    quality = {"RA9": 0.60, "RA5": 0.50, "baseline trivialaugment": 0.52,
               "baseline crop_flip": 0.50}
    evaluate, first = simulate(quality, noise=0.002)
    known = {}
    for c in entrants():
        for s in range(2):
            known[(c.key, RACE_SEED_BASE + s)] = evaluate(c, RACE_SEED_BASE + s)
    evaluate, again = simulate(quality, noise=0.002)
    race(entrants(), evaluate, CONFIG, known=known, log=lambda _: None)
    assert {s for _, s in again} == {RACE_SEED_BASE + 2}


def test_paired_needs_two_seeds() -> None:
    from policysearch.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 2 common seeds"):
        paired({1: 0.5}, {1: 0.4})


def test_a_searched_policy_equal_to_a_baseline_is_that_baseline() -> None:
    import optuna

    study = optuna.create_study(direction="maximize")
    policies = [("crop_flip", BASELINES["crop_flip"], 0.50),
                ("trivialaugment", BASELINES["trivialaugment"], 0.52),
                (None, BASELINES["randaugment_n2_m9"], 0.58),  # searched, equal to a baseline
                (None, randaugment(1, 5), 0.55)]
    for baseline, policy, value in policies:
        trial = study.ask()
        write_trial(trial, TrialRecord(policy=policy.to_dict(), label=policy.label, seed=1,
                                       worker="w0", baseline=baseline))
        study.tell(trial, value)
    chosen = contenders(study, top_k=3)
    keys = [c.key for c in chosen]
    assert len(keys) == len(set(keys)), "one key, one row"
    ra = [c for c in chosen if c.key == BASELINES["randaugment_n2_m9"].key()]
    assert len(ra) == 1 and ra[0].role == "baseline"
    assert [c.label for c in chosen if c.role == "candidate"] == ["RA(N=1,M=5)"]
    assert [c.role for c in chosen].count("baseline") == 1  # the best one: RA(2,9)
    assert chosen[-1].label == "baseline crop_flip" and chosen[-1].role == "reference"
    # the screen gets every baseline (it ranks them on its own seeds); crop+flip among them
    every = contenders(study, top_k=3, every_baseline=True)
    assert sorted(c.label for c in every if c.role == "baseline") == [
        "baseline crop_flip", "baseline randaugment_n2_m9", "baseline trivialaugment"]
    assert "reference" not in {c.role for c in every}


def screen_entrants() -> list[Contender]:
    """Five searched candidates (by search value RA1 first) and every baseline, as
    ``contenders(study, k, every_baseline=True)`` gives them to the screen."""
    out = []
    for rank, m in enumerate((1, 2, 3, 4, 6)):
        c = entrant(f"RA{m}", "candidate")
        c.value = 0.60 - 0.01 * rank
        out.append(c)
    return out + [entrant("trivialaugment", "baseline"), entrant("randaugment_n2_m9", "baseline"),
                  entrant("crop_flip", "baseline")]


STAGED = RaceConfig(top_k=2, min_seeds=3, max_seeds=6, confidence=0.95, budget="target",
                    screen=ScreenConfig(top_k=5, seeds=3, budget="proxy"))


def test_the_screen_sends_its_best_candidates_and_the_best_baseline_to_the_race() -> None:
    # The search's value ranked RA1 first; on the screen's 3 seeds RA6 and RA4 are the best.
    quality = {"RA1": 0.50, "RA2": 0.51, "RA3": 0.49, "RA4": 0.55, "RA6": 0.58,
               "baseline trivialaugment": 0.53, "baseline randaugment_n2_m9": 0.54,
               "baseline crop_flip": 0.50}
    evaluate, calls = simulate(quality, noise=0.002)
    finalists, table = screen_round(screen_entrants(), evaluate, STAGED, log=lambda _: None)
    assert [(c.label, c.role) for c in finalists] == [
        ("RA6", "candidate"), ("RA4", "candidate"), ("baseline randaugment_n2_m9", "baseline"),
        ("baseline crop_flip", "reference")]
    assert {s for _, s in calls} == {SCREEN_SEED_BASE + i for i in range(3)}
    assert len(calls) == 8 * 3, "every screened policy at every screen seed"
    assert table["budget"] == "proxy" and [r["finalist"] for r in table["table"]].count(True) == 4
    # the race then runs the finalists only, on its own seeds, and decides by its paired rule
    final, final_calls = simulate(quality, noise=0.002)
    decision = race(finalists, final, STAGED, log=lambda _: None)
    assert {label for label, _ in final_calls} == {c.label for c in finalists}
    assert all(s < SCREEN_SEED_BASE for _, s in final_calls)
    assert decision.winner["label"] == "RA6" and decision.gain_over_baseline["lower"] > 0
    assert "Bonferroni" in decision.test and "alpha spending" in decision.test


def test_crop_flip_the_best_baseline_goes_on_as_the_baseline() -> None:
    quality = {"RA1": 0.40, "RA2": 0.41, "RA3": 0.42, "RA4": 0.43, "RA6": 0.44,
               "baseline trivialaugment": 0.45, "baseline randaugment_n2_m9": 0.46,
               "baseline crop_flip": 0.50}
    evaluate, _ = simulate(quality, noise=0.002)
    finalists, _ = screen_round(screen_entrants(), evaluate, STAGED, log=lambda _: None)
    assert [(c.label, c.role) for c in finalists] == [
        ("RA6", "candidate"), ("RA4", "candidate"), ("baseline crop_flip", "baseline")]
    final, _ = simulate(quality, noise=0.002)
    decision = race(finalists, final, STAGED, log=lambda _: None)
    assert decision.winner["label"] == "baseline crop_flip"


def test_an_interrupted_screen_is_resumed_from_its_rows() -> None:
    quality = {c.label: 0.5 + 0.01 * i for i, c in enumerate(screen_entrants())}
    evaluate, _ = simulate(quality, noise=0.002)
    known = {(c.key, SCREEN_SEED_BASE + s): evaluate(c, SCREEN_SEED_BASE + s)
             for c in screen_entrants() for s in range(2)}
    # rows of the race's own seeds do not count for the screen
    known.update({(c.key, RACE_SEED_BASE + 2): 0.9 for c in screen_entrants()})
    evaluate, again = simulate(quality, noise=0.002)
    screen_round(screen_entrants(), evaluate, STAGED, known=known, log=lambda _: None)
    assert {s for _, s in again} == {SCREEN_SEED_BASE + 2} and len(again) == 8


def test_the_stock_baselines_join_the_race_on_the_base_the_candidates_use() -> None:
    """A candidate with the flip off (one trial: no count can tell): every baseline of the
    study runs on its base too, as a baseline; one that a trial ran already (crop+flip with the
    flip off is crop only) is that trial's row, not a second one."""
    import optuna

    study = optuna.create_study(direction="maximize")
    for baseline, value in (("crop_flip", 0.90), ("crop_only", 0.93), ("trivialaugment", 0.91),
                            ("randaugment_n2_m9", 0.90)):
        trial = study.ask()
        policy = BASELINES[baseline]
        write_trial(trial, TrialRecord(policy=policy.to_dict(), label=policy.label, seed=1,
                                       worker="w0", baseline=baseline))
        study.tell(trial, value)
    searched = randaugment(1, 5).with_source()
    searched = Policy.from_dict({**searched.to_dict(), "base": {"flip": False}})
    trial = study.ask()
    write_trial(trial, TrialRecord(policy=searched.to_dict(), label=searched.label, seed=1,
                                   worker="w0"))
    study.tell(trial, 0.94)
    # the candidate trains with the flip off: whatever the count of trials on each side, the
    # stock baselines race on its base too
    chosen = contenders(study, top_k=2)
    keys = [c.key for c in chosen]
    assert len(keys) == len(set(keys)), "one key, one row"
    assert [c.label for c in chosen if c.role == "baseline"] == [
        "baseline crop_only", "baseline trivialaugment, flip off",
        "baseline randaugment_n2_m9, flip off"]  # in the study's order
    ta_off = next(c for c in chosen if c.label == "baseline trivialaugment, flip off")
    assert Policy.from_dict(ta_off.policy).key() == on_base(
        BASELINES["trivialaugment"], {"flip": False}).key()
    assert ta_off.value is None and ta_off.trial is None  # no search trial: the race ranks it
    assert chosen[-1].role == "reference"


def test_the_best_of_several_baselines_by_race_mean_is_the_fallback() -> None:
    """Two baselines in the race: the candidate is measured against the better one, and when
    it does not beat it, that one (not the search-validation favourite) is exported."""
    entrants_ = [entrant("RA9", "candidate"), entrant("crop_only", "baseline"),
                 Contender(on_base(BASELINES["trivialaugment"], {"flip": False}).key(),
                           "baseline trivialaugment, flip off", on_base(
                               BASELINES["trivialaugment"], {"flip": False}).to_dict(),
                           "baseline"),
                 entrant("crop_flip", "reference")]
    evaluate, _ = simulate({"RA9": 0.965, "baseline crop_only": 0.955,
                            "baseline trivialaugment, flip off": 0.965,
                            "baseline crop_flip": 0.93}, noise=0.002, seed_spread=0.002)
    decision = race(entrants_, evaluate, CONFIG, log=lambda _: None)
    assert decision.baseline == "baseline trivialaugment, flip off"
    assert not decision.searched_exported
    assert decision.winner["label"] == "baseline trivialaugment, flip off"


def test_the_screen_sends_the_best_baseline_of_each_base_to_the_final() -> None:
    """A proxy screen that favours the searched base cannot push the best baseline on the
    experiment's base out of the final: the final, at the target budget, decides between them."""
    ta_off = on_base(BASELINES["trivialaugment"], {"flip": False})
    derived = Contender(ta_off.key(), "baseline trivialaugment, flip off", ta_off.to_dict(),
                        "baseline", base="flip off")
    quality = {"RA1": 0.40, "RA2": 0.41, "RA3": 0.42, "RA4": 0.43, "RA6": 0.44,
               "baseline trivialaugment": 0.45, "baseline randaugment_n2_m9": 0.46,
               "baseline crop_flip": 0.42, "baseline trivialaugment, flip off": 0.48}
    evaluate, _ = simulate(quality, noise=0.002)
    entrants_ = screen_entrants()
    ra6 = next(c for c in entrants_ if c.label == "RA6")  # a finalist with the flip off
    ra6.policy = on_base(Policy.from_dict(ra6.policy), {"flip": False}).to_dict()
    finalists, _ = screen_round([*entrants_, derived], evaluate, STAGED, log=lambda _: None)
    assert [(c.label, c.role) for c in finalists] == [
        ("RA6", "candidate"), ("RA4", "candidate"), ("baseline randaugment_n2_m9", "baseline"),
        ("baseline trivialaugment, flip off", "baseline"), ("baseline crop_flip", "reference")]
    # with every finalist on the experiment's base, that base's best baseline goes on alone
    finalists, _ = screen_round([*screen_entrants(), derived], evaluate, STAGED,
                                log=lambda _: None)
    assert "baseline trivialaugment, flip off" not in [c.label for c in finalists]
