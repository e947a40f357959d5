"""Background tissue: power-law (1/f^beta) random fields made in the Fourier domain, and the
tissue HU law that turns them into fat, muscle, a fat-muscle mixture or muscle beside bone.

Every factor here (tissue kind, HU levels, texture exponent and amplitude) is a nuisance drawn
whatever the finding, so the background says nothing about the class.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft

TISSUES = ("fat", "muscle", "mixed", "near_bone")


@lru_cache(maxsize=8)
def _frequency(shape, spacing) -> np.ndarray:
    """``|f|`` (cycles/mm) on the rfft grid, 1 at DC (cached: the phantom renders one geometry)."""
    freqs = np.meshgrid(
        *[np.fft.fftfreq(n, s) for n, s in zip(shape[:-1], spacing[:-1], strict=True)],
        np.fft.rfftfreq(shape[-1], spacing[-1]),
        indexing="ij",
    )
    f = np.sqrt(sum(g**2 for g in freqs))
    f[(0,) * len(shape)] = 1.0
    return f.astype(np.float32)


def power_law_field(shape, spacing, beta: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-std Gaussian random field ``shape`` (z, y, x) whose power spectrum falls
    as ``|f|^-beta`` (f in cycles/mm): beta 0 is white, beta 3 is cloud-like."""
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    amp = _frequency(shape, spacing) ** np.float32(-beta / 2)
    amp.flat[0] = 0.0  # no DC: zero mean
    white = rng.standard_normal(shape, dtype=np.float32)
    field = sfft.irfftn(sfft.rfftn(white) * amp, s=shape, axes=range(len(shape)))
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


def background(shape, spacing, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Plain background tissue in HU, float32 ``shape`` (z, y, x), from the nuisance keys
    ``tissue``, ``fat_hu``, ``muscle_hu``, ``bone_hu``, ``texture_beta``, ``texture_hu``."""
    tex = params["texture_hu"] * power_law_field(shape, spacing, params["texture_beta"], rng)
    kind = params["tissue"]
    if kind == "fat":
        return params["fat_hu"] + tex
    if kind == "muscle":
        return params["muscle_hu"] + tex
    # Fat strands through muscle: a smooth field thresholded with a soft edge.
    lobes = power_law_field(shape, spacing, 3.5, rng)
    fat_share = 1.0 / (1.0 + np.exp(-4.0 * (lobes - 0.6)))
    tissue = params["muscle_hu"] + fat_share * (params["fat_hu"] - params["muscle_hu"]) + tex
    if kind == "mixed":
        return tissue.astype(np.float32)
    # near_bone: a cortical plate crossing one face of the patch, away from the finding.
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    normal = rng.standard_normal(3)
    normal /= np.linalg.norm(normal)
    reach = 0.5 * float(np.min(np.asarray(shape) * np.asarray(spacing)))
    depth = sum(n * g for n, g in zip(normal, grid, strict=True)) - 0.8 * reach
    plate = np.clip(depth / spacing[0] + 0.5, 0.0, 1.0)
    return (tissue + plate * (params["bone_hu"] - tissue)).astype(np.float32)
