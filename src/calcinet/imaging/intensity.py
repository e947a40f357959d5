"""Is it HU? Intensity checks shared by ``calcinet-check-manifest``, training and predict.

Two kinds of check:

- :func:`intensity_problems`: rules that hold for any CT in Hounsfield units (air about -1000,
  fat about -100, water 0, soft tissue 20-80, bone above 300); they catch normalised images,
  impossible values and whole scans without air (stored values saved without the DICOM rescale,
  or not a CT); :func:`intensity_warnings`: patches without any value below 0 HU, which look like
  HU + 1024 or MR but could, rarely, be real (wholly inside dense bone), and whole scans without
  air, which look like scaled values (HU / 10) but could be cropped to the body.
- :func:`profile_warnings`: the input against the *intensity profile* of the patches a model was
  trained on (:func:`intensity_profile`, stored with the checkpoint and the exported model), so
  predict can say when an input is far from anything the model saw.

An image is summarised by :data:`QUANTILE_LEVELS` quantiles of its HU values
(:func:`hu_quantiles`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

#: Quantiles of an image's HU histogram kept as its summary: the dark end, the median, the
#: bright end (1 % of a 48^3 patch is 1100 voxels, so one calcification does not move them much).
QUANTILE_LEVELS = (0.01, 0.5, 0.99)
#: Values no CT in HU holds: 16-bit storage with the usual intercept -1024 spans -1024..64511,
#: and scanners pad outside the field of view with -3024 or -2048.
HU_MIN, HU_MAX = -4096.0, 65535.0
#: The least spread of values a CT image in HU has: image noise alone (5-40 HU standard
#: deviation) spreads a patch of soft tissue over more than 100 HU. Less means normalised or
#: standardised values (z-scores, [0, 1]).
MIN_HU_SPREAD = 50.0
#: A whole scan's minimum is at least this low: the air of its field of view (about -1000 HU).
SCAN_AIR_HU = -500.0
#: Profile bounds are widened by this fraction of their width, and at least by
#: :data:`PROFILE_MARGIN_HU`, before an input is called far from the training patches.
PROFILE_MARGIN = 0.25
PROFILE_MARGIN_HU = 100.0
#: Voxels read for the quantiles of a large image (a strided subsample; exact for patches).
MAX_QUANTILE_VOXELS = 2_000_000


def hu_quantiles(values: torch.Tensor | np.ndarray) -> np.ndarray:
    """The :data:`QUANTILE_LEVELS` quantiles of the finite values (float64 ``[3]``, NaN if none).

    The linear interpolation between order statistics of ``numpy.quantile``'s default method
    (Hyndman and Fan's type 7), read off one full sort: NumPy's partial sort for several levels at
    once (what ``numpy.quantile`` runs) took 2.1 ms on a 48^3 patch against 0.6 ms for
    ``numpy.sort`` on a 2-core AMD EPYC, and predict summarises every patch it reads.
    Images larger than :data:`MAX_QUANTILE_VOXELS` are summarised from an evenly strided
    subsample, which moves a quantile by far less than a HU on CT scans.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size > MAX_QUANTILE_VOXELS:
        flat = flat[:: int(np.ceil(flat.size / MAX_QUANTILE_VOXELS))]
    finite = np.isfinite(flat)
    if not finite.all():
        flat = flat[finite]
    if flat.size == 0:
        return np.full(len(QUANTILE_LEVELS), np.nan)
    ordered = np.sort(flat)
    position = np.asarray(QUANTILE_LEVELS) * (ordered.size - 1)
    below = np.floor(position).astype(np.int64)
    low = ordered[below].astype(np.float64)
    high = ordered[np.minimum(below + 1, ordered.size - 1)].astype(np.float64)
    return low + (high - low) * (position - below)


def non_finite_problem(count: int) -> str:
    """Why ``count`` (> 0) NaN or infinite voxels cannot be read as CT: the training manifest
    check refuses such a file, ``calcinet-predict`` such a patch."""
    return f"{count} NaN or infinite voxels; expected finite HU everywhere"


def intensity_problems(low: float, high: float, whole_scan: bool) -> list[str]:
    """Why an image with these values cannot be CT in HU (empty when it can).

    Args:
        low, high: the finite minimum and maximum.
        whole_scan: the image is a scan to cut findings from (it must hold some air), not a
            patch.
    """
    found: list[str] = []
    if not (np.isfinite(low) and np.isfinite(high)):
        return found
    if high - low < MIN_HU_SPREAD:
        found.append(f"all values within {high - low:.3g} of each other (min {low:g}, max "
                     f"{high:g}): the image looks normalised or standardised; expected HU (air "
                     "-1000, water 0, bone above 300), so give the original CT values")
    elif low < HU_MIN or high > HU_MAX:
        found.append(f"values from {low:g} to {high:g} cannot be HU; expected {HU_MIN:g}.."
                     f"{HU_MAX:g}")
    elif whole_scan and low >= 0.0:
        found.append(f"no negative values in a whole scan (min {low:g}): air should be about "
                     "-1000 HU; were the stored values saved without the rescale intercept "
                     "(HU + 1024), or is it not a CT (MR, PET)?")
    return found


def intensity_warnings(low: float, quantiles: Sequence[float], whole_scan: bool) -> list[str]:
    """What makes an image *look* like something other than CT in HU, short of certainty (the
    caller warns and goes on):

    - a patch without a single value below 0 HU. A patch of a few centimetres almost always
      holds some fat, water, air or noise below 0; stored values saved without the rescale
      intercept (HU + 1024) and MR never do. A patch wholly inside dense bone does not either
      (the phantom's 16^3 patches at 1 mm sometimes), hence a warning;
    - a whole scan with negative values but none below :data:`SCAN_AIR_HU`: a scan's field of
      view shows the air around the patient (about -1000 HU); values divided by 10 (stored as
      int8) or by some other factor do not reach it, nor does a scan cropped to the body.
    """
    if not np.isfinite(low):
        return []
    if whole_scan:
        # (Values spread over less than MIN_HU_SPREAD are intensity_problems' normalised image.)
        if not SCAN_AIR_HU < low < 0.0 or float(quantiles[2]) - low < MIN_HU_SPREAD:
            return []
        return [f"no value below {SCAN_AIR_HU:g} HU in a whole scan (min {low:g}, median "
                f"{float(quantiles[1]):g}): no air around the patient, which is about -1000 HU; "
                "were the values scaled (HU / 10, e.g. stored as int8), or was the scan cropped "
                "to the body?"]
    if low < 0.0:
        return []
    return [f"no value below 0 HU (min {low:.0f}, median {float(quantiles[1]):.0f}): no fat, "
            "water or air anywhere; were the stored values saved without the rescale intercept "
            "(HU + 1024), or is it not a CT (MR)? (a patch wholly inside dense bone also looks "
            "like this)"]


def intensity_profile(quantiles: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """The intensity profile of training patches from their ``[N, 3]`` :func:`hu_quantiles`.

    For each quantile level: the 0.5th and 99.5th percentile over the patches (``low``,
    ``high``) and the median; JSON-friendly, stored with checkpoints and exported models.
    """
    table = np.asarray(torch.as_tensor(quantiles).detach().cpu().double(), float)
    table = table[np.isfinite(table).all(axis=1)]
    if len(table) == 0:
        return {}
    low, median, high = np.percentile(table, [0.5, 50.0, 99.5], axis=0)
    return {"levels": list(QUANTILE_LEVELS), "low": low.round(2).tolist(),
            "median": median.round(2).tolist(), "high": high.round(2).tolist(),
            "patches": int(len(table)),
            "description": "per quantile level of a patch's HU values: the 0.5th, 50th and "
                           "99.5th percentile over the training patches"}


def profile_warnings(quantiles: Sequence[float], profile: Mapping[str, Any] | None) -> list[str]:
    """One line naming the quantiles of this input outside the training patches' range (widened
    by :data:`PROFILE_MARGIN`); empty when all are inside, or without a profile."""
    if not profile or list(profile.get("levels", [])) != list(QUANTILE_LEVELS):
        return []
    far = []
    for level, value, low, high in zip(QUANTILE_LEVELS, quantiles, profile["low"],
                                       profile["high"], strict=True):
        margin = max(PROFILE_MARGIN_HU, PROFILE_MARGIN * (high - low))
        if np.isfinite(value) and not low - margin <= value <= high + margin:
            far.append(f"{level:.0%} quantile {value:.0f} HU (training {low:.0f} to {high:.0f})")
    if not far:
        return []
    return [f"far from the model's training patches: {', '.join(far)}; is the input CT in HU "
            "like the training data?"]
