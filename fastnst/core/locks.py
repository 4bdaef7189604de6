"""One kind of lock across processes: the fitted-style cache, a training run's folder. The operating system
releases it when its holder dies (``flock`` through the filelock library), so a killed process never leaves a
stale lock behind and nothing has to guess whether a PID is still alive."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; if another process holds it, call ``on_wait`` once
    (to say so) and wait for it."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def try_lock(path: Path) -> FileLock | None:
    """The lock on ``path`` if no other process holds it, else None; ``release()`` it when done."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock
