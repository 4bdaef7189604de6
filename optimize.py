"""python optimize.py style=starry_night content=photo.jpg — the Gatys et al. baseline (see README.md)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fastnst.training.config import GATYS_NUMBERS, check_group_choices, check_numbers
from fastnst.training.entry import guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="optimize")
def main(cfg: DictConfig) -> None:
    from fastnst.training.gatys_run import run

    run_dir = Path(cfg.paths.output_dir)
    guarded(check_numbers, cfg, GATYS_NUMBERS, run_dir=run_dir)
    guarded(run, cfg, run_dir=run_dir)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], ("style", "loss", "gatys"))
    main()
