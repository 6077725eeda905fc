"""``make bench``'s whole-run comparison: the spread, the paired ratio with its interval and the
ratio on medians (the figures, not the speed: speed is never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from policysearch.evidence.bench import runs_report


def test_runs_report_shows_the_spread_the_paired_ratio_and_its_interval() -> None:
    walls = {"crop+flip": [10, 11, 12, 30, 10], "RA(2,9)": [12, 13, 40, 12, 14]}
    rows = [{"round": i + 1, "policy": p, "seconds": float(w), "cpu": w / 2, "steal": 0.0,
             "switches": 5, "load": 1.0} for p, ws in walls.items() for i, w in enumerate(ws)]
    lines = runs_report(rows, "test")
    assert "| crop+flip | 5 | 11.0 | 10.0 | 30.0 | 2.0 | 5.5 | 0.50 |" in lines
    assert "| RA(2,9) | 5 | 13.0 | 12.0 | 40.0 | 2.0 | 6.5 | 0.50 |" in lines
    ratio = next(line for line in lines if line.startswith("RA(2,9) / crop+flip"))
    assert "On medians: 1.18x wall, 1.18x CPU." in ratio
    # the paired interval: scipy's t interval of the rounds' mean log ratio, exponentiated
    logs = np.log(np.array(walls["RA(2,9)"]) / np.array(walls["crop+flip"]))
    low, high = np.exp(stats.ttest_1samp(logs, 0).confidence_interval(0.95))
    assert (f"wall seconds **{np.exp(logs.mean()):.3f}x (95 % interval {low:.3f}-{high:.3f}, "
            f"width {high - low:.3f}, n=5 pairs)**") in ratio
    wide = next(line for line in lines if line.startswith("The wall interval is wider"))
    assert f"about {int(np.ceil(5 * ((high - low) / 0.1) ** 2))} rounds" in wide
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


def test_concurrent_trials_report_throughput_against_one_process() -> None:
    """``make bench ONLY=concurrency``'s table (the processes themselves run in the GPU bench's
    test, tests/test_gpu_bench.py, through the same ``measure``)."""
    from policysearch.evidence.concurrency import report

    rows = [{"processes": 1, "threads": 2, "trials": 4, "span": 80.0, "per_hour": 180.0,
             "median_trial": 20.0},
            {"processes": 2, "threads": 1, "trials": 8, "span": 120.0, "per_hour": 240.0,
             "median_trial": 30.0}]
    lines = report(rows, "test")
    assert "| 1 | 2 | 4 | 80 | 180 | 20.0 | 1.00x |" in lines
    assert "| 2 | 1 | 8 | 120 | 240 | 30.0 | 1.33x |" in lines
    assert lines[-1] == ("Most trials per hour here: 2 process(es) of 1 thread(s) "
                         "(`--workers 2`).")
