"""Where a refine study lives: an Optuna journal file kept sound against kills, full disks
and a second writer (``SafeJournal``), or any Optuna RDB URL.

* the journal path is absolute (Optuna's lock otherwise points nowhere) and appends are
  serialised by an ``flock`` the kernel drops when its holder dies, so no lock is ever
  stale; a leftover Optuna symlink lock that points nowhere is removed;
* a last record cut short (a kill or a full disk in mid-append) is cut off before anything
  is appended after it, with a one-line warning; a corrupt record elsewhere is refused in
  one line; an append that fails is rolled back.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any

from fleetopt.errors import FleetoptError, FleetoptWarning


def _journal_classes() -> Any:
    """``SafeJournal`` and its lock, built on Optuna's journal backend (imported lazily)."""
    from optuna.storages.journal import JournalFileBackend  # heavy: Optuna

    class FlockLock:
        """An exclusive ``flock`` on ``<journal>.flock``: released by the kernel when the
        holder dies, so never stale (Optuna's symlink lock can be, and then spins).  Has
        the ``acquire``/``release`` of Optuna's journal locks."""

        def __init__(self, path: str) -> None:
            self.path = path
            self.fd: int | None = None

        def acquire(self) -> bool:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return True

        def release(self) -> None:
            if self.fd is not None:
                fd, self.fd = self.fd, None
                os.close(fd)                    # closing drops the flock

    class SafeJournal(JournalFileBackend):
        """Optuna's journal file, with the guarantees listed in the module docstring."""

        def __init__(self, path: str) -> None:
            self._check(path)                   # before anything is created
            lock: Any = FlockLock(path + ".flock")     # duck-typed: Optuna's lock base class is private
            super().__init__(path, lock_obj=lock)
            self.repaired = 0
            self.write_error: OSError | None = None
            self._lock.acquire()
            try:
                self.repaired = self._repair()
            finally:
                self._lock.release()

        @staticmethod
        def _check(path: str) -> None:
            """Refuse a journal with a corrupt complete record (appends only ever add to
            the end, so this needs no lock)."""
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1
            for i, line in enumerate(data[:end].splitlines(), start=1):
                try:
                    json.loads(line)
                except ValueError:
                    raise FleetoptError(f"--storage: journal '{path}' is corrupt at line {i}; move it aside to "
                                        f"start a new study") from None

        def _repair(self) -> int:
            """Cut off a last record cut short, under the lock (returns the bytes dropped)."""
            size = os.path.getsize(self._file_path)
            if not size:
                return 0
            with open(self._file_path, "rb") as f:
                f.seek(max(0, size - (1 << 20)))
                tail = f.read()
            if tail.endswith(b"\n"):
                return 0
            cut = tail.rfind(b"\n")
            end = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= (1 << 20) else None)
            if end is None:
                raise FleetoptError(f"--storage: journal '{self._file_path}' ends in a record over 1 MiB long "
                                    f"cut short; move it aside to start a new study")
            os.truncate(self._file_path, end)
            return size - end

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            """Append records as one write under the lock (a record is never half written)."""
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            self._lock.acquire()
            try:
                size = os.path.getsize(self._file_path)
                try:
                    with open(self._file_path, "ab") as f:
                        f.write(text.encode("utf-8"))
                        f.flush()
                        os.fsync(f.fileno())
                except BaseException as e:
                    if isinstance(e, OSError):
                        self.write_error = e    # Optuna may replace it with its own error on the way out
                    try:                        # roll back a partial append (a full disk)
                        os.truncate(self._file_path, size)
                    except OSError:
                        pass
                    raise
            finally:
                self._lock.release()

    return SafeJournal


def _drop_dead_symlink_lock(path: Path) -> None:
    """A symlink lock Optuna's default journal lock left behind that points nowhere (the
    relative paths of earlier fleetopt versions): it would make Optuna spin; remove it."""
    lock = Path(str(path) + ".lock")
    if lock.is_symlink() and not lock.exists():
        try:
            lock.unlink()
            warnings.warn(f"removed a stale journal lock '{lock}' (left by a killed run)", FleetoptWarning,
                          stacklevel=2)
        except OSError:
            pass


def storage_for(url: str | None, name: str, base_dir: Path | None = None) -> Any:
    """An Optuna storage: an RDB URL as given, else a journal file (default
    ``.fleetopt/<instance>.optuna.journal`` under ``base_dir``, the current folder by
    default), always by its absolute path, opened as a ``SafeJournal``."""
    from optuna.storages import JournalStorage  # heavy: Optuna

    if url and "://" in url:
        return url
    path = (Path(url) if url else (base_dir or Path.cwd()) / ".fleetopt" / f"{name or 'instance'}.optuna.journal")
    path = path.expanduser().absolute()
    if path.is_dir():
        raise FleetoptError(f"--storage: '{path}' is a folder; give a journal file path or an RDB URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _drop_dead_symlink_lock(path)
        backend = _journal_classes()(str(path))
    except OSError as e:
        raise FleetoptError(f"--storage: cannot open '{path}' ({e.strerror or e})") from None
    if backend.repaired:
        warnings.warn(f"journal '{path}': dropped an incomplete last record ({backend.repaired} bytes, from an "
                      f"interrupted write)", FleetoptWarning, stacklevel=2)
    return JournalStorage(backend)


def write_failure(store: Any, exc: Exception) -> str | None:
    """Why the storage could not record the study (a full or read-only disk), or None
    when ``exc`` is something else.  Optuna may raise its own error after a failed
    append, so the journal remembers the original."""
    backend = getattr(store, "_backend", None)
    err = getattr(backend, "write_error", None)
    if err is not None:
        return err.strerror or str(err)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if type(exc).__module__.startswith("sqlalchemy"):           # an RDB storage: disk full, read-only, gone
        return (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0]
    return None
