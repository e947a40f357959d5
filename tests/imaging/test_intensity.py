"""Is it HU? The checks of calcinet.imaging.intensity against hand-made and real values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calcinet.imaging import (
    QUANTILE_LEVELS,
    hu_quantiles,
    intensity_problems,
    intensity_profile,
    intensity_warnings,
    profile_warnings,
    read_volume,
)
from tests.imaging.real import LUNG, real


def test_quantiles_are_torchs_and_skip_non_finite_values() -> None:
    values = torch.arange(1001, dtype=torch.float32)
    values[5] = float("nan")
    expected = torch.quantile(values[torch.isfinite(values)], torch.tensor(QUANTILE_LEVELS))
    np.testing.assert_allclose(hu_quantiles(values), expected.numpy(), rtol=1e-6)
    assert np.isnan(hu_quantiles(torch.full((4,), float("nan")))).all()


@pytest.mark.parametrize("size", [1, 2, 7, 48**3])
def test_quantiles_match_numpy_on_patches(size: int) -> None:
    values = np.random.default_rng(size).normal(-40.0, 300.0, size).astype(np.float32)
    np.testing.assert_allclose(hu_quantiles(values),
                               np.quantile(values.astype(np.float64), QUANTILE_LEVELS),
                               rtol=0, atol=1e-3)


def _problems(values: np.ndarray, whole_scan: bool) -> list[str]:
    finite = values[np.isfinite(values)]
    return (intensity_problems(float(finite.min()), float(finite.max()), whole_scan)
            + intensity_warnings(float(finite.min()), hu_quantiles(values), whole_scan))


def test_real_ct_passes_and_its_stored_values_do_not() -> None:
    lung = read_volume(real(LUNG)).array
    assert _problems(lung, whole_scan=True) == []
    stored = lung + 1024.0  # the values of the file without the rescale intercept
    (problem,) = _problems(stored, whole_scan=True)
    assert problem.startswith("no negative values in a whole scan (min 0)")
    # HU / 10 stored as int8 (what such a file holds): fat and water look right, air does not.
    tenth = np.clip(np.round(lung / 10.0), -128, 127).astype(np.int8).astype(np.float32)
    (warning,) = _problems(tenth, whole_scan=True)
    assert warning.startswith(f"no value below -500 HU in a whole scan (min {tenth.min():g}, ")
    assert "HU / 10" in warning
    # A block of fat, muscle and bone in the chest wall (1 % quantile -117 HU), then + 1024.
    patch = lung[24:72, 360:408, 12:36]
    assert _problems(patch, whole_scan=False) == []
    (warning,) = _problems(patch + 1024.0, whole_scan=False)
    assert warning.startswith("no value below 0 HU (min ") and "HU + 1024" in warning
    # Standardised (z-scored) CT, and an MR-like image of positive values.
    (problem,) = _problems((lung - lung.mean()) / lung.std(), whole_scan=True)
    assert "looks normalised or standardised" in problem
    (warning,) = _problems(np.abs(patch) * 2.0 + 5.0, whole_scan=False)
    assert "is it not a CT (MR)?" in warning


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0.0, 1.0, "looks normalised"), (-1.0, 1.0, "looks normalised"), (-3.0, 9.0, "normalised"),
    (-5000.0, 100.0, "cannot be HU"), (0.0, 70000.0, "cannot be HU")])
def test_value_ranges_that_cannot_be_hu(low: float, high: float, expected: str) -> None:
    (problem,) = intensity_problems(low, high, whole_scan=False)
    assert intensity_problems(-1000.0, 1500.0, whole_scan=True) == []
    assert expected in problem


def test_profile_bounds_are_percentiles_of_the_training_patches() -> None:
    rng = np.random.default_rng(0)
    table = np.stack([rng.normal(-100, 20, 1000), rng.normal(40, 15, 1000),
                      rng.normal(900, 200, 1000)], axis=1)
    profile = intensity_profile(torch.from_numpy(table))
    np.testing.assert_allclose(profile["low"], np.percentile(table, 0.5, axis=0), atol=0.01)
    np.testing.assert_allclose(profile["high"], np.percentile(table, 99.5, axis=0), atol=0.01)
    assert profile["patches"] == 1000
    inside = [float(np.median(table[:, i])) for i in range(3)]
    assert profile_warnings(inside, profile) == []
    shifted = [v + 1024 for v in inside]
    (found,) = profile_warnings(shifted, profile)
    low, high = profile["low"], profile["high"]
    assert found == (
        f"far from the model's training patches: 1% quantile {shifted[0]:.0f} HU (training "
        f"{low[0]:.0f} to {high[0]:.0f}), 50% quantile {shifted[1]:.0f} HU (training "
        f"{low[1]:.0f} to {high[1]:.0f}), 99% quantile {shifted[2]:.0f} HU (training "
        f"{low[2]:.0f} to {high[2]:.0f}); is the input CT in HU like the training data?")
    # Within the margin (a quarter of the range, at least 100 HU) is not far.
    assert profile_warnings([low[0] - 99, inside[1], high[2] + 100], profile) == []
    assert profile_warnings(shifted, {}) == []
