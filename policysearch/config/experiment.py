"""Experiment configs: YAML files in ``experiments/``, validated into dataclasses.

An experiment names the dataset and two training budgets: the *target* (the training the
exported policy is meant for: ``validate`` and ``fidelity`` train it) and the *proxy* (the cheaper
training that scores each trial: ``data.train_size`` and ``trainer``). Then the search budget, the
race that chooses the winner on the selection split, and the validation seeds. Its ``smoke``
section holds overrides that shrink it to a minute-long run (``--smoke``); command-line flags
override both. Errors name the file, the key and the problem.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policysearch.config.auto import resolve_crop_padding
from policysearch.config.race import RaceConfig, ScreenConfig  # noqa: F401  (re-exported)
from policysearch.config.samplers import DEFAULT_PRUNE_MIN_SPEARMAN, PRUNERS, SAMPLERS
from policysearch.config.schema import build, option
from policysearch.data.textfile import load_yaml, read_text
from policysearch.errors import ConfigError, DataError
from policysearch.paths import EXPERIMENTS_DIR, PROJECT_ROOT  # noqa: F401  (re-exported)
from policysearch.policy.baselines import BASELINES


@dataclass
class DataConfig:
    train_size: int | str | None = option(
        "auto", low=1, auto=True, doc="proxy training images per trial (null: all the target's; "
        "auto: all the target's up to 2,000, else a quarter of them, 2,000 to 10,000)")
    val_size: int | str = option(
        "auto", low=1, auto=True, doc="search validation images (trials optimise them; auto: "
        "20 % of the training part, at least 5 a class, at most 5,000)")
    selection_size: int | str = option(
        "auto", low=1, auto=True, doc="selection images (the race chooses the winner; auto: "
        "15 % of the training part, at least 5 a class, at most 2,000)")
    selection_max: int = option(
        10000, low=0, doc="the race's selection split grows to this many images with training "
        "images no split uses (a target of fixed size leaves them); a larger split tells "
        "closer policies apart (its evaluation noise is about 50/sqrt(images) points)")
    split_seed: int = option(0, low=0)
    data_dir: str | None = option(None, doc="folder holding NAME-images.tar.gz archives")
    image_size: int | None = option(None, low=8, high=1024,
                                doc="decode every image to this square size (shorter side "
                                    "resized with PIL bicubic, then centre crop); null: as is")


@dataclass
class ModelConfig:
    name: str = option("cnn", doc="cnn, resnet, a keras.applications model by name "
                                  "(MobileNetV3Small, EfficientNetB0, ResNet50V2, ...; random "
                                  "weights) or package.module:function (your builder, called "
                                  "with the image shape, the number of classes and a seed)")
    input_size: int | None = option(None, low=8, high=1024,
                                    doc="side the network sees (a resize layer when it differs "
                                        "from the images'); null: the images' side, raised to "
                                        "what a keras.applications model needs (32, or 71-75)")
    weights: str | None = option(None, doc="a keras.applications model's backbone: null "
                                           "(random, drawn from each seed), imagenet "
                                           "(downloaded once by Keras) or a .weights.h5 file; "
                                           "loaded once, restored at every seed (the head is "
                                           "drawn from the seed)")
    widths: list[int] = option([16, 32, 64], low=1, high=4096, min_items=1,
                           doc="channels of each stage")
    depth: int = option(1, low=1, high=64, doc="convs (cnn) or residual blocks (resnet) per stage")


@dataclass
class BaseAugmentConfig:
    crop_padding: int | str = option("auto", low=0, high=512, auto=True,
                                 doc="random crop after zero padding (0: off; auto: "
                                     "round(image side / 8), 4 px at 32 px)")
    flip: bool = option(True, doc="random horizontal flip (off where a flip changes the label)")


@dataclass
class TrainerConfig:
    epochs: int = option(8, low=1, high=100_000)
    batch_size: int | str = option(
        "auto", low=1, high=1 << 20, auto=True, doc="images per step (auto: 256, halved down to "
        "16 until an epoch has at least 8 steps, so a small dataset still trains)")
    lr: float | str = option(
        "auto", low=0.0, high=10.0, auto=True, doc="peak learning rate (SGD with Nesterov "
        "momentum; auto: 0.2 at batch 256, scaled by the square root of batch/256: 0.05 at 16)")
    momentum: float = option(0.9, low=0.0, high=1.0)
    weight_decay: float = option(5e-4, low=0.0)
    label_smoothing: float = option(0.1, low=0.0, high=1.0)
    warmup_epochs: float = option(1.0, low=0.0)
    validate_every: int = option(1, low=1, doc="epochs between validations (the last is always)")
    placement: str = option("auto", choices=("auto", "data", "model"),
                        doc="where augmentation runs: tf.data map (data), train step (model)")
    model: ModelConfig = field(default_factory=ModelConfig)


MAX_SEED = (2**32 - 1 - 1) // 1000
"""Largest search seed: its trials train with seed 1 + 1000 x seed, and NumPy, Keras and the
Optuna samplers take seeds up to 2**32 - 1 (checked under TensorFlow and JAX)."""


@dataclass
class SearchConfig:
    space: str = option("randaugment_groups", doc="a name in search_spaces/ or a YAML path")
    trials: int = option(40, low=0, doc="searched trials, besides the baselines")
    timeout_minutes: float | None = option(None, low=0.0)
    sampler: str = option("tpe", choices=tuple(SAMPLERS))
    pruner: str = option("hyperband", choices=tuple(PRUNERS),
                         doc="prunes only at rungs measured faithful (prune_min_spearman)")
    prune_min_spearman: float = option(DEFAULT_PRUNE_MIN_SPEARMAN, low=-1.0, high=1.0,
                                       doc="single-seed Spearman (policysearch fidelity) a rung "
                                           "must reach for the pruner to stop trials there")
    seed: int = option(0, low=0, high=MAX_SEED,
                       doc="sampler and trial seed (trials train with 1 + 1000 x seed)")
    baselines: list[str] = option(["crop_flip", "crop_only", "randaugment_n2_m9", "trivialaugment"],
                              doc="crop_only: no flip, for data where a flip changes the label")
    max_failures: int = option(10, low=0, doc="stop after this many failed trials")
    learning_check: str = option("stop", choices=("stop", "warn", "off"),
                                 doc="before any searched trial, crop+flip must learn (well "
                                     "above chance on the validation split); stop or warn if "
                                     "not (--smoke: warn)")


@dataclass
class TargetConfig:
    train_size: int | None = option(None, low=1, doc="training images (null: all outside the "
                                "validation and selection splits)")
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class ValidateConfig:
    seeds: int = option(5, low=2, doc="seeds per policy at the target budget (paired)")
    flip_variants: bool = option(False, doc="also train each baseline with the base flip off "
                                 "(when the experiment's flip is on): what guessing it costs")


@dataclass
class FidelityConfig:
    seeds: int = option(3, low=2, doc="seeds per policy and budget")
    panel: list[str] = option([], doc="policies (baseline names or RA(N,M) strings); [] = default")


RUNG_SYNTAX = "images/K, epochs/K, width/K, side/K (K >= 1) joined by +"
"""What a calibration rung may divide (``evidence/ladder.py`` parses it)."""


@dataclass
class CalibrateConfig:
    bar: float = option(0.8, low=-1.0, high=1.0, doc="Spearman a cheaper proxy must reach, on "
                        "the choosing seeds and again on fresh confirmation seeds")
    confirm_seeds: int = option(2, low=2, doc="fresh seeds that confirm the pick")
    ladder: list[str] = option([], doc=f"rungs: {RUNG_SYNTAX}, or proxy (the file's own); [] = "
                               "the built-in ladder")
    use: bool = option(True, doc="train the proxy `calibrate` picked for this very target "
                       "(experiments/results/<name>-calibration.yaml) instead of the file's")


@dataclass
class Budget:
    """One training budget: how many images and how they are trained."""

    train_size: int | None
    trainer: TrainerConfig


@dataclass
class Experiment:
    name: str = option("experiment")
    dataset: str = option("cifar10")
    data: DataConfig = field(default_factory=DataConfig)
    base_augment: BaseAugmentConfig = field(default_factory=BaseAugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    race: RaceConfig = field(default_factory=RaceConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    smoke: dict[str, Any] = option({}, doc="overrides applied with --smoke")
    source: str = field(default="", metadata={"internal": True})
    auto_epochs: bool = field(default=False, metadata={"internal": True})
    """No schedule was given (built-in defaults, no --epochs): a new study picks one
    (``policysearch.search.schedule``)."""

    @property
    def proxy_budget(self) -> Budget:
        """What each trial trains."""
        return Budget(self.data.train_size, self.trainer)

    @property
    def target_budget(self) -> Budget:
        """The training the exported policy is meant for."""
        return Budget(self.target.train_size, self.target.trainer)

    def budget(self, name: str) -> Budget:
        return self.proxy_budget if name == "proxy" else self.target_budget

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        out.pop("auto_epochs")
        return out

    def flat(self) -> dict[str, Any]:
        """Dotted keys, for MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}{key}.", item)
            else:
                out[prefix[:-1]] = value

        data = self.to_dict()
        data.pop("smoke")
        walk("", data)
        return out


def find_experiment(name: str) -> Path:
    """``name`` as a path, or ``experiments/<name>.yaml``."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return EXPERIMENTS_DIR / f"{name}.yaml"


def dataset_experiment(dataset: str) -> Path:
    """``experiments/<dataset name>.yaml``: the experiment file a dataset picks by default.

    Only ``experiments/`` is looked in: a folder or archive named like the dataset (say
    ``mydata`` or ``foo.tar.gz`` in the current directory) is the dataset, not an experiment.
    """
    name = Path(dataset).name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        name = name.removesuffix(suffix)
    return EXPERIMENTS_DIR / f"{name or 'dataset'}.yaml"


def load_experiment(name: str | None = None, *, dataset: str | None = None, smoke: bool = False,
                    overrides: dict[str, Any] | None = None,
                    calibrated: bool = True) -> Experiment:
    """The one place a run's configuration is resolved, in this order: the experiment file (or
    the defaults), its ``smoke`` block (``--smoke``), the calibrated proxy, the command line
    (``overrides``), then automatic values. Every layer is validated once all are applied.

    With ``calibrated`` (and ``calibrate.use``), the proxy ``policysearch calibrate`` picked for
    this very target replaces the file's (``policysearch.config.calibration``); proxy keys given
    on the command line still win. An option left unset (``None``) never replaces anything.

    With no name, ``experiments/<dataset>.yaml`` is used if it exists, else the defaults.
    ``overrides`` maps dotted keys (``trainer.epochs``) to values; ``None`` values are ignored.
    ``base_augment.crop_padding: auto`` becomes a number of pixels here when the dataset's image
    size can be read (see ``resolve_crop_padding``).
    """
    raw: dict[str, Any] = {}
    origin = "defaults"
    path: Path | None = None
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if name is not None:
        path = find_experiment(name)
        if not path.exists():
            raise ConfigError(f"experiment {name!r}: no file {path}")
    elif dataset is not None and dataset_experiment(dataset).is_file():
        path = dataset_experiment(dataset)
    if path is not None:
        origin = str(path)
        raw = _read_yaml(path)
    if dataset is not None:
        raw["dataset"] = dataset
    if smoke:
        # the file's own values first: a smoke block hides none of its errors
        check_experiment(build(Experiment, raw, origin, ""), origin)
        smoke_overrides = raw.get("smoke", {})
        if not isinstance(smoke_overrides, dict):
            raise ConfigError(f"{origin}: key 'smoke': expected a mapping")
        # a smoke budget checks the plumbing, not the decision: it need not learn
        if isinstance(raw.get("search", {}), dict):
            raw = _merge(raw, {"search": {"learning_check": "warn"}})
        raw = _merge(raw, smoke_overrides)
    _set_dotted(raw, given, origin)
    # the target's trainer is the proxy's, with the target's own keys on top
    target = raw.get("target", {})
    if isinstance(target, dict) and isinstance(target.get("trainer", {}), dict):
        proxy_trainer = raw.get("trainer", {}) if isinstance(raw.get("trainer"), dict) else {}
        raw["target"] = {**target, "trainer": _merge(proxy_trainer, target.get("trainer", {}))}
    experiment = build(Experiment, raw, origin, "")
    experiment.source = origin
    experiment.auto_epochs = (path is None and not smoke
                              and not set(given) & {"trainer.epochs", "target.trainer.epochs"})
    check_experiment(experiment, origin)
    _resolve_auto(experiment)
    if calibrated and experiment.calibrate.use:
        from policysearch.config.calibration import calibration_path, proxy_overrides

        picked = proxy_overrides(experiment.to_dict(), calibration_path(experiment.name, smoke))
        if picked:
            # the command line's proxy keys win; unset ones (None) were dropped above
            mine = {k: v for k, v in given.items()
                    if k == "data.train_size" or k.startswith("trainer.")}
            experiment = with_overrides(experiment, {**picked, **mine}, origin)
    return experiment


MAX_NAME = 100
"""Longest experiment name: it names results files, studies and MLflow experiments."""


def check_experiment(experiment: Experiment, origin: str) -> None:
    """What ``build`` cannot see key by key: names and keys that must agree."""
    import re

    name = experiment.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or len(name) > MAX_NAME:
        raise ConfigError(f"{origin}: key 'name': {name[:60]!r}{'...' if len(name) > 60 else ''}"
                          f" is not a usable name: letters, digits, '.', '_' and '-' only, "
                          f"starting with a letter or digit, at most {MAX_NAME} characters (it "
                          "names files in experiments/results)")
    unknown = [b for b in experiment.search.baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"{origin}: key 'search.baselines': unknown {unknown[0]!r}; "
                          f"expected some of {', '.join(BASELINES)}")
    if experiment.race.max_seeds < experiment.race.min_seeds:
        raise ConfigError(f"{origin}: key 'race.max_seeds': {experiment.race.max_seeds} is below "
                          f"race.min_seeds ({experiment.race.min_seeds})")


def with_overrides(experiment: Experiment, overrides: dict[str, Any],
                   origin: str) -> Experiment:
    """``experiment`` with dotted keys replaced (``None`` values are ignored), re-validated."""
    raw = experiment.to_dict()
    _set_dotted(raw, overrides, origin)
    rebuilt = build(Experiment, raw, origin, "")
    check_experiment(rebuilt, origin)
    rebuilt.source = experiment.source
    rebuilt.auto_epochs = experiment.auto_epochs
    return rebuilt


def _set_dotted(raw: dict[str, Any], overrides: dict[str, Any], origin: str) -> None:
    for key, value in overrides.items():
        if value is None:
            continue
        target = raw
        *parents, last = key.split(".")
        for depth, parent in enumerate(parents):
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(f"{origin}: key '{where}': expected a mapping, got "
                                  f"{target!r} (so {key} cannot be set)")
        target[last] = value



def experiment_from_dict(data: dict[str, Any], origin: str) -> Experiment:
    """An experiment from its ``to_dict()`` form (a study's or a policy's stored config)."""
    experiment = build(Experiment, data, origin, "")
    experiment.source = origin
    return experiment


def _resolve_auto(experiment: Experiment) -> None:
    """Replace ``crop_padding: auto`` by pixels, from the image size the trainer will see.

    When the dataset cannot be read yet it stays ``"auto"``; loading the data then fails with
    the dataset's own error before any training.
    """
    base = experiment.base_augment
    if base.crop_padding != "auto":
        return
    from policysearch.data.datasets import image_side

    try:
        side = image_side(experiment.dataset, experiment.data.data_dir, experiment.data.image_size)
    except DataError:
        return
    base.crop_padding = resolve_crop_padding("auto", side)


def _read_yaml(path: Path) -> dict[str, Any]:
    text = read_text(path, "experiment file", ConfigError, kind="YAML text")
    data = load_yaml(text, str(path), ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
