"""Where train.py and optimize.py turn errors into exit codes: one line on stderr, no traceback, and no
empty run folder left behind by a typo."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fastnst.core.errors import FastNSTError
from fastnst.training.config import HYDRA_KEYS

T = TypeVar("T")


def remove_empty_run(run_dir: Path) -> None:
    """After a run that failed before doing anything, take back what Hydra wrote for it (.hydra/ and
    the log), so a typo leaves no folder behind. Anything else in the folder is left alone."""
    ours = {".hydra", "train.log", "optimize.log"}
    if not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - ours:
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    for name in ("train.log", "optimize.log"):
        (run_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()


def guarded(fn: Callable[..., T], *args: object, keys: dict[str, str] | None = None,
            run_dir: Path | None = None) -> T:
    """Call ``fn``; a FastNSTError becomes ``error: <message> (set KEY=...)`` on stderr and exit
    code 2, and Ctrl-C exit code 130 without a traceback (``fn`` has saved what it had by then).
    The one place where train.py and optimize.py turn errors into exit codes."""
    try:
        return fn(*args)
    except FastNSTError as err:
        key = {**HYDRA_KEYS, **(keys or {})}.get(err.param or "")
        print(f"error: {err}" + (f" (set {key}=...)" if key else ""), file=sys.stderr, flush=True)
        if run_dir is not None:
            remove_empty_run(run_dir)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
