"""The implicit family's CT model, all in the frequency domain.

- In-plane MTF: an anisotropic Gaussian (``mtf_sigma_y_mm``, ``mtf_sigma_x_mm``) times the
  Shepp-Logan-like apodisation ``sinc(f / 2 fc)`` cut at ``fc = apodisation * Nyquist``.
- Slice sensitivity profile along z: Gaussian or triangular, FWHM ``ssp_fwhm_mm``.
- Noise: white Gaussian noise shaped by the FBP-like noise power spectrum
  ``NPS(f) = |f_xy| * MTF_xy(f)^2 * SSP(f_z)^2`` (ramp times apodisation in-plane, the slice
  profile along z), scaled so that its std is exactly ``noise_std_hu`` in expectation.
- HU drift: ``image = hu_scale * (blurred object) + hu_offset_hu + noise``.

The object is padded by reflection before the transforms so that no blur wraps across the patch.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

PAD = 4  # voxels per side: 3 sigma of the widest in-plane blur, most of a thick slice


def _transfer(shape, spacing, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """MTF and noise filter on the rfft grid of ``shape``; the noise filter has unit mean power
    over the full (two-sided) grid."""
    fz = np.fft.fftfreq(shape[0], spacing[0])[:, None, None]
    fy = np.fft.fftfreq(shape[1], spacing[1])[None, :, None]
    fx_full = np.fft.fftfreq(shape[2], spacing[2])[None, None, :]
    nyquist = 0.5 / max(spacing[1], spacing[2])
    fc = params["apodisation"] * nyquist

    def parts(fx):
        fr = np.sqrt(fy**2 + fx**2)
        sy, sx = params["mtf_sigma_y_mm"], params["mtf_sigma_x_mm"]
        gauss = np.exp(-2 * np.pi**2 * (sy**2 * fy**2 + sx**2 * fx**2))
        apod = np.where(fr <= fc, np.sinc(fr / (2 * fc)), 0.0)
        fwhm = params["ssp_fwhm_mm"]
        if params["ssp_shape"] == "triangle":
            ssp = np.sinc(fwhm * fz) ** 2  # triangle of FWHM w: base 2w
        else:
            ssp = np.exp(-2 * np.pi**2 * (fwhm / 2.3548) ** 2 * fz**2)
        mtf = gauss * apod * ssp
        nps = fr * (gauss * apod) ** 2 * ssp**2
        return mtf, nps

    _, nps_full = parts(fx_full)
    mtf, nps = parts(np.fft.rfftfreq(shape[2], spacing[2])[None, None, :])
    mean_power = float(nps_full.mean())
    noise = np.sqrt(nps / mean_power) if mean_power > 0 else np.zeros_like(nps)
    return mtf, noise


def acquire(obj: np.ndarray, params: dict, spacing, rng: np.random.Generator) -> np.ndarray:
    """CT image (float32 HU, same shape as ``obj``, axes (z, y, x)) of the ideal object ``obj``
    scanned with the nuisance keys ``mtf_sigma_y_mm``, ``mtf_sigma_x_mm``, ``apodisation``,
    ``ssp_fwhm_mm``, ``ssp_shape``, ``noise_std_hu``, ``hu_scale``, ``hu_offset_hu``."""
    spacing = tuple(float(s) for s in spacing)
    padded = np.pad(obj.astype(np.float32), PAD, mode="reflect")
    shape = padded.shape
    mtf, noise_filter = _transfer(shape, spacing, params)
    spectrum = sfft.rfftn(padded) * (mtf * params["hu_scale"])
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum += sfft.rfftn(white) * (noise_filter * params["noise_std_hu"])
    image = sfft.irfftn(spectrum, s=shape)
    core = image[PAD:-PAD, PAD:-PAD, PAD:-PAD] + params["hu_offset_hu"]
    return core.astype(np.float32)
