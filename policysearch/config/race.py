"""The race's keys (``race:`` in an experiment file): how the winner is chosen on the selection
split, and its cheap first round (``race.screen``). ``policysearch.search.race`` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from policysearch.config.schema import option


@dataclass
class ScreenConfig:
    """The race's cheap first round: more candidates, a few paired seeds, no decision."""

    top_k: int = option(0, low=0, doc="searched candidates screened, besides every baseline "
                                      "(0: no first round; race.top_k go straight to the race)")
    seeds: int = option(3, low=1, doc="seeds every screened policy gets (paired by seed)")
    budget: str = option("proxy", choices=("proxy", "target"), doc="which training screens")


@dataclass
class RaceConfig:
    top_k: int = option(3, low=1, doc="searched candidates raced against the best baseline "
                                      "(with a screen: its best, the finalists)")
    min_seeds: int = option(3, low=2, doc="seeds every contender gets (paired by seed)")
    max_seeds: int = option(6, low=2, doc="seeds a close contender may reach")
    confidence: float = option(0.95, low=0.5, high=0.999,
                               doc="1 - the error rate of an export: the chance of exporting a "
                                   "searched policy that is not better, over all looks")
    spending: str = option("obrien-fleming", choices=("obrien-fleming", "pocock"),
                           doc="how that error is spent over the looks (seed counts min_seeds "
                               "to max_seeds): Lan-DeMets spending function")
    min_effect: float = option(0.5, low=0.0, high=100.0,
                               doc="the smallest gain (accuracy points) worth detecting: the "
                                   "race plans its seeds for it")
    power: float = option(0.8, low=0.5, high=0.999,
                          doc="chance the planned seeds detect a gain of min_effect")
    budget: str = option("proxy", choices=("proxy", "target"), doc="which training the race runs")
    screen: ScreenConfig = field(default_factory=ScreenConfig)
