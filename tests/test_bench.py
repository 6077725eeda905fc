"""``make bench``'s whole-run comparison: the spread and the ratio on medians (the figures, not
the speed: speed is never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from policysearch.evidence.bench import runs_report


def test_runs_report_shows_the_spread_and_the_ratio_on_medians() -> None:
    walls = {"crop+flip": [10, 11, 12, 30, 10], "RA(2,9)": [12, 13, 40, 12, 14]}
    rows = [{"round": i + 1, "policy": p, "seconds": float(w), "cpu": w / 2, "steal": 0.0,
             "switches": 5, "load": 1.0} for p, ws in walls.items() for i, w in enumerate(ws)]
    lines = runs_report(rows, "test")
    assert "| crop+flip | 5 | 11.0 | 10.0 | 30.0 | 2.0 | 5.5 | 0.50 |" in lines
    assert "| RA(2,9) | 5 | 13.0 | 12.0 | 40.0 | 2.0 | 6.5 | 0.50 |" in lines
    ratio = next(line for line in lines if line.startswith("RA(2,9) / crop+flip"))
    assert "**1.18x**" in ratio and "CPU seconds" in ratio and "1.18x" in ratio.split(";")[1]
    assert sum(line.startswith("| ") and line.split("|")[2].strip() in walls
               for line in lines) == 10  # one row a run


def test_bad_run_count_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "policysearch.evidence.bench", "--runs", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--runs" in proc.stderr and "Traceback" not in proc.stderr


def test_trial_breakdown_names_every_part(tmp_path: Path) -> None:
    from conftest import tiny_experiment, write_image_folder

    from policysearch.evidence.bench import trial_breakdown

    data = write_image_folder(tmp_path / "data", classes=3, per_class=24, size=16,
                              test_per_class=2)
    config = tiny_experiment(tmp_path / "tiny.yaml", data)
    lines = trial_breakdown(str(config), None, 1, None)
    text = "\n".join(lines)
    assert lines[0].startswith("## Where a trial's seconds go: ")
    for part in ("load and carve the data", "build and compile the trainer", "first run",
                 "fresh weights and optimizer", "training steps", "validations on 18 images",
                 "outside its clock"):
        assert f"| {part}" in text or part in text, part
    assert len([line for line in lines if line.startswith("| ")]) == 8  # the header, 7 parts
