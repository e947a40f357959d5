"""The 9 malignant patterns of docs/patterns.md, drawn with implicit shapes and point clouds.

Same contract as :mod:`calcinet.data.phantom.implicit.benign`. Malignant matrix follows the
"anarchic, ill-defined, spiculated, sparse, eccentric" sentence of patterns.md, and the aggressive
patterns sit in a soft-tissue mass that replaces the cortex it crosses ("a malignant pattern
usually sits in a soft-tissue mass with cortical destruction or lysis").
"""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.implicit.context import (
    STEP,
    Context,
    bone_morphology,
    long_bone,
    soft_mass,
    trabecular,
)
from calcinet.data.phantom.implicit.context import uniform as _u
from calcinet.data.phantom.implicit.fields import (
    Wobble,
    arc_points,
    ellipsoid,
    half_space,
    intersect,
    random_unit,
    segment_points,
    shell,
    smooth_union,
    sphere,
    superquadric,
    wobbled,
)


def _in_ball(rng, n: int, axes) -> np.ndarray:
    """``n`` points uniform in the ellipsoid of half-axes ``axes`` (mm), as [3, n]."""
    d = random_unit(rng, n) * rng.random((n, 1)) ** (1 / 3)
    return (d * np.asarray(axes)).T


def _mass_morphology(rng, size, hu=(25.0, 50.0)) -> dict:
    return {
        "size_mm": _u(rng, *size),
        "mass_hu": _u(rng, *hu),
        "mass_roughness": _u(rng, 0.05, 0.15),
    }


# -- osteosarcoma, sunburst: "cloud-like osteoid matrix densest at the centre, spicules radiating
#    perpendicular to the cortex, soft-tissue mass", 3-10 cm -------------------------------------
def osteosarcoma_sunburst_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (30.0, 100.0)),
        "matrix_fraction": _u(rng, 0.35, 0.6),
        "matrix_contrast": 1.0 - 0.35 * difficulty * float(rng.random()),
        "n_spicules": int(rng.integers(15, 41)),
        "spicule_mm": _u(rng, 0.9, 1.4),
        **bone_morphology(rng),
    }


def osteosarcoma_sunburst(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    bone_r = m["bone_radius_mm"]
    axis = np.array([0.0, 0.0, -bone_r])
    long_bone(ctx, m, axis)
    peak = ctx.deposit_hu(400, 1100) * m["matrix_contrast"]
    sigma = m["matrix_fraction"] * r
    cloud = np.exp(-(cv.local**2).sum(0) / (2 * sigma**2)) * (0.75 + 0.25 * ctx.texture(2.0))
    mass = wobbled(ellipsoid((0, 0, 0), (1.3 * r, r, r)), Wobble(rng, m["mass_roughness"] * r, r))
    cv.paint(mass, m["mass_hu"] + 4.0 * ctx.texture(2.0) + peak * cloud)
    pts = []
    for _ in range(m["n_spicules"]):
        phi = _u(rng, -1.2, 1.2)
        radial = np.array([0.0, np.sin(phi), np.cos(phi)])
        start = axis + np.array([_u(rng, -1.1, 1.1) * r, 0, 0]) + bone_r * radial
        length = _u(rng, 0.4, 0.95) * r
        pts.append(segment_points(start, start + length * radial, STEP))
    cv.tubes(np.concatenate(pts, 1), m["spicule_mm"] / 2, ctx.deposit_hu(300, 900))


# -- telangiectatic osteosarcoma: "little matrix, thin peripheral eggshell calcification around a
#    lytic/fluid mass", 3-10 cm --------------------------------------------------------------------
def osteosarcoma_telangiectatic_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (30.0, 100.0), hu=(5.0, 20.0)),
        "n_cysts": int(rng.integers(2, 5)),
        "blood_hu": _u(rng, 40, 65),
        "level_fraction": _u(rng, -0.3, 0.3),
        "eggshell_mm": _u(rng, 1.0, 1.6),
        "eggshell_cover": _u(rng, 0.4, 0.8),
        "n_stipples": int(rng.integers(3, 12)),
        **bone_morphology(rng),
    }


def osteosarcoma_telangiectatic(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    long_bone(ctx, m, (0.0, 0.0, -0.5 * m["bone_radius_mm"]))
    lr = 0.55 * r
    lobes = [sphere(c, lr * _u(rng, 0.8, 1.1)) for c in _in_ball(rng, m["n_cysts"], r - lr).T]
    mass = wobbled(smooth_union(lobes, 0.3 * lr), Wobble(rng, m["mass_roughness"] * lr, lr))
    cv.paint(mass, m["mass_hu"])
    # Fluid-fluid levels: blood settles in the dependent part (larger scanner y) of each cyst.
    down = -cv.rotation[1]
    for lobe in lobes:
        cv.paint(intersect(lobe, mass, half_space(down, -m["level_fraction"] * lr)), m["blood_hu"])
    patches = Wobble(rng, 1.0, 0.7 * r)
    cut = np.sqrt(2) * (2 * m["eggshell_cover"] - 1)  # keep about that share of the wall
    egg = intersect(shell(mass, m["eggshell_mm"]), lambda p: -(patches(p) + cut) * 2.0)
    cv.paint(egg, ctx.deposit_hu(300, 800), deposit=True)
    cv.tubes(_in_ball(rng, m["n_stipples"], (r, r, r)) * 0.7, 0.7, ctx.deposit_hu(200, 600))


# -- chondrosarcoma grade III: "sparse, anarchic rings-and-arcs inside a large soft-tissue mass,
#    cortical destruction", 3-10 cm ---------------------------------------------------------------
def chondrosarcoma_high_grade_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (30.0, 100.0), hu=(20.0, 45.0)),
        "n_rings": int(rng.integers(3, 9) + round(12 * difficulty * float(rng.random()))),
        "ring_mm": _u(rng, 1.1, 1.7),
        "arc_max_deg": 160.0 + 120.0 * difficulty,
        **bone_morphology(rng),
    }


def chondrosarcoma_high_grade(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    long_bone(ctx, m, (0.0, 0.0, -0.7 * m["bone_radius_mm"]))
    soft_mass(ctx, (0, 0, 0), (1.2 * r, r, 0.9 * r), m["mass_hu"], m["mass_roughness"])
    centres = _in_ball(rng, m["n_rings"], (1.1 * r, 0.85 * r, 0.8 * r))
    hi = np.deg2rad(m["arc_max_deg"])
    for c in centres.T:
        arc = arc_points(c, _u(rng, 1.0, 4.0), random_unit(rng), _u(rng, 0, 6.3), _u(rng, 1.0, hi))
        cv.tubes(arc, m["ring_mm"] / 2, ctx.deposit_hu(500, 1200) * _u(rng, 0.8, 1.1))


# -- chordoma: "punctate popcorn calcification, heterogeneous distribution, midline", 3-8 cm ------
def chordoma_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (30.0, 80.0), hu=(20.0, 45.0)),
        "n_lobes": int(rng.integers(4, 8)),
        "n_clusters": int(rng.integers(4, 13)),
        "cluster_spread_mm": _u(rng, 0.6, 1.5),
        "cluster_bias": _u(rng, 0.3, 0.8),
        **bone_morphology(rng),
    }


def chordoma(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    # Sacral body: a boxy block of bone across the midline, the mass growing out of it.
    block = superquadric((0, 0, -0.8 * r), (2.5 * r, 2.5 * r, 0.9 * r), 4.0)
    trab = trabecular(ctx, m)
    cv.paint(block, trab)
    cv.paint(shell(block, m["bone_cortex_mm"]), m["bone_cortical_hu"])
    lr = 0.45 * r
    lobes = [sphere(c, lr * _u(rng, 0.8, 1.15)) for c in _in_ball(rng, m["n_lobes"], r - lr).T]
    mass = wobbled(smooth_union(lobes, 0.25 * lr), Wobble(rng, m["mass_roughness"] * lr, lr))
    cv.paint(mass, m["mass_hu"] + 5.0 * ctx.texture(2.0))
    # Heterogeneous: clusters crowd towards one side of the mass.
    side = random_unit(rng) * m["cluster_bias"] * (r - lr)
    pts = []
    for c in (_in_ball(rng, m["n_clusters"], (0.6 * r,) * 3) + side[:, None]).T:
        k = int(rng.integers(3, 20))
        pts.append(c[:, None] + m["cluster_spread_mm"] * rng.standard_normal((3, k)))
    pts = np.concatenate(pts, 1)
    # Punctate foci of 1.2-2.4 mm, overlapping into popcorn where a cluster is tight.
    cv.tubes(pts, rng.uniform(0.6, 1.2, pts.shape[1]), ctx.deposit_hu(400, 1100))


# -- blastic metastasis: "homogeneous ivory density > 1000 HU, sometimes confluent, replacing
#    trabecular bone", 0.5-4 cm --------------------------------------------------------------------
def blastic_metastasis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 5.0, 40.0),
        "n_foci": int(rng.integers(1, 4)),
        "margin_roughness": _u(rng, 0.04, 0.12),
        **bone_morphology(rng, radius=(18.0, 28.0)),
    }


def blastic_metastasis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    bone_r = min(m["bone_radius_mm"], 1.15 * cv.radius_limit)
    long_bone(ctx, {**m, "bone_radius_mm": bone_r}, (0, 0, 0))
    r = min(m["size_mm"] / 2, bone_r - m["bone_cortex_mm"] - 1.0, cv.radius_limit)
    lobes = [sphere((0, 0, 0), r)]
    for c in _in_ball(rng, m["n_foci"] - 1, (0.8 * r,) * 3).T:
        lobes.append(sphere(c, r * _u(rng, 0.4, 0.7)))
    ivory = wobbled(smooth_union(lobes, 0.3 * r), Wobble(rng, m["margin_roughness"] * r, 0.7 * r))
    cv.paint(ivory, ctx.deposit_hu(1100, 1700) + 15.0 * ctx.texture(2.0), deposit=True)


# -- mixed metastasis: "lytic holes mixed with sclerotic patches, heterogeneous", 1-4 cm ----------
def mixed_metastasis_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 10.0, 40.0),
        "n_lytic": int(rng.integers(2, 7)),
        "n_sclerotic": int(rng.integers(2, 7)),
        "lytic_hu": _u(rng, 20, 45),
        **bone_morphology(rng, radius=(18.0, 28.0)),
    }


def mixed_metastasis(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    bone_r = min(m["bone_radius_mm"], 1.15 * cv.radius_limit)
    long_bone(ctx, {**m, "bone_radius_mm": bone_r}, (0, 0, 0.4 * bone_r))
    r = min(m["size_mm"] / 2, cv.radius_limit)
    # Lytic holes first, then the sclerotic patches (>= 1.5 mm radius), so that a hole never
    # erases a patch it happens to overlap and both components stay visible.
    kinds = ["lytic"] * m["n_lytic"] + ["sclerotic"] * m["n_sclerotic"]
    for kind, c in zip(kinds, _in_ball(rng, len(kinds), (r, r, r)).T, strict=True):
        s = max(r * _u(rng, 0.15, 0.35), 1.5)
        blob = wobbled(sphere(c, s), Wobble(rng, 0.25 * s, 1.5 * s))
        if kind == "lytic":
            cv.paint(blob, m["lytic_hu"])
        else:
            hu = ctx.deposit_hu(500, 1100) * _u(rng, 0.8, 1.1) + 80 * ctx.texture(2.0)
            cv.paint(blob, hu, deposit=True)


# -- pleural plaque: "irregular calcified pleural plaque with effusion (fluid) and rib
#    involvement", 2-6 cm ------------------------------------------------------------------------
def pleural_plaque_malignant_morphology(rng, difficulty):
    return {
        "size_mm": _u(rng, 20.0, 60.0),
        "plaque_mm": _u(rng, 1.0, 3.0),
        "effusion_mm": _u(rng, 6.0, 20.0),
        "effusion_hu": _u(rng, 0, 20),
        "plaque_holes": _u(rng, 0.2, 0.5),
        "rib_offset_mm": _u(rng, -8.0, 8.0),
        "erosion_hu": _u(rng, 30, 50),
        **bone_morphology(rng, radius=(5.0, 8.0)),
    }


def pleural_plaque_malignant(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    # Local axis 2 is the normal to the pleura: chest wall below 0, pleural space above.
    rib_c = (0.0, m["rib_offset_mm"], -(m["bone_radius_mm"] + 1.5))
    long_bone(ctx, m, rib_c)
    swell = Wobble(rng, 0.2 * m["effusion_mm"], 2 * r)
    depth = m["effusion_mm"]
    cv.paint(lambda p: np.abs(p[2] - depth / 2 + swell(p) / 2) - depth / 2, m["effusion_hu"])
    # Rib involvement: an irregular erosion through the rib's cortex next to the plaque.
    er = 0.8 * m["bone_radius_mm"]
    erosion = sphere((_u(rng, -0.5, 0.5) * r, rib_c[1], rib_c[2] + 0.8 * m["bone_radius_mm"]), er)
    cv.paint(wobbled(erosion, Wobble(rng, 0.3 * er, er)), m["erosion_hu"])
    rim = Wobble(rng, 0.25 * r, 0.8 * r)
    holes = Wobble(rng, 1.0, 6.0)
    thick = Wobble(rng, 0.4 * m["plaque_mm"], 5.0)
    half = m["plaque_mm"] / 2
    sheet = intersect(
        lambda p: np.abs(p[2]) - np.maximum(half + thick(p), 0.3),
        lambda p: np.sqrt(p[0] ** 2 + p[1] ** 2) - r + rim(p),
        lambda p: (np.sqrt(2) * (2 * m["plaque_holes"] - 1) - holes(p)) * 2.0,
    )
    cv.paint(sheet, ctx.deposit_hu(300, 900) + 60.0 * ctx.texture(2.0), deposit=True)


# -- Hodgkin lymphoma: "linear or reticular calcification in fibrotic tissue", rib / mediastinum --
def hodgkin_reticular_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (20.0, 50.0), hu=(40.0, 70.0)),
        "n_nodes": int(rng.integers(6, 17)),
        "strand_mm": _u(rng, 1.2, 1.8),
        "strand_wander_mm": _u(rng, 0.1, 0.5),
        **bone_morphology(rng, radius=(5.0, 8.0)),
    }


def hodgkin_reticular(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    long_bone(ctx, m, (0.0, 0.0, -(0.85 * r + m["bone_radius_mm"])))
    soft_mass(ctx, (0, 0, 0), (1.2 * r, r, 0.85 * r), m["mass_hu"], m["mass_roughness"])
    nodes = _in_ball(rng, m["n_nodes"], (0.9 * r, 0.75 * r, 0.65 * r)).T
    dist = np.linalg.norm(nodes[:, None] - nodes[None], axis=-1)
    pts = []
    for i in range(len(nodes)):
        for j in np.argsort(dist[i])[1:3]:
            if i < j or i not in np.argsort(dist[j])[1:3]:
                seg = segment_points(nodes[i], nodes[j], STEP)
                pts.append(seg + m["strand_wander_mm"] * rng.standard_normal(seg.shape))
    cv.tubes(np.concatenate(pts, 1), m["strand_mm"] / 2, ctx.deposit_hu(400, 1000))


# -- dystrophic calcification of tumour necrosis: "amorphous, irregular, eccentric calcification
#    inside a soft-tissue mass", 1-5 cm ------------------------------------------------------------
def tumour_necrosis_dystrophic_morphology(rng, difficulty):
    return {
        **_mass_morphology(rng, (10.0, 50.0), hu=(30.0, 50.0)),
        "necrosis_hu": _u(rng, 10, 25),
        "eccentricity": _u(rng, 0.4, 0.7),
        "n_blobs": int(rng.integers(2, 5)),
    }


def tumour_necrosis_dystrophic(ctx: Context, m: dict) -> None:
    cv, rng = ctx.canvas, ctx.rng
    r = min(m["size_mm"] / 2, cv.radius_limit)
    soft_mass(ctx, (0, 0, 0), (1.1 * r, r, 0.9 * r), m["mass_hu"], m["mass_roughness"])
    necrosis = wobbled(ellipsoid((0, 0, 0), (0.55 * r,) * 3), Wobble(rng, 0.1 * r, 0.5 * r))
    cv.paint(necrosis, m["necrosis_hu"])
    centre = random_unit(rng) * m["eccentricity"] * r
    s = max(0.2 * r, 1.5)
    blobs = [
        sphere(centre + c, s * _u(rng, 0.6, 1.1)) for c in _in_ball(rng, m["n_blobs"], (s,) * 3).T
    ]
    calc = wobbled(smooth_union(blobs, 0.5 * s), Wobble(rng, 0.3 * s, s))
    cv.paint(calc, ctx.deposit_hu(300, 900) + 120.0 * ctx.texture(2.0), deposit=True)


PAINTERS = {
    "osteosarcoma_sunburst": (osteosarcoma_sunburst_morphology, osteosarcoma_sunburst),
    "osteosarcoma_telangiectatic": (
        osteosarcoma_telangiectatic_morphology,
        osteosarcoma_telangiectatic,
    ),
    "chondrosarcoma_high_grade": (chondrosarcoma_high_grade_morphology, chondrosarcoma_high_grade),
    "chordoma": (chordoma_morphology, chordoma),
    "blastic_metastasis": (blastic_metastasis_morphology, blastic_metastasis),
    "mixed_metastasis": (mixed_metastasis_morphology, mixed_metastasis),
    "pleural_plaque_malignant": (pleural_plaque_malignant_morphology, pleural_plaque_malignant),
    "hodgkin_reticular": (hodgkin_reticular_morphology, hodgkin_reticular),
    "tumour_necrosis_dystrophic": (
        tumour_necrosis_dystrophic_morphology,
        tumour_necrosis_dystrophic,
    ),
}
