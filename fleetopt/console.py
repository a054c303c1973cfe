"""What reaches the terminal: results on stdout, everything else (solver logs, progress,
warnings) on stderr.

* ``stdout_to_stderr()``: for the duration of a ``with`` block, whatever is written to
  stdout - by Python (``print``, Pyomo's ``tee``) or by a C library writing to descriptor
  1 (HiGHS's log) - goes to stderr instead, so ``fleetopt solve --verbose --format json``
  still prints nothing but JSON on stdout.
* ``configure(quiet)``: set once by the command line; progress is shown only when stderr
  is a terminal and ``-q/--quiet`` was not given.  A library caller sees no progress
  unless it calls ``configure`` itself.
* ``bar(total, desc, unit)``: a progress bar (tqdm, on stderr) for counted work; it
  appears only once the work has run ``DELAY_S`` seconds, and tqdm is imported only when
  progress is shown at all.
* ``activity(desc)``: an elapsed-time line for work with no count (a large solve), shown
  from ``DELAY_S`` seconds on by a helper thread that imports nothing before then.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DELAY_S = 2.0
"""Work shorter than this shows no progress."""

_state = {"progress": False, "quiet": False}


def configure(quiet: bool = False, progress: bool | None = None) -> None:
    """Set whether progress is shown: ``progress`` (default: stderr is a terminal and not
    ``quiet``)."""
    _state["quiet"] = bool(quiet)
    if progress is None:
        progress = not quiet and _isatty(sys.stderr)
    _state["progress"] = bool(progress)


def quiet() -> bool:
    """Whether ``-q/--quiet`` was given (no progress, no warnings)."""
    return bool(_state["quiet"])


def progress_enabled() -> bool:
    """Whether progress bars are shown (see ``configure``)."""
    return bool(_state["progress"])


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send stdout (Python's and descriptor 1) to stderr while the block runs."""
    import contextlib

    sys.stdout.flush()
    try:
        fd_out, fd_err = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):      # captured streams (tests): Python's level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(fd_out)
    try:
        os.dup2(fd_err, fd_out)             # Python's sys.stdout writes to descriptor 1 too: no second redirect
        yield                               # (Pyomo's tee captures the descriptors itself and must see two streams)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved, fd_out)
            os.close(saved)


class _NullBar:
    """A bar that shows nothing (progress off)."""

    def update(self, n: float = 1) -> None:
        """Count ``n`` more units of work (nothing shown)."""

    def set_postfix_str(self, s: str) -> None:
        """A note after the bar (nothing shown)."""


@contextmanager
def bar(total: float | None, desc: str, unit: str = "it") -> Iterator[Any]:
    """A progress bar on stderr for ``total`` units of work, shown after ``DELAY_S``
    seconds when progress is on; an object with ``update(n)`` either way."""
    if not _state["progress"]:
        yield _NullBar()
        return
    from tqdm import tqdm

    b = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, delay=DELAY_S, dynamic_ncols=True, leave=False,
             unit_scale=unit == "req")
    try:
        yield b
    finally:
        b.close()


@contextmanager
def activity(desc: str) -> Iterator[None]:
    """An elapsed-time line on stderr while the block runs, from ``DELAY_S`` seconds on
    (progress on only); a block that ends sooner costs one idle thread and no import."""
    if not _state["progress"]:
        yield
        return
    import threading

    done = threading.Event()

    def show() -> None:
        if done.wait(DELAY_S):
            return
        from tqdm import tqdm

        t = tqdm(total=None, desc=desc, file=sys.stderr, bar_format="{desc}: {elapsed}", leave=False)
        try:
            while not done.wait(0.5):
                t.refresh()
        finally:
            t.close()

    th = threading.Thread(target=show, name="fleetopt-activity", daemon=True)
    th.start()
    try:
        yield
    finally:
        done.set()
        th.join(2.0)
