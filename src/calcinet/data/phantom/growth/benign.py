"""Benign patterns of the growth family: organised, sharp, smooth deposits without a soft-tissue
mass. Each entry of ``PAINTERS`` is ``(sample(rng, difficulty) -> dict, paint(scene, params))``;
morphology keys start with ``gm_``. Positions in a painter are in the finding's frame (u, v, w
mm, the finding at the origin) unless said otherwise.
"""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.growth.lattice import (
    FineBox,
    aggregate,
    band_fractions,
    eden,
    lattice_noise,
    majority,
    rings,
    unit,
    walk,
)
from calcinet.data.phantom.growth.tissue import Scene

MAX_SIZE_MM = 44.0  # a 60 mm field of view: findings are clipped to stay inside it


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def nodules(s: Scene, centres, radii, hu, rough_steps: int = 2, smooth: bool = True) -> None:
    """Dense nodules: lattice balls of 80 % of ``radii`` around patch points ``centres``, grown
    by Eden growth to about their full radius, surfaces smoothed by majority votes."""
    c, r = np.atleast_2d(centres), np.atleast_1d(radii)
    lo, hi = (c - r[:, None]).min(0), (c + r[:, None]).max(0)
    box = FineBox(s.grid, (lo + hi) / 2, (hi - lo) / 2 + 2.0)
    core = box.empty()
    for ci, ri in zip(c, r, strict=True):
        box.stamp(core, ci, max(0.8 * ri, 0.8))
    mask = eden(core, rough_steps, 0.55, s.rng)
    if smooth:
        mask = majority(mask) | core
    s.deposit(box, mask, hu)


# -- phlebolith ------------------------------------------------------------------------------------
def sample_phlebolith(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 2.0, 6.0),
        "gm_rim_fraction": _u(rng, 0.3, 0.5),
        "gm_rim_hu": _u(rng, 600, 1300),
        "gm_centre_hu": _u(rng, 40, 160),
    }


def paint_phlebolith(s: Scene, m):
    s.neighbours(bone=True)
    r = m["gm_size_mm"] / 2
    rim = max(1.0, m["gm_rim_fraction"] * r)
    box = s.box((0, 0, 0), r + 1.5)
    c = s.grid.point((0, 0, 0))
    s.deposit(box, box.stamp(box.empty(), c, r), m["gm_rim_hu"])
    if r - rim >= 0.3:
        s.deposit(box, box.stamp(box.empty(), c, r - rim), m["gm_centre_hu"], deposit=False)


# -- calcific tendinitis ---------------------------------------------------------------------------
def sample_tendinitis(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 3.0, 15.0),
        "gm_count": int(rng.integers(1, 4)),
        "gm_hu": _u(rng, 350, 800) + 300 * difficulty,
        "gm_bone_radius_mm": _u(rng, 10, 20),
        "gm_bone_gap_mm": _u(rng, 2, 6),
        "gm_tendon_mm": _u(rng, 2.5, 4.0),
    }


def paint_tendinitis(s: Scene, m):
    s.neighbours(bone=False)
    rb, size = m["gm_bone_radius_mm"], m["gm_size_mm"]
    s.shaft((-(rb + m["gm_bone_gap_mm"] + size / 4), 0, 0), rb, s.p["g_cortex_mm"])
    s.tube((0, 0, 0), (0, 0.2, 1), m["gm_tendon_mm"], s.p["g_muscle_hu"] + 30)
    d = s.grid.direction((0, 0.2, 1))
    pts, radii = [], []
    for k in range(m["gm_count"]):
        size_k = size * (1 if k == 0 else s.rng.uniform(0.35, 0.7))
        start = s.grid.point((0, s.rng.normal(0, 1.5), 0)) + d * k * size * 0.9
        pts.append(start + np.outer(np.linspace(-0.3, 0.3, 8) * size_k, d))
        radii.append(np.full(8, max(size_k * 0.28, 1.0)))
    nodules(s, np.concatenate(pts), np.concatenate(radii), m["gm_hu"])


# -- chondrocalcinosis -----------------------------------------------------------------------------
def sample_chondrocalcinosis(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 1.0, 2.0),
        "gm_lines": int(rng.integers(1, 3)),
        "gm_hu": _u(rng, 300, 700),
        "gm_cartilage_mm": _u(rng, 2.5, 4.0),
        "gm_joint_mm": _u(rng, 2.0, 4.0),
        "gm_length_mm": _u(rng, 22, 40),
    }


def paint_chondrocalcinosis(s: Scene, m):
    s.neighbours(bone=False)
    g, p = s.grid, s.p
    n = g.direction((1, 0, 0))
    t_c, gap = m["gm_cartilage_mm"], m["gm_joint_mm"]
    surface = g.point((-t_c, 0, 0))
    # Layers along the joint normal, from the surface of the lower bone end (h = 0) upwards:
    # bone (2 mm subchondral plate over trabecular bone), cartilage, joint fluid, cartilage,
    # bone (plate, then trabecular).
    top = 2 * t_c + gap
    levels = (-2.0, 0.0, t_c, t_c + gap, top, top + 2.0)
    h = band_fractions(g, _height(surface, n), levels)
    layers = (
        (0.0, h[0], p["g_trabecular_hu"]),
        (h[0], h[1], p["g_cortical_hu"]),
        (h[1], h[2], 100.0),
        (h[2], h[3], p["g_fluid_hu"]),
        (h[3], h[4], 100.0),
        (h[4], h[5], p["g_cortical_hu"]),
        (h[5], 1.0, p["g_trabecular_hu"]),
    )
    for lo, hi, hu in layers:
        s.layers.paint(hi - lo, hu)
    box = s.box((0, 0, 0), m["gm_length_mm"] / 2 + 3)
    mask = box.empty()
    along = g.direction((0, 1, 0.3))
    for k in range(m["gm_lines"]):
        depth = 0.5 * t_c + k * (t_c + gap)  # mid-cartilage, on one side of the joint or both
        start = surface + n * depth - along * m["gm_length_mm"] / 2
        pts = walk(s.rng, start, along, m["gm_length_mm"], 0.4, 0.03, plane_normal=n)
        box.stamp(mask, pts, m["gm_size_mm"] / 2)
    s.deposit(box, mask, m["gm_hu"])


def _height(point, normal):
    p, n = np.asarray(point, np.float32), np.asarray(normal, np.float32)
    return lambda z, y, x: (z - p[0]) * n[0] + (y - p[1]) * n[1] + (x - p[2]) * n[2]


# -- tumoral calcinosis ----------------------------------------------------------------------------
def sample_tumoral_calcinosis(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 10, 50), 40.0),
        "gm_lobes": int(rng.integers(3, 9)),
        "gm_hu": _u(rng, 350, 1000),
        "gm_fluid_level": bool(rng.random() < 0.4),
        "gm_level": _u(rng, 0.2, 0.6),
    }


def paint_tumoral_calcinosis(s: Scene, m):
    s.neighbours(bone=True)
    size = m["gm_size_mm"]
    centres, radii = aggregate(
        s.rng, s.grid.point((0, 0, 0)), m["gm_lobes"], 0.3 * size, spread=0.7
    )
    frac = s.balls(centres, radii)
    s.layers.paint(frac, m["gm_hu"], deposit=True)
    if m["gm_fluid_level"]:
        c, r = np.array(centres), np.array(radii)
        lo, hi = (c - r[:, None]).min(0), (c + r[:, None]).max(0)
        level = lo[1] + m["gm_level"] * (hi[1] - lo[1])
        y = s.grid.axes[1][None, :, None]
        above = np.clip((level - y) / s.grid.spacing[1] + 0.5, 0, 1)  # horizontal fluid level
        s.layers.paint(frac * above, s.p["g_fluid_hu"] + 10)


# -- myositis ossificans ---------------------------------------------------------------------------
def sample_myositis_ossificans(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 20, 60), MAX_SIZE_MM),
        "gm_shell_mm": _u(rng, 2.5, 4.5),
        "gm_shell_hu": _u(rng, 800, 1250) - 150 * difficulty,
        "gm_centre_hu": _u(rng, 110, 220) + 100 * difficulty,
        "gm_trabecular_hu": _u(rng, 60, 120),
        "gm_cleft_mm": _u(rng, 2.5, 6),
        "gm_bone": bool(rng.random() < 0.75),
        "gm_bone_radius_mm": _u(rng, 10, 18),
    }


def paint_myositis_ossificans(s: Scene, m):
    """Zonal maturation in muscle: a thick, mature, cleanly marginated cortical shell, a
    trabecular transition zone inside it and a less dense immature centre; separate from the
    neighbouring shaft (when there is one) by a cleft of soft tissue."""
    s.neighbours(bone=False)
    r, t = m["gm_size_mm"] / 2, m["gm_shell_mm"]
    rb = m["gm_bone_radius_mm"]
    if m["gm_bone"]:
        s.shaft(-(0.8 * r + m["gm_cleft_mm"] + rb) * s.outward(), rb, s.p["g_cortex_mm"])
    g = s.grid
    centres = [g.point((0, 0, -0.2 * r)), g.point((0, 0, 0.2 * r))]
    radii = [0.8 * r, 0.75 * r]
    body, core, centre = s.balls(centres, radii, (0.0, -t, -t - 0.2 * r))
    mid = 0.5 * (m["gm_shell_hu"] + m["gm_centre_hu"])
    s.layers.paint(body, m["gm_shell_hu"], deposit=True)
    where, trab = s.field_on(core, 2.4)
    if where is None:
        return
    rods = (trab > 0.35).astype(np.float32) - 0.35
    core_hu = (mid + 2 * m["gm_trabecular_hu"] * rods).astype(np.float32)
    s.layers.paint(core[where], core_hu, where, deposit=True)
    centre_hu = (m["gm_centre_hu"] + m["gm_trabecular_hu"] * rods).astype(np.float32)
    s.layers.paint(centre[where], centre_hu, where, deposit=True)


# -- heterotopic ossification ----------------------------------------------------------------------
def sample_heterotopic_ossification(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 10, 50), MAX_SIZE_MM),
        "gm_cortex_mm": _u(rng, 1.5, 3.0),
        "gm_cortex_hu": _u(rng, 900, 1500),
        "gm_medulla_hu": _u(rng, 200, 400),
        "gm_lobes": int(rng.integers(2, 5)),
    }


def paint_heterotopic_ossification(s: Scene, m):
    s.neighbours(bone=True)
    g = s.grid
    r = m["gm_size_mm"] / 2
    centres, radii = aggregate(
        s.rng,
        g.point((0, 0, -0.3 * r)),
        m["gm_lobes"],
        0.55 * r,
        spread=0.55,
        drift=g.direction((0, 0, 1)),
    )
    body, medulla = s.balls(centres, radii, (0.0, -m["gm_cortex_mm"]))
    trab = lattice_noise(g.shape, g.spacing, (2.4, 2.4, 2.4), s.rng)
    marrow = m["gm_medulla_hu"] + 120.0 * ((trab > 0.3) - 0.38)
    s.layers.paint(body, m["gm_cortex_hu"], deposit=True)
    s.layers.paint(medulla, marrow.astype(np.float32), deposit=True)


# -- cysticercosis ---------------------------------------------------------------------------------
def sample_parasitic(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 2.0, 4.0),
        "gm_count": int(rng.integers(6, 17)),
        "gm_hu": _u(rng, 400, 900),
        "gm_spread_mm": _u(rng, 12, 20),
        "gm_thickness_mm": _u(rng, 1.3, 1.8),
    }


def paint_parasitic(s: Scene, m):
    s.neighbours(bone=True)
    g = s.grid
    fibre = np.eye(3)[int(s.p["g_fibre_axis"])]
    spread = m["gm_spread_mm"]
    box = s.box((0, 0, 0), spread + 3)
    mask = box.empty()
    c0 = g.point((0, 0, 0))
    for _ in range(m["gm_count"]):
        c = c0 + s.rng.uniform(-spread, spread, 3) * np.array([1, 1, 1]) * 0.9
        d = fibre + s.rng.normal(0, 0.12, 3)
        d /= np.linalg.norm(d)
        length = m["gm_size_mm"] * s.rng.uniform(0.8, 1.2) - m["gm_thickness_mm"]
        pts = c + np.outer(np.linspace(-0.5, 0.5, 8) * max(length, 0.5), d)
        box.stamp(mask, pts, m["gm_thickness_mm"] / 2)
    s.deposit(box, mask, m["gm_hu"])


# -- injection granuloma ---------------------------------------------------------------------------
def sample_injection_granuloma(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 5, 20),
        "gm_count": int(rng.integers(1, 4)),
        "gm_hu": _u(rng, 400, 900) + 300 * difficulty,
    }


def paint_injection_granuloma(s: Scene, m):
    s.neighbours(bone=True)
    r = m["gm_size_mm"] / 2
    g = s.grid
    centres, radii = [g.point((0, 0, 0))], [r]
    for _ in range(m["gm_count"] - 1):
        centres.append(centres[0] + unit(s.rng) * r * s.rng.uniform(1.0, 1.6))
        radii.append(r * s.rng.uniform(0.3, 0.5))
    nodules(s, centres, radii, m["gm_hu"], rough_steps=3)


# -- vascular --------------------------------------------------------------------------------------
def sample_vascular(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 3.0, 10.0),
        "gm_tracks": int(rng.integers(1, 4)),
        "gm_rings": int(rng.integers(0, 4)),
        "gm_hu": _u(rng, 400, 1100),
        "gm_length_mm": _u(rng, 10, 30),
        "gm_thickness_mm": _u(rng, 1.0, 1.5),
    }


def paint_vascular(s: Scene, m):
    s.neighbours(bone=True)
    g, p = s.grid, s.p
    r = m["gm_size_mm"] / 2
    wall = max(0.6, 0.15 * r)
    s.tube((0, 0, 0), (0, 0, 1), r, p["g_muscle_hu"])
    s.tube((0, 0, 0), (0, 0, 1), r - wall, 40.0)
    half = m["gm_length_mm"] / 2
    box = s.box((0, 0, 0), half + r + 2)
    mask = box.empty()
    rw = r - wall / 2
    for _ in range(m["gm_tracks"]):
        length = s.rng.uniform(0.5, 1.0) * 2 * half
        t = np.linspace(-length / 2, length / 2, int(length / 0.3) + 2)
        theta = s.rng.uniform(0, 2 * np.pi) + np.cumsum(s.rng.normal(0, 0.03, len(t)))
        pts = np.stack([rw * np.cos(theta), rw * np.sin(theta), t], 1) @ g.rotation.T
        box.stamp(mask, pts + g.centre, m["gm_thickness_mm"] / 2)
    for _ in range(m["gm_rings"]):
        c = g.point((0, 0, s.rng.uniform(-half, half)))
        box.stamp(mask, rings(c, g.direction((0, 0, 1)), rw, 0.3), m["gm_thickness_mm"] / 2)
    s.deposit(box, mask, m["gm_hu"])


# -- calcinosis cutis ------------------------------------------------------------------------------
def sample_calcinosis_cutis(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 2.0, 7.0),
        "gm_count": int(rng.integers(4, 13)),
        "gm_hu": _u(rng, 500, 1200),
        "gm_depth_mm": _u(rng, 4, 10),
        "gm_bone_radius_mm": _u(rng, 8, 15),
        "gm_cluster_mm": _u(rng, 6, 12),
    }


def paint_calcinosis_cutis(s: Scene, m):
    s.neighbours(bone=False)
    g = s.grid
    rb = m["gm_bone_radius_mm"]
    s.shaft((-(rb + m["gm_depth_mm"]), 0, 0), rb, s.p["g_cortex_mm"])
    k = m["gm_cluster_mm"]
    local = s.rng.normal(0, 1, (m["gm_count"], 3)) * np.array([0.25 * k, k / 2, k / 2])
    centres = local @ g.rotation.T + g.centre
    radii = m["gm_size_mm"] / 2 * s.rng.uniform(0.5, 1.0, m["gm_count"])
    nodules(s, centres, np.maximum(radii, 1.0), m["gm_hu"], rough_steps=1)


# -- enchondroma -----------------------------------------------------------------------------------
def sample_enchondroma(rng, difficulty):
    ring = _u(rng, 2.0, 2.5)  # radius of the ring / arc centre line (3.8-5 mm across)
    wall = _u(rng, 1.1, 1.3)
    pitch = 2 * ring + wall + _u(rng, 2.6, 3.4)  # a gap between neighbours keeps them apart
    n = max(int(round(rng.integers(20, 37) * (1.0 - 0.3 * difficulty))), 17)
    extent = 1.05 * pitch * (3 * n / (4 * np.pi)) ** (1 / 3) + ring + wall
    return {
        "gm_size_mm": float(2 * extent),
        "gm_rings": n,
        "gm_pitch_mm": pitch,
        "gm_ring_mm": ring,
        "gm_wall_mm": wall,
        "gm_jitter": 0.03 + 0.05 * difficulty,
        "gm_open": _u(rng, 0.0, 0.5),
        "gm_hu": _u(rng, 350, 800),
        "gm_matrix_hu": _u(rng, 20, 60),
        "gm_cortex_mm": _u(rng, 1.5, 3.5),
        "gm_margin_mm": _u(rng, 1.5, 4.0),
    }


def shells(centres, radii, step_mm, open_cos=None):
    """Points (k, 3) on spheres of ``radii`` around ``centres`` (n, 3), about ``step_mm`` apart
    (a Fibonacci lattice); ``open_cos`` (n,) removes the cap beyond that cosine around each
    sphere's direction ``open_dirs`` (the arcs: a shell seen in any plane is a ring or an arc)."""
    c = np.atleast_2d(np.asarray(centres, float))
    r = np.broadcast_to(np.asarray(radii, float), (len(c),))
    k = int(np.ceil(4 * np.pi * r.max() ** 2 / step_mm**2)) + 8
    i = np.arange(k) + 0.5
    phi = np.arccos(1 - 2 * i / k)
    theta = np.pi * (1 + 5**0.5) * i
    sphere = np.stack([np.cos(phi), np.sin(phi) * np.cos(theta), np.sin(phi) * np.sin(theta)], 1)
    pts = c[:, None, :] + r[:, None, None] * sphere[None]
    if open_cos is None:
        return pts.reshape(-1, 3)
    dirs, cos = open_cos
    keep = sphere @ np.asarray(dirs, float).T < np.asarray(cos, float)[None, :]  # (k, n)
    return pts[keep.T]


def paint_enchondroma(s: Scene, m):
    """Abundant, organised chondroid matrix: ``gm_rings`` calcified shells (rings and arcs in
    any slice) on a regular cubic packing, the nearest lattice sites to the lesion centre, in a
    lobulated cartilage body (one lobule per ring) inside the medulla of an intact shaft."""
    s.neighbours(bone=False)
    g, rng = s.grid, s.rng
    a, ring, wall, n = m["gm_pitch_mm"], m["gm_ring_mm"], m["gm_wall_mm"], int(m["gm_rings"])
    k = int(np.ceil((3 * n / (4 * np.pi)) ** (1 / 3))) + 2
    lat = np.mgrid[-k : k + 1, -k : k + 1, -k : k + 1].reshape(3, -1).T * a
    lat = lat + rng.normal(0, m["gm_jitter"] * a, lat.shape)
    order = np.argsort(np.linalg.norm(lat * np.array([1.0, 1.0, 0.8]), axis=1), kind="stable")
    lat = lat[order[:n]]
    lobule = 0.5 * a + 0.3
    rl = float(np.linalg.norm(lat, axis=1).max()) + lobule
    rb = rl + m["gm_cortex_mm"] + m["gm_margin_mm"]
    s.shaft((-0.2 * m["gm_margin_mm"], 0, 0), rb, m["gm_cortex_mm"])
    centres = lat @ g.rotation.T + g.centre
    body = FineBox.around(g, centres, lobule + 1.0)
    s.deposit(body, body.stamp(body.empty(), centres, lobule), m["gm_matrix_hu"], deposit=False)
    radii = ring * rng.uniform(0.92, 1.08, n)
    dirs = rng.standard_normal((n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    cos = np.where(rng.random(n) < m["gm_open"], rng.uniform(0.5, 0.85, n), 2.0)
    pts = shells(centres, radii, 0.45, (dirs, cos))
    box = FineBox.around(g, centres, ring * 1.1 + wall + 1.0)
    s.deposit(box, box.stamp(box.empty(), pts, wall / 2), m["gm_hu"])


PAINTERS = {
    "phlebolith": (sample_phlebolith, paint_phlebolith),
    "tendinitis": (sample_tendinitis, paint_tendinitis),
    "chondrocalcinosis": (sample_chondrocalcinosis, paint_chondrocalcinosis),
    "tumoral_calcinosis": (sample_tumoral_calcinosis, paint_tumoral_calcinosis),
    "myositis_ossificans": (sample_myositis_ossificans, paint_myositis_ossificans),
    "heterotopic_ossification": (sample_heterotopic_ossification, paint_heterotopic_ossification),
    "parasitic": (sample_parasitic, paint_parasitic),
    "injection_granuloma": (sample_injection_granuloma, paint_injection_granuloma),
    "vascular": (sample_vascular, paint_vascular),
    "calcinosis_cutis": (sample_calcinosis_cutis, paint_calcinosis_cutis),
    "enchondroma": (sample_enchondroma, paint_enchondroma),
}
