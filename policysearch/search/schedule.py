"""The schedule a new dataset gets when nobody gave one: the epochs at which crop+flip stops
improving.

The built-in defaults (a dataset with no experiment file and no ``--epochs``) cannot know how
long a model must train on data the tool has never seen: too short, and every policy scores near
chance, so the search cannot tell them apart (and says so too late). So before a new study is
created, crop+flip trains on the target's images at a doubling ladder of epochs (``LADDER``),
each a full schedule (warmup and decay fitted to it), and is scored on the search-validation
split. The first rung whose doubling adds less than ``STILL_IMPROVING`` is the target's
schedule (the proxy trains it too: no proxy has been measured on this data); a ladder still
improving at its top rung takes the top rung and says so. The choice and every rung's accuracy
are stated in the search's first lines, and recorded in the study, so a resume or a joining
worker takes the same schedule without training the ladder again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policysearch.config.experiment import Experiment, with_overrides

LADDER = (8, 16, 32, 64, 128)
"""Epochs tried, shortest first."""
STILL_IMPROVING = 0.01
"""Accuracy a doubling must add (on the search-validation split) for the ladder to go on."""


@dataclass
class Schedule:
    epochs: int
    accuracy: dict[int, float] = field(default_factory=dict)
    """Crop+flip's search-validation accuracy at each rung trained."""
    reason: str = ""

    def sentence(self, images: int) -> str:
        rungs = ", ".join(f"{100 * a:.1f} % at {e}" for e, a in self.accuracy.items())
        return (f"epochs: none given for this dataset, so crop+flip trained on the target's "
                f"{images} images and reached {rungs} epochs (search-validation split): "
                f"{self.reason}; "
                f"the target and the proxy train {self.epochs} epochs (give --epochs to choose)")


def choose_epochs(train: Callable[[int], float], ladder: tuple[int, ...] = LADDER,
                  still_improving: float = STILL_IMPROVING) -> Schedule:
    """``train(epochs)`` is crop+flip's search-validation accuracy after that many epochs."""
    schedule = Schedule(ladder[0])
    previous: int | None = None
    for epochs in ladder:
        schedule.accuracy[epochs] = train(epochs)
        if previous is not None:
            gain = schedule.accuracy[epochs] - schedule.accuracy[previous]
            if gain < still_improving:
                schedule.epochs = previous
                schedule.reason = (f"doubling {previous} to {epochs} added {100 * gain:+.1f} "
                                   f"pts, under {100 * still_improving:.0f}")
                return schedule
        previous = epochs
    schedule.epochs = ladder[-1]
    schedule.reason = (f"still improving at {ladder[-1]} epochs, the ladder's top "
                       "(more epochs may pay: give --epochs)")
    return schedule


def schedule_for(experiment: Experiment, splits: Any, log: Callable[[str], None]
                 ) -> Experiment:
    """``experiment`` with the ladder's epochs for the proxy and the target (see above)."""
    from policysearch.policy.baselines import BASELINES
    from policysearch.training import interrupts
    from policysearch.training.trainer import Trainer

    images = splits.training("target")

    def train(epochs: int) -> float:
        interrupts.check()
        config = with_overrides(experiment, {"target.trainer.epochs": epochs,
                                             "target.trainer.validate_every": epochs},
                                experiment.source).target.trainer
        trainer = Trainer(config, experiment.base_augment, splits.image_shape,
                          len(splits.classes), len(images))
        seed = 1 + 1000 * experiment.search.seed
        result = trainer.train(BASELINES["crop_flip"], images, splits.val, seed)
        log(f"epochs: crop+flip at {epochs} epochs: {100 * result.final_accuracy:.1f} % on the "
            f"search-validation split ({result.seconds:.0f} s)")
        return result.final_accuracy

    schedule = choose_epochs(train)
    log(schedule.sentence(len(images)))
    return with_epochs(experiment, {
        "trainer.epochs": schedule.epochs, "trainer.validate_every": schedule.epochs,
        "target.trainer.epochs": schedule.epochs,
        "target.trainer.validate_every": schedule.epochs})


def stored_schedule(storage_url: str, study_name: str) -> dict[str, int] | None:
    """An existing study's epochs and validation interval, proxy and target, as dotted keys
    (``None``: no such study)."""
    import optuna

    from policysearch.study.record import has_record, read_study
    from policysearch.study.storage import open_storage, storage_exists

    if not storage_exists(storage_url):
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name,
                                  storage=open_storage(storage_url, heartbeat=False))
    except KeyError:
        return None
    if not has_record(study):
        return None
    stored = read_study(study).experiment
    return {f"{prefix}{key}": int(trainer[key])
            for prefix, trainer in (("trainer.", stored["trainer"]),
                                    ("target.trainer.", stored["target"]["trainer"]))
            for key in ("epochs", "validate_every")}


def with_epochs(experiment: Experiment, keys: dict[str, int]) -> Experiment:
    """``experiment`` with its schedule set by dotted ``keys``; no longer automatic."""
    resolved = with_overrides(experiment, dict(keys), experiment.source)
    resolved.auto_epochs = False
    return resolved
