"""The drawing surface: a patch in HU, signed-distance primitives and smooth random fields.

Shapes are drawn as signed distance fields (SDF, mm, negative inside) turned into a fractional
occupancy with a linear ramp one voxel wide. That ramp is the partial-volume effect: a voxel that
the boundary cuts gets the volume-weighted mix of the two tissues, so edges are anti-aliased at any
spacing and small objects keep their integrated density instead of flickering on/off.

Three frames are involved:
- the *patch* frame, (z, y, x) mm from the patch centre, fixed to the scanner;
- the *scene* frame (u, v, w), centred on the lesion and rotated by the sample's orientation, in
  which the anatomy is described (w = long axis of a bone / vessel / muscle fibres, u = the
  direction away from the main bone surface);
- optional *local* frames of single objects (a ring, a spicule) relative to the scene frame.
Small objects are evaluated inside their bounding box only, which keeps rendering cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

F32 = np.float32


@dataclass
class Frame:
    """Voxels of a box (`sl` into the patch) with their coordinates (a, b, c) in a local frame."""

    sl: tuple[slice, slice, slice]
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    origin: np.ndarray  # of the local frame, scene mm
    aligned: bool  # local axes == scene axes

    def take(self, full: np.ndarray | float) -> np.ndarray | float:
        """The part of a full-patch array that lies in this box (scalars pass through)."""
        return full[self.sl] if isinstance(full, np.ndarray) else full

    def radius(self) -> np.ndarray:
        return np.sqrt(self.a * self.a + self.b * self.b + self.c * self.c)


class Scene:
    """A patch being drawn: `img` in HU, the scene rotation and the lesion centre.

    `rotation` maps scene to patch coordinates (columns = the u, v, w axes in (z, y, x)).
    `centre_mm` is the lesion centre relative to the patch centre, (z, y, x) mm.

    `cover` (0..1, shaped like `img`) is the fraction of each voxel occupied by what was painted
    after the background tissue: `mark_background()` (called by `anatomy.soft_tissue`) sets it to
    0 and keeps that tissue as `base`; every later paint, in any mode, then grows it by
    occ * (1 - cover), as a union of partial volumes. "add" (density on top) and "max" (only
    brightens) count like "replace": each deposits a structure on its occupancy. So `img` is
    always (1 - cover) * base + cover * (the painted structures' own HU), the split that
    `calcinet.data.phantom.backgrounds.insert_finding` needs to move them onto a real scan.
    """

    def __init__(self, shape, spacing, rotation, centre_mm, rng: np.random.Generator):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.R = np.asarray(rotation, dtype=np.float64)
        self.centre = np.asarray(centre_mm, dtype=np.float64)
        self.rng = rng
        self.grid = [
            (np.arange(n) - (n - 1) / 2.0) * s
            for n, s in zip(self.shape, self.spacing, strict=True)
        ]
        self.img = np.zeros(self.shape, F32)
        self.cover = np.zeros(self.shape, F32)
        self.base: np.ndarray | None = None
        # Partial-volume ramp width: the voxel's geometric mean size.
        self.pv = float(np.prod(self.spacing) ** (1.0 / 3.0))
        self._full: Frame | None = None
        # "up" (against gravity) in scene coordinates: the patient lies supine, so gravity points
        # along +y of the image (posterior). Fluid levels are horizontal in the patch.
        self.up = -self.R.T @ np.array([0.0, 1.0, 0.0])

    # -- coordinates ------------------------------------------------------------------------------
    def frame(self, origin=(0.0, 0.0, 0.0), axes=None, radius: float | None = None) -> Frame | None:
        """Coordinates of the voxels within `radius` mm (a bounding box) of `origin` (scene mm), in
        the local frame whose axes are the columns of `axes` (scene coordinates; None = scene axes).
        Returns None when the box misses the patch."""
        A = self.R if axes is None else self.R @ np.asarray(axes, dtype=np.float64)
        P = self.centre + self.R @ np.asarray(origin, dtype=np.float64)
        sls, ds = [], []
        for k in range(3):
            g = self.grid[k]
            if radius is None:
                lo, hi = 0, self.shape[k]
            else:
                s = self.spacing[k]
                lo = max(0, int(np.ceil((P[k] - radius - g[0]) / s)))
                hi = min(self.shape[k], int(np.floor((P[k] + radius - g[0]) / s)) + 1)
                if hi <= lo:
                    return None
            sls.append(slice(lo, hi))
            ds.append((g[lo:hi] - P[k]).astype(F32))
        dz = ds[0][:, None, None]
        dy = ds[1][None, :, None]
        dx = ds[2][None, None, :]
        A = A.astype(F32)
        a = A[0, 0] * dz + A[1, 0] * dy + A[2, 0] * dx
        b = A[0, 1] * dz + A[1, 1] * dy + A[2, 1] * dx
        c = A[0, 2] * dz + A[1, 2] * dy + A[2, 2] * dx
        return Frame(tuple(sls), a, b, c, np.asarray(origin, dtype=np.float64), axes is None)

    def full(self) -> Frame:
        """Scene coordinates of every voxel (cached)."""
        if self._full is None:
            self._full = self.frame()
        return self._full

    def height(self, fr: Frame) -> np.ndarray:
        """Height above the lesion centre against gravity (mm), for fluid levels."""
        u = self.up.astype(F32)
        return u[0] * fr.a + u[1] * fr.b + u[2] * fr.c  # valid for scene-aligned frames

    # -- drawing ----------------------------------------------------------------------------------
    def mark_background(self) -> None:
        """Declare what is drawn so far the background tissue: `base` = `img`, `cover` = 0."""
        self.base = self.img.copy()
        self.cover[...] = 0.0

    def occupancy(self, sdf: np.ndarray, soft: float = 1.0) -> np.ndarray:
        """Fractional occupancy of a voxel from a signed distance (mm): the partial-volume ramp.
        `soft` > 1 widens the ramp for ill-defined (infiltrating) margins."""
        w = self.pv * soft
        return np.clip(0.5 - sdf * (1.0 / w), 0.0, 1.0)

    def paint(self, fr: Frame | None, sdf, value, soft: float = 1.0, mode: str = "replace"):
        """Blend `value` (HU; scalar or an array shaped like the box) into the box where the
        signed distance `sdf` is negative, with the partial-volume ramp at the boundary."""
        if fr is not None:
            self.paint_occ(fr, self.occupancy(sdf, soft), value, mode)

    def paint_occ(self, fr: Frame, occ: np.ndarray, value, mode: str = "replace"):
        """Blend by a given occupancy (0..1). "replace" substitutes the tissue; "add" adds
        density on top (calcium in a matrix); "max" only ever brightens."""
        view = self.img[fr.sl]
        if mode == "replace":
            view += occ * (value - view)
        elif mode == "add":
            view += occ * value
        elif mode == "max":
            np.maximum(view, view + occ * (value - view), out=view)
        else:  # pragma: no cover - programming error
            raise ValueError(f"paint mode {mode!r}")
        cover = self.cover[fr.sl]
        cover += occ * (1.0 - cover)

    # -- random fields ----------------------------------------------------------------------------
    def field(self, scale_mm: float) -> np.ndarray:
        """A smooth Gaussian random field over the patch, zero mean and unit std, whose blobs are
        about `scale_mm` across.

        Speed: a field is a random crop (with random flips and sign) of a stationary field
        precomputed once per process for this patch geometry and a ladder of scales, so it costs
        a copy instead of a 3D filtering. Crops of one bank overlap between samples, which is
        harmless: the banks are shared by both classes and carry no label information. For very
        large patches the field is built directly (sum of Gaussian bumps, as small matmuls)."""
        level = _nearest_level(scale_mm)
        if np.prod([2 * n for n in self.shape]) <= _MAX_BANK_VOXELS:
            bank = _bank(self.shape, self.spacing, level)
            o = [
                int(self.rng.integers(0, b - n + 1))
                for b, n in zip(bank.shape, self.shape, strict=True)
            ]
            flips = self.rng.random(4) < 0.5
            f = bank[
                o[0] : o[0] + self.shape[0],
                o[1] : o[1] + self.shape[1],
                o[2] : o[2] + self.shape[2],
            ]
            f = f[:: -1 if flips[0] else 1, :: -1 if flips[1] else 1, :: -1 if flips[2] else 1]
            return -f if flips[3] else f.copy()
        mats = [
            _bump_matrix(n, s, float(level)) for n, s in zip(self.shape, self.spacing, strict=True)
        ]
        coarse = self.rng.standard_normal(tuple(m.shape[1] for m in mats), dtype=F32)
        f = np.tensordot(mats[0], coarse, axes=(1, 0))  # (D, c1, c2)
        f = np.einsum("jb,ibc->ijc", mats[1], f, optimize=False)
        f = f @ mats[2].T
        f -= f.mean()
        f *= 1.0 / (f.std() + 1e-6)
        return f


# Scales (mm) of the precomputed random-field banks; a request snaps to the nearest (log) one.
FIELD_LEVELS_MM = tuple(float(x) for x in np.round(np.geomspace(2.0, 16.0, 12), 3))
_MAX_BANK_VOXELS = 128**3


def _nearest_level(scale_mm: float) -> float:
    lv = np.asarray(FIELD_LEVELS_MM)
    return float(lv[np.argmin(np.abs(np.log(lv) - np.log(max(scale_mm, 1e-3))))])


@lru_cache(maxsize=256)
def _bump_matrix(n: int, spacing: float, scale: float) -> np.ndarray:
    """(n fine, m coarse) weights of Gaussian bumps of sigma scale/2 on a lattice of step sigma."""
    sigma = max(scale / 2.0, 0.5 * spacing)
    x = (np.arange(n) - (n - 1) / 2.0) * spacing
    half = x[-1] + 3.0 * sigma
    X = np.arange(-half, half + 1e-9, sigma)
    w = np.exp(-0.5 * ((x[:, None] - X[None, :]) / sigma) ** 2)
    return w.astype(F32)


@lru_cache(maxsize=48)
def _bank(shape: tuple, spacing: tuple, level: float) -> np.ndarray:
    """A periodic Gaussian random field twice the patch size (Gaussian spectrum of sigma level/2
    mm, the same statistics as `_bump_matrix`), unit std, read-only. Deterministic: a fixed seed
    per geometry and level, so every worker and process builds the same bank."""
    B = tuple(2 * n for n in shape)
    key = [7919, int(level * 1000), *shape, *(int(round(sp * 1000)) for sp in spacing)]
    white = np.random.default_rng(np.random.SeedSequence(key)).standard_normal(B)
    sigma = level / 2.0
    fz = np.fft.fftfreq(B[0], d=spacing[0])[:, None, None]
    fy = np.fft.fftfreq(B[1], d=spacing[1])[None, :, None]
    fx = np.fft.rfftfreq(B[2], d=spacing[2])[None, None, :]
    H = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fz * fz + fy * fy + fx * fx))
    f = np.fft.irfftn(np.fft.rfftn(white) * H, s=B)
    f = ((f - f.mean()) / (f.std() + 1e-12)).astype(F32)
    f.flags.writeable = False
    return f


# -- signed distances (mm, negative inside) --------------------------------------------------------
def sphere(fr: Frame, r: float) -> np.ndarray:
    return fr.radius() - r


def ellipsoid(fr: Frame, ra: float, rb: float, rc: float) -> np.ndarray:
    """Approximate SDF of an axis-aligned ellipsoid (exact on the surface, good near it)."""
    qa, qb, qc = fr.a / ra, fr.b / rb, fr.c / rc
    k0 = np.sqrt(qa * qa + qb * qb + qc * qc)
    k1 = np.sqrt((qa / ra) ** 2 + (qb / rb) ** 2 + (qc / rc) ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def capsule(fr: Frame, half_len: float, r0: float, r1: float | None = None) -> np.ndarray:
    """Segment along c from -half_len to +half_len with radius r0 (tapering to r1 at +c)."""
    cc = np.clip(fr.c, -half_len, half_len)
    d = np.sqrt(fr.a * fr.a + fr.b * fr.b + (fr.c - cc) ** 2)
    if r1 is None:
        return d - r0
    t = (cc + half_len) / (2.0 * half_len + 1e-9)
    return d - (r0 + (r1 - r0) * t)


def cylinder(fr: Frame, r: float) -> np.ndarray:
    """Infinite cylinder of radius r around the c axis."""
    return np.sqrt(fr.a * fr.a + fr.b * fr.b) - r


# -- orientations ----------------------------------------------------------------------------------
def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / (np.linalg.norm(v) + 1e-12)


def basis(w_axis, rng: np.random.Generator | None = None) -> np.ndarray:
    """A rotation (columns a, b, c) whose c axis is `w_axis`; a and b at a random roll."""
    c = np.asarray(w_axis, dtype=np.float64)
    c = c / (np.linalg.norm(c) + 1e-12)
    helper = np.array([1.0, 0.0, 0.0]) if abs(c[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    a = np.cross(helper, c)
    a /= np.linalg.norm(a)
    b = np.cross(c, a)
    if rng is not None:
        t = rng.uniform(0, 2 * np.pi)
        a, b = np.cos(t) * a + np.sin(t) * b, -np.sin(t) * a + np.cos(t) * b
    return np.stack([a, b, c], axis=1)


def random_basis(rng: np.random.Generator) -> np.ndarray:
    return basis(random_unit(rng), rng)
