"""Splitting one batch of inputs between N processes (GPUs, machines, cluster tasks) with no overlap
and no gaps: ``fastnst stylize BIG_FOLDER -o OUT --shard K/N``.

Each input goes to the shard its key hashes to (the path inside the folder it was found in), so
every process, given the same command, agrees on the split without talking to the others, and
adding files to the folder moves no other file to another shard. A killed shard is resumed by
running it again: finished outputs are skipped (they are written atomically, so one that exists is
complete) and the partial file the killed process left is removed.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from fastnst.core.errors import FastNSTError

# Rank and world size as torchrun (and torch.distributed launchers) and SLURM set them.
ENVIRONMENTS = (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS"))


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        """Whether the input with this key is this shard's: a stable hash, the same on every machine."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index


def parse_shard(text: str, environ: dict[str, str] | None = None) -> Shard:
    """``K/N`` (0 <= K < N), or ``auto``: this process's rank and world size from torchrun's
    environment (RANK, WORLD_SIZE) or SLURM's (SLURM_PROCID, SLURM_NTASKS)."""
    env = os.environ if environ is None else environ
    if not text.strip():
        raise FastNSTError("shard is empty (an unset variable in a launcher script?): give K/N or auto", param="shard")
    if text == "auto":
        for rank, size in ENVIRONMENTS:
            if rank in env and size in env:
                text = f"{env[rank]}/{env[size]}"
                break
        else:
            raise FastNSTError("--shard auto needs RANK and WORLD_SIZE (torchrun) or SLURM_PROCID and SLURM_NTASKS "
                               "(srun) in the environment; or give K/N", param="shard")
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard.index < shard.count:
        raise FastNSTError(f"shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}", param="shard")
    return shard


def remove_partials(target: Path) -> None:
    """Delete what a killed process left while writing ``target`` (``atomic_path``'s temporary files)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{glob.escape(target.stem)}.*.part{glob.escape(target.suffix)}"):
            stale.unlink(missing_ok=True)


def local_rank(environ: dict[str, str] | None = None) -> int | None:
    """This process's index on its machine (torchrun's LOCAL_RANK, SLURM's SLURM_LOCALID), so that
    N processes on an N-GPU machine each take their own GPU; None outside a launcher."""
    env = os.environ if environ is None else environ
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if env.get(name, "").isdigit():
            return int(env[name])
    return None
