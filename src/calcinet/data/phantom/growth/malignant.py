"""Malignant patterns of the growth family: anarchic, ill-defined, eccentric deposits, most in a
soft-tissue mass that destroys the cortex it crosses. Each entry of ``PAINTERS`` is
``(sample(rng, difficulty) -> dict, paint(scene, params))``; morphology keys start with ``gm_``.
Positions in a painter are in the finding's frame (u, v, w mm, the finding at the origin).
"""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.growth.lattice import (
    FineBox,
    aggregate,
    band_fractions,
    eden,
    lattice_noise,
    rings,
    slab_field,
    unit,
    walk,
)
from calcinet.data.phantom.growth.tissue import Scene

MAX_SIZE_MM = 48.0


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _host(s: Scene, m, depth: float, e=(1.0, 0.0, 0.0)):
    """The host shaft, its axis ``depth`` x radius below the finding (scene direction -``e``)."""
    rb = m["gm_bone_radius_mm"]
    return s.shaft(-depth * rb * np.asarray(e, float), rb, s.p["g_cortex_mm"])


def _in_ball(rng, n, radius):
    v = rng.standard_normal((n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v * radius * rng.random((n, 1)) ** (1 / 3)


def _breach(s: Scene, bone, medulla, centre_local, radius_mm: float, hu) -> None:
    """Cortical destruction: the cortex (``bone - medulla`` of the host shaft) within an
    irregular ball of ``radius_mm`` around scene point ``centre_local`` is replaced by tumour of
    ``hu`` (a visible gap in the white cortex ring)."""
    g = s.grid
    centre = g.point(centre_local)
    where = FineBox(g, centre, 1.25 * radius_mm + 1).slices
    cortex = bone[where] - medulla[where]
    if not cortex.any():
        return
    shape = cortex.shape
    ragged = 1.0 + 0.25 * lattice_noise(shape, g.spacing, (5.0, 5.0, 5.0), s.rng)
    a = [g.axes[k][where[k]] - np.float32(centre[k]) for k in range(3)]
    dist = np.sqrt(a[0][:, None, None] ** 2 + a[1][None, :, None] ** 2 + a[2][None, None, :] ** 2)
    cut = np.clip((radius_mm * ragged - dist) / g.spacing.min() + 0.5, 0, 1) * cortex
    s.layers.paint(cut.astype(np.float32), hu, where)


# -- osteosarcoma, sunburst ------------------------------------------------------------------------
def sample_osteosarcoma_sunburst(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 30, 100), MAX_SIZE_MM),
        "gm_bone_radius_mm": _u(rng, 10, 18),
        "gm_centre_hu": _u(rng, 650, 1100) - 150 * difficulty,
        "gm_spicules": int(rng.integers(8, 21)),
        "gm_mass_hu": _u(rng, 35, 60),
        "gm_spicule_fraction": _u(rng, 0.45, 0.75),
    }


def paint_osteosarcoma_sunburst(s: Scene, m):
    s.neighbours(bone=False)
    g, rng = s.grid, s.rng
    r = m["gm_size_mm"] / 2
    rb = m["gm_bone_radius_mm"]
    e = s.outward()
    e2 = np.cross((0.0, 0.0, 1.0), e)
    bone, medulla = _host(s, m, 0.7, e)
    _breach(s, bone, medulla, (0, 0, 0), max(0.55 * r, 0.9 * rb) + 2, m["gm_mass_hu"])
    s.mass((0, 0, 0), 0.5 * r, 5, m["gm_mass_hu"], drift=e)
    rc = min(0.45 * r, 14.0)
    cbox = s.box((0, 0, 0), rc + 1)
    z, y, x = cbox.coords()
    c = g.point((0, 0, 0)).astype(np.float32)
    dist = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / np.float32(rc)
    cloud = cbox.noise(3.0, rng)
    hu = np.where(cloud > -1.5 + 2.6 * dist**2, m["gm_centre_hu"] * (1 - 0.45 * dist), 0)
    s.deposit(cbox, hu > 0, hu.astype(np.float32))
    axis_pt = g.point(-0.7 * rb * e)
    axis_d = g.direction((0, 0, 1))
    walks = []
    for _ in range(m["gm_spicules"]):
        ang = rng.normal(0, 0.6)
        base_local = (
            (-0.7 * rb + rb * np.cos(ang)) * e
            + rb * np.sin(ang) * e2
            + np.array([0.0, 0.0, rng.uniform(-0.35, 0.35) * r])
        )
        base = g.point(base_local)
        radial = base - axis_pt
        radial -= np.dot(radial, axis_d) * axis_d
        length = rng.uniform(0.4, 0.9) * (r - 0.3 * rb)
        pts = walk(rng, base, radial, max(length, 3.0), 0.35, 0.04)
        peak = m["gm_spicule_fraction"] * m["gm_centre_hu"]  # the matrix is densest centrally
        walks.append((pts, peak * np.linspace(1.0, 0.6, len(pts))))
    box = FineBox.around(g, np.concatenate([w[0] for w in walks]), 1.5)
    spicules = np.zeros(box.shape, np.float32)
    for pts, vals in walks:
        box.stamp_max(spicules, pts, rng.uniform(0.5, 0.7), vals)
    s.deposit(box, spicules > 0, spicules)


# -- osteosarcoma, telangiectatic ------------------------------------------------------------------
def sample_osteosarcoma_telangiectatic(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 30, 100), MAX_SIZE_MM),
        "gm_bone_radius_mm": _u(rng, 10, 18),
        "gm_rim_hu": _u(rng, 350, 750),
        "gm_rim_mm": _u(rng, 1.1, 1.6),
        "gm_blood_hu": _u(rng, 45, 75),
        "gm_locules": int(rng.integers(3, 7)),
        "gm_level": _u(rng, 0.35, 0.65),
        "gm_rim_keep": _u(rng, 0.3, 0.6),
    }


def paint_osteosarcoma_telangiectatic(s: Scene, m):
    s.neighbours(bone=False)
    g, rng, p = s.grid, s.rng, s.p
    r = m["gm_size_mm"] / 2
    bone, medulla = _host(s, m, 0.5, s.outward())
    rb = m["gm_bone_radius_mm"]
    _breach(s, bone, medulla, (0, 0, 0), max(0.45 * r, 0.7 * rb) + 2, p["g_muscle_hu"] - 10)
    centres, radii = aggregate(rng, g.point((0, 0, 0)), 4, 0.4 * r, spread=0.5)
    body, inner = s.balls(centres, radii, (0.0, -m["gm_rim_mm"]))
    s.layers.paint(body, p["g_muscle_hu"] - 10)
    loc_c = [c + _in_ball(rng, 1, 0.2 * r)[0] for c in centres[: m["gm_locules"]]]
    loc_r = [0.8 * rr for rr in radii[: m["gm_locules"]]]
    locules = s.balls(loc_c, loc_r) * inner
    y = g.axes[1][None, :, None]
    level = np.min(np.array(centres)[:, 1]) + m["gm_level"] * 0.8 * r
    fluid = np.where(y > level, m["gm_blood_hu"], p["g_fluid_hu"] + 5)  # heavier blood below
    s.layers.paint(locules, np.broadcast_to(fluid, g.shape).astype(np.float32))
    broken = lattice_noise(g.shape, g.spacing, (6.0, 6.0, 6.0), rng) > m["gm_rim_keep"] - 0.5
    s.layers.paint((body - inner) * broken, m["gm_rim_hu"], deposit=True)


# -- chondrosarcoma, high grade --------------------------------------------------------------------
def sample_chondrosarcoma_high_grade(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 30, 100), MAX_SIZE_MM),
        "gm_bone_radius_mm": _u(rng, 10, 18),
        "gm_rings": int(rng.integers(3, 7) + round(2 * difficulty)),
        "gm_dots": int(rng.integers(0, 3)),
        "gm_hu": _u(rng, 300, 800),
        "gm_mass_hu": _u(rng, 25, 45),
        "gm_eccentric": _u(rng, 0.2, 0.5),
    }


def paint_chondrosarcoma_high_grade(s: Scene, m):
    """Sparse, anarchic matrix: a few (<= 10) wobbling, fragmented rings and arcs of random
    size, orientation and sweep scattered through a large lobulated soft-tissue mass that
    destroys the cortex of the host shaft (a gap in the cortex ring) and grows out of it."""
    s.neighbours(bone=False)
    g, rng = s.grid, s.rng
    r = m["gm_size_mm"] / 2
    rb = m["gm_bone_radius_mm"]
    e = s.outward()
    bone, medulla = _host(s, m, 0.6, e)
    _breach(s, bone, medulla, (0, 0, 0), max(0.55 * r, 0.9 * rb) + 2, m["gm_mass_hu"])
    s.mass((0, 0, 0), 0.55 * r, 6, m["gm_mass_hu"], drift=e)
    n = m["gm_rings"]
    hub = unit(rng) * m["gm_eccentric"] * 0.5 * r
    local = hub + _in_ball(rng, n, 0.45 * r) * rng.uniform(0.6, 1.0)
    centres = local @ g.rotation.T + g.centre
    pts = rings(
        centres,
        rng.standard_normal((n, 3)),
        rng.uniform(1.2, 3.5, n),
        0.3,
        starts=rng.uniform(0, 2 * np.pi, n),
        sweeps=rng.uniform(1.2, 4.5, n),
        wobble=0.35,
        rng=rng,
    )
    box = s.box((0, 0, 0), 0.5 * r + 0.5 * m["gm_eccentric"] * r + 5)
    mask = box.stamp(box.empty(), pts, rng.uniform(0.85, 1.0))
    if m["gm_dots"]:
        dots = _in_ball(rng, int(m["gm_dots"]), 0.4 * r) @ g.rotation.T + g.centre
        box.stamp(mask, dots, 0.8)
    s.deposit(box, mask, m["gm_hu"])


# -- chordoma --------------------------------------------------------------------------------------
def sample_chordoma(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 30, 80), MAX_SIZE_MM),
        "gm_bone_radius_mm": _u(rng, 15, 25),
        "gm_parents": int(rng.integers(2, 5)),
        "gm_per_parent": int(rng.integers(3, 10)),
        "gm_hu": _u(rng, 300, 900),
        "gm_mass_hu": _u(rng, 20, 40),
        "gm_cluster_mm": _u(rng, 2.5, 5.0),
    }


def paint_chordoma(s: Scene, m):
    s.neighbours(bone=False)
    g, rng = s.grid, s.rng
    r = m["gm_size_mm"] / 2
    _host(s, m, 0.6)
    s.mass((0, 0, 0), 0.45 * r, 7, m["gm_mass_hu"], spread=0.8)
    parents = _in_ball(rng, m["gm_parents"], 0.45 * r)
    kids = [pp + rng.normal(0, m["gm_cluster_mm"], (m["gm_per_parent"], 3)) for pp in parents]
    local = np.concatenate(kids)
    centres = local @ g.rotation.T + g.centre
    box = s.box((0, 0, 0), 0.45 * r + 2 * m["gm_cluster_mm"] + 3)
    hu = np.zeros(box.shape, np.float32)
    # Popcorn: each focus a small aggregate of 1-4 lattice balls of one of three sizes.
    size = rng.integers(0, 3, len(centres))
    k = rng.integers(1, 5, len(centres))
    owner = np.repeat(np.arange(len(centres)), k)
    bits = centres[owner] + rng.normal(0, 0.7, (len(owner), 3))
    values = (rng.uniform(0.5, 1.0, len(centres)) * m["gm_hu"])[owner]
    for j, radius in enumerate((0.6, 0.85, 1.1)):
        sel = size[owner] == j
        box.stamp_max(hu, bits[sel], radius, values[sel])
    s.deposit(box, hu > 0, hu)


# -- osteoblastic metastasis -----------------------------------------------------------------------
def sample_blastic_metastasis(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 5, 40),
        "gm_hu": _u(rng, 1150, 1550) - 100 * difficulty,
        "gm_margin_mm": _u(rng, 1.5, 3.5),
        "gm_lobes": int(rng.integers(1, 4)),
        "gm_bone_margin_mm": _u(rng, 5, 12),
    }


def paint_blastic_metastasis(s: Scene, m):
    s.neighbours(bone=False)
    g, rng, p = s.grid, s.rng, s.p
    r = m["gm_size_mm"] / 2
    rb = r + m["gm_bone_margin_mm"]
    s.shaft((-0.2 * m["gm_bone_margin_mm"], 0, 0), rb, p["g_cortex_mm"])
    centres, radii = aggregate(rng, g.point((0, 0, 0)), m["gm_lobes"], r, spread=0.6)
    fringe, core = s.balls(centres, radii, (m["gm_margin_mm"], 0.0))
    spotty = lattice_noise(g.shape, g.spacing, (2.0, 2.0, 2.0), rng) > 0.0
    halo = 0.5 * (p["g_trabecular_hu"] + m["gm_hu"])
    s.layers.paint((fringe - core) * spotty, halo, deposit=True)
    s.layers.paint(core, m["gm_hu"], deposit=True)


# -- mixed metastasis ------------------------------------------------------------------------------
def sample_mixed_metastasis(rng, difficulty):
    return {
        "gm_size_mm": _u(rng, 10, 40),
        "gm_lytic": _u(rng, 0.2, 0.6),
        "gm_sclerotic": _u(rng, 0.2, 0.6),
        "gm_hu": _u(rng, 600, 1100),
        "gm_bone_margin_mm": _u(rng, -2, 8),
        "gm_cell_mm": _u(rng, 3.0, 5.0),
    }


def paint_mixed_metastasis(s: Scene, m):
    s.neighbours(bone=False)
    g, rng, p = s.grid, s.rng, s.p
    r = m["gm_size_mm"] / 2
    rb = max(0.8 * r + m["gm_bone_margin_mm"], 8.0)
    bone, medulla = s.shaft(-0.3 * rb * s.outward(), rb, p["g_cortex_mm"])
    _breach(s, bone, medulla, (0, 0, 0), 0.9 * r + 1.5, p["g_muscle_hu"])
    box = s.box((0, 0, 0), r + 1)
    z, y, x = box.coords()
    c = g.point((0, 0, 0))
    inside = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < r * r
    lytic = inside & (box.noise(m["gm_cell_mm"], rng) < m["gm_lytic"] - 0.4)
    sclerotic = inside & ~lytic & (box.noise(m["gm_cell_mm"], rng) > 0.8 - m["gm_sclerotic"])
    s.deposit(box, lytic, p["g_muscle_hu"], deposit=False)
    s.deposit(box, sclerotic, m["gm_hu"])


# -- malignant pleural plaque ----------------------------------------------------------------------
def sample_pleural_plaque_malignant(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 20, 60), MAX_SIZE_MM),
        "gm_effusion_mm": _u(rng, 6, 18),
        "gm_rib_radius_mm": _u(rng, 4, 7),
        "gm_hu": _u(rng, 300, 900),
        "gm_thickness_mm": _u(rng, 1.3, 3.0),
        "gm_lysis_mm": _u(rng, 3, 6),
    }


def paint_pleural_plaque_malignant(s: Scene, m):
    s.neighbours(bone=False)
    g, rng, p = s.grid, s.rng, s.p
    n = g.direction((1, 0, 0))
    rr = m["gm_rib_radius_mm"]
    rib_c = (-(rr + rng.uniform(1, 3)), 0, 0)
    s.shaft(rib_c, rr, min(p["g_cortex_mm"], 2.0), axis=(0, 1, 0.2))
    s.layers.paint(
        band_fractions(g, slab_field(g.point((0, 0, 0)), n, m["gm_effusion_mm"]), (0.0,))[0],
        p["g_fluid_hu"],
    )
    lysis = s.balls([g.point((rib_c[0] + rr * 0.6, 0, 0))], [m["gm_lysis_mm"]])
    s.layers.paint(lysis, p["g_muscle_hu"])
    # The plaque: lattice balls stamped over an irregular patch of the pleural plane, their
    # radius (half the local thickness) and the patch outline set by 2D lattice noise.
    half = m["gm_size_mm"] / 2
    k = int(np.ceil(2 * half / 0.6)) + 1
    a = np.linspace(-half, half, k)
    outline = lattice_noise((k, k, 1), (0.6, 0.6, 1.0), (7.0, 7.0, 1.0), rng)[..., 0]
    thick = lattice_noise((k, k, 1), (0.6, 0.6, 1.0), (4.0, 4.0, 1.0), rng)[..., 0]
    vv, ww = np.meshgrid(a, a, indexing="ij")
    inside = outline + 1.2 - 1.8 * (vv**2 + ww**2) / half**2 > 0
    t = np.maximum(m["gm_thickness_mm"] * (1 + 0.5 * thick), 1.2)
    box = s.box((0, 0, 0), half + 3)
    mask = box.empty()
    for lo, hi in ((0.0, 1.8), (1.8, 2.6), (2.6, 99.0)):
        sel = inside & (t >= lo) & (t < hi)
        if sel.any():
            rad = min(max(lo, 1.2), 3.5) / 2 + 0.15
            local = np.stack([np.full(sel.sum(), 0.2 * rad), vv[sel], ww[sel]], 1)
            box.stamp(mask, local @ g.rotation.T + g.centre, rad)
    s.deposit(box, mask, m["gm_hu"])


# -- nodular-sclerosis Hodgkin lymphoma ------------------------------------------------------------
def sample_hodgkin_reticular(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 24, 50), MAX_SIZE_MM - 4),
        "gm_roots": int(rng.integers(5, 9)),
        "gm_branches": int(rng.integers(3, 6)),
        "gm_hu": _u(rng, 300, 700),
        "gm_mass_hu": _u(rng, 60, 85),
        "gm_band_hu": _u(rng, 25, 45),
        "gm_turn": _u(rng, 0.08, 0.16),
        "gm_rib": bool(rng.random() < 0.6),
        "gm_rib_radius_mm": _u(rng, 4, 7),
    }


def paint_hodgkin_reticular(s: Scene, m):
    """Nodular sclerosis: a lobulated fibrotic mass (a little denser than muscle, lobulated by
    denser fibrous bands: the zero set of lattice noise), often against a rib, crossed by a
    reticular network of thin linear calcifications (long branching persistent walks from
    across the mass, spanning most of it)."""
    s.neighbours(bone=True)
    g, rng = s.grid, s.rng
    r = m["gm_size_mm"] / 2
    if m["gm_rib"]:
        rr = m["gm_rib_radius_mm"]
        s.shaft((-(0.75 * r + rr), 0, 0), rr, min(s.p["g_cortex_mm"], 2.0), axis=(0, 1, 0.2))
    centres, radii = aggregate(rng, g.point((0, 0, 0)), 6, 0.55 * r, spread=0.45)
    body = s.balls(centres, radii)
    where, noise = s.field_on(body, 9.0)
    if where is not None:
        level = max(m["gm_mass_hu"], s.p["g_muscle_hu"] + 15)  # fibrosis: denser than muscle
        hu = level + m["gm_band_hu"] * (np.abs(noise) < 0.18).astype(np.float32)
        s.layers.paint(body[where], hu, where)
    c = g.point((0, 0, 0))
    reach = 0.85 * r
    box = s.box((0, 0, 0), reach + 2)
    mask = box.empty()
    for _ in range(m["gm_roots"]):
        start = c + _in_ball(rng, 1, 0.6 * r)[0]
        heading = c - start + unit(rng) * 0.5 * r  # across the mass
        trunk = walk(rng, start, heading, rng.uniform(0.9, 1.6) * r, 0.35, m["gm_turn"])
        paths = [trunk]
        for _ in range(m["gm_branches"]):
            at = trunk[int(rng.integers(len(trunk)))]
            paths.append(walk(rng, at, unit(rng), rng.uniform(0.3, 0.6) * r, 0.35, m["gm_turn"]))
        pts = np.concatenate(paths)
        pts = pts[np.linalg.norm(pts - c, axis=1) < reach]
        box.stamp(mask, pts, rng.uniform(0.55, 0.7))
    s.deposit(box, mask, m["gm_hu"])


# -- dystrophic calcification of tumour necrosis ---------------------------------------------------
def sample_tumour_necrosis_dystrophic(rng, difficulty):
    return {
        "gm_size_mm": min(_u(rng, 14, 50), MAX_SIZE_MM - 4),
        "gm_mass_hu": _u(rng, 30, 60),
        "gm_necrosis_hu": _u(rng, 5, 25),
        "gm_necrosis": _u(rng, 0.45, 0.7),
        "gm_offset": _u(rng, 0.3, 0.5),
        "gm_calc_fraction": _u(rng, 0.3, 0.45),
        "gm_texture_hu": _u(rng, 8, 16),
        "gm_hu": _u(rng, 300, 800),
    }


def paint_tumour_necrosis_dystrophic(s: Scene, m):
    """A heterogeneous soft-tissue tumour with ill-defined, infiltrating margins (a ragged
    half-density fringe), an eccentric necrotic zone of low density, and amorphous irregular
    calcium (an excursion set of fine lattice noise, Eden-roughened, in clumps) at the far edge
    of the necrosis: off the mass centre, never a smooth nodule."""
    s.neighbours(bone=True)
    g, rng = s.grid, s.rng
    r = m["gm_size_mm"] / 2
    centres, radii = aggregate(rng, g.point((0, 0, 0)), 4, 0.6 * r, spread=0.35)
    fringe, body = s.balls(centres, radii, (2.5, 0.0))
    where, ragged = s.field_on(fringe, 3.0)
    tex = (m["gm_mass_hu"] + m["gm_texture_hu"] * ragged).astype(np.float32)
    halo = (fringe[where] - body[where]) * np.clip(0.5 + 0.5 * ragged, 0, 1) * 0.7
    s.layers.paint(halo, tex, where)
    s.layers.paint(body[where], tex, where)
    e = unit(rng) * np.array([0.3, 1.0, 1.0])  # mostly across the slice, where it shows
    e_local = np.linalg.solve(g.rotation, e / np.linalg.norm(e))
    rn = m["gm_necrosis"] * 0.8 * r
    nec_local = e_local * m["gm_offset"] * 0.5 * r
    necrosis = s.balls([g.point(nec_local)], [rn])[where] * body[where]
    s.layers.paint(necrosis, (m["gm_necrosis_hu"] + 3 * ragged).astype(np.float32), where)
    rc = max(m["gm_calc_fraction"] * r, 2.5)
    local = nec_local + e_local * (0.8 * rn)  # at the far edge of the necrotic zone
    c = g.point(local)
    box = FineBox(g, c, rc + 2)
    z, y, x = box.coords()
    d2 = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / rc**2
    amorphous = box.noise(2.2, rng) > -0.8 + 1.7 * d2
    amorphous = eden(amorphous, 2, 0.35, rng)
    s.deposit(
        box,
        amorphous,
        (m["gm_hu"] * np.clip(0.7 + 0.3 * box.noise(2.0, rng) ** 2, 0.7, 1.2)).astype(np.float32),
    )


PAINTERS = {
    "osteosarcoma_sunburst": (sample_osteosarcoma_sunburst, paint_osteosarcoma_sunburst),
    "osteosarcoma_telangiectatic": (
        sample_osteosarcoma_telangiectatic,
        paint_osteosarcoma_telangiectatic,
    ),
    "chondrosarcoma_high_grade": (
        sample_chondrosarcoma_high_grade,
        paint_chondrosarcoma_high_grade,
    ),
    "chordoma": (sample_chordoma, paint_chordoma),
    "blastic_metastasis": (sample_blastic_metastasis, paint_blastic_metastasis),
    "mixed_metastasis": (sample_mixed_metastasis, paint_mixed_metastasis),
    "pleural_plaque_malignant": (sample_pleural_plaque_malignant, paint_pleural_plaque_malignant),
    "hodgkin_reticular": (sample_hodgkin_reticular, paint_hodgkin_reticular),
    "tumour_necrosis_dystrophic": (
        sample_tumour_necrosis_dystrophic,
        paint_tumour_necrosis_dystrophic,
    ),
}
