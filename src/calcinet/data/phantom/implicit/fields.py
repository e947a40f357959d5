"""Implicit shapes and the canvas they are drawn on.

A shape is a callable taking points ``[3, N]`` (mm, in the finding's own frame) and returning an
approximate signed distance ``[N]`` in mm (negative inside). The :class:`Canvas` turns a shape
into a partial-volume occupancy by supersampling: voxels whose centre lies within half a voxel
diagonal of the surface are re-evaluated at 3x3x3 sub-voxel points and the inside fraction is kept.
Point clouds (grains, rings, strands, stippling) are drawn as unions of balls around the points
(tubes along curves) with the same supersampled partial volume, so a deposit keeps its HU wherever
it fills a voxel. numpy and scipy (a k-d tree for the distance to a point cloud).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Shape = Callable[[np.ndarray], np.ndarray]
SUB = 3  # sub-samples per axis for partial volume


# -- primitives (approximate signed distances, mm) -------------------------------------------------
# A shape may carry ``bound = (centre, radius)``, a ball outside which it is certainly outside:
# the canvas then evaluates it only on the voxels of that ball (most findings fill a few % of
# the patch, and the transcendental functions dominate the cost).
def bounded(s: Shape, centre, radius: float) -> Shape:
    s.bound = (np.asarray(centre, np.float32).reshape(3), float(radius))
    return s


def _enclose(bounds) -> tuple[np.ndarray, float] | None:
    if not bounds or any(b is None for b in bounds):
        return None
    c = np.mean([b[0] for b in bounds], axis=0)
    return c, max(float(np.linalg.norm(b[0] - c)) + b[1] for b in bounds)


def sphere(centre, radius: float) -> Shape:
    c = np.asarray(centre, np.float32).reshape(3, 1)
    return bounded(lambda p: np.sqrt(((p - c) ** 2).sum(0)) - radius, c, radius)


def ellipsoid(centre, axes) -> Shape:
    """Quilez's ellipsoid bound: exact on the axes, a close under-estimate elsewhere."""
    c = np.asarray(centre, np.float32).reshape(3, 1)
    a = np.maximum(np.asarray(axes, np.float32).reshape(3, 1), 1e-3)

    def f(p):
        q = p - c
        k0 = np.sqrt(((q / a) ** 2).sum(0))
        k1 = np.sqrt(((q / a**2) ** 2).sum(0))
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)

    return bounded(f, c, float(a.max()))


def superquadric(centre, axes, exponent: float) -> Shape:
    """|x/a|^e + |y/b|^e + |z/c|^e = 1, scaled to mm by the smallest half-axis (e = 2: ellipsoid,
    larger e: boxier)."""
    c = np.asarray(centre, np.float32).reshape(3, 1)
    a = np.asarray(axes, np.float32).reshape(3, 1)
    e = float(exponent)
    scale = float(a.min())
    f = lambda p: ((np.abs((p - c) / a) ** e).sum(0) ** (1.0 / e) - 1.0) * scale  # noqa: E731
    return bounded(f, c, float(np.linalg.norm(a)))


def cylinder(axis_point, radius: float, axis: int = 0) -> Shape:
    """Infinite cylinder along the local axis ``axis`` through ``axis_point``."""
    c = np.asarray(axis_point, np.float32).reshape(3, 1)
    others = [k for k in range(3) if k != axis]
    return lambda p: np.sqrt(((p[others] - c[others]) ** 2).sum(0)) - radius


def half_space(normal, offset: float) -> Shape:
    """Points with n . p > offset are outside."""
    n = np.asarray(normal, np.float32).reshape(3, 1)
    n = n / np.linalg.norm(n)
    return lambda p: (n * p).sum(0) - offset


def _keep_bound(new: Shape, bound, pad: float = 0.0) -> Shape:
    if bound is not None:
        bounded(new, bound[0], bound[1] + pad)
    return new


def union(*shapes: Shape) -> Shape:
    f = lambda p: np.minimum.reduce([s(p) for s in shapes])  # noqa: E731
    return _keep_bound(f, _enclose([getattr(s, "bound", None) for s in shapes]))


def intersect(*shapes: Shape) -> Shape:
    f = lambda p: np.maximum.reduce([s(p) for s in shapes])  # noqa: E731
    bounds = [s.bound for s in shapes if getattr(s, "bound", None) is not None]
    return _keep_bound(f, min(bounds, key=lambda b: b[1]) if bounds else None)


def subtract(a: Shape, b: Shape) -> Shape:
    return _keep_bound(lambda p: np.maximum(a(p), -b(p)), getattr(a, "bound", None))


def shell(s: Shape, thickness: float) -> Shape:
    """A wall of ``thickness`` mm straddling the surface of ``s`` from inside (rim)."""
    f = lambda p: np.abs(s(p) + thickness / 2) - thickness / 2  # noqa: E731
    return _keep_bound(f, getattr(s, "bound", None))


def smooth_union(shapes: list[Shape], k: float) -> Shape:
    """Polynomial smooth minimum (blend radius ``k`` mm): lobes fuse like metaballs."""

    def f(p):
        d = shapes[0](p)
        for s in shapes[1:]:
            e = s(p)
            h = np.clip(0.5 + 0.5 * (e - d) / k, 0.0, 1.0)
            d = e * (1 - h) + d * h - k * h * (1 - h)
        return d

    return _keep_bound(f, _enclose([getattr(s, "bound", None) for s in shapes]))


class Wobble:
    """A smooth random displacement field: a sum of ``n`` plane waves of wavelength about
    ``wavelength_mm`` in random directions, std ``amplitude_mm``. Cheap to evaluate at any point,
    which supersampling needs (a gridded noise field could not be)."""

    def __init__(self, rng: np.random.Generator, amplitude_mm: float, wavelength_mm: float, n=5):
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        k = 2 * np.pi / wavelength_mm * rng.uniform(0.7, 1.4, (n, 1))
        self.k = (d * k).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, (n, 1)).astype(np.float32)
        self.gain = float(amplitude_mm) * np.sqrt(2.0 / n)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.gain * np.sin(self.k @ p + self.phase).sum(0)


def wobbled(s: Shape, w: Wobble) -> Shape:
    """``s`` with its surface pushed in and out by ``w`` (noise-displaced surface)."""
    reach = w.gain * w.k.shape[0]
    return _keep_bound(lambda p: s(p) + w(p), getattr(s, "bound", None), reach)


# -- the canvas ------------------------------------------------------------------------------------
class Canvas:
    """The ideal object being drawn: ``hu`` and ``cover`` as flat ``[N]`` float32 arrays over the
    patch voxels, ``world`` the voxel centres in patch mm (z, y, x; origin at the patch centre)
    and ``local`` the same points in the finding's frame (``rotation``, origin at ``centre_mm``).
    Local axis 0 is the long axis of the anatomy (limb, vessel, rib)."""

    def __init__(self, shape, spacing, rotation, centre_mm, background: np.ndarray):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = np.asarray(spacing, np.float64)
        self.rotation = np.asarray(rotation, np.float64)
        self.centre = np.asarray(centre_mm, np.float64)
        axes = [
            (np.arange(n) - (n - 1) / 2) * s for n, s in zip(self.shape, self.spacing, strict=True)
        ]
        grid = np.meshgrid(*axes, indexing="ij")
        self.world = np.stack([g.ravel() for g in grid]).astype(np.float32)
        self.local = (self.rotation.T @ (self.world - self.centre[:, None])).astype(np.float32)
        self.hu = background.astype(np.float32).ravel().copy()
        self.cover = np.zeros(self.hu.size, np.float32)
        # Fraction of each voxel occupied by calcified deposits (the finding itself, not the
        # bone, vessel or mass drawn with it).
        self.deposit = np.zeros(self.hu.size, np.float32)
        self.band = 0.6 * float(np.linalg.norm(self.spacing))
        self.sub_local = {}
        for n in (2, 3):
            f = (np.arange(n) + 0.5) / n - 0.5
            sub = np.stack([g.ravel() for g in np.meshgrid(f, f, f, indexing="ij")])
            self.sub_local[n] = (self.rotation.T @ (sub * self.spacing[:, None])).astype(np.float32)
        self.extent = self.spacing * np.array(self.shape)

    @property
    def radius_limit(self) -> float:
        """Largest finding radius (mm) that still fits the patch with a margin."""
        return 0.42 * float(self.extent.min())

    def occupancy(self, s: Shape, where: np.ndarray | None = None, sub: int = SUB) -> np.ndarray:
        """Inside fraction of every voxel, ``[N]`` float32 in [0, 1]; ``where`` (flat voxel
        indices) limits the evaluation to the voxels that can be inside or on the surface, and
        ``sub`` is the number of sub-samples per axis (2 or 3)."""
        occ = np.zeros(self.hu.size, np.float32)
        bound = getattr(s, "bound", None)
        if where is None and bound is None:
            where = slice(None)
        elif where is None:
            c, r = bound
            q = self.local - c[:, None]
            where = np.flatnonzero((q * q).sum(0) < (r + self.band) ** 2)
        if isinstance(where, np.ndarray) and where.size == 0:
            return occ
        local = self.local[:, where]
        d = s(local)
        part = (d < 0).astype(np.float32)
        near = np.flatnonzero(np.abs(d) < self.band)
        if near.size:
            pts = local[:, near, None] + self.sub_local[sub][:, None, :]
            inside = s(pts.reshape(3, -1)).reshape(near.size, -1) < 0
            part[near] = inside.mean(1)
        occ[where] = part
        return occ

    def paint(self, s: Shape, hu, cover: bool = True, deposit: bool = False) -> np.ndarray:
        """Fill shape ``s`` with ``hu`` (a number or ``[N]`` values at the voxel centres);
        ``deposit`` marks it as calcification (see :attr:`deposit`)."""
        return self.blend(self.occupancy(s), hu, cover, deposit)

    def blend(self, occ: np.ndarray, hu, cover: bool = True, deposit: bool = False) -> np.ndarray:
        self.hu += occ * (np.asarray(hu, np.float32) - self.hu)
        if cover:
            self.cover += occ * (1.0 - self.cover)
        # Whatever is painted later replaces the deposit it overlaps (a lucent centre, a lytic
        # hole), so the deposit fraction follows the same over-painting rule as the HU.
        self.deposit += occ * ((1.0 if deposit else 0.0) - self.deposit)
        return occ

    def tubes(self, points: np.ndarray, radius_mm, hu, cover: bool = True) -> np.ndarray:
        """Deposits of the point cloud ``points`` ([3, M] local mm): the union of balls of
        ``radius_mm`` (a number or ``[M]``) around the points, so points every ``STEP`` mm along
        a curve draw a tube (line, ring, strand) and a single point a ball. Partial volume comes
        from the same supersampling as :meth:`paint`: a deposit keeps its own HU wherever it
        fills a voxel, and a thin one keeps its true share of the voxel (its volume is neither
        spread over neighbours nor inflated). Always marked as calcification."""
        from scipy.spatial import cKDTree  # scipy is the family's only other dependency

        if points.size == 0:
            return np.zeros(self.hu.size, np.float32)
        points = np.asarray(points, np.float64)
        radius = np.broadcast_to(np.asarray(radius_mm, float), (points.shape[1],))
        # Candidate voxels: those within (largest radius + band) of a point, found on the grid.
        world = self.rotation @ points + self.centre[:, None]
        idx = np.rint(world / self.spacing[:, None] + (np.array(self.shape)[:, None] - 1) / 2)
        reach = np.ceil((radius.max() + self.band) / self.spacing.min()).astype(int)
        offsets = np.stack(
            np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), 0
        ).reshape(3, -1)
        centres = np.unique(idx.astype(np.int64), axis=1)
        cand = (centres[:, :, None] + offsets[:, None, :]).reshape(3, -1)
        ok = np.all((cand >= 0) & (cand < np.array(self.shape)[:, None]), axis=0)
        where = np.unique(np.ravel_multi_index(cand[:, ok], self.shape))
        tree = cKDTree(points.T)
        limit = float(radius.max() + self.band)
        # Equal radii: the nearest point decides; unequal: the best of the 4 nearest.
        k = 1 if np.ptp(radius) == 0 else min(4, points.shape[1])

        def s(p):
            d, i = tree.query(p.T, k=k, distance_upper_bound=limit)
            d, i = d.reshape(len(d), k), i.reshape(len(i), k)
            r = radius[np.minimum(i, points.shape[1] - 1)]
            return (d - r).min(1).astype(np.float32)

        # 2x2x2 sub-samples: the k-d tree query dominates the cost, and deposit tubes are
        # blurred by the scanner far more than the 1/8 occupancy steps this leaves.
        return self.blend(self.occupancy(s, where, sub=2), hu, cover, deposit=True)

    def image(self) -> tuple[np.ndarray, np.ndarray]:
        return self.hu.reshape(self.shape), np.clip(self.cover, 0, 1).reshape(self.shape)


# -- point clouds ----------------------------------------------------------------------------------
def arc_points(centre, radius, normal, start, sweep, step=0.35) -> np.ndarray:
    """Points every ``step`` mm along a circular arc (local mm) of ``sweep`` radians."""
    n = np.asarray(normal, float)
    n /= np.linalg.norm(n)
    e1 = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    m = max(int(np.ceil(radius * sweep / step)), 2)
    t = start + np.linspace(0, sweep, m)
    pts = np.asarray(centre, float)[:, None] + radius * (
        np.cos(t) * e1[:, None] + np.sin(t) * e2[:, None]
    )
    return pts


def segment_points(a, b, step=0.35) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    m = max(int(np.ceil(np.linalg.norm(b - a) / step)), 2)
    return a[:, None] + (b - a)[:, None] * np.linspace(0, 1, m)[None]


def random_unit(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    v = rng.standard_normal(3 if n is None else (n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
