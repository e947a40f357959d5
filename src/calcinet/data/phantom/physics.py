"""CT acquisition model, applied identically to every pattern.

object (HU, partial volume already in it)
  -> point-spread blur (Gaussian, `blur_sigma_mm`) and the reconstruction kernel's sharpness
  -> slice profile: average over `slice_thickness_mm` along z, sampled on the thick-slice grid
  -> noise added on that grid, spatially correlated in-plane like the kernel
     (smooth = low-pass, blotchy; sharp = high-pass, grainy), std `noise_std_hu`
  -> resampled back to the patch spacing along z (linear), then a calibration gain `hu_scale`
     about water and a global `hu_offset_hu` drift.
Domain randomisation draws the noise correlation length (`noise_correlation_mm`) and the
through-plane to in-plane blur ratio (`blur_z_ratio`, anisotropy) per sample as well; params
without them (older datasets) render as before.

Everything is separable 1D filtering and linear interpolation along z: no FFTs, no 3D zoom.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

F32 = np.float32

# Correlation length of the noise (Gaussian sigma, mm) and the kernel's effect on the image:
# a soft-tissue (smooth) kernel low-passes both; a bone (sharp) kernel boosts edges (overshoot).
SMOOTH_NOISE_SIGMA_MM = 0.9
SHARP_NOISE_SIGMA_MM = 0.7
SMOOTH_EXTRA_BLUR_MM = 0.45
SHARP_UNSHARP_SIGMA_MM = 1.0
SHARP_UNSHARP_AMOUNT = 0.6


@lru_cache(maxsize=128)
def gaussian_kernel(sigma_px: float) -> np.ndarray:
    """Normalised discrete Gaussian (radius 3 sigma, at least one tap either side)."""
    if sigma_px <= 1e-3:
        return np.ones(1, F32)
    r = max(1, int(np.ceil(3.0 * sigma_px)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_px) ** 2)
    return (k / k.sum()).astype(F32)


@lru_cache(maxsize=128)
def box_kernel(width_px: float) -> np.ndarray:
    """Slice profile of `width_px` voxels: each tap weighs the overlap of its voxel with the box."""
    half = 0.5 * width_px
    K = int(np.ceil(half - 0.5))
    k = np.arange(-K, K + 1, dtype=np.float64)
    w = np.clip(np.minimum(k + 0.5, half) - np.maximum(k - 0.5, -half), 0.0, None)
    return (w / w.sum()).astype(F32)


def _filter(vol: np.ndarray, sigmas_px, axes) -> np.ndarray:
    for s, ax in zip(sigmas_px, axes, strict=True):
        k = gaussian_kernel(round(float(s), 3))
        if len(k) > 1:
            vol = ndi.correlate1d(vol, k, axis=ax, mode="nearest")
    return vol


def _interp_z(vol: np.ndarray, zidx: np.ndarray) -> np.ndarray:
    """Linear interpolation of `vol` along axis 0 at fractional indices (clamped at the ends)."""
    n = vol.shape[0]
    z = np.clip(zidx, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(z).astype(np.intp), max(n - 2, 0))
    t = (z - i0).astype(F32)[:, None, None]
    if n == 1:
        return np.repeat(vol, len(zidx), axis=0)
    return vol[i0] * (1 - t) + vol[i0 + 1] * t


def noise_field(
    rng: np.random.Generator, shape, spacing_yx, kernel: str, sigma_mm: float | None = None
) -> np.ndarray:
    """Unit-std noise correlated in-plane like a reconstruction kernel, independent per slice.
    `sigma_mm` is the correlation length (Gaussian sigma, mm; None: the kernel's default)."""
    n = rng.standard_normal(shape, dtype=F32)
    if sigma_mm is None:
        sigma_mm = SMOOTH_NOISE_SIGMA_MM if kernel == "smooth" else SHARP_NOISE_SIGMA_MM
    sigma = float(sigma_mm)
    ky = gaussian_kernel(round(sigma / spacing_yx[0], 3))
    kx = gaussian_kernel(round(sigma / spacing_yx[1], 3))
    low = ndi.correlate1d(ndi.correlate1d(n, ky, axis=1, mode="wrap"), kx, axis=2, mode="wrap")
    sy, sx = float((ky**2).sum()), float((kx**2).sum())
    if kernel == "smooth":
        return low * F32(1.0 / np.sqrt(sy * sx))
    # High-pass (white minus low-pass): variance 1 - 2 g(0) + sum g^2 for the 2D kernel.
    g0 = float(ky[len(ky) // 2] * kx[len(kx) // 2])
    var = 1.0 - 2.0 * g0 + sy * sx
    return (n - low) * F32(1.0 / np.sqrt(var))


def acquire(obj: np.ndarray, p: dict, spacing, rng: np.random.Generator) -> np.ndarray:
    """Turn an ideal object (HU) into what a scanner would reconstruct, resampled to `spacing`."""
    sz, sy, sx = spacing
    kernel = p["kernel"]
    blur = float(p["blur_sigma_mm"])
    blur_xy = float(np.hypot(blur, SMOOTH_EXTRA_BLUR_MM)) if kernel == "smooth" else blur
    blur_z = blur * float(p.get("blur_z_ratio", 1.0))
    vol = _filter(obj.astype(F32, copy=False), (blur_z / sz, blur_xy / sy, blur_xy / sx), (0, 1, 2))
    if kernel == "sharp":
        low = _filter(vol, (SHARP_UNSHARP_SIGMA_MM / sy, SHARP_UNSHARP_SIGMA_MM / sx), (1, 2))
        vol = vol + F32(SHARP_UNSHARP_AMOUNT) * (vol - low)

    # Slice profile and thick-slice sampling along z.
    D = vol.shape[0]
    T = float(p["slice_thickness_mm"])
    step = max(T, sz) / sz  # thick-slice interval, in patch voxels
    if T / sz > 1.0:
        k = box_kernel(round(T / sz, 3))
        vol = ndi.correlate1d(vol, k, axis=0, mode="nearest")
    resample = step > 1.0 + 1e-6
    if resample:
        z0 = (float(p["slice_phase"]) - 1.0) * step  # first thick slice at or before index 0
        zt = z0 + step * np.arange(int(np.ceil((D - 1 - z0) / step)) + 2)
        vol = _interp_z(vol, zt)
    sigma = float(p["noise_std_hu"])
    if sigma > 0:
        corr = p.get("noise_correlation_mm")
        vol += F32(sigma) * noise_field(rng, vol.shape, (sy, sx), kernel, corr)
    if resample:
        vol = _interp_z(vol, (np.arange(D) - z0) / step)
    scale = float(p.get("hu_scale", 1.0))
    if scale != 1.0:  # calibration gain about water (0 HU), then the offset drift
        vol *= F32(scale)
    vol += F32(p["hu_offset_hu"])
    return vol.astype(F32, copy=False)
