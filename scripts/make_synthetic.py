"""Write synthetic CT patches as NIfTI + manifest.csv: ``python scripts/make_synthetic.py
out_dir=DIR num_samples=N seed=S`` (same as ``calcinet-synth``)."""

from calcinet.cli import synth

if __name__ == "__main__":
    synth()
