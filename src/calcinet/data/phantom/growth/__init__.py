"""The "growth" renderer family of the synthetic CT phantom, written apart from the voxel and
implicit families so that a model can be trained on one and tested on the others.

Deposits are grown on a lattice twice as fine as the patch (boxes around each finding) by
stochastic processes and binary morphology: persistent random walks and branching walks
stamped with lattice balls (strands, spicules, tram-tracks, rice grains, reticular networks),
rings and arcs stamped along circles (regular lattices of them for chondroid matrix, scattered
wobbling ones for sarcoma), Eden growth (popcorn foci, rough nodules), majority votes (smooth
benign surfaces), excursion sets of lattice noise restricted to masks (cloud-like osteoid,
amorphous dystrophic calcium, lytic / sclerotic patches, pleural plaques), and fluid levels cut
by a horizontal plane; partial volume comes from 2x2x2 block averaging of the fine lattice.
Large anatomy (bone shafts with cortex and trabecular medulla, lobulated masses grown by
sequential aggregation, slabs, tubes) is the fine-lattice occupancy of distance-like fields,
evaluated only in the narrow band where a voxel may straddle a surface. Backgrounds are cellular
tissue: fat lobules separated by septa (the zero set of lattice noise), muscle with streaks along
a fibre axis, or a fat / muscle interface. The scanner works in the image domain (see
:mod:`calcinet.data.phantom.growth.scanner`): attenuation-dependent noise, a slice box along z,
an in-plane Gaussian-sum PSF (long tail for smooth kernels, undershoot for sharp ones), HU gain
and offset. numpy + scipy only.

Deposits are drawn at their clinical size and HU (docs/patterns.md: calcium 150-1500 HU), never
thinner than about 1 mm. Context both classes can have (a neighbouring bone, a vessel, fat or
muscle) comes from :func:`sample_nuisance`, which never sees the pattern; a host bone is part of
the morphology of the patterns that live in or on bone, in both classes.

:class:`PhantomConfig` keys this family honours: ``patch_size``, ``spacing`` and the nuisance
ranges ``noise_std_hu``, ``slice_thickness_mm`` (width of the slice box), ``kernels``,
``hu_offset_hu``, ``hu_scale``, ``blur_sigma_mm`` (core sigma of the in-plane PSF),
``position_jitter_mm`` and ``random_orientation``. Ignored here: ``noise_correlation_mm`` and
``blur_z_ratio`` (the PSF and the slice box shape the noise), ``vessel_prob`` / ``vessel_hu``
and ``bone_absent_prob`` (fixed class-independent draws of this family), and the real-background
keys (applied by the shared sampling code).

The calls the phantom uses:

    m = sample_morphology("enchondroma", rng, difficulty=0.5)   # class-specific, flat dict
    n = sample_nuisance(rng, config)                             # class-independent, flat dict
    obj, cover, tissue = render_layers({**n, **m, "pattern": "enchondroma"}, config, rng)
    image = acquire(obj, params, config.spacing, rng)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.draws import plain, quaternion_matrix
from calcinet.data.phantom.growth.benign import PAINTERS as BENIGN
from calcinet.data.phantom.growth.lattice import Grid
from calcinet.data.phantom.growth.malignant import PAINTERS as MALIGNANT
from calcinet.data.phantom.growth.scanner import acquire
from calcinet.data.phantom.growth.tissue import Layers, Scene, background, nuisance_tissue
from calcinet.data.phantom.patterns import PATTERNS

PAINTERS = {**BENIGN, **MALIGNANT}
COVERED: tuple[str, ...] = tuple(p for p in PATTERNS if p in PAINTERS)
NUISANCE_KEYS: tuple[str, ...] = (
    "g_noise_std_hu",
    "g_kernel",
    "g_psf_sigma_mm",
    "g_psf_tail",
    "g_psf_tail_ratio",
    "g_slice_mm",
    "g_hu_scale",
    "g_hu_offset_hu",
    "g_noise_attn_gain",
    "jitter_z_mm",
    "jitter_y_mm",
    "jitter_x_mm",
    "rot_qw",
    "rot_qx",
    "rot_qy",
    "rot_qz",
    "g_tissue",
    "g_fat_hu",
    "g_muscle_hu",
    "g_fluid_hu",
    "g_trabecular_hu",
    "g_trabecular_tex_hu",
    "g_cortical_hu",
    "g_texture_hu",
    "g_lobule_mm",
    "g_fibre_axis",
    "g_iface_dz",
    "g_iface_dy",
    "g_iface_dx",
    "g_iface_mm",
    "g_bone",
    "g_bone_radius_mm",
    "g_bone_gap_mm",
    "g_bone_angle",
    "g_cortex_mm",
    "g_vessel",
    "g_vessel_hu",
    "g_vessel_radius_mm",
    "g_vessel_offset_mm",
    "g_vessel_du",
    "g_vessel_dv",
    "g_vessel_dw",
)
RESERVED = frozenset(
    {
        "pattern",
        "renderer",
        "label",
        "true_label",
        "difficulty",
        "render_seed",
        "background",
        "background_z",
        "background_y",
        "background_x",
    }
)


def _check(pattern: Any, where: str) -> None:
    if pattern not in PAINTERS:
        raise ValueError(
            f"growth renderer: {where}={pattern!r} is not covered; covered: {list(COVERED)}"
        )


def sample_morphology(pattern: str, rng: np.random.Generator, difficulty: float) -> dict:
    """The class-specific draws of ``pattern`` (sizes mm, HU, counts) as a flat JSON-able dict
    of ``gm_`` keys; ``difficulty`` in [0, 1] moves the confounder pairs closer.

    Raises:
        ValueError: a pattern this family does not cover (the message lists those covered).
    """
    _check(pattern, "pattern")
    sampler, _ = PAINTERS[pattern]
    return {k: plain(v) for k, v in sampler(rng, float(difficulty)).items()}


def sample_nuisance(rng: np.random.Generator, config: PhantomConfig) -> dict:
    """Scanner, pose, background-tissue and neighbour-anatomy draws (flat dict of ``g_`` keys),
    identical in distribution for both classes: this function never sees the pattern. Noise,
    slice width, PSF core, kernel, HU gain and offset, jitter and orientation follow
    ``config``'s ranges; tissue HU levels follow docs/patterns.md."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    q = rng.standard_normal(4)
    q = q / np.linalg.norm(q) * (1.0 if q[0] >= 0 else -1.0)
    if not config.random_orientation:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    j = config.position_jitter_mm
    out = {
        "g_noise_std_hu": u(*config.noise_std_hu),
        "g_kernel": str(config.kernels[int(rng.integers(len(config.kernels)))]),
        "g_psf_sigma_mm": u(*config.blur_sigma_mm),
        "g_psf_tail": u(0.1, 0.3),
        "g_psf_tail_ratio": u(2.0, 3.0),
        "g_slice_mm": u(*config.slice_thickness_mm),
        "g_hu_scale": u(*config.hu_scale),
        "g_hu_offset_hu": u(*config.hu_offset_hu),
        "g_noise_attn_gain": u(0.0, 0.4),
        "jitter_z_mm": u(-j, j),
        "jitter_y_mm": u(-j, j),
        "jitter_x_mm": u(-j, j),
        "rot_qw": float(q[0]),
        "rot_qx": float(q[1]),
        "rot_qy": float(q[2]),
        "rot_qz": float(q[3]),
    }
    out.update(nuisance_tissue(rng))
    return out


def render_layers(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ideal object before the scanner: ``(obj, cover, tissue)``, float32 arrays of shape
    ``config.patch_size`` (z, y, x) at ``config.spacing`` mm. ``obj`` is HU; ``cover`` in [0, 1]
    is the fraction of each voxel taken by the finding and the structures drawn with it (bone,
    mass, vessel), 0 in plain background tissue; ``tissue`` is the background alone (HU), so
    that ``obj = (1 - cover) * tissue + cover * structures``. Deterministic given ``rng``.

    Raises:
        ValueError: ``params['pattern']`` is not covered by this family.
    """
    layers = _draw(params, config, rng)
    return layers.obj, np.clip(layers.cover, 0, 1), layers.tissue


def render_object(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(obj, cover)`` of :func:`render_layers` (the background tissue left out)."""
    obj, cover, _ = render_layers(params, config, rng)
    return obj, cover


def render_deposits(
    params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(obj, deposit)``: the ideal object of :func:`render_layers` (HU) and the fraction of
    each voxel taken by the calcified deposits alone (not the bone, vessel or mass drawn with
    them), float32 of shape ``config.patch_size``, deposit in [0, 1].

    Raises:
        ValueError: ``params['pattern']`` is not covered by this family.
    """
    layers = _draw(params, config, rng)
    return layers.obj, np.clip(layers.deposit, 0, 1)


def _draw(params: dict[str, Any], config: PhantomConfig, rng: np.random.Generator) -> Layers:
    pattern = params.get("pattern")
    _check(pattern, "params['pattern']")
    s_tissue, s_finding = rng.spawn(2)
    rotation = quaternion_matrix(
        (params["rot_qw"], params["rot_qx"], params["rot_qy"], params["rot_qz"])
    )
    centre = (params["jitter_z_mm"], params["jitter_y_mm"], params["jitter_x_mm"])
    grid = Grid(config.patch_size, config.spacing, rotation, centre)
    layers = Layers(background(grid, params, s_tissue))
    _, painter = PAINTERS[pattern]
    painter(Scene(grid, layers, s_finding, params), params)
    return layers


__all__ = [
    "COVERED",
    "NUISANCE_KEYS",
    "RESERVED",
    "acquire",
    "render_deposits",
    "render_layers",
    "render_object",
    "sample_morphology",
    "sample_nuisance",
]
