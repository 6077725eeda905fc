"""The results file's targets: met, missed or not shown, from the validation summary."""

from __future__ import annotations

from typing import Any

from policysearch.policy.baselines import BASELINES, same_baseline
from policysearch.policy.definition import randaugment
from policysearch.search.proof import cost_lines, rung_table, search_lines
from policysearch.search.targets import targets


def row(role: str, mean: float, gain: float | None = None, p: float = 0.5) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "label": role, "mean": mean, "std": 0.01, "n": 5}
    if gain is not None:
        out.update(gain=gain, gain_lower=gain - 0.004, gain_upper=gain + 0.004, gain_std=0.004,
                   p_value=p)
    return out


def verdicts(lines: list[str]) -> list[str]:
    return [line.rsplit("**", 2)[-2] for line in lines]


def test_searched_policy_is_judged_against_the_better_stock_policy() -> None:
    summary = [row("policy", 0.56), row("crop_flip", 0.52, 0.04, 1e-4),
               row("randaugment_n2_m9", 0.545, 0.015, 0.01), row("trivialaugment", 0.54, 0.02)]
    lines = targets(summary)
    assert verdicts(lines) == ["met", "met", "met"]
    assert "(randaugment_n2_m9)" in lines[1] and "beat randaugment_n2_m9" in lines[2]


def test_a_baseline_export_never_claims_the_stretch() -> None:
    # the exported policy is RandAugment N=2 M=9 itself and beats TrivialAugment on test
    summary = [row("policy", 0.546), row("crop_flip", 0.515, 0.0317, 4e-5),
               row("trivialaugment", 0.538, 0.0084, 0.007)]
    name, label = same_baseline(randaugment(2, 9), ["crop_flip", "randaugment_n2_m9",
                                                    "trivialaugment"])
    assert name == "randaugment_n2_m9" and label == BASELINES[name].label
    lines = targets(summary, name, label)
    # +3.17 points, but its lower bound (+2.77) is below 3: met on the point estimate only
    assert verdicts(lines) == ["point estimate only", "met", "not shown"]
    assert "itself" in lines[1] and "baseline" in lines[2]


def test_a_baseline_export_below_the_other_stock_policy_is_compared_with_it() -> None:
    summary = [row("policy", 0.53), row("crop_flip", 0.51, 0.02, 0.01),
               row("trivialaugment", 0.55, -0.02, 0.99)]
    lines = targets(summary, "randaugment_n2_m9", "RA")
    assert verdicts(lines) == ["missed", "missed", "not shown"]


def test_crop_flip_export_misses_the_gain_target() -> None:
    summary = [row("policy", 0.51), row("randaugment_n2_m9", 0.54, -0.03, 1.0),
               row("trivialaugment", 0.53, -0.02, 1.0)]
    lines = targets(summary, "crop_flip", "crop+flip")
    assert verdicts(lines) == ["missed", "missed", "not shown"]


def test_the_gain_target_is_met_only_when_its_lower_bound_clears_it() -> None:
    # the committed proof's figures: +3.16 points, lower bound +2.59
    crop = row("crop_flip", 0.515, 0.0316, 1e-4)
    crop["gain_lower"] = 0.0259
    lines = targets([row("policy", 0.546), crop, row("trivialaugment", 0.538, 0.008, 0.01)])
    assert verdicts(lines)[0] == "point estimate only"
    assert "its 95 % lower bound +2.59 does not" in lines[0]
    crop["gain_lower"] = 0.031
    assert verdicts(targets([row("policy", 0.546), crop]))[0] == "met"
    crop.update(gain=0.02, gain_lower=0.01)
    assert verdicts(targets([row("policy", 0.546), crop]))[0] == "missed"


def tally(share: float = 0.6) -> dict[str, Any]:
    return {"study": "s", "searched": {"trials": 101, "scored": 100, "seconds": 540.0,
                                       "states": {"COMPLETE": 90, "PRUNED": 10, "FAIL": 1}},
            "baselines": {"trials": 3, "scored": 3, "seconds": 16.0,
                          "states": {"COMPLETE": 3}},
            "trial_phase_seconds": 560.0, "reevaluation_seconds": 350.0, "screen_seconds": 60.0,
            "stage_seconds": 900.0, "searched_share_of_stage": share,
            "prune_reason": "pruning (hyperband) at epoch 25 (+0.85) only: ...",
            "rung_agreement": [
                {"epoch": 25, "pruning_spearman": 0.85, "single_seed_spearman": [0.8, 0.9],
                 "spearman": 0.9, "final": False, "prunes": True},
                {"epoch": 50, "pruning_spearman": 0.9, "single_seed_spearman": [0.9, 0.9],
                 "spearman": 0.95, "final": True, "prunes": False}]}


def test_the_results_file_counts_searched_trials_apart_and_their_share_of_the_time() -> None:
    from policysearch.config.experiment import load_experiment

    experiment = load_experiment("cifar10")
    lines = search_lines(experiment, tally())
    text = "\n".join(lines)
    assert "**100 searched policies scored** (90 complete, 1 fail, 10 pruned" in text
    assert "besides 3 baselines" in text
    assert "searched trials 9.0 min of the search stage's 15.0 min wall time (**60 %**)" in text
    assert "Pruner (hyperband): pruning (hyperband) at epoch 25" in text
    table = rung_table(tally())
    assert "| 25 | +0.85 | +0.80, +0.90 | +0.90 | yes |" in table
    assert "| 50 | +0.90 | +0.90, +0.90 | +0.95 | end of the run |" in table


def test_costs_are_stated_on_median_seconds() -> None:
    rows = [{"label": "RA", "seconds": s} for s in (40.0, 42.0, 84.0)]
    rows += [{"label": "crop+flip", "seconds": s} for s in (37.0, 38.0, 41.0)]
    fidelity = {"cost_ratio_median": 0.215, "cost_ratio": 0.18, "spearman": 0.98}
    (line, _) = cost_lines(rows, fidelity)
    assert "RA 42 s, crop+flip 38 s" in line
    assert "0.21 of a target run on median seconds (0.18 on mean seconds)" in line


def test_the_stock_policies_with_the_flip_off_are_a_target_when_validated() -> None:
    # digits' first proof: crop only exported; TrivialAugment without the flip is better on test
    summary = [row("policy", 0.9592), row("crop_flip", 0.9347, 0.0245, 0.001),
               row("trivialaugment", 0.9398, 0.0194, 0.003),
               row("trivialaugment, flip off", 0.9648, -0.0056, 0.979),
               row("randaugment_n2_m9, flip off", 0.9614, -0.0022, 0.86)]
    lines = targets(summary, "crop_only", "crop only")
    assert verdicts(lines) == ["missed", "met", "missed", "not shown"]
    assert "(trivialaugment, flip off)" in lines[2] and 'p for "worse" = 0.021' in lines[2]
    summary[3].update(gain=-0.001, p_value=0.7)
    assert verdicts(targets(summary, "crop_only", "crop only"))[2] == "met"


def test_the_stock_policy_on_the_searched_base_is_the_flip_off_target_itself() -> None:
    # the race exported TrivialAugment with the flip off (the base the search chose):
    # validation trained it once, as the policy; RandAugment with the flip off is below it
    summary = [row("policy", 0.9718), row("crop_flip", 0.9347, 0.036, 0.001),
               row("randaugment_n2_m9", 0.9377, 0.027, 0.001),
               row("trivialaugment", 0.9398, 0.025, 0.002),
               row("randaugment_n2_m9, flip off", 0.9614, 0.0034, 0.04)]
    lines = targets(summary, same_roles=("trivialaugment, flip off",))
    assert verdicts(lines) == ["met", "met", "met", "not shown"]
    assert "trivialaugment with the flip off itself" in lines[2]
    assert "on the base the search chose" in lines[3]
    # the other stock policy with the flip off better on test: compared with it, p for worse
    summary[-1].update(mean=0.975, gain=-0.0052, p_value=0.99)
    assert verdicts(targets(summary, same_roles=("trivialaugment, flip off",)))[2] == "missed"
