"""The device a training command uses, and the GPU install, run as a user runs them.

A stand-in ``nvidia-smi`` on PATH (a shell script printing what the real one prints on a
one-GPU machine) makes this CPU-only machine look like one whose driver lists a GPU that the
installed TensorFlow (the CPU build) cannot use: the case that used to train on the CPU in
silence.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from policysearch import randaugment, write_policy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_gpu(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text('#!/bin/sh\necho "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0c0ffee0)"\n')
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "POLICYSEARCH_ALLOW_CPU"}
    full.update(TF_CPP_MIN_LOG_LEVEL="2", **env)
    return subprocess.run([sys.executable, "-m", "policysearch", *args], cwd=tmp, env=full,
                          capture_output=True, text=True, timeout=300)


def test_the_first_line_names_the_device(tmp_path: Path) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    result = run(tmp_path, "validate", "p.json", "--dataset", str(tmp_path / "missing"))
    assert result.stdout.splitlines()[0].startswith("device: CPU (")
    assert result.returncode == 2 and "no such folder" in result.stderr


def test_a_gpu_the_framework_cannot_use_stops_in_one_line(tmp_path: Path,
                                                          fake_gpu: dict[str, str]) -> None:
    write_policy(randaugment(2, 9), tmp_path / "p.json")
    result = run(tmp_path, "validate", "p.json", "--dataset", str(tmp_path / "missing"),
                 **fake_gpu)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "nvidia-smi lists 1 GPU(s) (GPU 0: NVIDIA H100 80GB HBM3) but tensorflow sees none" \
        in lines[0] and "make install GPU=1" in lines[0] and "--allow-cpu" in lines[0]
    assert "Traceback" not in result.stderr
    # on purpose: the CPU, said so, and the command goes on to its own checks
    allowed = run(tmp_path, "validate", "p.json", "--dataset", str(tmp_path / "missing"),
                  "--allow-cpu", **fake_gpu)
    cores = len(os.sched_getaffinity(0))
    assert allowed.stdout.splitlines()[0] == (f"device: CPU ({cores} cores; nvidia-smi lists "
                                              "GPU(s), the CPU asked for)")
    assert "no such folder" in allowed.stderr
    hidden = run(tmp_path, "validate", "p.json", "--dataset", str(tmp_path / "missing"),
                 CUDA_VISIBLE_DEVICES="", **fake_gpu)
    assert "hides the 1 GPU(s)" in hidden.stdout.splitlines()[0]


@pytest.mark.parametrize(("devices", "gpu", "needle"), [
    ("0", False, "this machine has no GPU"),
    ("x,y", True, "'x' is not a GPU here; nvidia-smi lists 1 (indices 0 to 0)"),
    ("3", True, "'3' is not a GPU here"),
])
def test_devices_this_machine_lacks_are_refused(tmp_path: Path, fake_gpu: dict[str, str],
                                                devices: str, gpu: bool, needle: str) -> None:
    result = run(tmp_path, "search", "--dataset", str(tmp_path / "missing"), "--devices",
                 devices, **(fake_gpu if gpu else {}))
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"policysearch: error: --devices {devices}: ")
    assert needle in lines[0]


@pytest.mark.parametrize(("gpu", "env", "build"), [
    (True, {}, "gpu"), (False, {}, "cpu"), (True, {"GPU": "0"}, "cpu"),
    (False, {"GPU": "1"}, "gpu"),
])
def test_make_install_picks_the_build_from_nvidia_smi(fake_gpu: dict[str, str], gpu: bool,
                                                      env: dict[str, str], build: str) -> None:
    path = fake_gpu["PATH"] if gpu else os.environ["PATH"]
    args = ["make", "-n", "-B", "install", *(f"{k}={v}" for k, v in env.items())]
    out = subprocess.run(args, cwd=ROOT, env={**os.environ, "PATH": path}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"-e '.[dev,{build}]'" in out.stdout
    assert ("pip uninstall --quiet -y tensorflow-cpu" in out.stdout) == (build == "gpu")


def test_make_refuses_an_unknown_gpu_value() -> None:
    out = subprocess.run(["make", "-n", "install", "GPU=yes"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "GPU must be 1 or 0, got 'yes'" in out.stderr


@pytest.mark.parametrize("user", [None, "false"])
def test_training_processes_grow_their_gpu_memory_unless_told(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        user: str | None) -> None:
    """Every training command sets, before any framework starts, that each process takes the
    GPU memory it needs (so ``--workers 4 --devices 0,0,0,0`` shares one GPU); a value the user
    set stands."""
    import argparse

    from policysearch.cli.main import announce_device

    for name in ("TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE"):
        if user is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, user)
    announce_device(argparse.Namespace(devices=None, allow_cpu=True))
    assert capsys.readouterr().out.startswith("device: ")
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == (user or "true")
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == (user or "false")
