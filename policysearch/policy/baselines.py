"""The stock policies a study runs first, by name: what a user would pick without a search."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from policysearch.policy.definition import (
    Policy,
    crop_only,
    no_augment,
    randaugment,
    trivialaugment,
)

BASELINES: dict[str, Policy] = {
    "crop_flip": no_augment(),
    "crop_only": crop_only(),
    "randaugment_n2_m9": randaugment(2, 9),
    "trivialaugment": trivialaugment(),
}
"""Baselines a study runs first: what a user would pick without a search. ``crop_only`` turns
the base flip off (digits, text: where a flip changes the label); the others keep it."""


def same_baseline(policy: Policy, names: Any) -> tuple[str | None, str]:
    """The baseline among ``names`` that ``policy`` is, as (name, label); (None, "") if none."""
    for name in names:
        if name in BASELINES and BASELINES[name].key() == policy.key():
            return name, BASELINES[name].label
    return None, ""


def on_base(policy: Policy, changes: dict[str, Any]) -> Policy:
    """``policy`` with its base augmentation changed (``{"flip": False}``, ``{"crop_padding":
    0}``), provenance dropped: a stock policy on the base a search found."""
    return replace(policy, base={**policy.base, **changes}, source={})
