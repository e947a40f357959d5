"""The "implicit" renderer family of the synthetic CT phantom, written apart from the voxel
family so that a model can be trained on one and tested on the other.

Shapes are implicit functions (superquadrics, metaballs blended by a smooth minimum,
noise-displaced surfaces) and tubes / balls around point clouds (grains, rings, strands,
stippling), all with partial volume by 3x3x3 supersampling; backgrounds are power-law random
fields; the scanner is modelled in the frequency domain (MTF, FBP-like noise power spectrum, slice
sensitivity profile, HU scale and offset). numpy + scipy only.

Deposits are drawn at their clinical size and HU (patterns.md: calcium 150-1500 HU), never
thinner than about 1 mm, so that after partial volume and the scanner blur each finding still
shows its defining morphology well above soft tissue.

:class:`PhantomConfig` ranges this family honours: ``patch_size``, ``spacing``, ``patterns``,
``malignant_fraction``, ``difficulty``, ``label_noise`` (through the shared sampling), and the
nuisances ``noise_std_hu``, ``slice_thickness_mm`` (slice-profile FWHM), ``kernels``,
``hu_offset_hu``, ``hu_scale`` (calibration gain), ``blur_sigma_mm`` (in-plane MTF sigma, drawn
per in-plane axis), ``position_jitter_mm`` and ``random_orientation``. Specific to the voxel
family and ignored here: ``noise_correlation_mm`` (the noise texture follows the reconstruction
kernel's noise power spectrum instead), ``blur_z_ratio`` (the slice profile sets the
through-plane blur), ``vessel_prob`` / ``vessel_hu``, ``bone_absent_prob`` (here each pattern
draws its own anatomy, bones included), and the real-background keys
(``backgrounds``, ``real_background_fraction``, ``background_tissue_hu``), which are applied by
the shared sampling code when set.

The four calls the phantom uses:

    m = sample_morphology("enchondroma", rng, difficulty=0.5)   # class-specific, flat dict
    n = sample_nuisance(rng, config)                             # class-independent, flat dict
    obj, cover = render_object({**n, **m, "pattern": "enchondroma"}, config, rng)
    image = acquire(obj, params, config.spacing, rng)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.draws import plain, quaternion_matrix
from calcinet.data.phantom.implicit.background import TISSUES, background
from calcinet.data.phantom.implicit.benign import PAINTERS as BENIGN
from calcinet.data.phantom.implicit.context import Context
from calcinet.data.phantom.implicit.fields import Canvas
from calcinet.data.phantom.implicit.malignant import PAINTERS as MALIGNANT
from calcinet.data.phantom.implicit.scanner import acquire
from calcinet.data.phantom.patterns import PATTERNS

PAINTERS = {**BENIGN, **MALIGNANT}
COVERED: tuple[str, ...] = tuple(p for p in PATTERNS if p in PAINTERS)
# Params drawn by sample_nuisance, whatever the class (tests/data/test_phantom_implicit.py checks
# that none of them predicts the label).
NUISANCE_KEYS: tuple[str, ...] = (
    "noise_std_hu",
    "kernel",
    "apodisation",
    "mtf_sigma_y_mm",
    "mtf_sigma_x_mm",
    "ssp_fwhm_mm",
    "ssp_shape",
    "hu_scale",
    "hu_offset_hu",
    "jitter_z_mm",
    "jitter_y_mm",
    "jitter_x_mm",
    "rot_qw",
    "rot_qx",
    "rot_qy",
    "rot_qz",
    "tissue",
    "fat_hu",
    "muscle_hu",
    "bone_hu",
    "texture_beta",
    "texture_hu",
    "deposit_density",
)
# Apodisation cut-off (fraction of the in-plane Nyquist frequency) per reconstruction kernel.
# Smooth kernels keep most of the band (clinical soft-tissue kernels still resolve 1-2 mm
# calcifications); a cut-off near 0.5 Nyquist would erase deposits under 3 mm.
APODISATION = {"smooth": (0.75, 0.9), "sharp": (0.9, 1.0)}


def sample_morphology(pattern: str, rng: np.random.Generator, difficulty: float) -> dict:
    """The class-specific draws of ``pattern`` (sizes in mm, HU, counts), a flat JSON-able dict.

    Raises:
        ValueError: a pattern this family does not cover.
    """
    if pattern not in PAINTERS:
        raise ValueError(
            f"implicit renderer: pattern={pattern!r} is not covered; covered: {list(COVERED)}"
        )
    sampler, _ = PAINTERS[pattern]
    return {k: plain(v) for k, v in sampler(rng, float(difficulty)).items()}


def sample_nuisance(rng: np.random.Generator, config: PhantomConfig) -> dict:
    """Scanner, pose, background-tissue and deposit-density draws, identical for both classes.
    Noise, slice profile, in-plane blur, HU scale and offset, jitter and orientation follow
    ``config``'s ranges; the tissue HU levels follow the table of docs/patterns.md."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    kernel = str(config.kernels[int(rng.integers(len(config.kernels)))])
    q = rng.standard_normal(4)
    q = q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)
    if not config.random_orientation:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    j = config.position_jitter_mm
    out = {
        "noise_std_hu": u(*config.noise_std_hu),
        "kernel": kernel,
        "apodisation": u(*APODISATION[kernel]),
        "mtf_sigma_y_mm": u(*config.blur_sigma_mm),
        "mtf_sigma_x_mm": u(*config.blur_sigma_mm),
        "ssp_fwhm_mm": u(*config.slice_thickness_mm),
        "ssp_shape": str(rng.choice(["gaussian", "triangle"])),
        "hu_scale": u(*config.hu_scale),
        "hu_offset_hu": u(*config.hu_offset_hu),
        "jitter_z_mm": u(-j, j),
        "jitter_y_mm": u(-j, j),
        "jitter_x_mm": u(-j, j),
        "rot_qw": float(q[0]),
        "rot_qx": float(q[1]),
        "rot_qy": float(q[2]),
        "rot_qz": float(q[3]),
        "tissue": str(TISSUES[int(rng.integers(len(TISSUES)))]),
        "fat_hu": u(-120, -80),
        "muscle_hu": u(35, 60),
        "bone_hu": u(1000, 1900),
        "texture_beta": u(1.5, 3.5),
        "texture_hu": u(2, 12),
        "deposit_density": u(0, 1),
    }
    return out


def render_object(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(obj, cover)`` of :func:`render_layers` (the background tissue left out)."""
    obj, cover, _ = render_layers(params, config, rng)
    return obj, cover


def render_layers(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ideal object before the scanner: ``(obj, cover)``, both float32 of shape
    ``config.patch_size`` (z, y, x). ``obj`` is HU; ``cover`` in [0, 1] is the fraction of each
    voxel occupied by the finding and the structures drawn with it (bone, mass, vessel), 0 in
    plain background tissue; the third array is that background tissue alone (HU), so that
    ``obj = (1 - cover) * tissue + cover * structures``.

    Raises:
        ValueError: ``params['pattern']`` is not covered by this family.
    """
    canvas, tissue = _draw(params, config, rng)
    obj, cover = canvas.image()
    return obj.astype(np.float32), cover.astype(np.float32), tissue.astype(np.float32)


def render_deposits(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(obj, deposit)``: the ideal object of :func:`render_layers` (HU) and the fraction of
    each voxel occupied by the calcified deposits of the finding alone (not the bone, vessel,
    mass or cartilage drawn with it), both float32 of shape ``config.patch_size``, deposit in
    [0, 1].

    Raises:
        ValueError: ``params['pattern']`` is not covered by this family.
    """
    canvas, _ = _draw(params, config, rng)
    obj, _ = canvas.image()
    deposit = np.clip(canvas.deposit, 0, 1).reshape(canvas.shape)
    return obj.astype(np.float32), deposit.astype(np.float32)


def _draw(params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator):
    pattern = params.get("pattern")
    if pattern not in PAINTERS:
        raise ValueError(
            f"implicit renderer: params['pattern']={pattern!r} is not covered; "
            f"covered: {list(COVERED)}"
        )
    s_background, s_finding = rng.spawn(2)
    shape, spacing = config.patch_size, config.spacing
    rotation = quaternion_matrix(
        (params["rot_qw"], params["rot_qx"], params["rot_qy"], params["rot_qz"])
    )
    centre = (params["jitter_z_mm"], params["jitter_y_mm"], params["jitter_x_mm"])
    tissue = background(shape, spacing, params, s_background)
    canvas = Canvas(shape, spacing, rotation, centre, tissue)
    _, painter = PAINTERS[pattern]
    painter(Context(canvas, s_finding, params["deposit_density"]), params)
    return canvas, tissue


__all__ = [
    "COVERED",
    "NUISANCE_KEYS",
    "acquire",
    "render_deposits",
    "render_layers",
    "render_object",
    "sample_morphology",
    "sample_nuisance",
]
