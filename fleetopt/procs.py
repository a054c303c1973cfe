"""Processes that end cleanly: workers that die with their parent, and Ctrl-C / SIGTERM
turned into an orderly stop of a long command.

* ``die_with_parent()``: called first thing in a worker process; on Linux the kernel sends
  the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), whatever killed
  the parent (SIGKILL, the OOM killer); elsewhere a daemon thread polls the parent's pid.
* ``stop_on_signals(on_stop)``: for the duration of a ``with`` block in the main thread,
  the first SIGINT or SIGTERM calls ``on_stop(signum)`` (which may stop the work gently
  or raise ``Interrupted``), a second one raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process end when its parent does (see the module docstring).
    ``parent_pid``: the parent expected (if it is already gone, exit now)."""
    expected = parent_pid if parent_pid is not None else os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != expected:            # the parent died before the death signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            import time

            while os.getppid() == expected:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="fleetopt-parent-watch", daemon=True).start()


def ignore_interrupts() -> None:
    """In a worker: leave Ctrl-C (sent to the whole process group by a terminal) to the
    parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def stop_on_signals(on_stop: Callable[[int], None]) -> Iterator[None]:
    """The first SIGINT or SIGTERM calls ``on_stop(signum)``; a second raises
    KeyboardInterrupt.  Outside the main thread (where handlers cannot be set) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        on_stop(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
