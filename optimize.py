"""python optimize.py style=starry_night content=photo.jpg — the Gatys et al. baseline (see README.md)."""

import sys

import hydra
from omegaconf import DictConfig

from fastnst.training.hydra_glue import check_group_choices, guarded


@hydra.main(version_base="1.3", config_path="conf", config_name="optimize")
def main(cfg: DictConfig) -> None:
    from fastnst.training.gatys_run import run

    guarded(run, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], ("style", "loss", "gatys"))
    main()
