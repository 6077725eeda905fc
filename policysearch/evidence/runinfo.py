"""What a results file says about the run that made it: the machine and the code."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from policysearch.paths import PROJECT_ROOT, RESULTS_DIR


def machine() -> dict[str, Any]:
    """CPU model, core count, accelerator and Keras backend of this run."""
    import keras

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    accelerator = "none (CPU only)"
    if keras.backend.backend() == "jax":
        import jax

        gpus = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        accelerator = ", ".join(gpus) or accelerator
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        accelerator = ", ".join(g.name for g in gpus) or accelerator
    return {"cpu": cpu, "cores": os.cpu_count(), "accelerator": accelerator,
            "backend": keras.backend.backend(), "keras": keras.__version__,
            "python": platform.python_version()}


def git_commit() -> str | None:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=5)
        # results files are what a run writes, not a change to the code that ran
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", f":(exclude){RESULTS_DIR.relative_to(PROJECT_ROOT)}"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
