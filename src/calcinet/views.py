"""Axial, coronal and sagittal slices of a RAS patch as a radiologist reads them.

A patch is ``[X, Y, Z]`` in RAS (:mod:`calcinet.imaging.geometry`): the index grows towards the
patient's Right along X, Anterior along Y and Superior along Z. The slices follow the radiological
display convention: axial and coronal slices are seen from the feet / from the front, so the
patient's right is on the viewer's left; sagittal slices have anterior on the left; superior and
anterior are up. :func:`display_slice` returns the 2D array ready for ``imshow(origin="upper")``
together with the letter that belongs on each side, so a figure never has to re-derive them.
numpy only: the phantom montage and the evaluation figures both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The three planes, in the order figures show them.
VIEWS = ("axial", "coronal", "sagittal")
#: Letter of each RAS axis at its high-index end and at its low-index end.
_POSITIVE, _NEGATIVE = ("R", "A", "S"), ("L", "P", "I")


@dataclass(frozen=True)
class _Plane:
    fixed: int  # the RAS axis the slice is cut across
    across: int  # the axis drawn left to right ...
    across_reversed: bool  # ... from its high-index end when True
    up: int  # the axis drawn bottom to top, high-index end up


_PLANES = {
    "axial": _Plane(fixed=2, across=0, across_reversed=True, up=1),
    "coronal": _Plane(fixed=1, across=0, across_reversed=True, up=2),
    "sagittal": _Plane(fixed=0, across=1, across_reversed=True, up=2),
}


def _plane(view: str) -> _Plane:
    try:
        return _PLANES[view]
    except KeyError:
        raise ValueError(f"view={view!r}: expected one of {', '.join(VIEWS)}") from None


def orientation_letters(view: str) -> dict[str, str]:
    """``{"left", "right", "top", "bottom"}``: the patient direction at each side of ``view``."""
    plane = _plane(view)
    left, right = _POSITIVE[plane.across], _NEGATIVE[plane.across]
    if not plane.across_reversed:
        left, right = right, left
    return {"left": left, "right": right, "top": _POSITIVE[plane.up], "bottom": _NEGATIVE[plane.up]}


def display_slice(
    volume: np.ndarray, view: str, index: int | None = None
) -> tuple[np.ndarray, dict[str, str]]:
    """The ``view`` slice of ``volume`` (``[X, Y, Z]``, RAS) at voxel ``index`` along the axis it
    cuts (the centre ``size // 2`` by default), as a ``[rows, columns]`` array whose row 0 is the
    top of the picture, and the orientation letters of its four sides.

    Raises:
        ValueError: ``volume`` is not 3D, ``view`` unknown, or ``index`` outside the volume.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume of shape {volume.shape}: expected [X, Y, Z]")
    plane = _plane(view)
    size = volume.shape[plane.fixed]
    index = size // 2 if index is None else int(index)
    if not 0 <= index < size:
        raise ValueError(f"{view} slice {index}: expected 0 <= index < {size}")
    cut = np.take(volume, index, axis=plane.fixed)  # the two remaining axes keep their order
    rows_first = plane.up < plane.across  # after the cut: (up, across) or (across, up)
    image = cut if rows_first else cut.T  # rows: up axis, columns: across axis
    image = image[::-1]  # high-index end of the up axis at the top
    if plane.across_reversed:
        image = image[:, ::-1]
    return np.ascontiguousarray(image), orientation_letters(view)


def pixel_aspect(spacing: Sequence[float], view: str) -> float:
    """Height over width of one displayed pixel of ``view`` for voxel ``spacing`` (x, y, z mm):
    the ``aspect`` to give ``imshow`` so that millimetres look the same both ways."""
    plane = _plane(view)
    return float(spacing[plane.up]) / float(spacing[plane.across])


def mark_orientation(ax: Any, letters: dict[str, str], fontsize: float = 7) -> None:
    """Write the four orientation letters just inside the sides of a matplotlib image axes."""
    style = {
        "transform": ax.transAxes,
        "fontsize": fontsize,
        "fontweight": "bold",
        "color": "white",
        "bbox": {"boxstyle": "square,pad=0.1", "facecolor": "black", "alpha": 0.6, "lw": 0},
    }
    ax.text(0.02, 0.5, letters["left"], ha="left", va="center", **style)
    ax.text(0.98, 0.5, letters["right"], ha="right", va="center", **style)
    ax.text(0.5, 0.98, letters["top"], ha="center", va="top", **style)
    ax.text(0.5, 0.02, letters["bottom"], ha="center", va="bottom", **style)
