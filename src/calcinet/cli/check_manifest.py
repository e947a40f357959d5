"""``calcinet-check-manifest manifest.csv``: check a manifest without training (exit 0 clean, 1 not)."""

from __future__ import annotations

import sys

from calcinet.data.manifest import check_main


def main() -> None:
    sys.exit(check_main())


if __name__ == "__main__":
    main()
