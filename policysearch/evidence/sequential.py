"""A race that looks at its data as it grows, with the error rate it states.

The race adds one paired seed at a time and may stop early, so a plain 95 % test at every look
would export an equal policy more often than 5 % of the time. Instead the number of looks is
fixed in advance (one per seed count, ``min_seeds`` .. ``max_seeds``) and the one-sided error
``alpha`` is *spent* over them by a Lan-DeMets spending function (O'Brien-Fleming-like by
default: almost nothing early, nearly all of it at the last look). ``group_sequential`` turns
the spending into one boundary per look for the paired t statistic (placed on the statistic's
simulated joint null law), and states each boundary as a nominal one-sided p-value: at the look
with ``n`` seeds the paired t-test's p must be at or below it.
Stopping at any look without crossing (futility, or a seed plan that ends early) leaves the
unspent error unspent: the rate can only fall.

``seeds_for_power`` and ``detectable_gain`` plan the seeds from a measured spread of the paired
differences (the noncentral t distribution, scipy's ``nct``).

Everything here is pure statistics: scipy.stats, no training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from policysearch.errors import ConfigError

SPENDING = ("obrien-fleming", "pocock")


def spent(fraction: float, alpha: float, spending: str = "obrien-fleming") -> float:
    """Cumulative one-sided error spent at information ``fraction`` (Lan and DeMets 1983)."""
    from scipy import stats

    if fraction <= 0:
        return 0.0
    fraction = min(fraction, 1.0)
    if spending == "obrien-fleming":
        return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(fraction)))
    if spending == "pocock":
        return float(alpha * math.log(1 + (math.e - 1) * fraction))
    raise ConfigError(f"spending {spending!r}: expected one of {', '.join(SPENDING)}")


@dataclass(frozen=True)
class SequentialDesign:
    """Boundaries of a one-sided group-sequential test, one per look."""

    seeds: tuple[int, ...]
    """Seeds (paired observations) at each look; the last is the maximum."""
    alpha: float
    spending: str
    cumulative: tuple[float, ...]
    """Error spent up to and including each look."""
    z: tuple[float, ...]
    """The boundary on the z scale at each look."""
    nominal: tuple[float, ...]
    """The boundary as a one-sided p-value: cross when the look's p is at or below it."""

    def level(self, n: int) -> float:
        """The nominal one-sided p a test with ``n`` seeds must reach (0 before the first
        look)."""
        if n < self.seeds[0]:
            return 0.0
        index = max(i for i, s in enumerate(self.seeds) if s <= n)
        return self.nominal[index]

    def describe(self) -> str:
        looks = ", ".join(f"n={s}: p<={p:.2g}" for s, p in zip(self.seeds, self.nominal))
        return (f"{self.spending} alpha spending over {len(self.seeds)} look(s), one-sided "
                f"alpha {self.alpha:g} ({looks})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DESIGN_DRAWS = 400_000
"""Null races simulated to place the boundaries (Monte Carlo error of the rate: about 0.0003)."""


@lru_cache(maxsize=256)
def group_sequential(seeds: tuple[int, ...], alpha: float,
                     spending: str = "obrien-fleming") -> SequentialDesign:
    """The boundaries for paired t-tests at looks with ``seeds`` (increasing) spending one-sided
    ``alpha``.

    The paired t statistics of one comparison at its looks have a joint law under no difference
    that does not depend on the noise's scale (normal paired differences), so it is simulated
    once, seeded: boundary ``c_k`` is placed so that the chance of first crossing at look ``k``
    is exactly the error that look spends, ``spent(t_k) - spent(t_{k-1})`` with ``t_k = n_k /
    n_K``. (The z-scale boundaries of the textbook, turned into t quantiles, exported an equal
    policy in 5.6-5.9 % of simulated races at 2-8 seeds: the t statistics of few seeds are less
    correlated than z.) ``z`` states each boundary on the z scale, ``nominal`` as the one-sided
    p-value the look's t-test must reach.
    """
    import numpy as np
    from scipy import stats

    seeds = tuple(int(s) for s in seeds)
    if not seeds or any(b <= a for a, b in zip(seeds, seeds[1:])) or seeds[0] < 2:
        raise ConfigError(f"looks at {list(seeds)} seeds: expected increasing counts from 2")
    if not 0 < alpha < 0.5:
        raise ConfigError(f"alpha {alpha}: expected a one-sided error between 0 and 0.5")
    last = seeds[-1]
    cumulative = [spent(s / last, alpha, spending) for s in seeds]
    cumulative[-1] = alpha  # the whole budget at the last look
    rng = np.random.default_rng(20_261_206)
    draws = rng.standard_normal((DESIGN_DRAWS, last))
    sums, squares = np.cumsum(draws, axis=1), np.cumsum(draws ** 2, axis=1)
    waiting = np.ones(DESIGN_DRAWS, dtype=bool)
    bounds: list[float] = []
    before = 0.0
    for k, n in enumerate(seeds):
        mean = sums[:, n - 1] / n
        var = np.maximum(squares[:, n - 1] - n * mean ** 2, 1e-300) / (n - 1)
        t = mean / np.sqrt(var / n)
        ranked = np.sort(t[waiting])[::-1]
        take = int(round((cumulative[k] - before) * DESIGN_DRAWS))
        c = float(ranked[take - 1]) if 0 < take <= len(ranked) else math.inf
        bounds.append(c)
        waiting &= t < c
        before = 1.0 - waiting.mean()
    nominal = tuple(float(stats.t.sf(c, n - 1)) if math.isfinite(c) else 0.0
                    for c, n in zip(bounds, seeds))
    z = tuple(float(stats.norm.isf(p)) if p > 0 else math.inf for p in nominal)
    return SequentialDesign(seeds, alpha, spending, tuple(cumulative), z, nominal)


def power(n: int, sd: float, effect: float, level: float) -> float:
    """Power of a one-sided paired t-test at nominal ``level`` with ``n`` seeds, when the
    paired differences have standard deviation ``sd`` and mean ``effect``."""
    from scipy import stats

    if n < 2 or level <= 0:
        return 0.0
    if sd <= 0:
        return 1.0 if effect > 0 else 0.0
    critical = stats.t.isf(level, n - 1)
    return float(stats.nct.sf(critical, n - 1, effect / (sd / math.sqrt(n))))


def seeds_for_power(sd: float, effect: float, level: float, target: float = 0.8,
                    most: int = 200) -> int | None:
    """The fewest seeds whose paired t-test at ``level`` detects ``effect`` with probability
    ``target``; ``None`` when even ``most`` seeds do not."""
    import numpy as np
    from scipy import stats

    if level <= 0:
        return None
    if sd <= 0:
        return 2 if effect > 0 else None
    n = np.arange(2, most + 1)
    reach = stats.nct.sf(stats.t.isf(level, n - 1), n - 1, effect / (sd / np.sqrt(n)))
    hits = np.flatnonzero(reach >= target)
    return int(n[hits[0]]) if hits.size else None


def detectable_gain(n: int, sd: float, level: float, target: float = 0.8) -> float:
    """The smallest mean gain that ``n`` paired seeds detect with probability ``target`` at
    ``level``: what a race that ends undecided could have seen. Power depends on the gain only
    through gain / sd, so this is ``sd`` times the gain detectable at unit spread."""
    if n < 2 or level <= 0:
        return math.inf
    if sd <= 0:
        return 0.0
    return sd * _unit_detectable_gain(n, level, target)


@lru_cache(maxsize=4096)
def _unit_detectable_gain(n: int, level: float, target: float) -> float:
    from scipy import optimize

    high = 1.0
    while power(n, 1.0, high, level) < target:
        high *= 2
        if high > 1e6:
            return math.inf
    return float(optimize.brentq(lambda e: power(n, 1.0, e, level) - target, 0.0, high,
                                 xtol=1e-6))


def pooled_paired_sd(differences: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The standard deviation of paired differences pooled over several pairs of policies
    (each a sequence over seeds), and its degrees of freedom."""
    total, dof = 0.0, 0
    for diffs in differences:
        d = [float(x) for x in diffs]
        if len(d) < 2:
            continue
        mean = sum(d) / len(d)
        total += sum((x - mean) ** 2 for x in d)
        dof += len(d) - 1
    return (math.sqrt(total / dof) if dof else math.nan), dof
