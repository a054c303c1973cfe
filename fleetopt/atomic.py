"""Writes that survive a kill, a full disk and a second writer.

* ``write_atomic``: one file via a temporary in the same folder, fsync and rename;
* ``write_set``: several files as one unit, swapped in by an atomic folder exchange;
* ``check_set_target``: refuse, before any work, a folder that cannot take a set;
* ``clean_stale`` / ``temp_name``: temporaries named after their writer, removed once it is gone;
* ``FolderLock``: an ``flock`` the kernel drops when its holder dies.

Every file gets the permissions any new file gets (0666 minus the umask).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from fleetopt.errors import FleetoptError


def current_umask() -> int:
    """The process umask, read without changing it where Linux exposes it (else set and
    restored at once)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def os_error(exc: OSError, what: str, path: str | os.PathLike) -> FleetoptError:
    """A write or read that failed (full disk, read-only folder, no permission) as one line."""
    why = exc.strerror or exc.__class__.__name__
    return FleetoptError(f"{what}: cannot write '{path}' ({why})")


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and
    ``os.replace``: a reader never sees a half-written file and an interrupt or a full disk
    leaves the old one intact (and no temporary behind; one left by a kill is removed by
    the next write).  The file gets the permissions any new file gets (0666 minus the
    umask), not mkstemp's 0600.  Raises OSError."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(p.parent, p.name)
    tmp = p.parent / temp_name(p.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)     # 0666 minus the umask, as any new file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host() -> str:
    import socket

    return re.sub(r"[~/\\]", "_", socket.gethostname()) or "host"


_TEMP = re.compile(r"~(?P<host>[^~]*)~(?P<pid>\d+)~[0-9a-f]{8}(?:\.[a-z]+)?$")
STALE_AFTER_S = 600.0
"""A temporary whose writer cannot be identified (another host) is stale after this long."""


def temp_name(target: str, suffix: str = ".tmp") -> str:
    """A hidden temporary name for ``target`` that says who writes it
    (``.<target>~<host>~<pid>~<token><suffix>``), so ``clean_stale`` can tell a temporary
    of a killed writer from one being written."""
    import uuid

    return f".{target}~{_host()}~{os.getpid()}~{uuid.uuid4().hex[:8]}{suffix}"


def clean_stale(folder: Path, target: str = "") -> int:
    """Remove the temporaries (``temp_name``) killed writers left in ``folder``: of
    ``target`` only, or of any target when it is empty.  One is stale when its writer was
    on this host and is no longer alive, or, written elsewhere, when it is older than
    STALE_AFTER_S.  Returns how many were removed (what cannot be removed is left)."""
    import shutil
    import time

    n = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    host, now = _host(), time.time()
    for e in entries:
        m = _TEMP.search(e.name)
        if not m or not e.name.startswith(f".{target}~" if target else "."):
            continue
        pid = int(m.group("pid"))
        if m.group("host") == host:
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = now - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            except OSError:
                stale = False
        if stale:
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
                n += 1
            except OSError:
                pass
    return n


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False when the
    platform or file system cannot, OSError for a real failure."""
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_set_target(folder: str | os.PathLike, names: list[str], what: str, force: bool = False,
                     owned: bool = False) -> list[str]:
    """Refuse (one line) a folder ``write_set`` may not replace: not a folder, holding files
    other than ``names`` (unless ``owned``: a folder only fleetopt writes, such as a sweep's
    report), or holding some of them without ``force``.  Returns the names it holds (those
    ``force`` replaces)."""
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise FleetoptError(f"{what}: '{d}' exists and is not a folder")
    try:
        held = set(os.listdir(d)) if d.is_dir() else set()
    except OSError as e:
        raise FleetoptError(f"{what}: cannot read '{d}' ({e.strerror})") from None
    foreign = [] if owned else sorted(n for n in held if n not in names)
    if foreign:
        raise FleetoptError(f"{what}: '{d}' holds files fleetopt did not write ({', '.join(foreign[:3])}"
                            f"{', ...' if len(foreign) > 3 else ''}); give a new or empty folder")
    clash = [n for n in names if n in held] + (sorted(held - set(names)) if owned else [])
    if clash and not force:
        raise FleetoptError(f"{what}: {d / clash[0]} exists; pass --force to replace it")
    return clash


def write_set(folder: str | os.PathLike[str], files: Mapping[str, Callable[[Path], None]], what: str,
              force: bool = False, owned: bool = False) -> None:
    """Write a set of files into ``folder`` as one unit: each ``files[name](path)`` writes
    one file into a fresh hidden sibling folder, which then replaces ``folder`` by an atomic
    exchange (Linux renameat2), so a reader - or a kill at any moment - sees the whole old
    set or the whole new one, never a mix.  ``folder`` may be new, empty or hold an earlier
    set (replaced only with ``force``); files fleetopt did not write are never touched: a
    folder holding any is refused (unless ``owned``: a folder only fleetopt writes).  A full
    or read-only disk is one line (FleetoptError, naming ``what``) and leaves nothing behind;
    temporaries of killed writers are removed."""
    import shutil

    d = Path(folder)
    check_set_target(d, list(files), what, force, owned)
    parent = d.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, what, parent) from None
    clean_stale(parent, d.name)
    tmp = parent / temp_name(d.name, "")
    try:
        tmp.mkdir()
        if d.is_dir():
            os.chmod(tmp, d.stat().st_mode & 0o7777)
        for name, write in files.items():
            write(tmp / name)
        _fsync_dir(tmp)
        if not d.exists():
            os.rename(tmp, d)
        elif _exchange(tmp, d):
            shutil.rmtree(tmp)                      # now the old set
        else:                                       # no atomic exchange here: the old set aside, then the new
            aside = parent / temp_name(d.name, ".old")
            os.rename(d, aside)
            os.rename(tmp, d)
            shutil.rmtree(aside, ignore_errors=True)
        _fsync_dir(parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(e, what, d) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_HELD: set[int] = set()       # descriptors of the FolderLocks this process holds


def close_inherited_locks() -> None:
    """In a forked worker: close the FolderLock descriptors inherited from the parent, so
    the lock lives and dies with the parent alone (closing does not release it for the
    parent, which keeps its own descriptor)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


class FolderLock:
    """An exclusive ``flock`` on ``folder/.lock`` for as long as the context lasts: a second
    fleetopt process writing the same folder is refused in one line.  The kernel releases
    it when the holder dies (SIGKILL included), so it is never stale.  On a read-only
    folder with no lock file yet there is nothing to protect and no lock is taken."""

    def __init__(self, folder: Path, what: str):
        self.path, self.what = Path(folder) / ".lock", what
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        import errno
        import fcntl

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                raise os_error(e, self.what, self.path.parent) from None
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return self
        fd = self.fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.fd = None
            raise FleetoptError(f"{self.what}: another fleetopt process is writing to '{self.path.parent}'; "
                                f"wait for it or stop it") from None
        _HELD.add(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)                   # closing releases the flock
            self.fd = None
