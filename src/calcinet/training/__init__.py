"""Training: the LightningModule, learning-rate schedules and the `train(cfg)` run."""
