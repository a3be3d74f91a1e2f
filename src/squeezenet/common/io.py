"""Writing files so that a killed process never leaves half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it, then put it back
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The data is flushed to disk (fsync) before the rename, so a crash or a pulled plug leaves either the
    previous file or the new one, never a torn file; at worst a stray ``.tmp`` file. The file gets the
    permissions ``open()`` would give it (``mkstemp`` makes it private to its owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except OSError as exc:  # a failed write (a full disk) names no file: name the one being written
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, f"{exc.strerror}; nothing was replaced", str(path)) from None
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_directory(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (the directory entry itself is data too)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FolderLock:
    """An exclusive claim on a folder: ``flock`` on ``folder/name`` held for as long as the owner lives.

    The file holds the owner's pid and host for the message a second claimant gets. A lock left by a process
    that died (killed, machine rebooted) is stale by construction: the kernel drops ``flock`` locks with the
    process, so the next claimant simply takes it. (``flock`` is local to a machine: on NFS two hosts may both
    succeed, which is why the host is recorded too.)
    """

    def __init__(self, folder: str | Path, what: str, name: str = ".lock"):
        self.folder, self.what, self.path = Path(folder), what, Path(folder) / name
        self._file: Any = None

    def acquire(self) -> FolderLock:
        import fcntl
        import socket

        from ..errors import SqueezeNetError

        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lifetime of the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read(200).strip() or "another process"
            handle.close()
            raise SqueezeNetError(f"{self.folder} is in use by {self.what} ({owner}); wait for it to finish or "
                                  "choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays (removing it would race a new claimant)
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
