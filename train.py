"""python train.py style=starry_night — see README.md and conf/train.yaml."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fastnst.training.config import TRAIN_NUMBERS, check_group_choices, check_numbers
from fastnst.training.entry import guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from fastnst.training.run import run  # imported here so `--help` and bad overrides answer fast

    run_dir = Path(cfg.paths.output_dir)
    guarded(check_numbers, cfg, TRAIN_NUMBERS, run_dir=run_dir)
    guarded(run, cfg, keys={"lr": "optimizer.lr"}, run_dir=run_dir)


if __name__ == "__main__":
    groups = ("style", "model", "loss", "optimizer", "scheduler", "data", "trainer", "callbacks", "logger",
              "experiment")
    check_group_choices(sys.argv[1:], groups)
    main()
