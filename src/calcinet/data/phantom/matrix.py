"""Mineralised matrix motifs shared by several patterns: rings-and-arcs (chondroid matrix),
popcorn specks, reticular sheets, rice grains and nodules (the osteoid spicules of the sunburst
live with their pattern in `malignant.py`).

The same motif is used by both members of a confounder pair with different arrangement
parameters (abundance, regularity, clustering), so the motif itself never gives the class away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from calcinet.data.phantom.anatomy import smooth_step
from calcinet.data.phantom.shapes import F32, Frame, Scene, basis, capsule, random_basis, sphere


def points_in_ellipsoid(rng, n: int, radii, *, regular: float) -> np.ndarray:
    """n points (scene mm) inside an ellipsoid. `regular` in [0, 1]: 1 = a jittered lattice (evenly
    spread, "organised"), 0 = independent uniform draws (clumps and voids)."""
    radii = np.asarray(radii, dtype=np.float64)
    n = int(n)
    if n <= 0:
        return np.zeros((0, 3))
    uni = rng.uniform(-1, 1, size=(8 * n + 16, 3))
    uni = uni[(uni**2).sum(1) <= 1.0][:n]
    if regular <= 0:
        return uni * radii
    # Jittered lattice of about n cells inside the unit ball, in random order.
    step = (4.19 / n) ** (1.0 / 3.0)
    ax = np.arange(-1.0, 1.0 + 1e-9, step)
    ax = ax - ax.mean()
    g = np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    g = g + rng.uniform(-0.5, 0.5, size=g.shape) * step * (1.0 - 0.6 * regular)
    g = g[(g**2).sum(1) <= 1.0]
    g = g[rng.permutation(len(g))][:n]
    if len(g) < n:
        g = np.concatenate([g, uni[: n - len(g)]])
    mix = rng.random(n) < regular
    pts = np.where(mix[:, None], g, uni)
    return pts * radii


def clustered_points(rng, n: int, radii, n_clusters: int, spread: float) -> np.ndarray:
    """n points gathered around a few cluster centres inside an ellipsoid (anarchic, eccentric)."""
    radii = np.asarray(radii, dtype=np.float64)
    centres = points_in_ellipsoid(rng, max(1, n_clusters), radii * 0.75, regular=0.0)
    idx = rng.integers(0, len(centres), size=n)
    pts = centres[idx] + rng.standard_normal((n, 3)) * spread * radii
    # Fold back what falls outside the ellipsoid.
    q = np.sqrt(((pts / radii) ** 2).sum(1, keepdims=True))
    return np.where(q > 1.0, pts / q * 0.95, pts)


def grain(
    scene: Scene, centre, *, direction, length_mm: float, width_mm: float, hu: float, rng
) -> None:
    """A rice-grain calcification: a capsule of the given length and width (mm)."""
    r = 0.5 * width_mm
    half = max(0.5 * length_mm - r, 0.0)
    fr = scene.frame(centre, basis(direction, rng), radius=half + r + 2.0 * scene.pv)
    if fr is not None:
        scene.paint(fr, capsule(fr, half, r), hu, mode="max")


def popcorn(scene: Scene, centre, *, size_mm: float, hu: float, rng, soft: float = 1.0) -> None:
    """A punctate "popcorn" calcification: one to three merged small spheres, `size_mm` across."""
    k = int(rng.integers(1, 4))
    r = 0.5 * size_mm
    fr = scene.frame(centre, radius=2.0 * r + 2.0 * scene.pv)
    if fr is None:
        return
    sdf = None
    for _ in range(k):
        o = rng.standard_normal(3) * 0.45 * r
        rr = r * rng.uniform(0.55, 0.9)
        d = np.sqrt((fr.a - o[0]) ** 2 + (fr.b - o[1]) ** 2 + (fr.c - o[2]) ** 2) - rr
        sdf = d if sdf is None else np.minimum(sdf, d)
    scene.paint(fr, sdf, hu, soft=soft, mode="max")


def reticular(
    scene: Scene,
    fr: Frame,
    inside: np.ndarray,
    *,
    scale_mm: float,
    thickness_mm: float,
    hu: float,
    coverage: float,
) -> None:
    """A network of thin calcified sheets (the zero set of a random field of correlation length
    `scale_mm`, which slices show as lines and a reticulum) inside the occupancy `inside`;
    `coverage` keeps part of it."""
    f = fr.take(scene.field(scale_mm))
    # |f| / |grad f| approximates the distance to the zero set; |grad f| ~ 2.2 / scale here.
    sdf = np.abs(f) * (scale_mm / 2.2) - 0.5 * thickness_mm
    keep = smooth_step(fr.take(scene.field(1.7 * scale_mm)) + 1.2 * (coverage - 0.5) * 2, 0.6)
    occ = scene.occupancy(sdf) * keep * inside
    scene.paint_occ(fr, occ, hu, mode="max")


def nodule(scene: Scene, centre, *, radius_mm: float, hu: float, soft: float = 1.0) -> None:
    """A round calcified nodule (a sphere of `radius_mm`)."""
    fr = scene.frame(centre, radius=radius_mm + 2.0 * scene.pv * soft)
    if fr is not None:
        scene.paint(fr, sphere(fr, radius_mm), hu, soft=soft, mode="max")


@dataclass(frozen=True)
class RingLattice:
    """How chondroid rings-and-arcs fill a lesion (:func:`ring_lattice`). Lengths in mm, HU in
    Hounsfield units; each `_cv` is the relative spread of its quantity from ring to ring.

    Attributes:
        cell_mm: lattice cell side: at most one ring per cell.
        presence: expected share of the cells holding a ring (abundance).
        radius_mm, radius_cv: ring (lobule margin) radius and its log-normal spread.
        thick_mm, thick_cv: shell thickness and its spread.
        arc_fraction, arc_spread: share of each sphere kept as a cap (1: whole shell, small: a
            short arc) and its uniform spread.
        hu, hu_cv: mineral density and its spread.
        clustering: 0: presence independent from cell to cell; higher: clumps and voids.
        soft: margin softness (partial-volume width factor).
    """

    cell_mm: float
    presence: float
    radius_mm: float
    radius_cv: float
    thick_mm: float
    thick_cv: float
    arc_fraction: float
    arc_spread: float
    hu: float
    hu_cv: float
    clustering: float = 0.0
    soft: float = 1.0


def ring_lattice(scene: Scene, fr: Frame, inside: np.ndarray, rng, rings: RingLattice) -> None:
    """Chondroid rings-and-arcs filling a lesion. A ring is the mineralised margin of a cartilage
    lobule: a thin spherical shell of which only a cap (`arc_fraction` of the sphere) is kept, so
    slices through it show a full ring, an arc or a dot, as on CT. Rings are seeded on two
    interleaved jittered lattices (body-centred, at a random orientation), at most one ring per
    cell, so the rings are evenly spread without overlapping much ("organised" when `presence`
    is high and the size spread low; sparse and clumped with low presence and `clustering`).

    Evaluated for the whole lesion in one vectorised pass per lattice, so the cost does not grow
    with the number of rings. `fr` is a scene-aligned frame; `inside` the lesion's occupancy."""
    M = random_basis(rng).astype(F32)  # lattice orientation within the scene
    a0, b0, c0 = fr.a + F32(fr.origin[0]), fr.b + F32(fr.origin[1]), fr.c + F32(fr.origin[2])
    coords = [M[0, k] * a0 + M[1, k] * b0 + M[2, k] * c0 for k in range(3)]
    for shift in (0.0, 0.5):
        _lattice_pass(scene, fr, inside, rng, coords, shift, rings)


def _lattice_pass(
    scene: Scene,
    fr: Frame,
    inside: np.ndarray,
    rng,
    coords: list[np.ndarray],
    shift: float,
    rings: RingLattice,
) -> None:
    """One of the two interleaved lattices: `coords` are the frame's voxel coordinates in the
    lattice's rotated axes (mm), `shift` its offset in cells (0 or 0.5)."""
    g = float(rings.cell_mm)
    idx, lo = [], []
    for q in coords:
        i = np.floor(q * (1.0 / g) - shift).astype(np.int32)
        i0 = int(i.min())
        idx.append(i - i0)
        lo.append(i0)
    shape = tuple(int(i.max()) + 1 for i in idx)
    n = int(np.prod(shape))
    pv = scene.pv
    t = np.clip(rings.thick_mm * (1 + rings.thick_cv * rng.standard_normal(n)), 0.5, 0.25 * g)
    r = rings.radius_mm * np.exp(rings.radius_cv * rng.standard_normal(n))
    r = np.clip(r, 0.8, 0.5 * g - 0.5 * t - 0.5 * pv)
    slack = np.clip(0.5 * g - r - 0.5 * t, 0.0, None)
    axes = [np.arange(s) + lo[k] + 0.5 + shift for k, s in enumerate(shape)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(n, 3) * g
    centre = (grid + rng.uniform(-1, 1, (n, 3)) * slack[:, None]).astype(F32)
    normal = rng.standard_normal((n, 3))
    normal = (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(F32)
    arc = np.clip(rings.arc_fraction + rings.arc_spread * rng.uniform(-1, 1, n), 0.08, 1.0)
    level = np.full(n, 0.5 * rings.presence)  # two lattices share the abundance
    if rings.clustering > 0:
        # Presence follows a field smoothed over neighbouring cells: clumps and voids.
        z = gaussian_filter(rng.standard_normal(shape), 1.0, mode="wrap").reshape(n)
        z = (z - z.mean()) / (z.std() + 1e-9)
        level = np.clip(level * np.exp(rings.clustering * z - 0.5 * rings.clustering**2), 0, 1)
    on = rng.random(n) < level
    val = (rings.hu * (1 + rings.hu_cv * rng.standard_normal(n))).astype(F32)

    # Only voxels of cells that hold a ring, inside the lesion, are evaluated (sparse for the
    # high-grade pattern): gather their per-cell parameters once, compute, scatter back.
    flat = ((idx[0] * shape[1] + idx[1]) * shape[2] + idx[2]).ravel()
    sel = np.flatnonzero(on[flat] & (inside.ravel() > 0.0))
    if sel.size == 0:
        return
    cell = flat[sel]
    table = np.concatenate(
        [centre, normal, r[:, None], t[:, None], (1.0 - 2.0 * arc)[:, None], val[:, None]], 1
    ).astype(F32)[cell]
    da = coords[0].ravel()[sel] - table[:, 0]
    db = coords[1].ravel()[sel] - table[:, 1]
    dc = coords[2].ravel()[sel] - table[:, 2]
    d = np.sqrt(da * da + db * db + dc * dc)
    sdf = np.abs(d - table[:, 6]) - 0.5 * table[:, 7]
    proj = da * table[:, 3] + db * table[:, 4] + dc * table[:, 5]
    sdf = np.maximum(sdf, table[:, 8] * d - proj)
    occ = np.zeros(inside.size, F32)
    occ[sel] = scene.occupancy(sdf, rings.soft) * inside.ravel()[sel]
    value = np.zeros(inside.size, F32)
    value[sel] = table[:, 9]
    scene.paint_occ(fr, occ.reshape(inside.shape), value.reshape(inside.shape), mode="max")
