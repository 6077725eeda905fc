"""Which device trains, said in the first line, and never the CPU in silence.

The system's NVIDIA GPUs are what ``nvidia-smi -L`` lists; the framework's are what the Keras
backend can use (TensorFlow's ``list_physical_devices("GPU")``, JAX's ``devices()``). A GPU the
system has and the framework cannot use (the CPU build of TensorFlow, CUDA libraries missing)
stops a training command with one line saying how to fix it, unless the CPU is asked for on
purpose (``--allow-cpu`` or ``POLICYSEARCH_ALLOW_CPU=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from policysearch.errors import ConfigError, PolicySearchError


class DeviceError(PolicySearchError):
    """A GPU is there and the framework cannot use it."""


def system_gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (``GPU 0: NVIDIA H100 ...``); none without the tool."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        out = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]


def framework_gpus() -> list[str]:
    """The GPUs the Keras backend can train on."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


@dataclass(frozen=True)
class Device:
    kind: str  # "gpu" | "cpu"
    line: str


def may_have_other_gpus() -> bool:
    """Whether a GPU that ``nvidia-smi`` does not list could be here: an AMD one (ROCm's
    ``/dev/kfd``) or Apple's (Metal). Elsewhere no ``nvidia-smi`` GPU means no GPU for any
    backend, and the framework need not start to say so."""
    return sys.platform == "darwin" or os.path.exists("/dev/kfd")


def resolve(allow_cpu: bool = False) -> Device:
    """The device this process trains on, as a line; ``DeviceError`` when a GPU is there and
    unused and the CPU was not asked for. With no GPU on the system the framework is not
    started here (a command's bad input is then refused in a fraction of a second)."""
    seen = system_gpus()
    usable: list[str] = []
    backend = ""  # named only in the lines below that follow a framework's answer
    if seen or may_have_other_gpus():
        import keras

        backend = keras.backend.backend()
        usable = framework_gpus()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if usable:
        names = "; ".join(s.split(" (UUID")[0] for s in seen) or ", ".join(usable)
        return Device("gpu", f"device: GPU ({names}); {backend} sees {len(usable)}"
                             + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible else ""))
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    if seen and visible is not None and visible.strip() in ("", "-1"):
        return Device("cpu", f"device: CPU ({cores} cores): CUDA_VISIBLE_DEVICES={visible!r} "
                             f"hides the {len(seen)} GPU(s) nvidia-smi lists")
    if seen and not (allow_cpu or os.environ.get("POLICYSEARCH_ALLOW_CPU") == "1"):
        raise DeviceError(
            f"nvidia-smi lists {len(seen)} GPU(s) ({seen[0].split(' (UUID')[0]}) but {backend} "
            "sees none: the CPU build of TensorFlow is installed or the CUDA libraries are "
            "missing; run `make install GPU=1` (the gpu extra: TensorFlow with its CUDA wheels) "
            "and check the driver with nvidia-smi, or pass --allow-cpu to train on the CPU on "
            "purpose")
    why = ("nvidia-smi lists GPU(s), the CPU asked for" if seen else
           "no GPU: nvidia-smi lists none" if shutil.which("nvidia-smi") else
           "no GPU: no nvidia-smi")
    return Device("cpu", f"device: CPU ({cores} cores; {why})")


def check_devices(devices: list[str]) -> None:
    """``--devices``: each an index of a GPU ``nvidia-smi -L`` lists, or refused in one line."""
    seen = system_gpus()
    if not seen:
        raise ConfigError(f"--devices {','.join(devices)}: this machine has no GPU (nvidia-smi "
                          "lists none); leave --devices out to train on the CPU")
    bad = [d for d in devices if not (d.isdigit() and int(d) < len(seen))]
    if bad:
        raise ConfigError(f"--devices {','.join(devices)}: {bad[0]!r} is not a GPU here; "
                          f"nvidia-smi lists {len(seen)} (indices 0 to {len(seen) - 1})")
