"""Real Hydra-composed training runs, shrunk to a few 32 px steps on the CPU with a random VGG."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fastnst.core.errors import FastNSTError
from fastnst.core.modelfile import load_network, read_metadata
from fastnst.training.run import run

from conftest import compose_train, make_image, tiny_train_overrides


def test_training_writes_tensorboard_checkpoints_and_a_stylizer(style_path: Path, tmp_path: Path) -> None:
    cfg = compose_train(tiny_train_overrides(style_path, steps=4), tmp_path / "run")
    path = run(cfg)
    assert path == tmp_path / "run" / "starry_night.safetensors"
    meta = read_metadata(path)
    assert meta.steps == 4 and meta.style_name == "starry_night"
    assert meta.network == {"channels": 16, "num_residual": 5, "output": "sigmoid", "upsample": "bilinear"}
    assert meta.loss["vgg_weights"] == "random" and len(meta.style_sha256) == 64
    network, _ = load_network(path)
    assert network(torch.rand(1, 3, 20, 30)).shape == (1, 3, 20, 30)

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/content", "loss/style", "loss/tv", "lr", "perf/images_per_sec"} <= scalars
    assert {f"loss/style/{n}" for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")} <= scalars
    assert "val/total" in scalars and "samples" in events.Tags()["images"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_the_real_checkpoint_and_stylizer_load_through_the_public_loader(style_path: Path, tmp_path: Path) -> None:
    # No hand-built checkpoint dicts: what training really writes is what the loader must read.
    cfg = compose_train([*tiny_train_overrides(style_path, steps=2), "description=a test run"], tmp_path / "run")
    exported = run(cfg)
    from_ckpt, ckpt_meta = load_network(tmp_path / "run" / "checkpoints" / "last.ckpt")
    from_file, file_meta = load_network(exported)
    for field in ("style_name", "style_sha256", "style_size", "network", "loss", "image_size", "steps", "description"):
        assert getattr(ckpt_meta, field) == getattr(file_meta, field), field
    assert file_meta.description == "a test run" and file_meta.steps == 2
    x = torch.rand(1, 3, 24, 24)
    torch.testing.assert_close(from_ckpt(x), from_file(x))


def test_checkpoints_leave_out_the_loss_network(style_path: Path, tmp_path: Path) -> None:
    run(compose_train(tiny_train_overrides(style_path, steps=2), tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("network.") for k in keys) and not any(k.startswith("loss.") for k in keys)


class Crash(Callback):
    """Stands in for a killed process: dies after the step-2 checkpoint was written."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == 3:
            raise RuntimeError("simulated crash")


def test_resume_after_a_crash_ends_at_max_steps(style_path: Path, tmp_path: Path, monkeypatch) -> None:
    import lightning.pytorch as pl

    original = pl.Trainer.__init__

    def with_crash(self, *args, callbacks=None, **kwargs):  # noqa: ANN001, ANN202
        original(self, *args, callbacks=[*(callbacks or []), Crash()], **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", with_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(compose_train(tiny_train_overrides(style_path, steps=6), tmp_path / "a"))
    assert torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    # A crash after some steps still exports them (marked with their step count); resuming continues.
    assert read_metadata(tmp_path / "a" / "starry_night.safetensors").steps >= 2
    monkeypatch.setattr(pl.Trainer, "__init__", original)

    # A new run directory beside the old one, as `python train.py ... ckpt_path=last` makes.
    path = run(compose_train([*tiny_train_overrides(style_path, steps=6), "ckpt_path=last"], tmp_path / "b"))
    assert path == tmp_path / "a" / "starry_night.safetensors"  # continues the interrupted run
    assert read_metadata(path).steps == 6


def test_ckpt_last_without_a_checkpoint_is_a_clear_error(style_path: Path, tmp_path: Path) -> None:
    with pytest.raises(FastNSTError, match="no checkpoints/last.ckpt"):
        run(compose_train([*tiny_train_overrides(style_path), "ckpt_path=last"], tmp_path / "run"))


def test_a_corrupt_image_in_the_data_is_skipped(style_path: Path, image_folder: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    (image_folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (image_folder / "zz_truncated.png").write_bytes(make_image(tmp_path / "t.png").read_bytes()[:60])
    # 8 good + 2 bad images, 2 held out, batch 4: 6 steps see every training file at least once.
    cfg = compose_train([*tiny_train_overrides(style_path, image_folder, steps=6), "data.batch_size=4"], tmp_path / "r")
    assert read_metadata(run(cfg)).steps == 6
    skipped = [r.getMessage() for r in caplog.records if "skipping unreadable" in r.getMessage()]
    assert any("zz_broken.jpg" in m for m in skipped) and any("zz_truncated.png" in m for m in skipped)
    assert any("unreadable training image(s) were skipped" in r.getMessage() for r in caplog.records)


def test_train_py_smoke_prints_the_stylizer_path_last(style_path: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    args = [sys.executable, "train.py", "experiment=smoke", f"style.image={style_path}", "trainer.max_steps=3",
            f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = Path(proc.stdout.strip().splitlines()[-1])
    assert last == (tmp_path / "run" / "starry_night.safetensors").resolve() and last.is_file()
    assert "RANDOM VGG WEIGHTS" in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable"])
def test_bad_data_root_fails_before_training(case: str, style_path: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    if case != "missing":
        root.mkdir()
    if case == "unreadable":
        (root / "a.jpg").write_text("not an image")
    with pytest.raises(FastNSTError, match="root") as err:
        run(compose_train(tiny_train_overrides(style_path, root), tmp_path / "run"))
    assert err.value.param == "root" and str(root) in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("content", [None, b"", b"GIF89a garbage"])
def test_bad_style_image_is_a_clear_error(content: bytes | None, tmp_path: Path) -> None:
    style = tmp_path / "style.jpg"
    if content is not None:
        style.write_bytes(content)
    with pytest.raises(FastNSTError, match="style.jpg"):
        run(compose_train(tiny_train_overrides(style), tmp_path / "run"))


def test_a_nan_loss_stops_the_run_and_names_the_step(style_path: Path, tmp_path: Path) -> None:
    cfg = compose_train([*tiny_train_overrides(style_path, steps=4), "optimizer.lr=1e30"], tmp_path / "run")
    with pytest.raises(FastNSTError, match=r"at step \d+"):
        run(cfg)
    assert not (tmp_path / "run" / "starry_night.safetensors").exists()


def test_a_prepared_cache_trains_without_decoding(style_path: Path, image_folder: Path, tmp_path: Path,
                                                    capsys) -> None:
    from scripts.data import prepare_data

    (image_folder / "zz_broken.jpg").write_bytes(b"not a jpeg")
    cache = tmp_path / "cache.npy"
    assert prepare_data.main([str(image_folder), str(cache), "--size", "40"]) in (0, None)
    out = capsys.readouterr().out
    assert "8 images of 40x40" in out and "1 unreadable skipped" in out
    overrides = [*tiny_train_overrides(style_path, image_folder, steps=3), f"data.cache={cache}"]
    cfg = compose_train(overrides, tmp_path / "r")
    assert read_metadata(run(cfg)).steps == 3


def test_temporal_weight_adds_a_logged_temporal_term(style_path: Path, tmp_path: Path) -> None:
    run(compose_train([*tiny_train_overrides(style_path, steps=2), "loss.temporal_weight=10"], tmp_path / "run"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert "loss/temporal" in events.Tags()["scalars"]
    assert read_metadata(tmp_path / "run" / "starry_night.safetensors").temporal_weight == 10


def test_ddp_on_two_cpu_processes_keeps_ranks_in_agreement(style_path: Path, tmp_path: Path) -> None:
    """Lightning's own DDP (gloo on the CPU), launched as a user would: train.py trainer=ddp."""
    import re
    import subprocess
    import sys

    from conftest import ROOT

    args = [sys.executable, "train.py", "experiment=smoke", f"style.image={style_path}", "trainer=ddp",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=3", "data.image_size=32",
            f"hydra.run.dir={tmp_path / 'run'}", "trainer.enable_progress_bar=false"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text() + proc.stdout + proc.stderr
    sums = dict(re.findall(r"rank (\d): network parameter checksum (-?[\d.]+)", log))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    assert read_metadata(tmp_path / "run" / "starry_night.safetensors").steps == 3


def test_train_py_bad_data_root_is_one_line_and_exit_2(style_path: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    args = [sys.executable, "train.py", "style=custom", f"style.image={style_path}", "loss.vgg_weights=random",
            f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: root") and last.endswith("(set data.root=...)") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_ctrl_c_still_exports_what_was_trained(style_path: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    run_dir = tmp_path / "run"
    args = [sys.executable, "train.py", "experiment=smoke", f"style.image={style_path}", "trainer.max_steps=100000",
            "trainer.log_every_n_steps=1", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
            "checkpoint_every_n_steps=2"]
    # SIGINT must not be ignored in the child (it is for background jobs of a non-interactive shell).
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Wait for a real event, not for time: the first checkpoint means steps were trained.
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    model = run_dir / "starry_night.safetensors"
    assert proc.returncode == 130 and out.strip().splitlines()[-1] == str(model.resolve())
    assert read_metadata(model).steps > 0


@pytest.mark.parametrize("override, key", [("loss.style_weight=abc", "loss.style_weight"),
                                           ("trainer.max_steps=0", "trainer.max_steps"),
                                           ("optimizer.lr=-1", "optimizer.lr"),
                                           ("data.batch_size=1.5", "data.batch_size")])
def test_bad_numbers_are_one_line_before_anything_runs(style_path: Path, tmp_path: Path, override: str,
                                                       key: str) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "experiment=smoke", f"style.image={style_path}", override,
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith(f"error: {key} must be")
    assert proc.stderr.strip().count("\n") == 0 and not run_dir.exists()  # nothing left behind


def test_a_run_owns_its_folder(tmp_path: Path) -> None:
    from fastnst.training.run import run_lock

    with run_lock(tmp_path / "run"):
        with pytest.raises(FastNSTError, match="another training run is writing to"):
            with run_lock(tmp_path / "run"):
                pass
    # A lock file left by a process that died, even an empty one (it died between create and write), is free.
    (tmp_path / "run" / ".fastnst.lock").write_text("")
    with run_lock(tmp_path / "run"):
        pass


def test_a_killed_runs_lock_is_free_at_once_and_a_live_ones_is_not(tmp_path: Path) -> None:
    import subprocess
    import sys

    from fastnst.training.run import run_lock

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from fastnst.training.run import run_lock\n"
                               f"with run_lock(Path({str(run_dir)!r})):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FastNSTError, match="another training run"):
            with run_lock(run_dir):
                pass
    finally:
        holder.kill()  # kill -9: no cleanup ran
        holder.wait()
    with run_lock(run_dir):
        pass


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "SLURM_PROCID"])
def test_the_other_ranks_of_a_distributed_run_share_rank_zeros_folder(tmp_path: Path, monkeypatch,
                                                                     variable: str) -> None:
    from fastnst.training.run import run_lock

    with run_lock(tmp_path / "run"):  # rank 0 (of torchrun, Lightning or srun) holds it ...
        monkeypatch.setenv(variable, "3")
        with run_lock(tmp_path / "run"):  # ... and every other rank works in it
            pass
        monkeypatch.delenv(variable)
        with pytest.raises(FastNSTError, match="another training run"):
            with run_lock(tmp_path / "run"):  # a second, separate run is still refused
                pass


def test_resuming_another_architecture_is_refused(style_path: Path, tmp_path: Path) -> None:
    run(compose_train(tiny_train_overrides(style_path, steps=2), tmp_path / "a"))
    bigger = [*tiny_train_overrides(style_path, steps=4), "model=johnson", "ckpt_path=last"]
    with pytest.raises(FastNSTError, match="was trained with network") as err:
        run(compose_train(bigger, tmp_path / "b"))
    assert err.value.param == "ckpt_path"


def test_a_run_may_go_on_with_another_upsampling(style_path: Path, tmp_path: Path) -> None:
    # The upsampling holds no weight: a long run that hatched with nearest goes on in bilinear from its checkpoint.
    run(compose_train([*tiny_train_overrides(style_path, steps=2), "model.upsample=nearest"], tmp_path / "a"))
    out = run(compose_train([*tiny_train_overrides(style_path, steps=3), "ckpt_path=last"], tmp_path / "a"))
    meta = read_metadata(out)
    assert meta.steps == 3 and meta.network["upsample"] == "bilinear"


def test_a_crash_after_some_steps_still_exports_them(style_path: Path, tmp_path: Path, monkeypatch) -> None:
    from fastnst.training.module import StyleTransferModule

    def crash(self, *args):  # noqa: ANN001, ANN002, ANN202
        if self.global_step >= 2:
            raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(StyleTransferModule, "on_train_batch_end", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        run(compose_train(tiny_train_overrides(style_path, steps=6), tmp_path / "run"))
    assert read_metadata(tmp_path / "run" / "starry_night.safetensors").steps == 2


def test_validation_images_are_readable_ones(image_folder: Path) -> None:
    from fastnst.training.data import StyleDataModule

    for name in ("aaa.jpg", "aab.png"):  # sorted first: where validation images used to come from
        (image_folder / name).write_text("corrupt")
    data = StyleDataModule(str(image_folder), image_size=32, num_val=2, num_workers=0)
    data.setup("fit")
    assert [p.name for p in data.val_set.files] == ["img0.jpg", "img2.png"]
    assert len(data.val_set) == 2 and data.val_set[0].shape == (3, 32, 32)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_picks_bf16_only_where_the_cpu_runs_it_natively(style_path: Path, tmp_path: Path, native: bool,
                                                                     monkeypatch, caplog) -> None:
    """Both kinds of CPU, whichever this one is: bf16-mixed with native bf16, fp32 without, and it says so."""
    import logging

    from fastnst.core import device as device_module
    from fastnst.training import run as run_module

    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: native)
    monkeypatch.setattr(run_module.torch.cuda, "is_available", lambda: False)
    cfg = compose_train(tiny_train_overrides(style_path), tmp_path / "r")
    with caplog.at_level(logging.INFO, logger=run_module.__name__):
        chosen = run_module._precision(cfg)
    assert chosen == ("bf16-mixed" if native else "32-true")
    assert f"precision {chosen}" in caplog.text
    cfg.trainer.precision = "32-true"
    assert run_module._precision(cfg) == "32-true"  # an explicit choice wins


@pytest.mark.parametrize("keep", [True, False])
def test_cpu_training_has_malloc_keep_freed_memory_unless_told_not_to(style_path: Path, tmp_path: Path, keep: bool,
                                                                       monkeypatch) -> None:
    from fastnst.training import run as run_module

    calls = []
    monkeypatch.setattr(run_module, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = compose_train([*tiny_train_overrides(style_path, steps=1), f"keep_freed_memory={keep}"], tmp_path / "r")
    run(cfg)
    assert calls == ([1] if keep else [])


def test_an_empty_data_root_is_refused_not_the_checkout(style_path: Path, tmp_path: Path) -> None:
    # `data.root=` used to train on "." (the checkout's own pictures).
    cfg = compose_train([*tiny_train_overrides(style_path), "data=images", "data.root="], tmp_path / "run")
    with pytest.raises(FastNSTError, match="root is empty") as err:
        run(cfg)
    assert err.value.param == "root"


def test_resuming_below_the_checkpoints_step_keeps_the_newer_model(style_path: Path, tmp_path: Path) -> None:
    path = run(compose_train(tiny_train_overrides(style_path, steps=4), tmp_path / "a"))
    before = path.read_bytes()
    with pytest.raises(FastNSTError, match="is at step 4, not before trainer.max_steps=2") as err:
        run(compose_train([*tiny_train_overrides(style_path, steps=2), "ckpt_path=last"], tmp_path / "b"))
    assert err.value.param == "max_steps"
    assert path.read_bytes() == before


def test_only_ctrl_c_is_an_interruption(style_path: Path, tmp_path: Path, monkeypatch) -> None:
    # A SystemExit of other origin (a library's sys.exit) is not Ctrl-C: it propagates as it is, the steps kept.
    import lightning.pytorch as pl

    class Exit(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001
            if trainer.global_step == 2:
                raise SystemExit(3)

    original = pl.Trainer.__init__
    monkeypatch.setattr(pl.Trainer, "__init__", lambda self, *a, callbacks=None, **k: original(
        self, *a, callbacks=[*(callbacks or []), Exit()], **k))
    with pytest.raises(SystemExit) as err:
        run(compose_train(tiny_train_overrides(style_path, steps=6), tmp_path / "run"))
    assert err.value.code == 3
    assert read_metadata(tmp_path / "run" / "starry_night.safetensors").steps == 2


def test_a_warm_start_takes_every_weight_and_a_schedule_shapes_the_lr(style_path: Path, tmp_path: Path) -> None:
    first = run(compose_train(tiny_train_overrides(style_path, steps=2), tmp_path / "a"))
    cfg = compose_train([*tiny_train_overrides(style_path, steps=1), f"init_weights={first}",
                         "optimizer.lr=1e-30"], tmp_path / "b")
    second = run(cfg)  # one step at a negligible rate: the weights are the first run's
    a, _ = load_network(first)
    b, meta = load_network(second)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    assert "started from" in meta.description
    # A model trained with nearest-neighbour upsampling goes on as a bilinear one (the hatching's cure).
    nearest = run(compose_train([*tiny_train_overrides(style_path, steps=1), "model.upsample=nearest"], tmp_path / "n"))
    assert "upsample" not in load_network(nearest)[1].network
    smooth = run(compose_train([*tiny_train_overrides(style_path, steps=1), f"init_weights={nearest}",
                                "optimizer.lr=1e-30"], tmp_path / "s"))
    assert load_network(smooth)[1].network["upsample"] == "bilinear"
    torch.testing.assert_close(load_network(smooth)[0].conv1.conv.weight, load_network(nearest)[0].conv1.conv.weight)
    # Another style's trained network of the same shape starts a new style (its (γ, β) are fine-tuned too).
    other = run(compose_train([*tiny_train_overrides(style_path, steps=1), "style.name=other_style",
                               f"init_weights={first}", "optimizer.lr=1e-30"], tmp_path / "o"))
    assert load_network(other)[1].style_names == ["other_style"]
    torch.testing.assert_close(load_network(other)[0].conv1.conv.weight, a.conv1.conv.weight)
    with pytest.raises(FastNSTError, match="this run trains a") as err:  # another network's weights
        run(compose_train([*tiny_train_overrides(style_path, steps=1), "model=johnson", f"init_weights={first}"],
                          tmp_path / "c"))
    assert err.value.param == "init_weights"


def test_the_cosine_schedule_warms_up_then_decays() -> None:
    from fastnst.training.schedule import warmup_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_ratio=0.1)
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False)) and lrs[14] == pytest.approx(0.1)
    assert lrs[15] == pytest.approx(0.1)  # resumed past its planned end: stays at the floor


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_both_training_precisions_run_on_every_machine(precision: str, style_path: Path, tmp_path: Path) -> None:
    # The default picks one by the CPU (docs/speed.md); each is forced here, so both are tested everywhere.
    path = run(compose_train([*tiny_train_overrides(style_path, steps=2), f"trainer.precision={precision}"],
                             tmp_path / "run"))
    network, meta = load_network(path)
    assert meta.steps == 2 and all(torch.isfinite(p).all() for p in network.parameters())
