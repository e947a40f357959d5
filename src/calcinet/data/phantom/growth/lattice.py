"""The fine lattice of the growth family, its growth processes and its random fields.

Deposits live on boxes of a lattice twice as fine as the patch (`FineBox`): they are marked by
stamping lattice balls along paths and point sets, grown by stochastic processes (Eden growth,
thresholded lattice noise), cleaned by majority votes, and brought to the patch grid by 2x2x2
block averaging. Large anatomy (bone shafts, masses) is given by a distance-like field whose
2x2x2 sub-lattice is evaluated only in the narrow band where a voxel may straddle the surface
(`band_fractions`). Smooth random fields come from a coarse lattice of white noise carried to the
target grid by separable interpolation matrices (`lattice_noise`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import ndimage


class Grid:
    """The patch: ``shape`` voxels (z, y, x) of ``spacing`` mm, centred on the origin (mm); the
    finding's frame is rotated by ``rotation`` (3x3, columns = scene axes u, v, w in patch
    coordinates) and centred at ``centre`` (mm)."""

    def __init__(self, shape, spacing, rotation: np.ndarray, centre) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.spacing = np.asarray(spacing, float)
        self.rotation = np.asarray(rotation, float)
        self.centre = np.asarray(centre, float)
        self.axes = [
            ((np.arange(n) - (n - 1) / 2) * s).astype(np.float32)
            for n, s in zip(self.shape, self.spacing, strict=True)
        ]

    def point(self, local) -> np.ndarray:
        """Patch coordinates (mm) of a point given in the finding's frame (u, v, w mm)."""
        return self.centre + self.rotation @ np.asarray(local, float)

    def direction(self, local) -> np.ndarray:
        """Unit vector in patch coordinates of a direction given in the finding's frame."""
        d = self.rotation @ np.asarray(local, float)
        return d / np.linalg.norm(d)


# -- smooth random fields from lattice noise ------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _interp_matrix(n_out: int, step: float, cell: float) -> np.ndarray:
    """(n_out, n_cells) Gaussian interpolation weights from lattice nodes ``cell`` apart to
    output samples ``step`` apart, rows normalised to unit energy (unit-variance output)."""
    length = n_out * step
    n_cells = int(np.ceil(length / cell)) + 4
    x = (np.arange(n_out) + 0.5) * step
    nodes = (np.arange(n_cells) - 1.5) * cell
    w = np.exp(-0.5 * ((x[:, None] - nodes[None, :]) / (0.6 * cell)) ** 2)
    return (w / np.sqrt((w**2).sum(1, keepdims=True))).astype(np.float32)


def lattice_noise(shape, step, cells, rng: np.random.Generator) -> np.ndarray:
    """A smooth zero-mean, about unit-variance random field of ``shape`` samples ``step`` mm
    apart (per axis), correlated over ``cells`` mm (per axis): white noise on a lattice of that
    pitch, carried to the samples by separable interpolation matrices. float32."""
    mats = [
        _interp_matrix(int(n), float(s), float(c))
        for n, s, c in zip(shape, step, cells, strict=True)
    ]
    node = rng.standard_normal(tuple(m.shape[1] for m in mats), dtype=np.float32)
    out = np.tensordot(mats[0], node, axes=(1, 0))
    out = np.tensordot(mats[1], out, axes=(1, 1)).transpose(1, 0, 2)
    return np.tensordot(out, mats[2], axes=(2, 1))


# -- narrow-band 2x2x2 occupancy of distance-like fields ------------------------------------------
Field = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def band_fractions(grid: Grid, field: Field, levels, box=None) -> list[np.ndarray]:
    """Fraction of each voxel where ``field < level``, for each level, from the 2x2x2 sub-lattice
    (the fine lattice) of each voxel; ``field(z, y, x)`` takes broadcastable patch coordinates
    (mm) and changes by at most 1 per mm. Sub-samples are evaluated only in the band where a
    voxel may straddle a level. ``box``: slices restricting the work (zeros outside). Returns
    float32 arrays of ``grid.shape``."""
    box = box or tuple(slice(0, n) for n in grid.shape)
    ax = [a[b] for a, b in zip(grid.axes, box, strict=True)]
    f = field(ax[0][:, None, None], ax[1][None, :, None], ax[2][None, None, :])
    f = np.broadcast_to(f, tuple(len(a) for a in ax))
    q = grid.spacing / 4
    reach = float(np.linalg.norm(q)) * 1.001
    offsets = (np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]) * q).astype(
        np.float32
    )
    out = []
    for level in levels:
        d = f - np.float32(level)
        frac = (d < 0).astype(np.float32)
        flat = np.flatnonzero(np.abs(d, out=d) <= reach)
        if len(flat):
            idx = np.unravel_index(flat, frac.shape)
            pts = [ax[k][idx[k]][:, None] + offsets[None, :, k] for k in range(3)]
            frac.reshape(-1)[flat] = (field(*pts) < level).mean(1)
        if frac.shape == grid.shape:
            out.append(frac)
            continue
        full = np.zeros(grid.shape, np.float32)
        full[box] = frac
        out.append(full)
    return out


def balls_field(centres, radii) -> Field:
    """Distance-like field of a union of balls (patch mm centres, mm radii): negative inside."""

    def field(z, y, x):
        out = None
        for (cz, cy, cx), r in zip(np.float32(centres), np.float32(radii), strict=True):
            d = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) - r
            out = d if out is None else np.minimum(out, d)
        return out

    return field


def slab_field(point, normal, thickness_mm: float) -> Field:
    """Distance-like field of the slab ``0 <= normal . (p - point) <= thickness_mm``."""
    p, n = np.asarray(point, np.float32), np.asarray(normal, np.float32)

    def field(z, y, x):
        h = (z - p[0]) * n[0] + (y - p[1]) * n[1] + (x - p[2]) * n[2]
        return np.abs(h - thickness_mm / 2) - thickness_mm / 2

    return field


def axis_distance_field(point, direction) -> Field:
    """Distance (mm) from the line through ``point`` along unit ``direction`` (a shaft axis)."""
    p, d = np.asarray(point, np.float32), np.asarray(direction, np.float32)

    def field(z, y, x):
        dz, dy, dx = z - p[0], y - p[1], x - p[2]
        t = dz * d[0] + dy * d[1] + dx * d[2]
        return np.sqrt(np.maximum(dz * dz + dy * dy + dx * dx - t * t, 0.0))

    return field


def aggregate(rng, centre, n, radius_mm, spread=0.75, drift=None):
    """Lobule centres and radii grown by sequential aggregation: each new lobule sticks to a
    random earlier one, ``spread`` x the sum of radii away, in a random direction (biased along
    ``drift``). Returns (list of centres, list of radii), the first at ``centre``."""
    centres, radii = [np.asarray(centre, float)], [radius_mm]
    for _ in range(n - 1):
        j = int(rng.integers(len(centres)))
        r = radius_mm * rng.uniform(0.45, 0.85)
        d = rng.standard_normal(3)
        if drift is not None:
            d = d / np.linalg.norm(d) + np.asarray(drift, float)
        d = d / np.linalg.norm(d)
        centres.append(centres[j] + d * spread * (radii[j] + r))
        radii.append(r)
    return centres, radii


# -- the fine lattice box --------------------------------------------------------------------------
@functools.lru_cache(maxsize=128)
def ball_offsets(rz: float, ry: float, rx: float) -> np.ndarray:
    """Integer offsets (k, 3) of the lattice points inside the ellipsoid of semi-axes
    (``rz``, ``ry``, ``rx``) lattice steps (a ball in mm on an anisotropic lattice)."""
    r = np.maximum(np.array([rz, ry, rx], float), 0.5)
    n = np.ceil(r).astype(int)
    g = np.mgrid[-n[0] : n[0] + 1, -n[1] : n[1] + 1, -n[2] : n[2] + 1].reshape(3, -1).T
    return g[((g / r) ** 2).sum(1) <= 1 + 1e-9]


class FineBox:
    """A box of the fine lattice (half the patch spacing) around ``centre`` (patch mm), reaching
    ``half_mm`` each way, clipped to the patch: ``mask`` arrays of ``shape`` are block averaged
    to ``slices`` of the patch."""

    def __init__(self, grid: Grid, centre, half_mm) -> None:
        c = np.asarray(centre, float)
        half = np.broadcast_to(np.asarray(half_mm, float), (3,))
        lo, hi = [], []
        for k in range(3):
            a = grid.axes[k]
            i0 = int(np.floor((c[k] - half[k] - a[0]) / grid.spacing[k]))
            i1 = int(np.ceil((c[k] + half[k] - a[0]) / grid.spacing[k])) + 1
            lo.append(min(max(i0, 0), grid.shape[k] - 1))
            hi.append(max(min(i1, grid.shape[k]), lo[-1] + 1))
        self.grid = grid
        self.slices = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        self.shape = tuple(2 * (b - a) for a, b in zip(lo, hi, strict=True))
        self.step = grid.spacing / 2
        self.origin = np.array([grid.axes[k][lo[k]] - grid.spacing[k] / 4 for k in range(3)])
        self.axes = [
            (self.origin[k] + np.arange(self.shape[k]) * self.step[k]).astype(np.float32)
            for k in range(3)
        ]

    def empty(self) -> np.ndarray:
        return np.zeros(self.shape, bool)

    def index(self, points) -> np.ndarray:
        """Nearest fine-lattice indices (k, 3) of patch points (k, 3) mm."""
        return np.rint((np.atleast_2d(points) - self.origin) / self.step).astype(int)

    @classmethod
    def around(cls, grid: Grid, points, margin_mm: float) -> FineBox:
        """The box holding patch points (k, 3) mm with ``margin_mm`` to spare."""
        pts = np.atleast_2d(np.asarray(points, float))
        lo, hi = pts.min(0), pts.max(0)
        return cls(grid, (lo + hi) / 2, (hi - lo) / 2 + margin_mm)

    def _flat(self, points, radius_mm: float):
        """Flat indices into the box of the lattice balls of ``radius_mm`` around the points,
        (points, offsets) shaped, with a validity mask (None when all are inside)."""
        pts = np.atleast_2d(np.asarray(points, float))
        # Lattice balls of a few steps lose volume to the lattice: widen them a little.
        rz, ry, rx = (round(float(np.hypot(radius_mm / h, 0.775)), 3) for h in self.step)
        off = ball_offsets(rz, ry, rx)
        reach = int(np.abs(off).max())
        ijk = self.index(pts)
        shape = np.array(self.shape)
        near = np.flatnonzero(np.all((ijk >= -reach) & (ijk < shape + reach), axis=1))
        padded = shape + 2 * reach
        key = (ijk[near] + reach) @ np.array([padded[1] * padded[2], padded[2], 1])
        _, first = np.unique(key, return_index=True)  # one ball per lattice point
        first = near[first]
        ijk = ijk[first]
        stride = np.array([shape[1] * shape[2], shape[2], 1])
        flat = ijk @ stride
        idx = flat[:, None] + (off @ stride)[None, :]
        inner = np.all((ijk >= reach) & (ijk < shape - reach), axis=1)
        if inner.all():
            return idx, None, first
        full = ijk[:, None, :] + off[None, :, :]
        ok = np.all((full >= 0) & (full < shape), axis=2)
        return idx, ok, first

    def stamp(self, mask: np.ndarray, points, radius_mm: float, value=True) -> np.ndarray:
        """Set ``mask`` at the lattice balls of ``radius_mm`` around each point (k, 3) mm."""
        if not len(np.atleast_2d(points)) or not np.size(points):
            return mask
        idx, ok, _ = self._flat(points, radius_mm)
        mask.reshape(-1)[idx.ravel() if ok is None else idx[ok]] = value
        return mask

    def stamp_max(self, arr: np.ndarray, points, radius_mm: float, values) -> np.ndarray:
        """Raise ``arr`` to ``values`` (one per point) on the lattice balls around the points."""
        pts = np.atleast_2d(np.asarray(points, float))
        if not np.size(pts):
            return arr
        idx, ok, first = self._flat(pts, radius_mm)
        val = np.broadcast_to(np.asarray(values, np.float32), (len(pts),))[first]
        val = np.broadcast_to(val[:, None], idx.shape)
        if ok is not None:
            idx, val = idx[ok], val[ok]
        idx, val = idx.ravel(), val.ravel()
        order = np.argsort(val, kind="stable")  # the densest value wins where balls overlap
        idx, val = idx[order], val[order]
        flat = arr.reshape(-1)
        flat[idx] = np.maximum(flat[idx], val)
        return arr

    def coords(self):
        """Broadcastable fine-lattice coordinates (z, y, x) in patch mm."""
        a = self.axes
        return a[0][:, None, None], a[1][None, :, None], a[2][None, None, :]

    def noise(self, cell_mm, rng) -> np.ndarray:
        """A smooth unit-variance field on the box (:func:`lattice_noise`)."""
        cells = np.broadcast_to(np.asarray(cell_mm, float), (3,))
        return lattice_noise(self.shape, self.step, cells, rng)

    def block(self, mask: np.ndarray, hu=None):
        """2x2x2 block average of a fine mask: the fraction of each patch voxel it occupies and,
        with ``hu`` (scalar or fine array), the mean HU of the occupied sub-voxels."""
        m = mask.astype(np.float32)
        frac = _block_sum(m) * 0.125
        if hu is None or np.isscalar(hu):
            return frac, hu
        s = _block_sum(m * hu)
        return frac, np.where(frac > 0, s / np.maximum(frac * 8, 1e-6), 0).astype(np.float32)


def _block_sum(a: np.ndarray) -> np.ndarray:
    a = a[0::2] + a[1::2]
    a = a[:, 0::2] + a[:, 1::2]
    return a[:, :, 0::2] + a[:, :, 1::2]


def eden(mask: np.ndarray, steps: int, p: float, rng, allow=None) -> np.ndarray:
    """Eden growth: ``steps`` rounds in which each free lattice site touching the cluster joins
    it with probability ``p`` (only where ``allow``, when given)."""
    for _ in range(int(steps)):
        front = ndimage.binary_dilation(mask) & ~mask
        if allow is not None:
            front &= allow
        mask = mask | (front & (rng.random(mask.shape, dtype=np.float32) < p))
    return mask


def majority(mask: np.ndarray) -> np.ndarray:
    """One majority vote over the 3x3x3 neighbourhood (smooths a grown cluster's surface)."""
    return ndimage.uniform_filter(mask.astype(np.float32), 3, mode="constant") > 0.5


def walk(rng, start, direction, length_mm, step_mm, turn, plane_normal=None) -> np.ndarray:
    """A persistent random walk (k, 3) of ``length_mm`` in ``step_mm`` steps from ``start``:
    the heading is the initial ``direction`` plus the running sum of Gaussian kicks of ``turn``
    per step (so it wanders away slowly), optionally kept in the plane orthogonal to
    ``plane_normal``."""
    n = max(int(np.ceil(length_mm / step_mm)), 1)
    d = np.asarray(direction, float)
    heading = d / np.linalg.norm(d) + np.cumsum(rng.standard_normal((n, 3)) * turn, axis=0)
    if plane_normal is not None:
        pn = np.asarray(plane_normal, float)
        heading -= (heading @ pn)[:, None] * pn
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    steps = np.concatenate([np.zeros((1, 3)), np.cumsum(heading * step_mm, axis=0)])
    return np.asarray(start, float) + steps


def unit(rng) -> np.ndarray:
    """A uniformly random unit vector."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def rings(centres, normals, radii, step_mm, starts=None, sweeps=None, wobble=0.0, rng=None):
    """Points (k, 3) along circles (or arcs of ``sweeps`` radians from ``starts``) of ``radii``
    around ``centres`` (n, 3) in the planes orthogonal to ``normals`` (n, 3); ``wobble`` > 0
    perturbs each radius along the arc by a smooth random factor (needs ``rng``)."""
    c = np.atleast_2d(np.asarray(centres, float))
    n = np.atleast_2d(np.asarray(normals, float))
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    ref = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    e1 = np.cross(n, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(n, e1)
    r = np.broadcast_to(np.asarray(radii, float), (len(c),))
    starts = np.zeros(len(c)) if starts is None else np.asarray(starts, float)
    sweeps = np.full(len(c), 2 * np.pi) if sweeps is None else np.asarray(sweeps, float)
    k = int(np.ceil(2 * np.pi * r.max() / step_mm)) + 2
    t = np.linspace(0, 1, k)[None, :]
    ang = starts[:, None] + sweeps[:, None] * t
    rr = r[:, None] * np.ones_like(t)
    if wobble > 0:
        phase = rng.uniform(0, 2 * np.pi, (len(c), 2))
        rr = rr * (
            1
            + wobble * (0.6 * np.sin(2 * ang + phase[:, :1]) + 0.4 * np.sin(3 * ang + phase[:, 1:]))
        )
    pts = c[:, None, :] + rr[..., None] * (
        np.cos(ang)[..., None] * e1[:, None, :] + np.sin(ang)[..., None] * e2[:, None, :]
    )
    return pts.reshape(-1, 3)
