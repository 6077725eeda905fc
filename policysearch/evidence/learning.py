"""Does a training learn? The bar a crop+flip training must clear before a search trusts it.

A budget that leaves the model near chance cannot tell policies apart: every trial's score is
noise, and a search on it teaches the wrong lesson ("augmentation does not help"). The bar on a
split of ``n`` images is the higher of

- the statistical bar: the accuracy a model that only guesses the most frequent class (chance)
  reaches with probability at most ``ALPHA`` (the one-sided binomial tail over ``n`` images);
  on few images this is far above chance, on many it is close to it;
- the practical bar: chance plus ``HEADROOM`` of the way from chance to 100 % (19 % for ten
  balanced classes, 55 % for two): a model that is only just distinguishable from guessing
  still ranks policies by noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.01
"""Probability that a model at chance clears the statistical bar."""
HEADROOM = 0.10
"""Fraction of the way from chance to 100 % the practical bar adds."""


@dataclass(frozen=True)
class LearningBar:
    """What accuracy on a split counts as learning."""

    n: int
    chance: float
    bar: float

    def clears(self, accuracy: float) -> bool:
        return accuracy >= self.bar

    def describe(self) -> str:
        return (f"the bar is {100 * self.bar:.1f} % on {self.n} images (chance "
                f"{100 * self.chance:.1f} %; a model at chance clears it with probability "
                f"< {ALPHA:g}, and it is at least {HEADROOM:.0%} of the way from chance to "
                "100 %)")


def learning_bar(labels: np.ndarray) -> LearningBar:
    """The bar on the split whose labels are ``labels`` (integers)."""
    from scipy import stats

    labels = np.asarray(labels)
    n = len(labels)
    chance = float(np.bincount(labels).max() / n) if n else 1.0
    # smallest k with P(X >= k) <= ALPHA for X ~ Binomial(n, chance)
    k = int(stats.binom.isf(ALPHA, n, chance)) + 1 if n else 0
    statistical = k / n if n else 1.0
    practical = chance + HEADROOM * (1.0 - chance)
    return LearningBar(n, chance, min(1.0, max(statistical, practical)))
