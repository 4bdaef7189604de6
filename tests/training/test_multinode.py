"""Multi-node training on one machine: two "nodes" of one CPU process each, launched with torchrun on
the loopback address (gloo), as a user launches them on two machines."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastnst.core.modelfile import read_metadata

from conftest import ROOT, make_image

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun() -> list[str]:
    script = Path(sys.executable).parent / "torchrun"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def start_node(rank: int, port: int, run_dir: Path, trace: Path, steps: int, *extra: str,
               sleep: float = 0.0) -> subprocess.Popen:
    cmd = [*torchrun(), "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(port),
           "train.py", "experiment=smoke", f"style.image={run_dir.parent / 'style.png'}", "trainer=ddp",
           "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2", f"trainer.max_steps={steps}",
           "data.image_size=32", "data.batch_size=2", "data.synthetic_length=16", "trainer.enable_progress_bar=false",
           "trainer.val_check_interval=1000", "checkpoint_every_n_steps=4", f"hydra.run.dir={run_dir}",
           "+callbacks.trace._target_=trace_batches.TraceBatches", f"+callbacks.trace.folder={trace}",
           f"+callbacks.trace.sleep={sleep}", *extra]
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process under it (torchrun starts its workers in their own sessions,
    so killing its process group alone would leave the worker training): a machine that dies."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finish(nodes: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str]]:
    return [(p.wait(timeout=timeout), p.stdout.read()) for p in nodes]


def trace(folder: Path, rank: int) -> list[tuple[int, int, str]]:
    rows = (line.split() for line in (folder / f"rank{rank}.txt").read_text().splitlines())
    return [(int(epoch), int(step), digest) for epoch, step, digest in rows]


def checksums(text: str) -> dict[str, str]:
    return dict(re.findall(r"rank (\d): network parameter checksum (-?[\d.]+)", text))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    make_image(tmp_path / "style.png", (40, 40))
    return tmp_path / "run"


def test_two_nodes_split_the_data_agree_on_the_weights_and_export_once(run_dir: Path, tmp_path: Path) -> None:
    port, traced = free_port(), tmp_path / "trace"
    results = finish([start_node(r, port, run_dir, traced, steps=4) for r in (0, 1)])
    for code, output in results:
        assert code == 0, output[-3000:]
    sums = checksums((run_dir / "train.log").read_text())
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    # One epoch is 16 images = 4 steps x batch 2 x 2 ranks: every image exactly once across the ranks.
    seen = [digest for rank in (0, 1) for epoch, _, digest in trace(traced, rank) if epoch == 0]
    assert len(seen) == 16 and len(set(seen)) == 16
    assert read_metadata(run_dir / "starry_night.safetensors").steps == 4
    assert [p.name for p in run_dir.glob("*.safetensors")] == ["starry_night.safetensors"]
    assert len(list(run_dir.rglob("events.out.tfevents*"))) == 1  # TensorBoard written by rank 0 only


def test_a_restart_after_a_node_dies_resumes_from_the_last_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    port, traced = free_port(), tmp_path / "trace"
    nodes = [start_node(r, port, run_dir, traced, steps=16, sleep=0.2) for r in (0, 1)]
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 180
    while not last.is_file() and time.time() < deadline and nodes[1].poll() is None:
        time.sleep(0.1)
    assert last.is_file(), "no checkpoint before the deadline"
    kill_tree(nodes[1].pid)  # node 1 dies mid-run
    try:
        nodes[0].wait(timeout=60)  # node 0 notices its peer is gone (measured: within 5 s) ...
    except subprocess.TimeoutExpired:
        kill_tree(nodes[0].pid)  # ... or is stopped with it, as a job scheduler would
    for p in nodes:
        p.wait()
        p.stdout.close()
    assert read_metadata(last).steps < 16
    # The whole job restarts: both nodes, `ckpt_path=last`, the same run folder.
    port = free_port()
    results = finish([start_node(r, port, run_dir, traced / "again", 16, "ckpt_path=last") for r in (0, 1)])
    for code, output in results:
        assert code == 0, output[-3000:]
    first_step = min(step for rank in (0, 1) for _, step, _ in trace(traced / "again", rank))
    assert first_step >= 4  # resumed, not started over
    sums = checksums((run_dir / "train.log").read_text().split("resuming from")[-1])
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    assert read_metadata(run_dir / "starry_night.safetensors").steps == 16
