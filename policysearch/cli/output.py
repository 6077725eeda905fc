"""What the command's subcommands share: how they print, note and warn."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any


def quiet_warnings() -> None:
    """Keep Keras' and Python's warnings out of the progress display (TensorFlow's start-up
    lines are held back by ``quiet.install`` in ``main``)."""
    os.environ.setdefault("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Our own warnings in one line; anything else as Python shows it."""
    from policysearch.errors import PolicySearchWarning

    if issubclass(category, PolicySearchWarning):
        print(f"policysearch: warning: {message}", file=sys.stderr, flush=True)
    else:
        PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


PYTHON_SHOW_WARNING = warnings.showwarning


def say(*args: Any) -> None:
    print(*args, flush=True)


def note(message: str) -> None:
    print(f"policysearch: note: {message}", file=sys.stderr, flush=True)
