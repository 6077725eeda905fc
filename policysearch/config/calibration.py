"""A calibrated proxy: the file ``policysearch calibrate`` writes, and how the search uses it.

``calibrate`` writes ``experiments/results/<name>[-smoke]-calibration.yaml``: the proxy it picked
(``data.train_size`` and the proxy's ``trainer``) and the stamp of the target it measured the
proxy against. ``load_experiment`` puts that proxy in place of the experiment file's own when the
stamp matches the experiment's target (same data, splits, base augmentation and target
training), so a stale calibration is never used; flags given on the command line still win.

Everything here works on an experiment's ``to_dict()`` form, so the config layer stays free of
the training and evidence code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from policysearch.data.textfile import load_yaml, read_text
from policysearch.errors import ConfigError
from policysearch.paths import RESULTS_DIR

PROXY_KEYS = ("data.train_size", "trainer")
"""What a calibration sets: the proxy's training images and its trainer."""


def calibration_path(name: str, smoke: bool = False) -> Path:
    return RESULTS_DIR / f"{name}{'-smoke' if smoke else ''}-calibration.yaml"


def budget_stamp(config: dict[str, Any], train_size: int | None,
                 trainer: dict[str, Any]) -> str:
    """Changes with anything that changes a run's accuracy at this budget: the data and its
    splits (the pool the images are drawn from is the target's), the base augmentation, the
    number of images and the trainer (not where augmentation runs, nor how far the selection
    split grows with images no training uses)."""
    relevant = {
        "dataset": config["dataset"], "base_augment": config["base_augment"],
        "data": {k: v for k, v in config["data"].items()
                 if k not in ("data_dir", "train_size", "selection_max")},
        "pool": config["target"]["train_size"], "train_size": train_size,
        "trainer": {k: (_model(v) if k == "model" else v) for k, v in trainer.items()
                    if k != "placement"},
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


LATER_KEYS = ("input_size", "weights")
"""Model keys added after calibrations were made; unset, they are not stamped."""


def _model(model: Any) -> Any:
    """The model as stamped: keys added later in their default (null) state are left out, so a
    new key does not unmatch the calibrations made before it."""
    if not isinstance(model, dict):
        return model
    return {k: v for k, v in model.items() if not (k in LATER_KEYS and v is None)}


def proxy_stamp(config: dict[str, Any]) -> str:
    return budget_stamp(config, config["data"]["train_size"], config["trainer"])


def target_stamp(config: dict[str, Any]) -> str:
    return budget_stamp(config, config["target"]["train_size"], config["target"]["trainer"])


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The calibration file's content, ``None`` if there is none; a damaged one is refused."""
    if not path.is_file():
        return None
    data = load_yaml(read_text(path, "calibration file", ConfigError), str(path), ConfigError)
    if not isinstance(data, dict) or not isinstance(data.get("calibration"), dict) \
            or not isinstance(data.get("proxy"), dict):
        raise ConfigError(f"{path}: not a calibration file (expected keys calibration and "
                          "proxy); delete it or rerun `policysearch calibrate`")
    return data


def proxy_overrides(config: dict[str, Any], path: Path) -> dict[str, Any]:
    """The dotted overrides that install the calibrated proxy, if ``path`` measured this very
    target; ``{}`` otherwise."""
    saved = read_calibration(path)
    if saved is None or saved["calibration"].get("target") != target_stamp(config):
        return {}
    proxy = saved["proxy"]
    out: dict[str, Any] = {}
    if "train_size" in (proxy.get("data") or {}):
        out["data.train_size"] = proxy["data"]["train_size"]
    for key, value in (proxy.get("trainer") or {}).items():
        out[f"trainer.{key}"] = value
    return out


def proxy_note(config: dict[str, Any], path: Path, source: str) -> str:
    """One line for the search's first lines: where its proxy comes from (``source``: the
    experiment file)."""
    source = Path(source).name if source and source != "defaults" else "the defaults"
    t = config["trainer"]
    size = config["data"]["train_size"]
    what = (f"{size if size is not None else 'all'} images x {t['epochs']} epochs, widths "
            f"{'/'.join(map(str, t['model']['widths']))}")
    saved = read_calibration(path)
    name = config.get("name", "experiment")
    if saved is None:
        return (f"proxy: {what}, as {source} sets it (not calibrated: run `policysearch "
                f"calibrate {name}` to measure one)")
    cal = saved["calibration"]
    if cal.get("target") != target_stamp(config):
        return (f"proxy: {what}, as {source} sets it ({path.name} measured another target: "
                f"rerun `policysearch calibrate {name}`)")
    if cal.get("proxy") != proxy_stamp(config):
        return (f"proxy: {what}, as {source} or the command line sets it (not rung "
                f"{cal.get('rung')}, which {path.name} picked; calibrate.use: false or a flag "
                "keeps the file's)")
    if cal.get("rung") == "target":
        return (f"proxy: the target itself ({what}): `calibrate` found nothing cheaper that "
                f"ranks policies as the target does ({path.name})")
    return (f"proxy: {what}, picked by `calibrate` ({path.name}: rung {cal.get('rung')}, "
            f"Spearman {_number(cal.get('spearman')):+.2f}, confirmed "
            f"{_number(cal.get('confirm_spearman')):+.2f} on fresh seeds, "
            + (f"{cost:.2f} of a target run)" if isinstance(cost := cal.get("cost_ratio"),
                                                         (int, float))
               else "its cost not timed on one machine with the target's)"))


def _number(value: Any) -> float:
    """A figure of the calibration file, NaN where it is missing or null."""
    return float(value) if isinstance(value, (int, float)) else float("nan")
