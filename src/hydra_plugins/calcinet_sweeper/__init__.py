"""calcinet's Hydra plugins: the Optuna sweeper (``optuna_sweeper``)."""
