"""calcinet: train, evaluate and export 3D CNNs for benign vs malignant calcifications on CT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("calcinet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

CLASS_NAMES = ("benign", "malignant")

__all__ = ["CLASS_NAMES", "__version__"]
