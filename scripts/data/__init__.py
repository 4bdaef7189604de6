"""Data and models: COCO, the memory-mapped training cache, the starter models and a SLURM recipe."""
