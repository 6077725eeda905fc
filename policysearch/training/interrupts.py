"""SIGTERM and SIGINT as a stop request that cannot be lost.

The handler only records the signal and returns: an exception raised from a signal handler is
swallowed wherever Python ignores exceptions (garbage-collection callbacks such as JAX's,
``__del__``, weakref callbacks), and the process would run on. The code checks the request at
safe points (``check``: the claim loop, every training batch, the race, the fidelity loop) and
raises ``Interrupted`` there, so the running trial is recorded and the process exits 143
(SIGTERM) or 130 (SIGINT).

Two bounds: a second SIGTERM or SIGINT ends the process at once; and when ``hard_stop`` is
set (the command line sets it), a process that has not exited ``STOP_SECONDS`` after the first
signal exits anyway with the same code. Before that forced exit the ``on_hard_stop`` callbacks
get at most ``LAST_WORDS_SECONDS`` (a worker records the trial it holds as interrupted, as at
a safe point); a trial they could not record is failed after the storage's grace period and
retried, as for a killed worker.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
# Seconds from the first signal to the latest exit (``POLICYSEARCH_STOP_SECONDS``).
STOP_SECONDS = 60.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds the ``on_hard_stop`` callbacks get, all together, before the forced exit.
LAST_WORDS_SECONDS = 15.0


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived; the running trial is recorded and the process stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    signum: int | None = None
    raised = False
    depth = 0
    hard_stop: float | None = None
    on_signal: list[Callable[[], None]] = []
    on_hard_stop: list[Callable[[], None]] = []


_state = _State()


def exit_code(signum: int) -> int:
    return EXIT_CODES.get(signal.Signals(signum), 128 + signum)


def stop_seconds() -> float:
    text = os.environ.get("POLICYSEARCH_STOP_SECONDS", "")
    try:
        return max(1.0, float(text)) if text else STOP_SECONDS
    except ValueError:
        return STOP_SECONDS


def requested() -> int | None:
    """The signal that asked this process to stop, if one did."""
    return _state.signum


def check() -> None:
    """A safe point: raise ``Interrupted`` once if a stop was requested."""
    if _state.signum is not None and not _state.raised:
        _state.raised = True
        raise Interrupted(_state.signum)


def set_hard_stop(seconds: float | None) -> None:
    """Exit at the latest ``seconds`` after the first signal (``None``: never force it)."""
    _state.hard_stop = seconds


def on_signal(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` at the first signal (say, pass it on to child processes); returns a
    function that unregisters it."""
    return _register(_state.on_signal, callback)


def on_hard_stop(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` (from another thread, while the main thread is still busy) before the
    forced exit ``STOP_SECONDS`` after the signal; returns a function that unregisters it."""
    return _register(_state.on_hard_stop, callback)


def _register(callbacks: list[Callable[[], None]],
              callback: Callable[[], None]) -> Callable[[], None]:
    callbacks.append(callback)

    def remove() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return remove


def _say(text: str) -> None:
    with suppress(OSError):
        os.write(2, f"policysearch: {text}\n".encode())


def _force_exit(signum: int, why: str) -> None:
    _say(f"{why}; exiting now ({signal.Signals(signum).name}, the study resumes on the next "
         "run)")
    os._exit(exit_code(signum))


def _last_words_then_exit(signum: int, why: str) -> None:
    def run() -> None:
        for callback in list(_state.on_hard_stop):
            with suppress(Exception):  # best effort: the exit comes regardless
                callback()

    if _state.on_hard_stop:
        _say(f"{why}; recording the running trial before exiting")
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(LAST_WORDS_SECONDS)
    _force_exit(signum, why)


def _handler(signum: int, frame: Any) -> None:
    if _state.signum is not None:  # the second signal: at once
        _force_exit(signum, "second signal")
    _state.signum = signum
    for callback in list(_state.on_signal):
        with suppress(Exception):  # passing the signal on is best effort
            callback()
    if _state.hard_stop is not None:
        seconds = _state.hard_stop
        timer = threading.Timer(seconds, _last_words_then_exit,
                                (signum, f"still running {seconds:g} s after the signal"))
        timer.daemon = True
        timer.start()


@contextmanager
def interruptible() -> Iterator[None]:
    """Record SIGTERM and SIGINT in the main thread while the block runs; the block's safe
    points (``check``) turn them into ``Interrupted``. Nested blocks share the outer handler.
    A signal still pending when the block ends is raised there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state.depth:
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    _state.signum, _state.raised = None, False
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.depth = 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _state.depth = 0
        for s, h in previous.items():
            signal.signal(s, h)
        if not failed:
            check()
