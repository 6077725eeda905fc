"""The GPU benchmark script (``make bench-gpu``) at a tiny budget on this machine's CPU: it is
ready for the day a GPU machine is lent (every part runs and reports, the device named)."""

from __future__ import annotations

from pathlib import Path

from policysearch.evidence import gpu_bench


def test_the_gpu_bench_runs_every_part_at_a_tiny_budget(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    text = gpu_bench.main(["--images", "128", "--epochs", "1", "--rounds", "2", "--runs", "1",
                           "--concurrency", "1,2", "--trials", "100", "--data-dir",
                           str(data_dir), "--out", str(out)])
    assert out.read_text() == text
    assert text.startswith("# GPU benchmark (CPU (")  # the device, named
    for row in ("| epoch, crop+flip |", "| RA(2,9) / crop+flip (medians; 95 % interval",
                "| compile as a share of a 100-policy search |",
                "| 1 concurrent trial process(es) | ", "| 2 concurrent trial process(es) | ",
                "| a 100-policy search (+3 baselines), projected from"):
        assert row in text, row
    assert "failed:" not in text and "runs/min" in text
