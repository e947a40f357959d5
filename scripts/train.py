"""Train a model: ``python scripts/train.py [hydra overrides]`` (same as ``calcinet-train``)."""

from calcinet.cli import train

if __name__ == "__main__":
    train()
