"""The base augmentation the searched trials chose: the flip and the crop, by their evidence.

A space that searches the base (``flip``, ``crop_padding``) lets each trial keep or turn off
the experiment's flip and crop. Over the completed searched trials, a base setting departs from
the experiment's only when the trials with it score higher on the search-validation split than
the trials with the experiment's setting: one-sided Welch t-test, p below ``ALPHA``, at least
``MIN_TRIALS`` trials on each side; the flip first, then the crop among the trials on the flip
already chosen. The trials differ in their ops too (and a sampler's later trials are better
tuned), so this is a screen, not a proof: the race then also runs the stock baselines on that
base (``trivialaugment, flip off``), as baselines, paired by seed on the selection split like
every contender (after a screen, the best on each base goes on to the final). What the
search decided about the base thus reaches the export even when no searched op set beats the
stock ones: the fallback is the best stock policy on the base the search found, not on the
user's base. Nothing here is tuned to a dataset: with the flip helping (CIFAR-10) the flip-on
trials win and the base stays as the experiment has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from policysearch.policy.definition import Policy

ALPHA = 0.05
MIN_TRIALS = 3


@dataclass
class BaseChoice:
    """What the searched trials say of the base: the changes to the experiment's, and why."""

    changes: dict[str, Any] = field(default_factory=dict)
    """``{"flip": False}`` and/or ``{"crop_padding": 0}``; empty when the base stays."""
    evidence: list[str] = field(default_factory=list)
    """One sentence per searched base setting, with the means, counts and p."""

    @property
    def suffix(self) -> str:
        """The changes in words, for labels: ``flip off``, ``crop off``, ``flip and crop off``."""
        off = [name for name, key in (("flip", "flip"), ("crop", "crop_padding"))
               if key in self.changes]
        return " and ".join(off) + " off" if off else ""

    def sentence(self) -> str:
        head = (f"the searched trials score higher with the base "
                f"{self.suffix.removesuffix(' off')} off" if self.changes else
                "the searched trials do not score higher with the base flip or crop off")
        return head + (" (" + "; ".join(self.evidence) + ")" if self.evidence else "")


def choose_base(trials: list[tuple[Policy, float]]) -> BaseChoice:
    """``trials``: each completed searched trial's policy and search-validation value."""
    choice = BaseChoice()
    for name, key, kept in (("flip", "flip", lambda p: p.flips),
                            ("crop", "crop_padding", lambda p: p.crops)):
        on = [v for p, v in trials if kept(p)]
        off = [v for p, v in trials if not kept(p)]
        if key == "crop_padding" and "flip" in choice.changes:  # the crop among the flip-off
            on = [v for p, v in trials if kept(p) and not p.flips]
            off = [v for p, v in trials if not kept(p) and not p.flips]
        if not off:
            continue  # the space does not search it, or no trial turned it off
        if len(on) < MIN_TRIALS or len(off) < MIN_TRIALS:
            choice.evidence.append(f"{name} off in {len(off)} of {len(on) + len(off)} trials: "
                                   f"too few on one side to tell (at least {MIN_TRIALS} each)")
            continue
        p = welch_greater(off, on)
        mean_on, mean_off = sum(on) / len(on), sum(off) / len(off)
        choice.evidence.append(f"{name} off {100 * mean_off:.2f} % over {len(off)} trials, on "
                               f"{100 * mean_on:.2f} % over {len(on)}, one-sided Welch p "
                               f"{p:.2g}")
        if p < ALPHA:
            choice.changes[key] = False if key == "flip" else 0
    return choice


def welch_greater(a: list[float], b: list[float]) -> float:
    """One-sided p that ``a``'s mean is above ``b``'s (Welch's unequal-variance t-test)."""
    import math

    from scipy import stats

    result = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else p  # identical constant groups: no evidence either way
