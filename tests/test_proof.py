"""The results file's targets: met, missed or not shown, from the validation summary."""

from __future__ import annotations

from typing import Any

from policysearch.policy.baselines import BASELINES, same_baseline
from policysearch.policy.definition import randaugment
from policysearch.search.proof import targets


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
    assert verdicts(lines) == ["met", "met", "not shown"]
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
