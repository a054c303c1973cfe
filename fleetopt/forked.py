"""A map over forked processes: the parent and ``workers - 1`` children share a queue of
item indices; only results travel back (pickled through a pipe).

Linux fork: the children inherit everything the job closes over (sized traffic, profiles,
the problem) without pickling it.  The queue is a pipe holding each item as 4 bytes, written
before any reader starts; every read asks for 4 bytes and the kernel serialises reads of
one pipe, so each process - the parent too - takes whole items, and uneven items balance
themselves without locks.  A child that fails or dies leaves its items to the caller (they
are missing from the result); children die with their parent (``die_with_parent``) and are
killed when the parent is interrupted.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from typing import TypeVar

from fleetopt.procs import die_with_parent

T = TypeVar("T")

MAX_ITEMS = 65536 // 4
"""Items that fit the queue pipe's buffer (4 bytes each in 64 KiB), written before any read."""


def can_fork(workers: int, items: int) -> bool:
    """Whether forking pays and is possible: several workers, at least two items each, the
    queue within one pipe buffer, and ``os.fork`` on this platform."""
    return workers > 1 and 2 * workers <= items <= MAX_ITEMS and hasattr(os, "fork")


def _drain(queue_fd: int, job: Callable[[int], T]) -> dict[int, T]:
    """Run ``job`` on items read from the queue until it is empty."""
    out: dict[int, T] = {}
    while True:
        b = os.read(queue_fd, 4)
        if not b:
            return out
        while len(b) < 4:                   # never seen on Linux; finish the index if it happens
            more = os.read(queue_fd, 4 - len(b))
            if not more:
                return out
            b += more
        item = int.from_bytes(b, "little")
        out[item] = job(item)


def fork_map(job: Callable[[int], T], items: Sequence[int], workers: int) -> dict[int, T]:
    """{item: job(item)} over the parent and ``workers - 1`` forked children (module
    docstring); items whose child failed are missing."""
    q_r, q_w = os.pipe()
    os.write(q_w, b"".join(int(c).to_bytes(4, "little") for c in items))     # fits the pipe (MAX_ITEMS)
    os.close(q_w)
    kids: list[tuple[int, int]] = []
    parent = os.getpid()
    try:
        for _ in range(workers - 1):
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError:                              # no process to spare: the parent does it all
                os.close(r)
                os.close(w)
                break
            if pid == 0:                                 # child: drain, send, leave without cleanup
                code = 0
                try:
                    die_with_parent(parent)              # a killed parent takes its helpers with it
                    os.close(r)
                    data = pickle.dumps(_drain(q_r, job), protocol=pickle.HIGHEST_PROTOCOL)
                    with os.fdopen(w, "wb") as f:
                        f.write(data)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            kids.append((pid, r))
        results = _drain(q_r, job)
        for pid, r in kids:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            os.waitpid(pid, 0)
            if data:
                try:
                    results.update(pickle.loads(data))
                except Exception:                        # a child cut short: its items are left to the caller
                    pass
        kids = []
    finally:
        for pid, _ in kids:                              # interrupted: do not leave children behind
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        os.close(q_r)
    return results
