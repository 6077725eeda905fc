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
