"""Write synthetic CT patches as NIfTI + manifest.csv: ``python scripts/make_synthetic.py
output_dir=DIR num_samples=N seed=S`` (same as ``calcinet-synth``)."""

from calcinet.cli.synth import main

if __name__ == "__main__":
    main()
