"""Samplers and pruners by name: the one table the config, the CLI and the study all read."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def _tpe(seed: int | None) -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate/group are marked experimental
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed,
                                          constant_liar=True, n_startup_trials=8)


def _random(seed: int | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


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
PRUNERS: dict[str, Callable[[int, int], Any]] = {"hyperband": _hyperband, "median": _median,
                                                 "none": _nop}
"""Pruner name -> factory(first validated epoch, epochs)."""
