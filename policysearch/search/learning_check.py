"""Before any searched trial: does the search's crop+flip training learn?

The crop+flip baseline is the study's first trial; it runs here, in the search's own process,
before any worker starts, and its accuracy on the search-validation split must clear the bar
of ``policysearch.evidence.learning``. Other baselines queued before it run too (they are
trials of the study anyway); no searched trial runs before the check. The target budget is
checked too where that is free or cheap: when it trains exactly as the proxy does, the proxy's
result stands for it; when a crop+flip training at the target costs at most
``TARGET_CHECK_COST`` proxy trials, it is trained once here (same seed, same split).

``search.learning_check``: ``stop`` (the default) ends the search in one line naming what to
change; ``warn`` (``--smoke``: a smoke budget checks the plumbing, not the decision) says the
same and goes on; ``off`` skips the check.
"""

from __future__ import annotations

from typing import Any

from policysearch.errors import PolicySearchError
from policysearch.evidence.learning import LearningBar, learning_bar
from policysearch.policy.baselines import BASELINES
from policysearch.study.record import queued_baseline

REFERENCE = "crop_flip"
TARGET_CHECK_COST = 3.0
"""The target is trained here when its crop+flip run costs at most this many proxy trials."""


class BudgetCannotLearn(PolicySearchError):
    """The search's crop+flip training stays near chance: the budget cannot rank policies."""

    def __init__(self, message: str, handle: Any = None) -> None:
        super().__init__(message)
        self.handle = handle

    def remove_study(self) -> None:
        """Delete the study this search created (it holds only baselines), so the same
        command with another budget starts afresh; called once its MLflow run is ended."""
        if self.handle is not None:
            import optuna

            optuna.delete_study(study_name=self.handle.name, storage=self.handle.study._storage)


def check_learning(handle: Any, runner: Any, deadline: float | None, log: Any) -> None:
    """Run the study's trials up to its crop+flip baseline, then check it learned."""
    exp = handle.experiment
    mode = exp.search.learning_check
    if mode == "off":
        return
    splits = runner.splits
    bar = learning_bar(splits.val.y)
    proxy = _reference_accuracy(handle, runner, deadline)
    if proxy is None:
        log("learning check: the crop+flip baseline has no result (it failed, see above, or "
            "the time budget ran out); not checked")
        return
    problems = []
    target_text = ""
    if not bar.clears(proxy):
        problems.append(f"the proxy's crop+flip training reaches {100 * proxy:.1f} % on the "
                        f"search-validation split ({_budget(runner, 'proxy')}); "
                        + bar.describe())
    else:  # the target only when the proxy learns: the proxy's problem comes first
        target_text, target_problem = _check_target(handle, runner, bar)
        if target_problem:
            problems.append(target_problem)
    if not problems:
        log(f"learning check: crop+flip reaches {100 * proxy:.1f} % on the search-validation "
            f"split, above the bar of {100 * bar.bar:.1f} % (chance {100 * bar.chance:.1f} %, "
            f"{bar.n} images); {target_text}")
        return
    message = "this budget cannot tell policies apart: " + "; ".join(problems)
    if not bar.clears(proxy):
        message += "; " + advice(exp, runner)
    if mode == "warn":
        log(f"warning: {message} (search.learning_check: warn, as under --smoke: going on)")
        return
    removable = handle.created and not _searched_trials(handle.study)
    if removable:
        message += " (the study held only baselines and is removed)"
    raise BudgetCannotLearn(message, handle if removable else None)


def _reference_accuracy(handle: Any, runner: Any, deadline: float | None) -> float | None:
    """The crop+flip baseline's validation accuracy: from the study if it ran, else by running
    the queued trials up to it here, else (not a baseline of this study) by training it;
    ``None`` when it failed."""
    import time

    study = handle.study
    while True:
        trials = [t for t in study.get_trials(deepcopy=False)
                  if queued_baseline(t) == REFERENCE]
        states = {t.state.name for t in trials}
        if "COMPLETE" in states:
            return next(t.value for t in trials if t.state.name == "COMPLETE")
        if "WAITING" in states:
            if runner.run(deadline, at_most=1) == 0:
                return None  # the time budget is spent
        elif "RUNNING" in states:  # another worker has it: wait (a dead one's is retried)
            runner.reap()
            time.sleep(1.0)
        elif trials:
            return None  # it failed: the trial says why
        else:
            break
    result = runner.trainer.train(BASELINES[REFERENCE], runner.splits.proxy, runner.splits.val,
                                  runner.seed)
    return result.final_accuracy


def _searched_trials(study: Any) -> bool:
    return any(not queued_baseline(t) for t in study.get_trials(deepcopy=False))


def _check_target(handle: Any, runner: Any, bar: LearningBar) -> tuple[str, str | None]:
    """(what was said about the target, its problem or ``None``)."""
    exp = handle.experiment
    splits = runner.splits
    same = (exp.proxy_budget.trainer == exp.target_budget.trainer
            and len(splits.proxy) == len(splits.target))
    if same:
        return "the target trains as the proxy does, so it learns too", None
    cost = _cost(exp, splits, "target") / max(_cost(exp, splits, "proxy"), 1)
    other_model = exp.proxy_budget.trainer.model != exp.target_budget.trainer.model
    if other_model or cost > TARGET_CHECK_COST:
        why = "another model" if other_model else f"a run costs about {cost:.0f} proxy trials"
        return (f"the target ({_budget(runner, 'target')}) is not trained here ({why}); "
                "`policysearch validate` trains it"), None
    from policysearch.training.trainer import trainer_for

    trainer = trainer_for(exp, "target", splits)
    accuracy = trainer.train(BASELINES[REFERENCE], splits.target, splits.val,
                             runner.seed).final_accuracy
    if bar.clears(accuracy):
        return f"at the target budget it reaches {100 * accuracy:.1f} %", None
    return "", (f"at the target budget ({_budget(runner, 'target')}) crop+flip reaches "
                f"{100 * accuracy:.1f} %, below the bar of {100 * bar.bar:.1f} %: raise the "
                "target's budget (target.trainer.epochs, target.train_size in an experiment "
                "file)")


def _cost(exp: Any, splits: Any, name: str) -> float:
    return len(splits.training(name)) * exp.budget(name).trainer.epochs


def _budget(runner: Any, name: str) -> str:
    from policysearch.config.auto import resolve_batch_size

    exp = runner.experiment
    trainer = exp.budget(name).trainer
    images = len(runner.splits.training(name))
    batch = resolve_batch_size(trainer.batch_size, images)
    return f"{images} images x {trainer.epochs} epochs, batch {batch}"


def advice(exp: Any, runner: Any) -> str:
    """What to change, in flags of `policysearch search`."""
    from policysearch.config.auto import resolve_batch_size

    trainer = exp.trainer
    images = len(runner.splits.proxy)
    batch = resolve_batch_size(trainer.batch_size, images)
    steps = -(-images // batch)
    hints = [f"more epochs (--epochs {max(2 * trainer.epochs, 10)}; now {trainer.epochs})"]
    if images < len(runner.splits.target):
        hints.append(f"more proxy images (--train-size up to {len(runner.splits.target)}; now "
                     f"{images})")
    if steps < 8 and batch > 16:
        hints.append(f"a smaller batch (--batch-size {max(16, batch // 4)}; now {batch}, "
                     f"{steps} step(s) an epoch)")
    hints.append("or check the labels (does each class folder hold that class?)")
    return ("raise the budget: " + ", ".join(hints)
            + ", then run the search again; `policysearch fidelity` measures whether a budget "
              "ranks policies as the target does")
