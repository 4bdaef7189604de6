"""Long training runs that outlast a session: the starters' campaign (docs/campaign.md).

    python -m scripts.data.campaign run [--plan scripts/data/campaign.yaml] [--only NAME,...]   # in the background
    python -m scripts.data.campaign status                       # every milestone reached so far, as a table
    python -m scripts.data.campaign pack NAME [--step K]         # a run's model -> fastnst/assets/models/<style>

A plan lists runs (a style and `train.py` overrides) and the milestones (step counts) to stop at. `run`
takes every run to the first milestone, then every run to the next, and so on, so the runs can be
compared early. Each stage resumes the run's `checkpoints/last.ckpt` (written every few minutes); a run
whose checkpoint is gone (a new machine) starts again from all the weights of the newest model it exported,
or of the packed starter that came from it (`restart_from`). At each milestone the exported model is kept
(`models/step<K>.safetensors`), judged on the held-out photos with the run's own loss beside the shipped
starter under the same loss, and a strip of three photos at 512 px is written for the eye; one JSON
line per milestone goes to `progress.jsonl` and a readable one to `campaign.log`. Ctrl-C or SIGTERM
stops the training at its next step, keeping everything trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from PIL import Image

from fastnst.core.blend import style_weights
from fastnst.core.images import find_images, fit_long_side, load_rgb, to_pil
from fastnst.core.losses import PerceptualLoss
from fastnst.core.modelfile import read_metadata, resolve_model, starter_models
from fastnst.core.styles import BUILTIN, builtin_styles
from fastnst.inference.fitting import known_signatures
from fastnst.inference.stylizer import Stylizer
from scripts.common import model_loss, model_style
from scripts.data.train_starters import pack
from scripts.quality.study import heldout_losses

ROOT = Path(__file__).resolve().parents[2]
PLAN = Path(__file__).with_name("campaign.yaml")
OFFSET_FILE = "offset.txt"  # in a run's folder: the campaign step its current checkpoints started from


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "status", "pack"))
    parser.add_argument("name", nargs="?", help="pack: the run")
    parser.add_argument("--plan", type=Path, default=PLAN)
    parser.add_argument("--only", help="run: these runs (comma-separated)")
    parser.add_argument("--step", type=int, help="pack: this milestone (default: the newest)")
    args = parser.parse_args(argv)
    plan = OmegaConf.to_container(OmegaConf.load(args.plan), resolve=True)
    out = (ROOT / plan["out"]).resolve()
    if args.command == "status":
        print(status(out))
        return 0
    if args.command == "pack":
        if not args.name:
            parser.error("pack needs a run name")
        return pack_run(plan, out, args.name, args.step)
    wanted = set(args.only.split(",")) if args.only else None
    runs = [r for r in plan["runs"] if wanted is None or r["name"] in wanted]
    return run_campaign(plan, runs, out)


def run_campaign(plan: dict[str, Any], runs: list[dict[str, Any]], out: Path) -> int:
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for milestone in sorted({m for spec in runs for m in _milestones(plan, spec)}):
        for spec in runs:
            if milestone not in _milestones(plan, spec) or _reached(spec, out, milestone):
                continue
            if stop["now"] or not _train(plan, spec, out, milestone, stop):
                _log(out, f"{spec['name']}: stopped before step {milestone}; `run` again resumes it")
                return 130 if stop["now"] else 1
            _judge(plan, spec, out, milestone)
    _log(out, "every run has reached its last milestone")
    return 0


def _milestones(plan: dict[str, Any], spec: dict[str, Any]) -> list[int]:
    """Where a run stops to be judged: the plan's milestones short of its length, and its length (so a
    1,200-step run ends at 1,200, not at the 600 before it)."""
    return sorted({*(m for m in plan["milestones"] if m < spec["steps"]), spec["steps"]})


def _train(plan: dict[str, Any], spec: dict[str, Any], out: Path, milestone: int, stop: dict[str, bool]) -> bool:
    run_dir = out / spec["name"]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        restart, offset = None, _offset(run_dir)
    else:
        restart, offset = _restart_model(spec, out)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / OFFSET_FILE).write_text(f"{offset}\n")  # the checkpoints it writes count from here
    # A restart from weights is a new run of the remaining steps (with a fresh optimizer and a new warm-up).
    cmd = [sys.executable, "train.py", *_style_args(spec), f"data.root={plan['data']}",
           f"loss.vgg_weights={plan['vgg_weights']}", "trainer=cpu", f"trainer.max_steps={milestone - offset}",
           f"scheduler.total_steps={spec['steps'] - offset}" if _has_scheduler(spec) else None,
           "trainer.enable_progress_bar=false", f"checkpoint_every_n_steps={plan['checkpoint_every']}",
           f"trainer.val_check_interval={plan['checkpoint_every']}", f"hydra.run.dir={run_dir}",
           f"description='campaign {spec['name']}: {spec.get('recipe', '')}'", *spec.get("overrides", [])]
    start_note = "resuming its checkpoint"
    if ckpt.is_file():
        cmd.append("ckpt_path=last")
    elif restart is not None:
        cmd.append(f"init_weights={restart}")
        start_note = f"no checkpoint: starting from {restart} ({offset} steps)"
    else:
        start_note = "a fresh start"
    _log(out, f"{spec['name']}: training to step {milestone} ({start_note})")
    start = time.time()
    with open(run_dir.parent / f"{spec['name']}.train.log", "a") as log:
        proc = subprocess.Popen([c for c in cmd if c], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if stop["now"]:
                proc.send_signal(signal.SIGINT)  # train.py keeps what it trained and exits 130
                proc.wait()
                break
            time.sleep(2)
    _log(out, f"{spec['name']}: train.py exited {proc.returncode} after {time.time() - start:.0f} s")
    return proc.returncode == 0


def _style_args(spec: dict[str, Any]) -> list[str]:
    """One style (``style``), or one network for several (``styles``: conf/style names or painting paths),
    named after the run."""
    if "styles" in spec:
        return [f"styles=[{','.join(str(s) for s in spec['styles'])}]", f"name={spec['name']}"]
    return [f"style={spec['style']}"]


def _model_name(spec: dict[str, Any]) -> str:
    return spec["name"] if "styles" in spec else spec["style"]


def _has_scheduler(spec: dict[str, Any]) -> bool:
    return any(o.startswith("scheduler=") and o != "scheduler=null" for o in spec.get("overrides", []))


def _restart_model(spec: dict[str, Any], out: Path) -> tuple[Path | None, int]:
    """All the weights to go on from when the checkpoint is gone, and the campaign step they stand for: the
    newest milestone's model, else the packed starter the plan names (committed, so it survives the machine;
    `restart_steps` says how far the campaign had got when it was packed)."""
    kept = sorted((out / spec["name"] / "models").glob("step*.safetensors"), key=lambda p: int(p.stem[4:]))
    if kept:
        return kept[-1], int(kept[-1].stem[4:])
    packed = spec.get("restart_from")
    if packed:
        path = ROOT / packed  # a path in the repository; an absolute one stays as it is
        model = resolve_model(path if path.is_file() else packed)  # else a starter's name
        if model.is_file():
            return model, int(spec.get("restart_steps", 0))
    return None, 0


def _offset(run_dir: Path) -> int:
    """The campaign step the run's checkpoints count from (a stage started from weights starts at 0)."""
    path = run_dir / OFFSET_FILE
    return int(path.read_text()) if path.is_file() else 0


def _reached(spec: dict[str, Any], out: Path, milestone: int) -> bool:
    """Whether the run is past `milestone`: its model was kept there, or the weights its checkpoint (or,
    without one, its restart) started from were trained further than that."""
    run_dir = out / spec["name"]
    if (run_dir / "models" / f"step{milestone}.safetensors").is_file():
        return True
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return milestone <= _offset(run_dir)
    return milestone <= _restart_model(spec, out)[1]


@torch.no_grad()
def _judge(plan: dict[str, Any], spec: dict[str, Any], out: Path, milestone: int) -> None:
    """Keep the milestone's model, score it and the shipped starter with the run's loss on the held-out
    photos, and write a picture strip."""
    run_dir = out / spec["name"]
    exported = run_dir / f"{_model_name(spec)}.safetensors"
    kept = run_dir / "models" / f"step{milestone}.safetensors"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(exported.read_bytes())
    meta = read_metadata(kept)
    photos = find_images(ROOT / plan["content"])
    shown = [ROOT / plan["content"] / n for n in plan.get("strip_photos", [])] or photos[:3]
    if "styles" in spec:
        scores = {"candidate": _heldout_styles(kept, plan, shown)}
    else:
        loss = model_loss(meta, vgg_weights=plan["vgg_weights"])
        shipped = starter_models().get(spec["style"])
        scores = {"candidate": _heldout(kept, loss, photos, plan["heldout_size"])}
        if shipped is not None:
            scores["shipped"] = _heldout(shipped, loss, photos, plan["heldout_size"])
    _strip(kept, shown, run_dir / "strips" / f"step{milestone}.jpg")
    record = {"run": spec["name"], "step": milestone, "time": time.strftime("%Y-%m-%d %H:%M"), **scores}
    with open(out / "progress.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    shown = ", ".join(f"{k} {v['total']:.3f} (content {v['content']:.3f}, style {v['style']:.3f})"
                      for k, v in scores.items())
    _log(out, f"{spec['name']} @ {milestone}: held-out {shown}")


def _heldout(model: Path, loss: torch.nn.Module, photos: list[Path], size: int) -> dict[str, float]:
    """Mean loss terms over the photos (fp32, PyTorch engine), as scripts/quality/study.py measures them."""
    stylizer = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
    means = heldout_losses(stylizer, loss, photos, size)
    return {k: round(means[k], 4) for k in ("total", "content", "style", "palette") if k in means}


def _heldout_styles(model: Path, plan: dict[str, Any], photos: list[Path]) -> dict[str, float]:
    """A multi-style network: each style under its own loss on the strip's photos, averaged over the styles
    (how well the shared convolutions serve them all; a base's real test is fitting paintings it never saw,
    scripts/quality/fit_experiment.py)."""
    meta = read_metadata(model)
    stylizer = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
    sums: dict[str, float] = {}
    names = meta.style_names
    loss = model_loss(meta, meta.image_of(names[0]), vgg_weights=plan["vgg_weights"])  # one VGG for all styles
    for i, name in enumerate(names):
        if i:
            loss.set_style(model_style(meta, meta.image_of(name)))
        weights = style_weights(name, meta.style_names)
        for k, v in heldout_losses(stylizer, loss, photos, plan["heldout_size"], style=weights).items():
            sums[k] = sums.get(k, 0.0) + v / len(meta.style_names)
    return {k: round(sums[k], 4) for k in ("total", "content", "style", "palette") if k in sums}


def _strip(model: Path, photos: list[Path], target: Path, size: int = 512) -> None:
    stylizer = Stylizer.from_file(model, device="cpu", precision="fp32", engine="torch")
    names, tiles = read_metadata(model).style_names, []
    for j, photo in enumerate(photos):
        x = fit_long_side(load_rgb(photo), size)
        style = style_weights(names[j * len(names) // len(photos)], names)  # several styles: spread over the photos
        tiles.append(to_pil(stylizer.network(x, style).clamp(0, 1)))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), "white")
    left = 0
    for tile in tiles:
        sheet.paste(tile, (left, 0))
        left += tile.width
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, quality=90)


def status(out: Path) -> str:
    path = out / "progress.jsonl"
    if not path.is_file():
        return f"no milestone reached yet ({path})"
    rows = ["| run | step | when | held-out total | content | style | shipped starter, same loss |",
            "|---|---|---|---|---|---|---|"]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        c, s = r["candidate"], r.get("shipped")
        shipped = f"{s['total']:.3f}" if s else "–"
        rows.append(f"| {r['run']} | {r['step']} | {r['time']} | {c['total']:.3f} | {c['content']:.3f} | "
                    f"{c['style']:.3f} | {shipped} |")
    return "\n".join(rows)


def pack_run(plan: dict[str, Any], out: Path, name: str, step: int | None) -> int:
    spec = next((r for r in plan["runs"] if r["name"] == name), None)
    if spec is None:
        print(f"error: no run {name!r} in the plan", file=sys.stderr)
        return 2
    kept = sorted((out / name / "models").glob("step*.safetensors"), key=lambda p: int(p.stem[4:]))
    chosen = [p for p in kept if step is None or p.stem == f"step{step}"]
    if not chosen:
        print(f"error: {name} has no model at {'any milestone' if step is None else f'step {step}'}", file=sys.stderr)
        return 2
    vgg = Path(plan["vgg_weights"])
    vgg_name = vgg.name if vgg.is_file() else str(vgg)
    # The milestone is the run's whole age: a stage restarted from weights counts only its own steps.
    steps = int(chosen[-1].stem[4:])
    photos = len(find_images(ROOT / plan["data"]))
    description = (f"campaign {name}: {spec.get('recipe', '')}, {steps} steps on {photos} photos "
                   f"({Path(plan['data']).name}); loss network: {vgg_name}")
    meta = read_metadata(chosen[-1])
    signatures, changes = None, {}
    if len(meta.style_names) > 1:  # a base: its styles' signatures go with it, for fits that start near
        # Each painting as the package ships it (builtin:NAME), where it does: the file names no path of this machine.
        images = [f"{BUILTIN}{Path(i).stem}" if Path(i).stem in builtin_styles() else i
                  for i in (meta.image_of(n) for n in meta.style_names)]
        meta = dataclasses.replace(meta, style_images=images)
        changes = {"style_images": images, "style_name": spec.get("pack_as", meta.style_name)}
        loss = PerceptualLoss.from_spec(**{**meta.loss, "temporal_weight": 0.0, "vgg_weights": str(vgg)})
        rows, signatures = known_signatures(meta, loss)
        if len(rows) != len(meta.style_names):
            print(f"error: {len(meta.style_names) - len(rows)} of {name}'s paintings are not on this machine; "
                  "its signatures need them all", file=sys.stderr)
            return 2
    print(pack(spec.get("pack_as", _model_name(spec)), chosen[-1], vgg_name, Path(plan["pack_dir"]), steps=steps,
               description=description, signatures=signatures, **changes))
    return 0


def _log(out: Path, message: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    with open(out / "campaign.log", "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
