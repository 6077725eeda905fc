"""The ranking agreement at every rung: is a trial's accuracy at epoch e a faithful guide?

The pruner stops a trial on its validation accuracy at a rung (an epoch where the proxy
validates: every ``trainer.validate_every`` epochs), so what must agree with the target is the
proxy's accuracy *at that epoch* against the target's *final* accuracy. And a trial is one run at
one seed, so the agreement that a pruning decision rests on is the single-seed one: the panel's
proxy accuracies at epoch e at one seed, ranked against the target's seed means. The rank
correlation of the seed means is given beside it; it is higher (the means average the noise a
single trial carries) and would overstate what the pruner sees.

Pure functions of the fidelity runs; nothing here trains.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from policysearch.evidence.stats import kendall, rank_agreement, spearman

Curve = Mapping[int, float]
"""Validation accuracy by epoch of one run."""


def run_curve(run: Mapping[str, Any]) -> dict[int, float]:
    """A fidelity run's curve with integer epochs; a diverged run scores its (chance) accuracy
    at every epoch, as it does at the end."""
    curve = run.get("curve") or {}
    return {int(epoch): float(value) for epoch, value in curve.items()}


def rung_agreement(proxy: Sequence[Mapping[int, Curve]], target: Sequence[Mapping[int, float]],
                   *, level: float = 0.90, fallback: Sequence[Mapping[int, float]] | None = None
                   ) -> list[dict[str, Any]]:
    """The agreement at every epoch every proxy run validated at, sorted by epoch.

    ``proxy[i][seed]`` is policy i's proxy curve at ``seed``; ``target[i][seed]`` its final
    target accuracy. ``fallback[i][seed]``, when given, is the value a run without a curve
    scores at every epoch (a diverged run: chance). Each rung holds:

    - ``pruning_spearman``: the mean over seeds of the single-seed Spearman (what the bar of
      ``search.prune_min_spearman`` is checked against), with ``single_seed_spearman`` (one per
      seed, their spread is how uncertain it is) and the same for Kendall;
    - ``spearman`` and ``kendall`` of the seed means, with their seed-resampling ranges
      (``spearman_interval``, ``kendall_interval`` at ``interval_level``).
    """
    if len(proxy) != len(target) or len(proxy) < 3:
        return []
    seeds = sorted(set.intersection(*(set(p) for p in proxy), *(set(t) for t in target)))
    if not seeds:
        return []

    def value(i: int, seed: int, epoch: int) -> float | None:
        curve = proxy[i][seed]
        if epoch in curve:
            return float(curve[epoch])
        if not curve and fallback is not None and seed in fallback[i]:
            return float(fallback[i][seed])
        return None

    epochs = sorted({e for p in proxy for s in seeds for e in p[s]})
    target_means = [statistics.fmean(target[i][s] for s in seeds) for i in range(len(target))]
    last = max(epochs, default=None)
    rungs = []
    for epoch in epochs:
        table = [[value(i, s, epoch) for s in seeds] for i in range(len(proxy))]
        if any(v is None for row in table for v in row):
            continue  # not every run validated here: no measurement at this epoch
        values: list[list[float]] = [[float(v) for v in row if v is not None] for row in table]
        by_seed_rho = [_finite(spearman([row[j] for row in values], target_means))
                       for j in range(len(seeds))]
        by_seed_tau = [_finite(kendall([row[j] for row in values], target_means))
                       for j in range(len(seeds))]
        means = rank_agreement(values, [[target[i][s] for s in seeds] for i in range(len(target))],
                               level=level)
        rungs.append({
            "epoch": epoch, "final": epoch == last, "seeds": list(seeds),
            "pruning_spearman": statistics.fmean(by_seed_rho),
            "single_seed_spearman": by_seed_rho,
            "pruning_kendall": statistics.fmean(by_seed_tau),
            "single_seed_kendall": by_seed_tau,
            "spearman": means.spearman, "kendall": means.kendall,
            "spearman_interval": list(means.spearman_interval),
            "kendall_interval": list(means.kendall_interval),
            "interval_level": means.level,
        })
    return rungs


def _finite(value: float) -> float:
    """A correlation with a constant side is undefined (NaN): it carries no ranking, so 0."""
    return value if math.isfinite(value) else 0.0
