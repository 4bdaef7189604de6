import subprocess
import sys

import pytest

# Frees and reallocates a 64 MB tensor (above glibc's largest mmap threshold) 40 times and counts the cycles
# that faulted its pages in afresh: a fresh mapping faults on every 4 KiB page it touches.
REALLOCATE = """
import resource, sys, torch
from fastnst.core.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
faulted = 0
for _ in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    faulted += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before > 10_000
    del x
print(kept, faulted)
"""


def cycles_that_faulted(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", REALLOCATE, mode], capture_output=True, text=True, check=True)
    kept, count = out.stdout.split()
    return kept, int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_memory_is_reused_rather_than_faulted_in_afresh() -> None:
    # Each CPU training step frees and reallocates activations this big (docs/speed.md: 12% of a run).
    kept, with_keep = cycles_that_faulted("keep")
    if kept != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    _, without = cycles_that_faulted("default")
    assert without >= 35
    assert with_keep <= without / 2
