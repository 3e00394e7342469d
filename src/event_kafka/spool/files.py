"""Small file-system helpers of the spool: errors that name the path, private directories,
opening only regular files, deleting and syncing without raising."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from ..errors import SpoolError
from ..ratelimit import RateLimitedLog

__all__ = ["close_fd", "errlog", "fsync_dir", "mkdirs", "open_regular", "spool_error", "unlink"]

errlog = RateLimitedLog(logging.getLogger("event_kafka.spool"), 10.0)


def spool_error(what: str, path: str, e: OSError) -> SpoolError:
    """A SpoolError naming ``path`` and the system's text for ``e``."""
    code = e.errno
    text = os.strerror(code) if code else str(e)
    name = errno.errorcode.get(code, "?") if code else "?"
    return SpoolError(f"spool: {what} {path}: {text} ({name})", code, path)


def mkdirs(path: str) -> None:
    """mkdir -p where every directory created is 0o700 (makedirs gives the parents the
    umask's default: they would show broker_ids and event names to every user).
    Raises SpoolError."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError as e:
            if not os.path.isdir(d):
                raise spool_error("cannot create the spool directory", d, e) from None
        except OSError as e:
            raise spool_error("cannot create the spool directory", d, e) from None


def open_regular(path: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor of the regular file ``path``: never follows a symlink, never blocks on a
    FIFO planted under a spool name. Raises OSError (EINVAL for other kinds of file)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def unlink(path: str) -> None:
    """Delete ``path``; a missing file is fine, another failure is logged (rate-limited)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        errlog.warning("spool: cannot delete %s: %s", path, e.strerror)


def fsync_dir(path: str) -> None:
    """Make the directory's entries (new segments, renamed lock files) durable; logged on
    failure."""
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        errlog.warning("spool: cannot fsync %s: %s", path, e.strerror)
