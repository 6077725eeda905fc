"""The statistics every decision uses: paired differences over seeds and rank agreement.

Policies are compared under common random numbers: at seed ``s`` every policy starts from the
same weights and sees the same batches, so the difference of two policies at one seed cancels
most of the seed noise. ``paired`` turns per-seed accuracies into a mean gain, its one-sided
lower bound (Student's t) and a p-value; ``rank_agreement`` measures whether a cheap proxy
orders policies as the target training does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from policysearch.errors import ConfigError


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation of one policy's accuracies over seeds."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    values = [float(v) for v in values]
    if not values:
        raise statistics.StatisticsError("summarize requires at least one value")
    mean = math.fsum(values) / len(values)
    std = (math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else 0.0)
    return Summary(mean, std, len(values))


@dataclass(frozen=True)
class PairedGain:
    """``a - b`` over the seeds both were trained with."""

    mean: float
    std: float
    n: int
    lower: float
    """One-sided lower confidence bound of the mean gain."""
    upper: float
    """One-sided upper confidence bound of the mean gain."""
    p_value: float
    """One-sided p-value of "a is no better than b"."""
    confidence: float
    seeds: tuple[int, ...]

    @property
    def half_width(self) -> float:
        return self.mean - self.lower

    def describe(self, unit: float = 100.0, suffix: str = " pts") -> str:
        """``+2.10 pts (95 % lower bound +0.40, n=5, p=0.02)``."""
        level = f"{100 * self.confidence:.3g}"
        return (f"{unit * self.mean:+.2f}{suffix} ({level} % lower bound "
                f"{unit * self.lower:+.2f}{suffix}, n={self.n}, p={self.p_value:.3g})")


@lru_cache(maxsize=4096)
def t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(confidence, dof))


def t_sf(statistic: float, dof: int) -> float:
    """Student's t survival function: ``scipy.stats.t.sf`` by the special function it is
    built on (``stdtr``), without the per-call overhead of the distribution object."""
    from scipy import special

    return float(special.stdtr(dof, -statistic))


def paired(a: Mapping[int, float], b: Mapping[int, float],
           confidence: float = 0.95) -> PairedGain:
    """The paired gain of ``a`` over ``b`` (accuracy by seed) on their common seeds.

    Fewer than two common seeds give no interval: that is a configuration error here, since
    every caller asks for at least two.
    """
    seeds = tuple(sorted(set(a) & set(b)))
    if len(seeds) < 2:
        raise ConfigError(f"a paired comparison needs at least 2 common seeds, got {len(seeds)}")
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=float)
    n = len(diffs)
    mean = float(diffs.mean())
    std = float(diffs.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    p = t_sf(mean / (std / math.sqrt(n)), n - 1) if std > 0 else (0.0 if mean > 0 else 1.0)
    return PairedGain(mean, std, n, mean - half, mean + half, p, confidence, seeds)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    return float(stats.spearmanr(x, y).statistic)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    return float(stats.kendalltau(x, y).statistic)


@dataclass(frozen=True)
class RankAgreement:
    spearman: float
    kendall: float
    spearman_interval: tuple[float, float]
    kendall_interval: tuple[float, float]
    level: float


def rank_agreement(proxy: Sequence[Sequence[float]], target: Sequence[Sequence[float]], *,
                   level: float = 0.90, resamples: int = 2000, seed: int = 0) -> RankAgreement:
    """Rank correlation of the per-policy means, with a seed-resampling range.

    ``proxy[i]`` and ``target[i]`` are policy i's accuracies over seeds at each budget. The
    bootstrap resamples the seeds of every policy at both budgets, so the range reflects
    the seed noise of the means being ranked.
    """
    if len(proxy) != len(target) or len(proxy) < 3:
        raise ConfigError("rank agreement needs the same 3 or more policies at both budgets")
    pm = [float(np.mean(v)) for v in proxy]
    tm = [float(np.mean(v)) for v in target]
    rng = np.random.default_rng(seed)
    ps, ts = [], []
    for _ in range(resamples):
        ps.append([float(np.mean(rng.choice(v, len(v)))) for v in proxy])
        ts.append([float(np.mean(rng.choice(v, len(v)))) for v in target])
    p_all, t_all = np.array(ps), np.array(ts)
    keep = (np.ptp(p_all, axis=1) > 0) & (np.ptp(t_all, axis=1) > 0)
    rho = _spearman_rows(p_all[keep], t_all[keep]).tolist()
    tau = _kendall_rows(p_all[keep], t_all[keep]).tolist()
    tail = (1 - level) / 2

    def interval(values: list[float]) -> tuple[float, float]:
        if not values:
            return (float("nan"), float("nan"))
        return (float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)))

    return RankAgreement(spearman(pm, tm), kendall(pm, tm), interval(rho), interval(tau), level)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of every row pair (average ranks for ties), as scipy computes it."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    return (rx * ry).sum(axis=1) / np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of every row pair, as scipy's ``kendalltau`` computes it."""
    i, j = np.triu_indices(x.shape[1], k=1)
    dx, dy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    concordance = (dx * dy).sum(axis=1)
    return concordance / np.sqrt((dx != 0).sum(axis=1) * (dy != 0).sum(axis=1))


def pooled_std(per_policy: Sequence[dict[int, float]]) -> float:
    """The seed standard deviation pooled over policies: sqrt of the mean per-policy variance."""
    variances = [summarize(list(v.values())).std ** 2 for v in per_policy if len(v) > 1]
    return math.sqrt(sum(variances) / len(variances)) if variances else math.nan


@dataclass(frozen=True)
class PairedRatio:
    """The ratio of two paired measurements (a / b), the geometric mean of the per-pair ratios,
    with its two-sided t interval (on the log scale, where a ratio's noise is symmetric)."""

    ratio: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def pairs_for(self, width: float) -> int:
        """Pairs that would bring the interval's width to ``width`` (the noise as measured)."""
        return self.n if self.width <= width else math.ceil(self.n * (self.width / width) ** 2)

    def describe(self) -> str:
        return (f"{self.ratio:.3f}x ({100 * self.confidence:g} % interval {self.low:.3f}-"
                f"{self.high:.3f}, width {self.width:.3f}, n={self.n} pairs)")


def paired_ratio(a: Sequence[float], b: Sequence[float],
                 confidence: float = 0.95) -> PairedRatio:
    """``a[i] / b[i]`` over pairs measured side by side (interleaved runs), as one ratio with
    its interval: the t interval of the mean log ratio, exponentiated."""
    logs = np.log(np.asarray(a, dtype=float) / np.asarray(b, dtype=float))
    n = len(logs)
    mean = float(logs.mean())
    if n < 2:
        return PairedRatio(math.exp(mean), float("nan"), float("nan"), n, confidence)
    half = t_quantile(0.5 + confidence / 2, n - 1) * float(logs.std(ddof=1)) / math.sqrt(n)
    return PairedRatio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n,
                       confidence)
