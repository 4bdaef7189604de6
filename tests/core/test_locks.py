"""One lock across processes (fastnst/core/locks.py): a second process waits and says so; a killed holder
frees it at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from fastnst.core.locks import file_lock, try_lock


def hold(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                             "from fastnst.core.locks import file_lock\n"
                             f"with file_lock(Path({str(path)!r})):\n print('held', flush=True); "
                             f"time.sleep({seconds})"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_waits_and_is_told(tmp_path: Path) -> None:
    lock = tmp_path / "fits.lock"
    holder = hold(lock, 1.5)
    told, start = [], time.monotonic()
    with file_lock(lock, on_wait=lambda: told.append(time.monotonic() - start)):
        waited = time.monotonic() - start
    holder.wait()
    assert told and told[0] < 0.5 and waited > 0.5  # told at once, then waited for the holder


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "fits.lock"
    holder = hold(lock, 60)
    assert try_lock(lock) is None
    holder.kill()
    holder.wait()
    taken = try_lock(lock)
    assert taken is not None
    taken.release()


def test_no_wait_no_message(tmp_path: Path) -> None:
    told: list[int] = []
    with file_lock(tmp_path / "x.lock", on_wait=lambda: told.append(1)):
        done = threading.Event()
        done.set()
    assert told == [] and done.is_set()
