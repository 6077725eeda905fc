"""Samplers and pruners by name: the one table the config, the CLI and the study all read."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def _tpe(seed: int | None) -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate/group are marked experimental
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed,
                                          constant_liar=True, n_startup_trials=8)


DRAW = "ps.draw"
"""The trial user attribute of the random sampler's draw: the ordinal of a searched proposal in
its study (0, 1, ...), kept by the trial's retries."""


def _random(seed: int | None) -> Any:
    import optuna

    class DrawSampler(optuna.samplers.RandomSampler):
        """Random search that reproduces across workers and restarts.

        The k-th searched proposal of a study is drawn from ``(seed, k, parameter name)``
        alone, whichever process draws it and whenever: ``k`` is numbered when the trial is
        asked (under the study's lock), and a retried trial keeps its draw. So a search that
        lost a worker, or was stopped and resumed, proposes the same policies as one that was
        not. Without a seed it is Optuna's random sampler."""

        def __init__(self, seed: int | None) -> None:
            super().__init__(seed=seed)
            self.seed = seed
            self.draws: dict[int, int] = {}

        def before_trial(self, study: Any, trial: Any) -> None:
            draw = trial.user_attrs.get(DRAW)
            if draw is None and self.seed is not None and "fixed_params" not in \
                    trial.system_attrs and not trial.params:
                draws = [t.user_attrs.get(DRAW) for t in study.get_trials(deepcopy=False)]
                draw = 1 + max((d for d in draws if d is not None), default=-1)
                study._storage.set_trial_user_attr(trial._trial_id, DRAW, draw)
            if draw is not None:
                self.draws[trial._trial_id] = int(draw)

        def sample_independent(self, study: Any, trial: Any, param_name: str,
                               param_distribution: Any) -> Any:
            import zlib

            import numpy as np
            from optuna._transform import _SearchSpaceTransform

            draw = self.draws.get(trial._trial_id, trial.user_attrs.get(DRAW))
            if draw is None or self.seed is None:
                return super().sample_independent(study, trial, param_name, param_distribution)
            rng = np.random.RandomState([self.seed, int(draw), zlib.crc32(param_name.encode())])
            space = _SearchSpaceTransform({param_name: param_distribution})
            return space.untransform(rng.uniform(space.bounds[:, 0],
                                                 space.bounds[:, 1]))[param_name]

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.draws.pop(trial._trial_id, None)

    return DrawSampler(seed)


def _qmc(seed: int | None) -> Any:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


def _hyperband(first: int, epochs: int) -> Any:
    import optuna

    # steps are epochs counted from 1; the first report comes after ``first`` epochs
    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=max(epochs, first),
                                          reduction_factor=3)


def _median(first: int, epochs: int) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def _nop(first: int, epochs: int) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


SAMPLERS: dict[str, Callable[[int | None], Any]] = {"tpe": _tpe, "random": _random, "qmc": _qmc}
"""Sampler name -> factory(seed). The config, the CLI and ``open_study`` all read this table."""
REPRODUCIBLE = frozenset({"random"})
"""Samplers whose proposals are a function of the study's seed: every process (workers,
resumes) gets that seed. The others get it only in the process that creates the study (a
restarted TPE seeded alike would propose again what ran)."""
PRUNERS: dict[str, Callable[[int, int], Any]] = {"hyperband": _hyperband, "median": _median,
                                                 "none": _nop}
"""Pruner name -> factory(first validated epoch, epochs)."""


DEFAULT_PRUNE_MIN_SPEARMAN = 0.8
"""The single-seed Spearman a rung must reach for the pruner to stop trials there."""


class RungPruner:
    """A pruner that may stop a trial only at the allowed steps (the faithful rungs).

    Every value is still reported (the view draws the curves); at any other step the wrapped
    pruner is not even asked, so it keeps no rung there."""

    def __init__(self, inner: Any, steps: tuple[int, ...]) -> None:
        self.inner = inner
        self.steps = frozenset(steps)

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step is None or step not in self.steps:
            return False
        return bool(self.inner.prune(study, trial))


def rung_pruner(name: str, steps: Sequence[int], epochs: int) -> Any:
    """The pruner ``name``, allowed to prune only at ``steps``; Optuna's NopPruner without any."""
    import optuna

    allowed = tuple(sorted(int(s) for s in steps if 0 < int(s) < epochs))
    if name == "none" or not allowed:
        return optuna.pruners.NopPruner()
    return RungPruner(PRUNERS[name](allowed[0], epochs), allowed)


@dataclass(frozen=True)
class PrunePlan:
    """Where the search may prune, and the sentence that says why."""

    steps: tuple[int, ...]
    reason: str


def prune_plan(pruner: str, epochs: int, validate_every: int, bar: float,
               rungs: Sequence[dict[str, Any]] | None, source: str = "") -> PrunePlan:
    """Allow pruning at the rungs (validation epochs before the last) whose measured single-seed
    Spearman reaches ``bar``; none without a measurement of this very proxy and target.

    ``rungs`` is ``analysis["rungs"]`` of ``policysearch fidelity`` (see
    ``policysearch.evidence.rungs``), or ``None`` when no measurement matches the config.
    """
    validated = list(range(validate_every, epochs, validate_every))
    if pruner == "none":
        return PrunePlan((), "pruning: off (search.pruner: none); every trial runs all "
                             f"{epochs} epochs")
    if not validated:
        return PrunePlan((), f"pruning: none; the proxy validates only after its last epoch "
                             f"(trainer.validate_every {validate_every} >= epochs {epochs})")
    if rungs is None:
        return PrunePlan((), f"pruning: none; no fidelity measurement of this proxy and target "
                             f"says a trial's accuracy at epoch(s) "
                             f"{', '.join(map(str, validated))} ranks policies as the target does "
                             f"(run `policysearch fidelity {source or 'EXPERIMENT'}` to measure "
                             "it); every trial runs all its epochs")
    measured = {int(r["epoch"]): float(r["pruning_spearman"]) for r in rungs}
    allowed = tuple(e for e in validated if measured.get(e, float("-inf")) >= bar)

    def told(epochs_: Sequence[int]) -> str:
        return ", ".join(f"{e} ({measured[e]:+.2f})" if e in measured else f"{e} (not measured)"
                         for e in epochs_)

    refused = [e for e in validated if e not in allowed]
    if not allowed:
        return PrunePlan((), f"pruning: none; at no rung does the measured single-seed Spearman "
                             f"reach {bar} (search.prune_min_spearman): epoch {told(refused)}; "
                             "every trial runs all its epochs")
    rest = f"; not at {told(refused)}, below it" if refused else ""
    return PrunePlan(allowed, f"pruning ({pruner}) at epoch {told(allowed)} only: the measured "
                              f"single-seed Spearman there reaches {bar} "
                              f"(search.prune_min_spearman){rest}")
