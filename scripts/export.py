"""Export a checkpoint: ``python scripts/export.py ckpt_path=...`` (same as ``calcinet-export``)."""

from calcinet.cli.export import main

if __name__ == "__main__":
    main()
