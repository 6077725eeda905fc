"""Optuna storage: the study's source of truth, local or shared.

URLs: ``sqlite:///path.db`` (the default, one machine; several local processes share it),
``postgresql://…`` or ``mysql://…`` (several machines), or a path ending ``.log``/``.journal``
(Optuna's journal file). Relational storages record trial heartbeats, so a trial whose worker
died is failed after a grace period and retried once.

``budget_lock`` serialises "count the trials, then ask for one" across workers, so that many
workers finish exactly the requested number of trials.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policysearch.errors import StorageError, env_int

DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
# Seconds between a running trial's heartbeats; a trial silent for 3 beats lost its worker.
# ``POLICYSEARCH_HEARTBEAT_SECONDS`` shortens it (tests of dead workers); the command line
# checks it (``ENV_SETTINGS``) before any work, so a bad value is one line there.
HEARTBEAT_INTERVAL = env_int("POLICYSEARCH_HEARTBEAT_SECONDS", 10)
GRACE_PERIOD = 3 * HEARTBEAT_INTERVAL


def normalize_url(url: str) -> str:
    """Give SQLAlchemy the psycopg 3 driver for bare ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("mysql://"):
        return "mysql+pymysql://" + url.split("://", 1)[1]
    return url


def is_journal(url: str) -> bool:
    return "://" not in url and url.endswith((".log", ".journal"))


def open_storage(url: str, *, heartbeat: bool = True) -> Any:
    """An Optuna storage for ``url``; one clear error if it cannot be opened."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend

        _make_parent(url, url)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if "://" not in url:
        raise StorageError(f"storage {url!r}: expected a URL (sqlite:///path.db, "
                           "postgresql://user@host/db, mysql://…) or a .log journal file")
    full = normalize_url(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if full.startswith("sqlite:///"):
        path = full.removeprefix("sqlite:///")
        if path and path != ":memory:":
            _make_parent(path, url)
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif full.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeat arguments are marked experimental
            kwargs: dict[str, Any] = {}
            if heartbeat:
                kwargs = {"heartbeat_interval": HEARTBEAT_INTERVAL, "grace_period": GRACE_PERIOD,
                          "heartbeat_stale_trial_callback":
                              RetryHeartbeatStaleTrialCallback(max_retry=1)}
            return optuna.storages.RDBStorage(full, engine_kwargs=engine_kwargs, **kwargs)
    except ModuleNotFoundError as err:
        raise StorageError(f"storage {redact(url)}: the database driver is not installed "
                           f"({err.name})") from None
    except Exception as err:  # sqlalchemy.exc.* and driver errors
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise StorageError(f"storage {redact(url)}: cannot connect ({reason})") from None


def storage_exists(url: str) -> bool:
    """False only for a storage file (SQLite, journal) that is not there; a server is asked
    when it is opened."""
    if is_journal(url):
        return Path(url).exists()
    full = normalize_url(url)
    if full.startswith("sqlite:///"):
        path = full.removeprefix("sqlite:///")
        return not path or path == ":memory:" or Path(path).exists()
    return True


def _make_parent(path: str, url: str) -> None:
    """Create the folder of a storage file; one clear error when it cannot be."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"storage {redact(url)}: cannot create the folder {parent} "
                           f"({err.strerror or err})") from None
    if not parent.is_dir():
        raise StorageError(f"storage {redact(url)}: {parent} is not a folder")


def redact(url: str) -> str:
    """Hide a password in a URL."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _lock_key(study_name: str) -> int:
    return int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def budget_lock(storage: Any, url: str, study_name: str) -> Iterator[None]:
    """Hold a lock named after the study, shared by every worker on this storage."""
    if is_journal(url) or normalize_url(url).startswith("sqlite"):
        path = Path(url if is_journal(url) else normalize_url(url).removeprefix("sqlite:///"))
        lock_path = path.with_name(f".{path.name}.{_lock_key(study_name) & 0xFFFFFFFF:x}.lock")
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    import sqlalchemy

    # a study's storage is Optuna's cache in front of the RDBStorage
    engine = getattr(storage, "_backend", storage).engine
    key = _lock_key(study_name)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        elif engine.dialect.name == "mysql":
            name = f"policysearch-{key & 0xFFFFFFFF:x}"
            connection.execute(sqlalchemy.text("SELECT GET_LOCK(:n, 600)"), {"n": name})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        else:
            yield


def default_storage() -> str:
    return os.environ.get("POLICYSEARCH_STORAGE", DEFAULT_STORAGE)


def reset_connections(storage: Any) -> None:
    """Drop the pooled database connections (one may be broken by a signal mid-call)."""
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None:
        engine.dispose()
