"""Train a model: ``python scripts/train.py [hydra overrides]`` (same as ``calcinet-train``)."""

from calcinet.cli.train import main

if __name__ == "__main__":
    main()
