"""Reading an operator's file (the configuration, a token): a bounded regular file, opened
without blocking."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file; ValueError for anything else (FIFO,
    device, directory, socket) or a bigger file. O_NONBLOCK: opening a FIFO cannot block."""
    if "\0" in str(path):
        raise ValueError("NUL character in the path")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def _read_token_file(path: Path) -> str:
    """At most 4 KiB of a regular file (O_NONBLOCK: a FIFO cannot block the load)."""
    data = _read_regular_file(path, 4096)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None


def under(path: Path, base_dir: Path | None) -> Path:
    """``path``; a relative one under ``base_dir`` (the configuration file's directory)."""
    return base_dir / path if not path.is_absolute() and base_dir is not None else path


def why(exc: OSError | ValueError) -> str:
    """Why a file could not be read (the OS's reason or our check's), never its content."""
    return str(exc.strerror) if isinstance(exc, OSError) else str(exc)
