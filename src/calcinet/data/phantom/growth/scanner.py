"""The growth family's CT model, in the image domain.

1. Calibration: the object is scaled by ``g_hu_scale``.
2. Quantum noise: white noise whose standard deviation follows the local attenuation (a coarse
   block mean of the object: denser neighbourhoods are noisier, by ``g_noise_attn_gain`` per
   1000 HU about the patch median), added before reconstruction so that the same filters shape
   it; its level is set so that the final noise has std ``g_noise_std_hu`` on a flat object.
3. Slice sensitivity: a box of width ``g_slice_mm`` along z (fractional end weights).
4. In-plane point-spread function: a sum of two isotropic 2D Gaussians, a core of
   ``g_psf_sigma_mm`` and a tail ``g_psf_tail_ratio`` times wider, weighted ``+g_psf_tail`` for the
   smooth kernel (long tail) and ``-g_psf_tail`` for the sharp one (edge-enhancing undershoot).
5. Offset: ``g_hu_offset_hu`` is added.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage


def _gauss(sigma_vox: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=float)
    if sigma_vox < 1e-3:
        return (x == 0).astype(float)
    k = np.exp(-0.5 * (x / sigma_vox) ** 2)
    return k / k.sum()


def slice_box(width_vox: float) -> np.ndarray:
    """Box of ``width_vox`` voxels (>= 1) with fractional end weights, normalised to sum 1."""
    w = max(float(width_vox), 1.0)
    half = (w - 1) / 2
    r = int(np.ceil(half))
    k = np.ones(2 * r + 1)
    if r > 0:
        k[0] = k[-1] = half - (r - 1)
    return k / k.sum()


def psf_kernels(params: dict, spacing) -> tuple[list[tuple[float, np.ndarray, np.ndarray]], float]:
    """The in-plane PSF as weighted separable Gaussian terms [(weight, ky, kx)] and its
    squared L2 norm (the noise-variance gain of the filter)."""
    s = params["g_psf_sigma_mm"]
    tail = params["g_psf_tail"] * (1.0 if params["g_kernel"] == "smooth" else -1.0)
    wide = s * params["g_psf_tail_ratio"]
    terms = []
    for w, sig in ((1.0 - tail, s), (tail, wide)):
        ry = int(np.ceil(3.0 * sig / spacing[1])) + 1
        rx = int(np.ceil(3.0 * sig / spacing[2])) + 1
        terms.append((w, _gauss(sig / spacing[1], ry), _gauss(sig / spacing[2], rx)))
    norm2 = 0.0
    for wa, ya, xa in terms:
        for wb, yb, xb in terms:
            norm2 += wa * wb * _inner(ya, yb) * _inner(xa, xb)
    return terms, norm2


def _inner(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two centred kernels of possibly different lengths."""
    if len(a) > len(b):
        a, b = b, a
    cut = (len(b) - len(a)) // 2
    return float(a @ b[cut : cut + len(a)])


def _zfilter(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Correlate along axis 0 with the centred kernel ``k`` (edge values repeated)."""
    r = len(k) // 2
    xp = np.concatenate([np.repeat(x[:1], r, 0), x, np.repeat(x[-1:], r, 0)])
    out = xp[: len(x)] * np.float32(k[0])
    for j in range(1, len(k)):
        out += xp[j : j + len(x)] * np.float32(k[j])
    return out


def acquire(obj: np.ndarray, params: dict, spacing, rng: np.random.Generator) -> np.ndarray:
    """Scan the ideal object ``obj`` (HU, (z, y, x) float array, voxels of ``spacing`` mm) with
    the scanner draws in ``params`` (``g_`` keys of :func:`sample_nuisance`): returns the image,
    float32 HU of the same shape. Deterministic given ``rng``."""
    obj = np.asarray(obj, np.float32)
    box = slice_box(params["g_slice_mm"] / spacing[0])
    terms, psf_norm2 = psf_kernels(params, spacing)
    gain = float(np.sqrt(psf_norm2 * float(box @ box)))
    sigma = params["g_noise_std_hu"] / gain
    noise = rng.standard_normal(obj.shape, dtype=np.float32)
    x = obj * np.float32(params["g_hu_scale"])
    local = _attenuation_factor(obj, params["g_noise_attn_gain"])
    x += noise * (np.float32(sigma) * local)
    if len(box) > 1:
        x = _zfilter(x, box)
    out = None
    for w, ky, kx in terms:
        if w == 0:
            continue
        y = ndimage.correlate1d(x, ky.astype(np.float32), axis=1, mode="nearest")
        y = ndimage.correlate1d(y, kx.astype(np.float32), axis=2, mode="nearest")
        out = y * np.float32(w) if out is None else out + y * np.float32(w)
    out += np.float32(params["g_hu_offset_hu"])
    return out.astype(np.float32)


def _attenuation_factor(obj: np.ndarray, gain: float, block: int = 8) -> np.ndarray | float:
    """Noise std multiplier per voxel: 1 + gain * (local level - patch median) / 1000 HU, the
    local level sampled every ``block`` voxels and interpolated linearly, clipped to
    [0.6, 1.8]; exactly 1 on a flat object."""
    if gain == 0:
        return np.float32(1.0)
    idx = [_nodes(n, block) for n in obj.shape]
    sub = obj[np.ix_(*idx)]
    rel = np.clip(1 + gain * (sub - np.median(sub)) / 1000.0, 0.6, 1.8).astype(np.float32)
    mz, my, mx = (_hat_matrix(n, block) for n in obj.shape)
    rel = np.tensordot(mz, rel, axes=(1, 0))  # (Z, ys, xs)
    rel = np.tensordot(rel, my, axes=(1, 1))  # (Z, xs, Y)
    return np.ascontiguousarray(np.tensordot(rel, mx, axes=(1, 1)))  # (Z, Y, X)


def _nodes(n: int, block: int) -> np.ndarray:
    return np.unique(np.minimum(np.arange(block // 2, n + block, block), n - 1))


@functools.lru_cache(maxsize=32)
def _hat_matrix(n: int, block: int) -> np.ndarray:
    """Linear interpolation weights (n, nodes) from the nodes of :func:`_nodes` to 0..n-1."""
    x_in = _nodes(n, block)
    eye = np.eye(len(x_in))
    cols = [np.interp(np.arange(n), x_in, eye[j]) for j in range(len(x_in))]
    return np.stack(cols, 1).astype(np.float32)
