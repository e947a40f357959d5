"""Check a manifest without training: ``python scripts/check_manifest.py path/to/manifest.csv``.

Prints every problem (CSV line, column, value, what was expected); exits 0 when the manifest is
clean, 1 when it has problems. ``--help`` lists the options (npy spacing, split seed, ...).
"""

from calcinet.cli.check_manifest import main

if __name__ == "__main__":
    raise SystemExit(main())
