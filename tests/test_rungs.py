"""Pruning only where it is measured to be faithful: the rung agreement of a fidelity run set,
the plan the search derives from it, and the pruner on a real Optuna study."""

from __future__ import annotations

import optuna
import pytest

from policysearch.config.samplers import prune_plan, rung_pruner
from policysearch.evidence.fidelity import analyse, build_panel
from policysearch.evidence.rungs import rung_agreement

PANEL = ["crop_flip", "RA(1,5)", "RA(2,9)", "TA"]
TARGET = [0.50, 0.53, 0.56, 0.59]
"""Target accuracy of the panel's policies, in panel order: the last is the best."""


def synthetic_runs() -> list[dict]:
    """Three seeds. At epoch 50 each seed ranks the panel differently (seed 1 backwards), while
    the seed means keep the target's order; at epoch 100 every seed agrees with the target."""
    early = {1: [0.40, 0.39, 0.38, 0.37], 2: [0.30, 0.34, 0.38, 0.46], 3: [0.30, 0.35, 0.40, 0.45]}
    runs = []
    for i, entry in enumerate(build_panel(PANEL)):
        for seed in (1, 2, 3):
            final = TARGET[i] - 0.05 + 0.001 * seed
            runs.append({"policy": entry.name, "key": entry.policy.key(), "budget": "proxy",
                         "seed": seed, "accuracy": final, "seconds": 10.0,
                         "curve": {"50": early[seed][i], "100": final}})
            runs.append({"policy": entry.name, "key": entry.policy.key(), "budget": "target",
                         "seed": seed, "accuracy": TARGET[i] + 0.002 * seed, "seconds": 50.0,
                         "curve": {"150": TARGET[i] + 0.002 * seed}})
    return runs


def test_every_rung_is_scored_by_single_seed_agreement_with_the_target() -> None:
    analysis = analyse(build_panel(PANEL), synthetic_runs(), [1, 2, 3])
    rungs = {r["epoch"]: r for r in analysis["rungs"]}
    assert sorted(rungs) == [50, 100]
    early, end = rungs[50], rungs[100]
    assert early["single_seed_spearman"] == pytest.approx([-1.0, 1.0, 1.0])
    assert early["pruning_spearman"] == pytest.approx(1 / 3)
    assert early["single_seed_kendall"] == pytest.approx([-1.0, 1.0, 1.0])
    # the seed means rank perfectly: they would overstate what a single trial shows
    assert early["spearman"] == pytest.approx(1.0)
    assert early["spearman_interval"][0] <= early["spearman_interval"][1] <= 1.0
    assert not early["final"] and end["final"]
    assert end["pruning_spearman"] == pytest.approx(1.0)
    # the last rung is the proxy's final accuracy: the same agreement as the whole report
    assert end["spearman"] == pytest.approx(analysis["spearman"])


def test_a_diverged_run_scores_its_chance_accuracy_at_every_rung() -> None:
    curves = [{1: {5: 0.3, 10: 0.4}, 2: {5: 0.3, 10: 0.4}},
              {1: {}, 2: {}},  # diverged: no curve
              {1: {5: 0.5, 10: 0.6}, 2: {5: 0.5, 10: 0.6}}]
    target = [{1: 0.5, 2: 0.5}, {1: 0.1, 2: 0.1}, {1: 0.7, 2: 0.7}]
    fallback = [{1: 0.4, 2: 0.4}, {1: 0.1, 2: 0.1}, {1: 0.6, 2: 0.6}]
    rungs = rung_agreement(curves, target, fallback=fallback)
    assert [r["epoch"] for r in rungs] == [5, 10]
    assert all(r["pruning_spearman"] == pytest.approx(1.0) for r in rungs)
    # a rung not every run validated at is no measurement
    curves[0][1] = {10: 0.4}
    assert [r["epoch"] for r in rung_agreement(curves, target, fallback=fallback)] == [10]


def test_the_plan_prunes_only_at_rungs_that_clear_the_bar() -> None:
    rungs = [{"epoch": 25, "pruning_spearman": 0.41}, {"epoch": 50, "pruning_spearman": 0.86},
             {"epoch": 75, "pruning_spearman": 0.93}, {"epoch": 100, "pruning_spearman": 0.95}]
    plan = prune_plan("hyperband", 100, 25, 0.8, rungs, "cifar10")
    assert plan.steps == (50, 75)  # never the last epoch: a finished trial is not pruned
    assert "epoch 50 (+0.86), 75 (+0.93) only" in plan.reason
    assert "not at 25 (+0.41)" in plan.reason and "search.prune_min_spearman" in plan.reason
    strict = prune_plan("median", 100, 25, 0.95, rungs)
    assert strict.steps == () and "at no rung" in strict.reason


def test_without_a_measurement_nothing_is_pruned_and_the_plan_says_so() -> None:
    plan = prune_plan("hyperband", 100, 50, 0.8, None, "cifar10")
    assert plan.steps == ()
    assert "no fidelity measurement" in plan.reason
    assert "policysearch fidelity cifar10" in plan.reason
    assert prune_plan("none", 100, 50, 0.8, [{"epoch": 50, "pruning_spearman": 1.0}]).steps == ()
    assert isinstance(rung_pruner("hyperband", (), 100), optuna.pruners.NopPruner)


@pytest.mark.parametrize("name", ["median", "hyperband"])
def test_the_pruner_stops_trials_only_at_allowed_rungs(name: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=rung_pruner(name, (2,), 4),
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def run(level: float) -> list[int]:
        """Report ``level`` at epochs 1..4; the epochs at which the pruner said stop."""
        trial = study.ask()
        asked = []
        for epoch in range(1, 5):
            trial.report(level, epoch)
            if trial.should_prune():
                asked.append(epoch)
        study.tell(trial, level)
        return asked

    for level in (0.9, 0.8, 0.85, 0.95, 0.7, 0.88):
        run(level)
    verdict = run(0.1)  # far below every other trial at every epoch
    assert verdict == [2], verdict
    nothing = optuna.create_study(direction="maximize", pruner=rung_pruner(name, (), 4))
    for level in (0.9, 0.8, 0.85, 0.1):
        trial = nothing.ask()
        for epoch in range(1, 5):
            trial.report(level, epoch)
            assert not trial.should_prune()
        nothing.tell(trial, level)
