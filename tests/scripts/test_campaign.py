"""The campaign runner: milestones reached in stages, a checkpoint resumed, a lost checkpoint restarted from the
last kept model's weights (its steps counted), the record kept, and a milestone packed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fastnst.core.modelfile import read_metadata, read_signatures
from scripts.data import campaign

from samples import make_image


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    for i in range(6):
        make_image(tmp_path / "photos" / f"p{i}.png", (80, 64), seed=i)
    spec = {"out": str(tmp_path / "out"), "data": str(tmp_path / "photos"), "vgg_weights": "random",
            "content": str(tmp_path / "photos"), "heldout_size": 48, "checkpoint_every": 2,
            "pack_dir": str(tmp_path / "pack"), "milestones": [2, 4],
            "runs": [{"name": "toy", "style": "starry_night", "steps": 4, "recipe": "test",
                      "overrides": ["model=johnson_small", "data.image_size=32", "data.batch_size=2",
                                    "data.num_workers=0", "data.num_val=2", "style.size=64", "scheduler=cosine",
                                    "scheduler.warmup_steps=1", "+trainer.enable_model_summary=false"]}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_campaign_runs_in_stages_survives_a_lost_checkpoint_and_packs(plan: Path, tmp_path: Path,
                                                                        capsys) -> None:
    out = tmp_path / "out"
    assert campaign.main(["run", "--plan", str(plan)]) == 0
    records = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["candidate"]["total"] > 0 and r["shipped"]["total"] > 0 for r in records)  # one loss for both
    assert (out / "toy" / "strips" / "step4.jpg").is_file()
    assert read_metadata(out / "toy" / "models" / "step4.safetensors").steps == 4  # resumed, not restarted
    log = (out / "campaign.log").read_text()
    assert "a fresh start" in log and "resuming its checkpoint" in log

    # A new machine: the checkpoint is gone; the plan grows; the run goes on from its step-4 model.
    for ckpt in (out / "toy" / "checkpoints").glob("*.ckpt"):
        ckpt.unlink()
    spec = yaml.safe_load(plan.read_text())
    spec["milestones"], spec["runs"][0]["steps"] = [2, 4, 6], 6
    plan.write_text(yaml.safe_dump(spec))
    assert campaign.main(["run", "--plan", str(plan)]) == 0
    assert "no checkpoint: starting from" in (out / "campaign.log").read_text()
    assert read_metadata(out / "toy" / "models" / "step6.safetensors").steps == 2  # the 2 steps left, not 6
    capsys.readouterr()
    assert campaign.main(["status", "--plan", str(plan)]) == 0
    assert capsys.readouterr().out.count("| toy |") == 3
    assert campaign.main(["pack", "toy", "--plan", str(plan)]) == 0
    packed = read_metadata(tmp_path / "pack" / "starry_night.safetensors")
    assert packed.loss["vgg_weights"] == "random"
    assert packed.steps == 6 and "campaign toy" in packed.description  # its whole age, not the last stage's 2
    assert campaign.main(["pack", "nope", "--plan", str(plan)]) == 2

    # Another machine, with only the committed restart point (6 steps in): milestones 2-6 are behind it.
    committed = tmp_path / "committed.safetensors"
    committed.write_bytes((out / "toy" / "models" / "step6.safetensors").read_bytes())
    spec["out"] = str(tmp_path / "out2")
    spec["milestones"], spec["runs"][0]["steps"] = [2, 4, 6, 8], 8
    spec["runs"][0].update(restart_from=str(committed), restart_steps=6)
    plan.write_text(yaml.safe_dump(spec))
    assert campaign.main(["run", "--plan", str(plan)]) == 0
    records = [json.loads(line) for line in (tmp_path / "out2" / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [8]
    assert read_metadata(tmp_path / "out2" / "toy" / "models" / "step8.safetensors").steps == 2

    # The same machine again: its checkpoint counts from step 6, so milestone 10 is 4 steps on, not 10; and a
    # run's own length is its last milestone even where the plan's list has none.
    spec["milestones"], spec["runs"][0]["steps"] = [2, 4, 6, 8], 10
    plan.write_text(yaml.safe_dump(spec))
    assert campaign.main(["run", "--plan", str(plan)]) == 0
    assert read_metadata(tmp_path / "out2" / "toy" / "models" / "step10.safetensors").steps == 4


def test_a_campaign_trains_one_network_for_several_paintings(plan: Path, tmp_path: Path) -> None:
    """The joint base (issue 31): a run of ``styles``, judged style by style, its strip spread over them."""
    make_image(tmp_path / "painting.png", (64, 64), seed=9)
    spec = yaml.safe_load(plan.read_text())
    spec["milestones"] = [2]
    spec["runs"] = [{**spec["runs"][0], "name": "base", "steps": 2, "pack_as": "joint",
                     "styles": ["starry_night", str(tmp_path / "painting.png")]}]
    del spec["runs"][0]["style"]
    plan.write_text(yaml.safe_dump(spec))
    assert campaign.main(["run", "--plan", str(plan)]) == 0
    out = tmp_path / "out"
    meta = read_metadata(out / "base" / "models" / "step2.safetensors")
    assert meta.style_names == ["starry_night", "painting"] and meta.steps == 2
    record = json.loads((out / "progress.jsonl").read_text())
    assert record["candidate"]["total"] > 0 and "shipped" not in record
    assert (out / "base" / "strips" / "step2.jpg").is_file()
    assert campaign.main(["pack", "base", "--plan", str(plan)]) == 0
    assert read_metadata(tmp_path / "pack" / "joint.safetensors").style_names == ["starry_night", "painting"]
    signatures = read_signatures(tmp_path / "pack" / "joint.safetensors")  # a base carries its paintings' looks
    assert signatures is not None and signatures.shape[0] == 2 and (signatures[0] != signatures[1]).any()
