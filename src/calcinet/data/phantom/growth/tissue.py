"""Background tissue and the anatomy drawn with a finding, for the growth family.

Backgrounds are cellular: fat as lobules separated by fibrous septa (the zero set of a smooth
lattice-noise field, a random cellular network of sheets), muscle as fibres streaked along one
axis with thin intramuscular fat, or a fat / muscle interface. Bone shafts are a cortex shell
around a medulla whose trabeculae are an excursion set of band-pass lattice noise; masses are
unions of aggregated lobules; vessels are tubes. `Layers` accumulates the painted structures
over the background tissue; `Scene` bundles the patch grid, the layers and the random stream a
painter draws with.
"""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.growth.lattice import (
    FineBox,
    Grid,
    aggregate,
    axis_distance_field,
    balls_field,
    band_fractions,
    lattice_noise,
)

TISSUES = ("fat", "muscle", "interface")
AXES = np.eye(3)


def background(grid: Grid, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Background tissue (HU, float32, ``grid.shape``) of kind ``params['g_tissue']``: fat
    lobules with septa, muscle fibres along patch axis ``g_fibre_axis``, or a fat / muscle
    interface; levels ``g_fat_hu``, ``g_muscle_hu``, texture amplitude ``g_texture_hu``."""
    fat, muscle, tex = params["g_fat_hu"], params["g_muscle_hu"], params["g_texture_hu"]
    kind = params["g_tissue"]
    step = grid.spacing
    if kind == "fat":
        lobule = params["g_lobule_mm"]
        f = lattice_noise(grid.shape, step, (lobule,) * 3, rng)
        septa = np.exp(-((f / 0.15) ** 2))
        return (fat + septa * (0.5 * muscle - fat) + 0.3 * tex * f).astype(np.float32)
    cells = np.full(3, 2.5)
    cells[int(params["g_fibre_axis"])] = 18.0
    streak = lattice_noise(grid.shape, step, cells, rng)
    out = muscle + tex * streak - np.clip(streak - 1.8, 0, 0.4) / 0.4 * 0.6 * (muscle - fat)
    if kind == "muscle":
        return out.astype(np.float32)
    d = np.array([params["g_iface_dz"], params["g_iface_dy"], params["g_iface_dx"]], np.float32)
    a = grid.axes
    s = d[0] * a[0][:, None, None] + d[1] * a[1][None, :, None] + d[2] * a[2][None, None, :]
    wobble = lattice_noise(grid.shape, step, (12.0,) * 3, rng)
    s = s - np.float32(params["g_iface_mm"]) + 2.0 * wobble
    w = np.clip(s / grid.spacing.min() + 0.5, 0, 1)
    return (w * out + (1 - w) * (fat + 0.3 * tex * streak)).astype(np.float32)


def support(frac: np.ndarray):
    """Slices of the bounding box of ``frac > 0`` (None when it is empty)."""
    out = []
    for ax in range(frac.ndim):
        other = tuple(a for a in range(frac.ndim) if a != ax)
        nz = np.flatnonzero(frac.any(axis=other))
        if not len(nz):
            return None
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


class Layers:
    """Structures painted over the background ``tissue`` (HU, patch shape): ``obj`` (HU),
    ``cover`` (fraction of each voxel taken by painted structures) and ``deposit`` (fraction
    taken by calcified deposits). Painting ``frac`` of HU ``hu`` over a region keeps
    ``obj = (1 - cover) * tissue + cover * structures``."""

    def __init__(self, tissue: np.ndarray) -> None:
        self.tissue = tissue
        self.obj = tissue.copy()
        self.cover = np.zeros_like(tissue)
        self.deposit = np.zeros_like(tissue)
        self._deposited = False

    def paint(self, frac, hu, where=None, deposit: bool = False) -> None:
        """Replace ``frac`` (array over ``where``, slices of the patch; all of it when None) of
        each voxel by material of ``hu`` (scalar or array like ``frac``)."""
        frac = np.asarray(frac, np.float32)
        if where is None:  # paint only the bounding box of what is painted
            where = support(frac)
            if where is None:
                return
            frac = frac[where]
            hu = hu if np.isscalar(hu) else np.broadcast_to(hu, self.obj.shape)[where]
        o, c, d = self.obj[where], self.cover[where], self.deposit[where]
        o += frac * (np.float32(hu) - o) if np.isscalar(hu) else frac * (hu - o)
        c += frac * (1 - c)
        if deposit:
            d += frac * (1 - d)
            self._deposited = True
        elif self._deposited:
            d *= 1 - frac


class Scene:
    """What a painter draws on: the patch ``grid``, the ``layers`` over the background tissue,
    the random stream ``rng`` and the nuisance / morphology ``params``."""

    def __init__(self, grid: Grid, layers: Layers, rng: np.random.Generator, params: dict):
        self.grid, self.layers, self.rng, self.p = grid, layers, rng, params

    # -- anatomy ------------------------------------------------------------------------------
    def outward(self) -> np.ndarray:
        """The scene direction (unit, orthogonal to the shaft axis w) whose patch image lies in
        the axial plane: a host shaft put on its far side is cut across by the finding's slice,
        so that what happens to its cortex next to the finding is seen in that slice."""
        r = self.grid.rotation
        t = float(np.arctan2(-r[0, 0], r[0, 1]))
        return np.array([np.cos(t), np.sin(t), 0.0])

    def shaft(
        self,
        offset_mm,
        radius_mm: float,
        cortex_mm: float,
        axis=(0.0, 0.0, 1.0),
        medulla_hu: float | None = None,
    ):
        """A bone shaft of ``radius_mm`` along scene ``axis``, its axis passing at scene point
        ``offset_mm``: cortex (``g_cortical_hu``) ``cortex_mm`` thick around a trabecular medulla
        (``g_trabecular_hu`` with lattice-noise trabeculae). Returns (bone, medulla) fractions."""
        g = self.grid
        field = axis_distance_field(g.point(offset_mm), g.direction(axis))
        cortex = max(cortex_mm, 1.2)
        bone, medulla = band_fractions(g, field, (radius_mm, radius_mm - cortex))
        trab = self.p["g_trabecular_hu"] if medulla_hu is None else medulla_hu
        self.layers.paint(bone, self.p["g_cortical_hu"])
        box = support(medulla)
        if box is not None:
            shape = tuple(b.stop - b.start for b in box)
            # Trabeculae: a thresholded band-pass field (fine minus coarse lattice noise).
            fine = lattice_noise(shape, g.spacing, (2.2, 2.2, 2.2), self.rng)
            coarse = lattice_noise(shape, g.spacing, (6.0, 6.0, 6.0), self.rng)
            rods = (fine - 0.5 * coarse > 0.45).astype(np.float32)
            marrow = trab + self.p["g_trabecular_tex_hu"] * (rods - 0.33) * 1.5
            self.layers.paint(medulla[box], marrow.astype(np.float32), box)
        return bone, medulla

    def mass(
        self,
        centre_local,
        radius_mm: float,
        n_lobes: int,
        hu: float,
        drift=None,
        spread: float = 0.7,
    ):
        """A lobulated mass (``n_lobes`` aggregated balls, first of ``radius_mm`` at scene point
        ``centre_local``) of ``hu``. Returns its fraction of each voxel."""
        g = self.grid
        drift_p = None if drift is None else g.direction(drift)
        centres, radii = aggregate(
            self.rng, g.point(centre_local), n_lobes, radius_mm, spread=spread, drift=drift_p
        )
        frac = self.balls(centres, radii)
        self.layers.paint(frac, hu)
        return frac

    def balls(self, centres, radii, levels=(0.0,)):
        """Fraction of each voxel inside a union of balls (patch mm), grown by each of
        ``levels`` mm (negative: shrunk); one array per level (a single array for one level)."""
        g = self.grid
        c, r = np.asarray(centres), np.asarray(radii)[:, None]
        grow = max(max(levels), 0.0)
        lo, hi = (c - r).min(0) - grow, (c + r).max(0) + grow
        box = FineBox(g, (lo + hi) / 2, (hi - lo) / 2 + g.spacing)
        out = band_fractions(g, balls_field(c, r[:, 0]), levels, box.slices)
        return out[0] if len(out) == 1 else out

    def tube(self, point_local, axis_local, radius_mm: float, hu: float) -> np.ndarray:
        """A tube (vessel, tendon) of ``radius_mm`` and ``hu`` along scene ``axis_local``
        through scene point ``point_local``; returns its fraction."""
        g = self.grid
        field = axis_distance_field(g.point(point_local), g.direction(axis_local))
        frac = band_fractions(g, field, (radius_mm,))[0]
        self.layers.paint(frac, hu)
        return frac

    def neighbours(self, bone: bool) -> None:
        """Context both classes share, drawn from the nuisance params alone: a vessel crossing
        the patch (``g_vessel``) and, when ``bone``, a neighbouring shaft (``g_bone``)."""
        p = self.p
        if bone and p["g_bone"]:
            r = p["g_bone_radius_mm"]
            d = r + p["g_bone_gap_mm"]
            ang = p["g_bone_angle"]
            self.shaft((d * np.cos(ang), d * np.sin(ang), 0.0), r, p["g_cortex_mm"])
        if p["g_vessel"]:
            d = p["g_vessel_offset_mm"] + p["g_vessel_radius_mm"]
            axis = (p["g_vessel_du"], p["g_vessel_dv"], p["g_vessel_dw"])
            normal = np.cross(axis, (0.0, 0.0, 1.0) if abs(axis[2]) < 0.9 else (1.0, 0, 0))
            normal = normal / np.linalg.norm(normal)
            self.tube(normal * d, axis, p["g_vessel_radius_mm"], p["g_vessel_hu"])

    def field_on(self, frac, cells_mm):
        """Lattice noise (unit variance, correlated over ``cells_mm``) on the bounding box of
        ``frac > 0`` only: returns (slices, field), or (None, None) when ``frac`` is empty."""
        box = support(frac)
        if box is None:
            return None, None
        shape = tuple(b.stop - b.start for b in box)
        cells = np.broadcast_to(np.asarray(cells_mm, float), (3,))
        return box, lattice_noise(shape, self.grid.spacing, cells, self.rng)

    # -- deposits -----------------------------------------------------------------------------
    def box(self, centre_local, half_mm) -> FineBox:
        """A fine-lattice box around scene point ``centre_local`` reaching ``half_mm``."""
        return FineBox(self.grid, self.grid.point(centre_local), half_mm)

    def deposit(self, box: FineBox, mask: np.ndarray, hu, deposit: bool = True) -> np.ndarray:
        """Paint a fine mask (HU scalar or fine array) block averaged onto the patch; returns the
        fraction it takes of each voxel of ``box.slices``."""
        frac, mean_hu = box.block(mask, hu)
        self.layers.paint(frac, mean_hu, box.slices, deposit=deposit)
        return frac

    def remove(self, frac, where=None) -> None:
        """Cut ``frac`` of each voxel back to the background tissue (lysis of painted bone)."""
        where = where or tuple(slice(None) for _ in range(3))
        self.layers.paint(frac, self.layers.tissue[where], where)


def nuisance_tissue(rng: np.random.Generator) -> dict:
    """Background tissue and neighbour-anatomy draws (class-independent)."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    d = rng.standard_normal(3)
    d = d / np.linalg.norm(d)
    v = rng.standard_normal(3)
    v = v / np.linalg.norm(v)
    return {
        "g_tissue": str(TISSUES[int(rng.integers(len(TISSUES)))]),
        "g_fat_hu": u(-120, -80),
        "g_muscle_hu": u(35, 60),
        "g_fluid_hu": u(0, 20),
        "g_trabecular_hu": u(200, 400),
        "g_trabecular_tex_hu": u(40, 90),
        "g_cortical_hu": u(1000, 1900),
        "g_texture_hu": u(2, 10),
        "g_lobule_mm": u(6, 14),
        "g_fibre_axis": int(rng.integers(3)),
        "g_iface_dz": float(d[0]),
        "g_iface_dy": float(d[1]),
        "g_iface_dx": float(d[2]),
        "g_iface_mm": u(-12, 12),
        "g_bone": int(rng.random() < 0.55),
        "g_bone_radius_mm": u(8, 20),
        "g_bone_gap_mm": u(6, 18),
        "g_bone_angle": u(0, 2 * np.pi),
        "g_cortex_mm": u(1.5, 4.0),
        "g_vessel": int(rng.random() < 0.3),
        "g_vessel_hu": u(30, 300),
        "g_vessel_radius_mm": u(1.5, 5.0),
        "g_vessel_offset_mm": u(6, 22),
        "g_vessel_du": float(v[0]),
        "g_vessel_dv": float(v[1]),
        "g_vessel_dw": float(v[2]),
    }
