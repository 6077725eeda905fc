"""The GPU benchmark script (``make bench-gpu``) at a tiny budget on this machine's CPU: it is
ready for the day a GPU machine is lent (every part runs and reports, the device named)."""

from __future__ import annotations

from pathlib import Path

from policysearch.evidence import gpu_bench


def test_the_gpu_bench_runs_every_part_at_a_tiny_budget(data_dir: Path, tmp_path: Path) -> None:
    from conftest import tiny_experiment, write_image_folder

    out = tmp_path / "gpu.md"
    tiny = tiny_experiment(tmp_path / "tiny.yaml", write_image_folder(
        tmp_path / "data", classes=3, per_class=24, size=16, test_per_class=2))
    text = gpu_bench.main(["--images", "128", "--epochs", "1", "--rounds", "2", "--runs", "1",
                           "--concurrency", "1,2", "--trials", "100", "--data-dir",
                           str(data_dir), "--experiment", str(tiny), "--trial-epochs", "1",
                           "--out", str(out)])
    assert out.read_text() == text
    assert text.startswith("# GPU benchmark (CPU (")  # the device, named
    for row in ("| epoch, crop+flip |", "| RA(2,9) / crop+flip (medians; 95 % interval",
                "| compile as a share of a 100-policy search |",
                "| 1 concurrent trial process(es) | ", "| 2 concurrent trial process(es) | ",
                "| a 100-policy search (+3 baselines), projected from"):
        assert row in text, row
    assert "failed:" not in text and "trials/min (2 trials in" in text  # 2 processes x 1
