"""Lightning and Hydra allowed: the LightningModule, the data, the training run, the Gatys
baseline and its run, and the glue from Hydra configs to plain values."""
