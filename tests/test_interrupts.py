"""SIGTERM/SIGINT are recorded, never raised from the handler: a signal that lands where Python
ignores exceptions (a gc callback, ``__del__``) still stops the process at the next safe point.

These send real signals to this process; the full search under a signal is in
test_distributed.py (test_sigterm_interrupts_cleanly_and_resumes,
test_sigterm_inside_a_gc_callback_still_stops_the_search)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from policysearch.training import interrupts
from policysearch.training.interrupts import Interrupted, interruptible


def send_and_let_the_handler_run(signum: int) -> None:
    """Signal this process; Python runs the handler at the next bytecode, i.e. right here."""
    os.kill(os.getpid(), signum)
    for _ in range(1000):
        if interrupts.requested() is not None:
            return


def test_signal_inside_a_gc_callback_is_honoured_at_the_next_safe_point() -> None:
    seen: list[int | None] = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start" and not seen:
            send_and_let_the_handler_run(signal.SIGTERM)
            seen.append(interrupts.requested())

    with pytest.raises(Interrupted) as stop, interruptible():
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        assert seen == [signal.SIGTERM]  # the handler ran inside the callback and returned
        interrupts.check()
        pytest.fail("the recorded signal was not raised at the safe point")
    assert stop.value.signum == signal.SIGTERM
    assert interrupts.exit_code(stop.value.signum) == 143


def test_signal_inside_del_is_honoured_even_if_nothing_checks_before_the_end() -> None:
    class SlowToDie:
        def __del__(self) -> None:  # an exception raised here would be printed and dropped
            send_and_let_the_handler_run(signal.SIGINT)

    with pytest.raises(Interrupted) as stop, interruptible():
        obj = SlowToDie()
        del obj
        assert interrupts.requested() == signal.SIGINT
        # no safe point in the block: its end is one
    assert stop.value.signum == signal.SIGINT


def test_a_raising_handler_loses_the_signal_in_a_gc_callback() -> None:
    """Why the handler only records: the old handler's exception vanished in the callback."""
    script = textwrap.dedent("""
        import gc, os, signal
        def handler(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, handler)
        def callback(phase, info):
            if phase == "start":
                gc.callbacks.remove(callback)
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))
        gc.callbacks.append(callback)
        gc.collect()
        print("ran on")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "ran on" in proc.stdout
    assert "Exception ignored" in proc.stderr


def test_a_second_signal_ends_the_process_at_once() -> None:
    script = textwrap.dedent("""
        import os, signal, time
        from policysearch.training.interrupts import interruptible
        with interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # no safe point: the first is only recorded
            print("recorded", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("not reached", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert "recorded" in proc.stdout and "not reached" not in proc.stdout
    assert "second signal" in proc.stderr


def test_the_hard_stop_ends_a_process_that_never_reaches_a_safe_point() -> None:
    script = textwrap.dedent("""
        import os, signal, time
        from policysearch.training import interrupts
        interrupts.set_hard_stop(1.0)
        with interrupts.interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)  # stuck, say in a long call that never returns to a safe point
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "still running 1 s after the signal" in proc.stderr


def test_the_hard_stop_gives_its_callbacks_bounded_last_words(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from policysearch.training import interrupts
        interrupts.LAST_WORDS_SECONDS = 2.0
        interrupts.set_hard_stop(1.0)
        interrupts.on_hard_stop(lambda: Path({str(tmp_path / "said")!r}).write_text("said"))
        interrupts.on_hard_stop(lambda: time.sleep(60))  # a callback that hangs
        with interrupts.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)  # stuck
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)  # the hanging callback does not hold the exit
    assert proc.returncode == 143, proc.stderr
    assert (tmp_path / "said").read_text() == "said"
    assert "recording the running trial before exiting" in proc.stderr
