"""User-facing errors: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class PolicySearchError(Exception):
    """A problem the user can fix (bad input, missing data, unreachable service)."""

    exit_code = 2


class DataError(PolicySearchError):
    """The dataset is missing, unreadable or malformed."""


class ConfigError(PolicySearchError):
    """An experiment config or search-space file is malformed."""


class PolicyFormatError(PolicySearchError):
    """A policy file does not follow the policy schema."""


class StorageError(PolicySearchError):
    """The Optuna storage cannot be opened."""


class TrackingError(PolicySearchError):
    """The MLflow tracking store cannot be reached."""


class PolicySearchWarning(UserWarning):
    """Something legal but worth knowing (a class too small for every split, a cache that
    cannot be written); the CLI prints it as one line, ``policysearch: warning: ...``."""


def env_int(name: str, default: int, low: int = 1) -> int:
    """The integer setting ``$name`` (``default`` when unset or empty); a value that is not an
    integer of at least ``low`` is a user error naming the variable and the value."""
    import os

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise PolicySearchError(f"environment variable {name}={text!r}: expected an integer "
                                f"(at least {low}); unset it for the default {default}") from None
    if value < low:
        raise PolicySearchError(f"environment variable {name}={text!r}: must be at least {low}; "
                                f"unset it for the default {default}")
    return value
