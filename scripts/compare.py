"""Compare models on the same samples: ``python scripts/compare.py A B [...]`` (same as
``calcinet-compare``)."""

from calcinet.cli.compare import main

if __name__ == "__main__":
    main()
