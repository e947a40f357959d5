"""Evaluate a model: ``python scripts/evaluate.py ckpt_path=PATH [hydra overrides]``
(same as ``calcinet-evaluate``)."""

from calcinet.cli.evaluate import main

if __name__ == "__main__":
    main()
