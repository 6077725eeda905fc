"""TensorFlow's start-up chatter, kept out of the command's output.

TensorFlow 2.16+ logs through absl before anything initialises absl's logging, so
``TF_CPP_MIN_LOG_LEVEL`` no longer hides the first lines it writes while it loads: every command
began with ``WARNING: All log messages before absl::InitializeLog() ...`` and the oneDNN notice,
twice each. ``install`` hooks the first ``import tensorflow`` (wherever it happens: Keras, tf.data,
the trainer) and runs it with file descriptor 2 captured; afterwards the captured text is written
back to stderr without the lines ``TF_CPP_MIN_LOG_LEVEL`` says to hide (info at 1, warnings too
at 2, errors too at 3). Errors, Python warnings and tracebacks are written back as they came.
``TF_ENABLE_ONEDNN_OPTS`` is left as the user set it (it changes numerics, not only the output).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
# absl's and TensorFlow's C++ log line: severity letter, MMDD, time, thread, file:line]
LOG_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def min_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as a number (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def keep(line: str, level: int) -> bool:
    """Whether a line TensorFlow wrote while loading reaches the user at log level ``level``."""
    if line.startswith(ABSL_PREAMBLE):
        return level < 1
    match = LOG_LINE.match(line)
    if match is None:
        return True  # not a C++ log line: a Python warning, a traceback, anything else
    severity = SEVERITY[match["severity"]]
    return severity == 3 or severity >= level  # a fatal line is always shown


@contextmanager
def filtered_stderr(level: int) -> Iterator[None]:
    """Capture file descriptor 2, then write back only the lines ``keep`` allows."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if keep(line, level)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loading of ``tensorflow`` once, then steps aside."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader: Any = spec.loader
        exec_module = loader.exec_module

        def quiet_exec(module: ModuleType) -> None:
            with filtered_stderr(min_level()):
                exec_module(module)

        loader.exec_module = quiet_exec
        return spec


def install() -> None:
    """Hide TensorFlow's loading chatter in this process, if TensorFlow is not loaded yet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, QuietTensorFlow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, QuietTensorFlow())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, QuietTensorFlow)]
