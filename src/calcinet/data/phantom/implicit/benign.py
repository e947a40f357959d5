"""The 11 benign patterns of docs/patterns.md, drawn with implicit shapes and point clouds.

Each entry is ``(sampler, painter)``: ``sampler(rng, difficulty)`` draws the morphology (a flat
dict of numbers and strings), ``painter(ctx, m)`` draws it on the context's canvas, the finding
centred on the local origin. Benign deposits follow the "organised, sharp and smooth" sentence of
patterns.md: round, laminated, linear, corticated or abundant regular rings, no soft-tissue mass.
Deposit HU lie inside the "typical calcification 150 to 1500" row, placed by the nuisance
``deposit_density``.
"""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.implicit.context import (
    STEP,
    Context,
    bone_morphology,
    long_bone,
    trabecular,
)
from calcinet.data.phantom.implicit.context import uniform as _u
from calcinet.data.phantom.implicit.fields import (
    Wobble,
    arc_points,
    cylinder,
    ellipsoid,
    half_space,
    intersect,
    random_unit,
    segment_points,
    shell,
    smooth_union,
    sphere,
    superquadric,
    union,
    wobbled,
)


# -- phlebolith: "round, smooth, dense rim with a lucent centre (concentric)", 2-6 mm, in a vein ---
def phlebolith_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 2.0, 6.0),
        "rim_fraction": _u(rng, 0.4, 0.6),
        "centre_hu": _u(rng, 60, 200),
        "vein_radius_mm": _u(rng, 3.0, 5.0),
        "blood_hu": _u(rng, 30, 50),
    }


def phlebolith(ctx: Context, m: dict) -> None:
    r = m["size_mm"] / 2
    ctx.canvas.paint(cylinder((0, 0, 0), max(m["vein_radius_mm"], r + 0.8)), m["blood_hu"])
    ctx.canvas.paint(sphere((0, 0, 0), r), ctx.deposit_hu(600, 1500), deposit=True)
    ctx.canvas.paint(sphere((0, 0, 0), r * (1 - m["rim_fraction"])), m["centre_hu"])


# -- tendinitis: "small dense homogeneous oval foci beside a tendon", 3-15 mm, near bone -----------
def tendinitis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 3.0, 15.0),
        "n_foci": int(rng.integers(1, 4)),
        "elongation": _u(rng, 1.3, 2.2),
        "tendon_half_mm": _u(rng, 2.0, 4.0),
        "tendon_hu": _u(rng, 70, 100),
        "bone_gap_mm": _u(rng, 2.0, 6.0),
        **bone_morphology(rng),
    }


def tendinitis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit / m["elongation"])
    t = m["tendon_half_mm"]
    long_bone(ctx, m, (0, 0, -(max(t, r) + m["bone_gap_mm"] + m["bone_radius_mm"])))
    cv.paint(ellipsoid((0, 0, 0), (400.0, 2.5 * t, t)), m["tendon_hu"])
    foci = [ellipsoid((0, 0, 0), (r * m["elongation"], r, 0.8 * r))]
    for _ in range(m["n_foci"] - 1):
        s = r * _u(rng, 0.35, 0.7)
        c = (_u(rng, -2, 2) * r, _u(rng, -1, 1) * r, _u(rng, -0.3, 0.3) * r)
        foci.append(ellipsoid(c, (s * m["elongation"], s, 0.8 * s)))
    cv.paint(union(*foci), ctx.deposit_hu(300, 1000), deposit=True)


# -- chondrocalcinosis: "thin linear calcification running parallel to cartilage", 1-2 mm lines ----
def chondrocalcinosis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 1.0, 2.0),
        "n_lines": int(rng.integers(1, 4)),
        "arc_deg": _u(rng, 70, 150),
        "condyle_radius_mm": _u(rng, 14, 24),
        "joint_gap_mm": _u(rng, 3.0, 6.0),
        "cartilage_mm": _u(rng, 2.0, 3.5),
        "cartilage_hu": _u(rng, 80, 120),
        **bone_morphology(rng),
    }


def chondrocalcinosis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    big, cart = m["condyle_radius_mm"], m["cartilage_mm"]
    offset = big + cart + m["joint_gap_mm"] / 2
    trab = trabecular(ctx, m)
    for sign in (-1.0, 1.0):
        c = (sign * offset, 0.0, 0.0)
        cv.paint(sphere(c, big + cart), m["cartilage_hu"])
        cv.paint(sphere(c, big), trab)
        cv.paint(shell(sphere(c, big), min(m["bone_cortex_mm"], 2.0)), m["bone_cortical_hu"])
    # Lines at mid-depth of the upper condyle's cartilage, parallel to its surface.
    centre = np.array([offset, 0.0, 0.0])
    depth = big + cart / 2
    lines = []
    for k in range(m["n_lines"]):
        theta = 0.12 + 0.18 * k + _u(rng, 0.0, 0.08)
        ring_c = centre - depth * np.cos(theta) * np.array([1.0, 0, 0])
        sweep = np.deg2rad(m["arc_deg"])
        lines.append(
            arc_points(ring_c, depth * np.sin(theta), (1, 0, 0), _u(rng, 0, 6.3), sweep, STEP)
        )
    cv.tubes(np.concatenate(lines, 1), m["size_mm"] / 2, ctx.deposit_hu(400, 1100))


# -- tumoral calcinosis: "large lobulated homogeneous masses, sometimes fluid-calcium levels" ------
def tumoral_calcinosis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 10.0, 50.0),
        "n_lobes": int(rng.integers(3, 9)),
        "lobe_fraction": _u(rng, 0.35, 0.6),
        "fluid_level": int(rng.random() < 0.4),
        "level_fraction": _u(rng, -0.4, 0.2),
        "fluid_hu": _u(rng, 10, 30),
    }


def tumoral_calcinosis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    lr = r * m["lobe_fraction"]
    lobes = [sphere((0, 0, 0), lr)]
    for _ in range(m["n_lobes"] - 1):
        c = random_unit(rng) * (r - lr) * _u(rng, 0.3, 1.0)
        lobes.append(sphere(c, lr * _u(rng, 0.7, 1.1)))
    mass = smooth_union(lobes, 0.35 * lr)
    cv.paint(mass, ctx.deposit_hu(300, 900) + 8.0 * ctx.texture(2.0), deposit=True)
    if m["fluid_level"]:
        # Fluid floats on the calcium slurry: the level is horizontal in the scanner (y up).
        up = cv.rotation[1]
        cv.paint(intersect(mass, half_space(up, m["level_fraction"] * r)), m["fluid_hu"])


# -- myositis ossificans: "zonal: mature dense periphery (shell), less dense centre", 2-6 cm -------
def myositis_ossificans_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 20.0, 60.0),
        "shell_fraction": _u(rng, 0.15, 0.3),
        "core_hu": _u(rng, 60, 180) + difficulty * _u(rng, 0, 150),
        "elongation": _u(rng, 1.2, 1.8),
        "bone_gap_mm": _u(rng, 3.0, 10.0),
        **bone_morphology(rng),
    }


def myositis_ossificans(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit / m["elongation"])
    long_bone(ctx, m, (0, 0, r + m["bone_gap_mm"] + m["bone_radius_mm"]))
    axes = np.array([r * m["elongation"], r, 0.85 * r])
    w = Wobble(rng, 0.06 * r, 1.2 * r)
    outer = wobbled(ellipsoid((0, 0, 0), axes), w)
    core = wobbled(ellipsoid((0, 0, 0), axes * (1 - m["shell_fraction"])), w)
    cv.paint(outer, ctx.deposit_hu(500, 1200) + 60.0 * ctx.texture(2.0), deposit=True)
    cv.paint(core, m["core_hu"] + 40.0 * ctx.texture(2.0))


# -- heterotopic ossification: "organised bone: cortex-like rim around a trabecular medulla" ------
def heterotopic_ossification_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 10.0, 50.0),
        "rim_mm": _u(rng, 1.5, 3.0),
        "squareness": _u(rng, 2.2, 3.5),
        "elongation": _u(rng, 1.2, 2.0),
        "medulla_hu": _u(rng, 200, 400),
    }


def heterotopic_ossification(ctx: Context, m: dict) -> None:
    cv = ctx.canvas
    r = min(m["size_mm"] / 2, cv.radius_limit / m["elongation"])
    body = superquadric((0, 0, 0), (r * m["elongation"], r, 0.8 * r), m["squareness"])
    cv.paint(body, m["medulla_hu"] + 0.3 * m["medulla_hu"] * ctx.texture(1.2))
    cv.paint(shell(body, m["rim_mm"]), ctx.deposit_hu(700, 1400), deposit=True)


# -- cysticercosis: "many elongated rice-grain calcifications aligned with muscle fibres" ----------
def parasitic_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 2.5, 4.0),
        "grain_width_mm": _u(rng, 1.4, 2.0),
        "n_grains": int(rng.integers(8, 31)),
        "spread_mm": _u(rng, 10.0, 22.0),
        "fibre_scatter_deg": _u(rng, 4.0, 15.0),
    }


def parasitic(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    spread = min(m["spread_mm"], cv.radius_limit / 1.5)
    pts = []
    for _ in range(m["n_grains"]):
        c = random_unit(rng) * spread * rng.random() ** (1 / 3) * np.array([1.5, 1.0, 1.0])
        tilt = np.deg2rad(m["fibre_scatter_deg"]) * rng.standard_normal(2)
        d = np.array([1.0, tilt[0], tilt[1]])
        d /= np.linalg.norm(d)
        half = max(m["size_mm"] / 2 * _u(rng, 0.8, 1.2) - m["grain_width_mm"] / 2, 0.2)
        pts.append(segment_points(c - half * d, c + half * d, STEP))
    cv.tubes(np.concatenate(pts, 1), m["grain_width_mm"] / 2, ctx.deposit_hu(600, 1500))


# -- injection granuloma: "localised dense calcification, smooth", 5-20 mm -------------------------
def injection_granuloma_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 5.0, 20.0),
        "squareness": _u(rng, 2.0, 2.6),
        "aspect_y": _u(rng, 0.6, 1.0),
        "aspect_z": _u(rng, 0.6, 1.0),
    }


def injection_granuloma(ctx: Context, m: dict) -> None:
    r = min(m["size_mm"] / 2, ctx.canvas.radius_limit)
    body = superquadric((0, 0, 0), (r, r * m["aspect_y"], r * m["aspect_z"]), m["squareness"])
    ctx.canvas.paint(body, ctx.deposit_hu(400, 1200), deposit=True)


# -- vascular: "tubular tram-track or ring-shaped wall calcification", vessel 2-10 mm --------------
def vascular_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 2.0, 10.0),
        "wall_mm": _u(rng, 1.0, 1.8),
        "plaque_style": str(rng.choice(["tram", "ring"])),
        "plaque_length_mm": _u(rng, 8.0, 30.0),
        "sector_deg": _u(rng, 40.0, 110.0),
        "n_rings": int(rng.integers(1, 5)),
        "blood_hu": _u(rng, 30, 50),
        "wall_hu": _u(rng, 40, 60),
    }


def _sector(phi0: float, half: float, radius: float):
    def f(p):
        d = np.angle(np.exp(1j * (np.arctan2(p[2], p[1]) - phi0)))
        return (np.abs(d) - half) * radius

    return f


def vascular(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = max(m["size_mm"] / 2, m["wall_mm"] + 1.0)
    tube = cylinder((0, 0, 0), r)
    cv.paint(tube, m["wall_hu"])
    cv.paint(cylinder((0, 0, 0), r - m["wall_mm"]), m["blood_hu"])
    wall = shell(tube, m["wall_mm"])
    hu = ctx.deposit_hu(500, 1400)
    if m["plaque_style"] == "tram":
        half = np.deg2rad(m["sector_deg"]) / 2
        phi = _u(rng, -np.pi, np.pi)
        along = lambda p: np.abs(p[0]) - m["plaque_length_mm"] / 2  # noqa: E731
        for k in (0, 1):
            cv.paint(intersect(wall, _sector(phi + k * np.pi, half, r), along), hu, deposit=True)
    else:
        for _ in range(m["n_rings"]):
            z0, w = _u(rng, -0.5, 0.5) * m["plaque_length_mm"], _u(rng, 2.0, 4.0)
            ring = intersect(wall, lambda p, z0=z0, w=w: np.abs(p[0] - z0) - w / 2)
            cv.paint(ring, hu, deposit=True)


# -- calcinosis cutis: "clustered small dense nodules, subcutaneous", 1-10 mm ----------------------
def calcinosis_cutis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 1.0, 10.0),
        "n_nodules": int(rng.integers(4, 16)),
        "cluster_mm": _u(rng, 5.0, 14.0),
        "fat_layer_mm": _u(rng, 10.0, 22.0),
        "subcut_fat_hu": _u(rng, -110, -80),
        **bone_morphology(rng),
    }


def calcinosis_cutis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    half = m["fat_layer_mm"] / 2
    cv.paint(lambda p: np.abs(p[2]) - half, m["subcut_fat_hu"], cover=False)
    long_bone(ctx, m, (0, 0, -(half + m["bone_radius_mm"] + 1.0)))
    cluster = min(m["cluster_mm"], cv.radius_limit)
    nodules = []
    for k in range(m["n_nodules"]):
        rad = max(m["size_mm"] / 2 * (1.0 if k == 0 else _u(rng, 0.25, 0.8)), 0.75)
        c = random_unit(rng) * cluster * rng.random() * np.array([1.0, 1.0, 0.35]) * (k > 0)
        c[2] = np.clip(c[2], -half + rad, half - rad)
        nodules.append(sphere(c, rad))
    cv.paint(union(*nodules), ctx.deposit_hu(500, 1400), deposit=True)


# -- enchondroma: "abundant, organised rings-and-arcs, no soft-tissue mass, cortex intact" ---------
def enchondroma_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 10.0, 50.0),
        "ring_radius_mm": _u(rng, 1.3, 2.3),
        "ring_mm": _u(rng, 1.1, 1.7),
        "ring_fill": _u(rng, 0.85, 1.0) - 0.3 * difficulty,
        "arc_min_deg": 260.0 - 80.0 * difficulty,
        "lattice_jitter": 0.1 + 0.2 * difficulty,
        **bone_morphology(rng, radius=(16.0, 26.0)),
    }


def enchondroma(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    bone_r = min(m["bone_radius_mm"], cv.radius_limit * 1.15)
    room = bone_r - m["bone_cortex_mm"] - 1.5
    r = min(m["size_mm"] / 2, room, cv.radius_limit)
    long_bone(ctx, {**m, "bone_radius_mm": bone_r}, (0, 0, 0))
    ring_r = m["ring_radius_mm"]
    gap = 3.0 * ring_r  # rings of 1-2 mm wall stay apart
    axes = np.array([1.4 * r, r, r])
    n = np.ceil(axes / gap).astype(int)
    sites = np.stack(
        np.meshgrid(*[np.arange(-k, k + 1) * gap for k in n], indexing="ij"), -1
    ).reshape(-1, 3)
    sites = sites + m["lattice_jitter"] * gap * rng.standard_normal(sites.shape)
    inside = (((sites / np.maximum(axes - ring_r, 0.5)) ** 2).sum(1) <= 1) & (
        rng.random(len(sites)) < m["ring_fill"]
    )
    pts = []
    lo = np.deg2rad(m["arc_min_deg"])
    for c in sites[inside]:
        rr = ring_r * _u(rng, 0.9, 1.1)
        pts.append(arc_points(c, rr, random_unit(rng), _u(rng, 0, 6.3), _u(rng, lo, 2 * np.pi)))
    if pts:
        cv.tubes(np.concatenate(pts, 1), m["ring_mm"] / 2, ctx.deposit_hu(500, 1200))


PAINTERS = {
    "phlebolith": (phlebolith_morphology, phlebolith),
    "tendinitis": (tendinitis_morphology, tendinitis),
    "chondrocalcinosis": (chondrocalcinosis_morphology, chondrocalcinosis),
    "tumoral_calcinosis": (tumoral_calcinosis_morphology, tumoral_calcinosis),
    "myositis_ossificans": (myositis_ossificans_morphology, myositis_ossificans),
    "heterotopic_ossification": (heterotopic_ossification_morphology, heterotopic_ossification),
    "parasitic": (parasitic_morphology, parasitic),
    "injection_granuloma": (injection_granuloma_morphology, injection_granuloma),
    "vascular": (vascular_morphology, vascular),
    "calcinosis_cutis": (calcinosis_cutis_morphology, calcinosis_cutis),
    "enchondroma": (enchondroma_morphology, enchondroma),
}
