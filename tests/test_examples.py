"""The example training script runs with an exported policy in both placements."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from policysearch import randaugment, write_policy

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("placement", ["data", "model"])
def test_train_with_policy_example(placement: str, data_dir: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_with_policy
    finally:
        sys.path.pop(0)
    policy = replace(randaugment(2, 9), base={"crop_padding": 4, "flip": True})
    path = write_policy(policy, tmp_path / "p.json")
    accuracy = train_with_policy.main([str(path), "--placement", placement, "--epochs", "1",
                                       "--images", "256", "--data-dir", str(data_dir)])
    assert 0.0 <= accuracy <= 1.0
