"""``calcinet-check-manifest manifest.csv``: check a manifest without training.

Exits 0 when the manifest is clean, 1 when it has problems.
"""

from __future__ import annotations

import sys

from calcinet.data.manifest import check_main


def main() -> None:
    sys.exit(check_main())


if __name__ == "__main__":
    main()
