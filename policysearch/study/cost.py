"""What a proxy run costs against a target run: seconds measured on one machine, else an estimate.

Run seconds compare only when the runs were timed on the same CPU: a resumed ``calibrate`` or a
``fidelity`` that borrows a calibration's runs may hold proxy runs of one machine and target runs
of another (a CPU twice as slow doubles every second). ``one_machine`` keeps the runs that
compare; when none do, the ratio is not measured and the machine-free estimate (images x epochs
x width, against the target's) stands in for it, marked as such wherever it is shown.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def one_machine(proxy: Sequence[dict[str, Any]], target: Sequence[dict[str, Any]]
                ) -> tuple[list[float], list[float]]:
    """The finite seconds of the ``proxy`` and ``target`` runs that compare: all of them when both
    sides name the same CPUs (or none: runs saved before CPUs were recorded), else those on a
    CPU both sides ran on; none when they share no CPU."""
    cpus = [{r.get("cpu") for r in runs} for runs in (proxy, target)]
    if cpus[0] != cpus[1]:
        common = sorted((cpus[0] & cpus[1]) - {None})
        if not common:
            return [], []
        proxy = [r for r in proxy if r.get("cpu") == common[0]]
        target = [r for r in target if r.get("cpu") == common[0]]
    return [_finite(r) for r in proxy if _ok(r)], [_finite(r) for r in target if _ok(r)]


def ratios(proxy: Sequence[dict[str, Any]], target: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and median seconds a run on one machine and their ratios (NaN when not measured on
    one machine), and whether the two sides were timed apart."""
    p, t = one_machine(proxy, target)
    apart = not (p and t) and bool([r for r in proxy if _ok(r)] and [r for r in target if _ok(r)])
    mean = {"proxy": _avg(statistics.fmean, p), "target": _avg(statistics.fmean, t)}
    median = {"proxy": _avg(statistics.median, p), "target": _avg(statistics.median, t)}
    return {"seconds_per_run": mean, "median_seconds_per_run": median,
            "cost_ratio": _div(mean), "cost_ratio_median": _div(median),
            "cost_timed_apart": apart}


def estimate(proxy_size: int | None, proxy_trainer: dict[str, Any], target_size: int,
             target_trainer: dict[str, Any], side: int | None = None) -> float:
    """A proxy run's cost in target runs from its budget alone: images x epochs x width x
    pixels fractions (``proxy_size`` None: all the target's images; the pixels compare the
    sides the networks see, ``model.input_size`` or the images' ``side``)."""
    images = (proxy_size or target_size) / target_size
    epochs = proxy_trainer["epochs"] / target_trainer["epochs"]
    width = sum(proxy_trainer["model"]["widths"]) / sum(target_trainer["model"]["widths"])
    seen = [t["model"].get("input_size") or side for t in (proxy_trainer, target_trainer)]
    pixels = (seen[0] / seen[1]) ** 2 if seen[0] and seen[1] else 1.0
    return images * epochs * width * pixels


def measured(analysis: dict[str, Any]) -> float | None:
    """The cost ratio timed on one machine (median seconds where known), or None."""
    ratio = analysis.get("cost_ratio_median", analysis.get("cost_ratio"))
    return float(ratio) if ratio is not None and math.isfinite(ratio) else None


def cost_text(analysis: dict[str, Any], *, seconds: bool = False, short: bool = False) -> str:
    """The median cost ratio as shown everywhere: ``0.48``, or ``~0.50 (estimated: ...)`` when
    the runs were not timed on one machine; with ``seconds``, the medians beside it; with
    ``short``, the figure alone (``0.48``, ``~0.50``, ``not measured``)."""
    ratio = measured(analysis)
    if ratio is not None:
        if not seconds or short:
            return f"{ratio:.2f}"
        med = analysis.get("median_seconds_per_run") or {}
        p, t = med.get("proxy", math.nan), med.get("target", math.nan)
        return f"{ratio:.2f} ({p:.0f} s / {t:.0f} s)"
    guess = analysis.get("cost_estimate")
    why = "the proxy's runs and the target's were timed on different machines"
    if guess is None:
        return "not measured" if short else f"not measured ({why})"
    if short:
        return f"~{guess:.2f}"
    return f"~{guess:.2f} (estimated from images x epochs x width: {why})"


def decisive(analysis: dict[str, Any]) -> float:
    """The cost a rule compares: the measured median ratio, else the estimate, else NaN."""
    ratio = measured(analysis)
    if ratio is not None:
        return ratio
    guess = analysis.get("cost_estimate")
    return math.nan if guess is None else float(guess)


def _ok(run: dict[str, Any]) -> bool:
    return math.isfinite(_finite(run))


def _finite(run: dict[str, Any]) -> float:
    try:
        return float(run["seconds"])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _avg(fn: Any, values: list[float]) -> float:
    return fn(values) if values else math.nan


def _div(pair: dict[str, float]) -> float:
    p, t = pair["proxy"], pair["target"]
    return p / t if math.isfinite(p) and math.isfinite(t) and t else math.nan
