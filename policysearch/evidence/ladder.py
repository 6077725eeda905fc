"""The calibration ladder: the budgets ``calibrate`` tries, each named relative to the target
(``images/4``, ``epochs/2``, ``width/2``, ``side/2``, combinations such as
``images/4+epochs/2``, and ``proxy``), parsed into trainer settings, stamped, and sorted by their
estimated cost."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from policysearch.config.calibration import budget_stamp, proxy_stamp, target_stamp
from policysearch.config.experiment import RUNG_SYNTAX
from policysearch.errors import ConfigError
from policysearch.study.cost import estimate

LADDER = ("images/4+epochs/2", "images/4", "epochs/4", "width/2", "images/2", "epochs/2",
          "proxy")
"""The built-in ladder; sorted by estimated cost before training."""
_FACTOR = re.compile(r"^\s*(images|epochs|width|side)\s*/\s*(\d+(?:\.\d+)?)\s*$")
SMALL_SIDE = 64
"""Images at least this side add ``side/2`` to the built-in ladder (the target's network on
images of half the side: a quarter of the pixels); below it half the side loses the detail a
label needs."""


@dataclass(frozen=True)
class Rung:
    name: str
    train_size: int | None
    trainer: dict[str, Any]
    estimate: float
    stamp: str

    def describe(self) -> str:
        size = "all" if self.train_size is None else f"{self.train_size:,}"
        widths = "/".join(map(str, self.trainer["model"]["widths"]))
        side = self.trainer["model"].get("input_size")
        return (f"{size} images x {self.trainer['epochs']} epochs, widths {widths}"
                + (f", seen at {side} px" if side else ""))


def target_rung(config: dict[str, Any]) -> Rung:
    target = config["target"]
    return Rung("target", target["train_size"], copy.deepcopy(target["trainer"]), 1.0,
                target_stamp(config))


def rung_factors(text: str) -> dict[str, float]:
    """What a ladder entry divides (``images/4+epochs/2``: images by 4, epochs by 2);
    ``ConfigError`` naming the entry when it is not a rung (``proxy`` divides nothing)."""
    text = str(text).strip()
    factors = {"images": 1.0, "epochs": 1.0, "width": 1.0, "side": 1.0}
    if text == "proxy":
        return factors
    for part in text.split("+"):
        match = _FACTOR.match(part)
        if match is None or float(match[2]) < 1:
            raise ConfigError(f"calibrate.ladder: {text!r} is not a rung; expected proxy, or "
                              f"{RUNG_SYNTAX}, such as images/4+epochs/2")
        factors[match[1]] = float(match[2])
    return factors


def parse_rung(text: str, config: dict[str, Any], pool: int, side: int | None = None) -> Rung:
    """The budget a ladder entry names, relative to the target (``pool``: the images the
    target trains on when ``target.train_size`` is null; ``side``: the images' side, which
    ``side/K`` divides)."""
    text = str(text).strip()
    target = config["target"]
    images = target["train_size"] or pool
    base = target["trainer"]
    if text == "proxy":
        proxy = config["trainer"]
        size = config["data"]["train_size"] or pool
        return Rung("proxy", config["data"]["train_size"], copy.deepcopy(proxy),
                    estimate(size, proxy, images, base, side),
                    proxy_stamp(config))
    factors = rung_factors(text)
    if set(factors.values()) == {1.0}:  # images/1: the target itself
        return target_rung(config)
    size = max(1, round(images / factors["images"]))
    trainer = copy.deepcopy(base)
    epochs = max(1, round(base["epochs"] / factors["epochs"]))
    trainer["epochs"] = epochs
    trainer["warmup_epochs"] = base["warmup_epochs"] * epochs / base["epochs"]  # compressed
    checks = max(1, round(config["trainer"]["epochs"] / config["trainer"]["validate_every"]))
    trainer["validate_every"] = epochs // checks if epochs % checks == 0 else epochs
    trainer["model"]["widths"] = [max(1, round(w / factors["width"])) for w in
                                  base["model"]["widths"]]
    if factors["side"] != 1.0:  # the target's network on smaller images (a resize in front)
        seen = base["model"].get("input_size") or side
        if not seen:
            raise ConfigError(f"calibrate.ladder: {text!r} needs the images' side")
        trainer["model"]["input_size"] = max(8, round(seen / factors["side"]))
    return Rung(text, size, trainer, estimate(size, trainer, images, base, side),
                budget_stamp(config, size, trainer))


def build_ladder(specs: Sequence[str], config: dict[str, Any], pool: int,
                 side: int | None = None) -> list[Rung]:
    """The rungs, cheapest first, without duplicates and without the target itself."""
    target = target_stamp(config)
    rungs: dict[str, Rung] = {}
    for spec in specs:
        rung = parse_rung(spec, config, pool, side)
        if rung.stamp != target and rung.stamp not in rungs:
            rungs[rung.stamp] = rung
    return sorted(rungs.values(), key=lambda r: r.estimate)
