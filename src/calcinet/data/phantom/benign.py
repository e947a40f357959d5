"""The 11 benign patterns: how their morphology parameters are drawn and how they are painted.

Each pattern has `sample_<id>(rng, difficulty) -> dict` (cheap scalar draws, stored in the sample's
params) and `paint_<id>(scene, p)` (draws the scene; layout randomness comes from `scene.rng`).
`difficulty` in [0, 1] moves the pattern towards its malignant confounder (docs/patterns.md,
"Confounders by design"). Sizes are those of patterns.md unless a comment says otherwise.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from calcinet.data.phantom import anatomy as an
from calcinet.data.phantom import matrix as mx
from calcinet.data.phantom.draws import tilted, uniform
from calcinet.data.phantom.shapes import (
    basis,
    cylinder,
    ellipsoid,
    random_basis,
    random_unit,
    sphere,
)


# -- phlebolith ------------------------------------------------------------------------------------
def sample_phlebolith(rng, d):
    return {
        # patterns.md: 2-6 mm; the lucent centre is only resolved in the larger ones.
        "diameter_mm": uniform(rng, 2.5, 6.5),
        "rim_fraction": uniform(rng, 0.28, 0.45),
        "rim_hu": uniform(rng, 500, 1000),
        "centre_hu": uniform(rng, 60, 220),
        "count": int(rng.integers(1, 4)),
        "vein_diameter_mm": uniform(rng, 5, 10),
        "local_fat_fraction": uniform(rng, 0.15, 0.45),  # pelvic fat around the venous plexus
        "bone_gap_mm": uniform(rng, 3, 30),
    }


def paint_phlebolith(scene, p):
    rng = scene.rng
    an.soft_tissue(scene, p, fat_fraction=p["local_fat_fraction"])
    an.neighbour_bone(
        scene,
        p,
        clearance_mm=0.5 * p["vein_diameter_mm"],
        gap_mm=p["bone_gap_mm"],
        radius_mm=uniform(rng, 20, 35),
    )
    axis = tilted(rng, (0, 0, 1), 30)
    fr = scene.frame(axes=basis(axis, rng))
    R = 0.5 * p["diameter_mm"]
    rv = max(0.5 * p["vein_diameter_mm"], R + 0.5)
    scene.paint(fr, cylinder(fr, rv), an.BLOOD_HU + 5 * fr.take(scene.field(4.0)))
    for i in range(p["count"]):
        c = np.zeros(3) if i == 0 else axis * rng.choice([-1, 1]) * uniform(rng, 7, 20)
        r = R if i == 0 else R * uniform(rng, 0.6, 1.1)
        f = scene.frame(c, radius=r + 2 * scene.pv)
        if f is None:
            continue
        dist = f.radius()
        scene.paint(f, dist - r, p["rim_hu"])
        scene.paint(f, dist - r * (1 - p["rim_fraction"]), p["centre_hu"])


# -- tendinitis ------------------------------------------------------------------------------------
def sample_tendinitis(rng, d):
    return {
        "n_foci": int(rng.integers(1, 4)),
        "focus_length_mm": uniform(rng, 3, 15),
        "focus_aspect": uniform(rng, 0.35, 0.8),
        # Dense homogeneous deposit ~300-900 HU (patterns.md); difficulty pushes it towards 1000.
        "focus_hu": uniform(rng, 350, 750 + 250 * d),
        "tendon_thickness_mm": uniform(rng, 4, 8),
        "bone_gap_mm": uniform(rng, 1.5, 14 - 8 * d),
        "bone_radius_mm": uniform(rng, 20, 32),
    }


def paint_tendinitis(scene, p):
    rng = scene.rng
    an.soft_tissue(scene, p)
    th = p["tendon_thickness_mm"]
    an.bone(scene, p, gap_mm=p["bone_gap_mm"] + 0.5 * th, radius_mm=p["bone_radius_mm"])
    fr = scene.full()
    tendon = ellipsoid(fr, 0.5 * th, uniform(rng, 6, 11), 1e4)
    scene.paint(fr, tendon, p["muscle_hu"] + an.TENDON_OVER_MUSCLE_HU)
    L = p["focus_length_mm"]
    for i in range(p["n_foci"]):
        c = (
            np.zeros(3)
            if i == 0
            else np.array(
                [
                    0,
                    uniform(rng, -3, 3),
                    rng.choice([-1, 1]) * uniform(rng, 0.8 * L + 2, 1.6 * L + 6),
                ]
            )
        )
        s = 1.0 if i == 0 else uniform(rng, 0.4, 0.9)
        ax = basis(tilted(rng, (0, 0, 1), 15), rng)
        ra = 0.5 * L * s
        rb = ra * p["focus_aspect"]
        f = scene.frame(c, ax, radius=ra + 2 * scene.pv)
        if f is not None:
            val = p["focus_hu"] + 15 * f.take(scene.field(3.0))
            scene.paint(f, ellipsoid(f, rb, rb * uniform(rng, 0.8, 1.0), ra), val)


# -- enchondroma -----------------------------------------------------------------------------------
def sample_enchondroma(rng, d):
    size = uniform(rng, 10, 50)
    return {
        "size_mm": size,
        # Abundant and organised (seed 000, grade I: "calcifications abondantes et organisées"):
        # nearly every lobule of a regular lattice carries a ring of similar size. Difficulty
        # thins and scatters them towards the high-grade chondrosarcoma.
        "ring_radius_mm": uniform(rng, 1.8, 3.2),
        "cell_factor": uniform(rng, 3.0, 3.6) + 0.3 * d,  # lattice cell / ring radius
        "ring_presence": uniform(rng, 0.75, 0.95) - 0.25 * d,
        "ring_radius_cv": uniform(rng, 0.08, 0.16) + 0.15 * d,
        "ring_thickness_mm": uniform(rng, 0.9, 1.3),
        "arc_fraction": uniform(rng, 0.6, 0.9) - 0.2 * d,
        "ring_hu": uniform(rng, 450, 900),
        # Unmineralised hyaline cartilage, a little denser than muscle.
        "matrix_hu": uniform(rng, 60, 110),
        "bone_radius_mm": max(uniform(rng, 14, 30), 0.5 * size + 4),
        "depth_mm": uniform(rng, 1, 5),
        "endosteal_scalloping_mm": uniform(rng, 0, 1.0 + 2.0 * d),
    }


def paint_enchondroma(scene, p):
    """A lobulated cartilage lesion inside the medulla, its lobules outlined by regular
    rings-and-arcs; the cortex is intact (at most scalloped from inside), no soft-tissue mass."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    b = an.bone(scene, p, gap_mm=-(R + p["depth_mm"]), radius_mm=p["bone_radius_mm"])
    radii = (R * uniform(rng, 0.75, 1.0), R * uniform(rng, 0.75, 1.0), R)
    fr, sdf = an.mass(
        scene, p, radii=radii, hu=p["matrix_hu"], lobulation=1.2, scale=7.0, texture=8.0
    )
    if fr is None:
        return
    if p["endosteal_scalloping_mm"] > 0.3:
        # Endosteal scalloping: the lobules thin the cortex from inside without breaching it.
        inner = b.distance(fr) - (b.radius - b.cortex)
        occ = (
            np.clip(-sdf / 4.0, 0, 1)
            * an.smooth_step(inner, 1.0)
            * an.smooth_step(p["endosteal_scalloping_mm"] - inner, 1.0)
        )
        scene.paint_occ(fr, occ.astype(np.float32), p["matrix_hu"])
    rr = p["ring_radius_mm"]
    mx.ring_lattice(
        scene,
        fr,
        scene.occupancy(sdf + 0.5),
        rng,
        mx.RingLattice(
            cell_mm=p["cell_factor"] * rr,
            presence=p["ring_presence"],
            radius_mm=rr,
            radius_cv=p["ring_radius_cv"],
            thick_mm=p["ring_thickness_mm"],
            thick_cv=0.12,
            arc_fraction=p["arc_fraction"],
            arc_spread=0.15,
            hu=p["ring_hu"],
            hu_cv=0.1,
        ),
    )


# -- chondrocalcinosis -----------------------------------------------------------------------------
def sample_chondrocalcinosis(rng, d):
    return {
        "joint_gap_mm": uniform(rng, 0.3, 2.0),  # between the two cartilage surfaces
        # Knee hyaline cartilage is ~2-4 mm thick (general radiology).
        "cartilage_mm": uniform(rng, 3.0, 4.5),
        "condyle_radius_mm": uniform(rng, 18, 32),
        # patterns.md: lines 1-2 mm thick; thinner ones lose density to partial volume.
        "line_thickness_mm": uniform(rng, 1.0, 2.0),
        "line_hu": uniform(rng, 350, 800),
        "coverage": uniform(rng, 0.45, 0.9),
        "meniscus_calcified": int(rng.random() < 0.85),
        "meniscus_width_mm": uniform(rng, 8, 14),
    }


def paint_chondrocalcinosis(scene, p):
    """A knee-like joint seen across the joint line: a convex condyle (cylinder along w, above)
    over a flat plateau (u < -js/2), both capped by hyaline cartilage; the wedge where the condyle
    curves away holds a meniscus. CPPD deposits run as thin lines inside the cartilage, parallel
    to the articular surface, and inside the meniscus (seed 001)."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    fr = scene.full()
    tc, Rc = p["cartilage_mm"], p["condyle_radius_mm"]
    js = 2 * tc + p["joint_gap_mm"]  # bone to bone
    cart = p["muscle_hu"] + an.CARTILAGE_OVER_MUSCLE_HU
    plate = min(p["cortex_mm"], 1.5)  # the subchondral plate is thinner than a diaphysis
    tib = fr.a + 0.5 * js  # signed distance to the plateau surface (negative inside bone)
    axis_u = 0.5 * js + Rc
    fem = np.sqrt((fr.a - axis_u) ** 2 + fr.b**2) - Rc
    # Joint recess: fluid around the articular ends, within the capsule.
    scene.paint(fr, np.abs(fr.a) - 0.5 * js - 6.0, p["fluid_hu"] + 10, soft=2.0)
    # Meniscus: the wedge between the two cartilage caps, beside the contact zone.
    vlat = np.abs(fr.b) - uniform(rng, 1.0, 4.0)
    wedge = np.maximum.reduce([tc - tib, tc - fem, -vlat, vlat - p["meniscus_width_mm"]])
    scene.paint(fr, wedge, p["muscle_hu"] + 25)
    tex = an.trabecular_texture(scene, p)
    for sdf in (tib, fem):
        scene.paint(fr, sdf - tc, cart)
        scene.paint(fr, sdf, p["cortical_hu"] * 0.75)
        scene.paint(fr, sdf + plate, p["trabecular_hu"] + tex)
    # CPPD: thin patchy sheets within the cartilage, nearer its surface than the bone.
    t = p["line_thickness_mm"]
    thr = float(ndtri(1.0 - p["coverage"]))
    patch = an.smooth_step(scene.field(7.0) - thr, 0.5)
    depth = tc * uniform(rng, 0.65, 0.85)
    occ = np.maximum(
        scene.occupancy(np.abs(tib - depth) - 0.5 * t),
        scene.occupancy(np.abs(fem - depth) - 0.5 * t),
    )
    if p["meniscus_calcified"]:
        mid = np.abs(tib - tc - 0.5 * (js - 2 * tc)) - 0.5 * t  # mid-height of the wedge
        occ = np.maximum(occ, scene.occupancy(mid) * scene.occupancy(wedge + 1.0))
    scene.paint_occ(fr, occ * patch, p["line_hu"] + 30 * scene.field(3.0), mode="max")


# -- tumoral calcinosis ----------------------------------------------------------------------------
def sample_tumoral_calcinosis(rng, d):
    return {
        "size_mm": uniform(rng, 10, 50),
        "n_lobules": int(rng.integers(5, 14)),
        # Chalky deposits (patterns.md ~300-900 HU); difficulty pushes them towards 1000.
        "deposit_hu": uniform(rng, 350, 750 + 250 * d),
        "fluid_calcium_level": int(rng.random() < 0.4),
        "bone_gap_mm": uniform(rng, 2, 25 - 10 * d),
        "bone_radius_mm": uniform(rng, 18, 32),
    }


def paint_tumoral_calcinosis(scene, p):
    """Lobulated periarticular deposits (cystic lobules of chalky material, thin septa) beside a
    bone; some lobules show a fluid-calcium level (milk of calcium sedimenting along gravity)."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    an.neighbour_bone(scene, p, clearance_mm=R, gap_mm=p["bone_gap_mm"],
                      radius_mm=p["bone_radius_mm"])
    centres = mx.points_in_ellipsoid(
        rng, p["n_lobules"], (0.55 * R, 0.65 * R, 0.65 * R), regular=0.7
    )
    centres[0] = 0.0
    for i, c in enumerate(centres):
        r = R * (uniform(rng, 0.4, 0.5) if i == 0 else uniform(rng, 0.25, 0.42))
        f = scene.frame(c, radius=r + 3.0)
        if f is None:
            continue
        sdf = sphere(f, r) + 0.4 * f.take(scene.field(6.0))
        occ = scene.occupancy(sdf)
        hu = p["deposit_hu"] * uniform(rng, 0.9, 1.1) + 20 * f.take(scene.field(3.0))
        if p["fluid_calcium_level"]:
            an.fluid_levels(
                scene,
                f,
                occ,
                level_mm=r * uniform(rng, -0.5, 0.3),
                top_hu=p["fluid_hu"] + 10,
                bottom_hu=hu,
            )
        else:
            scene.paint_occ(f, occ, hu)
        # A thin fibrous septum around each lobule keeps the lobules apart.
        scene.paint(f, np.abs(sdf + 0.3) - 0.3, p["muscle_hu"] + 20, soft=0.8)


# -- myositis ossificans ---------------------------------------------------------------------------
def sample_myositis_ossificans(rng, d):
    return {
        "size_mm": uniform(rng, 20, 60),
        "aspect": uniform(rng, 0.45, 0.75),
        "aspect_v": uniform(rng, 0.8, 1.0),
        "shell_mm": uniform(rng, 2.0, 5.0),
        # Zonal maturation (seed 001, 003): mineralised periphery, immature centre. Difficulty
        # raises the core and lowers the shell, so the shell/core contrast shrinks.
        "shell_hu": uniform(rng, 650, 1100) - 150 * d,
        "core_hu": uniform(rng, 90, 220) + 150 * d,
        "core_texture_hu": uniform(rng, 20, 50),
        "cleft_mm": uniform(rng, 1.0, 6.0),
        "bone_in_view": int(rng.random() < 0.75),
        "bone_radius_mm": uniform(rng, 15, 30),
    }


def paint_myositis_ossificans(scene, p):
    """An intramuscular ellipsoid with a dense shell and a faint core, separated from the nearby
    cortex by a lucent cleft; a halo of oedema around it."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    ra, rb = R * p["aspect"], R * p["aspect"] * p["aspect_v"]
    gap = (ra + p["cleft_mm"]) if p["bone_in_view"] else (ra + uniform(rng, 25, 45))
    an.bone(scene, p, gap_mm=gap, radius_mm=p["bone_radius_mm"])
    f = scene.frame(radius=R + 6.0)
    if f is None:
        return
    d = ellipsoid(f, ra, rb, R) + 0.8 * f.take(scene.field(8.0))
    scene.paint(f, d - 4.0, p["muscle_hu"] - 10, soft=4.0)  # oedema
    shell = p["shell_hu"] + 60 * f.take(scene.field(2.5))
    scene.paint(f, d, shell)
    sh = p["shell_mm"] * (1 + 0.25 * f.take(scene.field(10.0)))
    core = p["core_hu"] + p["core_texture_hu"] * f.take(scene.field(3.0))
    scene.paint(f, d + sh, core, soft=1.5)


# -- heterotopic ossification ----------------------------------------------------------------------
def sample_heterotopic_ossification(rng, d):
    return {
        "size_mm": uniform(rng, 10, 50),
        "aspect": uniform(rng, 0.3, 0.7),
        "rim_mm": uniform(rng, 1.5, 3.5),
        # Organised bone: a cortex-like rim (a little less dense than a mature diaphysis).
        "rim_hu": uniform(rng, 850, 1500),
        "lobulation_mm": uniform(rng, 1.0, 4.0),
        "bone_gap_mm": uniform(rng, 2, 30),
        "bone_radius_mm": uniform(rng, 15, 30),
    }


def paint_heterotopic_ossification(scene, p):
    """Mature ectopic bone in muscle: a corticated shell around trabecular medulla."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    ra = R * p["aspect"]
    an.neighbour_bone(scene, p, clearance_mm=ra, gap_mm=p["bone_gap_mm"],
                      radius_mm=p["bone_radius_mm"])
    axes = basis(tilted(rng, (0, 0, 1), 25), rng)
    lob = p["lobulation_mm"]
    f = scene.frame(axes=axes, radius=R + 2.5 * lob + 2.0)
    if f is None:
        return
    d = ellipsoid(f, ra, ra * uniform(rng, 0.7, 1.0), R) + lob * f.take(scene.field(9.0))
    scene.paint(f, d, p["rim_hu"] + 40 * f.take(scene.field(2.5)))
    med = p["trabecular_hu"] + f.take(an.trabecular_texture(scene, p))
    scene.paint(f, d + p["rim_mm"], med)


# -- parasitic (cysticercosis) ---------------------------------------------------------------------
def sample_parasitic(rng, d):
    return {
        "n_grains": int(rng.integers(15, 61)),
        # patterns.md: 2-4 mm each; elongated ~2.5:1 like a grain of rice.
        "grain_length_mm": uniform(rng, 3.0, 5.0),
        "grain_width_mm": uniform(rng, 1.3, 2.0),
        "grain_hu": uniform(rng, 400, 950),
        "fibre_spread_deg": uniform(rng, 4, 18),
        "region_mm": uniform(rng, 25, 60),
        "bone_gap_mm": uniform(rng, 3, 30),
    }


def paint_parasitic(scene, p):
    """Rice-grain calcified cysticerci scattered through muscle, their long axes along the
    fibres (seed 003: "grains de riz ... le long de la direction des fibres musculaires")."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    an.neighbour_bone(scene, p, clearance_mm=3.0, gap_mm=p["bone_gap_mm"],
                      radius_mm=uniform(rng, 15, 30))
    fibre = tilted(rng, (0, 0, 1), 10)
    h = 0.5 * p["region_mm"]
    pts = mx.points_in_ellipsoid(rng, p["n_grains"], (0.6 * h, 0.8 * h, h), regular=0.3)
    pts[0] = 0.0
    for c in pts:
        direction = tilted(rng, fibre, p["fibre_spread_deg"])
        mx.grain(
            scene,
            c,
            direction=direction,
            length_mm=p["grain_length_mm"] * uniform(rng, 0.8, 1.2),
            width_mm=p["grain_width_mm"] * uniform(rng, 0.85, 1.15),
            hu=p["grain_hu"] * uniform(rng, 0.8, 1.1),
            rng=rng,
        )


# -- injection granuloma ---------------------------------------------------------------------------
def sample_injection_granuloma(rng, d):
    return {
        "size_mm": uniform(rng, 5, 20),
        "n_blobs": int(rng.integers(1, 4)),
        # Dense homogeneous deposit (patterns.md ~300-900 HU); difficulty towards 1000.
        "granuloma_hu": uniform(rng, 400, 800 + 200 * d),
        "fat_depth_mm": uniform(rng, 2, 20),
        "bone_gap_mm": uniform(rng, 5, 35 - 20 * d),
    }


def paint_injection_granuloma(scene, p):
    """Gluteal site: a localised smooth dense deposit at the junction of subcutaneous fat and
    muscle, with a thin fibrous capsule."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    an.fat_layer(scene, p, offset_mm=p["fat_depth_mm"])
    an.neighbour_bone(
        scene, p, clearance_mm=0.5 * p["size_mm"], gap_mm=p["bone_gap_mm"],
        radius_mm=uniform(rng, 20, 35),
    )
    R = 0.5 * p["size_mm"]
    blobs = []
    for i in range(p["n_blobs"]):
        c = np.zeros(3) if i == 0 else random_unit(rng) * R * uniform(rng, 0.6, 1.1)
        r = R * (uniform(rng, 0.8, 1.0) if i == 0 else uniform(rng, 0.35, 0.65))
        f = scene.frame(c, random_basis(rng), radius=r + 3.0)
        if f is not None:
            blobs.append(
                (f, ellipsoid(f, r * uniform(rng, 0.7, 1.0), r * uniform(rng, 0.7, 1.0), r))
            )
    for f, sdf in blobs:  # thin fibrous capsule first, so it never cuts a neighbouring deposit
        scene.paint(f, sdf - 1.2, p["muscle_hu"] + 25)
    for f, sdf in blobs:
        scene.paint(
            f, sdf, p["granuloma_hu"] * uniform(rng, 0.92, 1.05) + 20 * f.take(scene.field(3.0))
        )


# -- vascular calcification ------------------------------------------------------------------------
def sample_vascular(rng, d):
    return {
        "vessel_diameter_mm": uniform(rng, 2.5, 10),
        "wall_mm": uniform(rng, 0.7, 1.5),
        "calc_hu": uniform(rng, 350, 1000),
        "coverage": uniform(rng, 0.35, 0.95),
        # 1 = medial (Moenckeberg) tram-track, continuous; 0 = patchy eccentric atheroma.
        "medial": int(rng.random() < 0.5),
        "n_vessels": int(rng.integers(1, 4)),
        "local_fat_fraction": uniform(rng, 0.1, 0.4),
        "bone_gap_mm": uniform(rng, 3, 30),
    }


def paint_vascular(scene, p):
    """Vessels meandering through fat and muscle, their walls calcified in tram-tracks (medial) or
    eccentric patches (atheroma); on a cross-section, a ring or an arc."""
    rng = scene.rng
    an.soft_tissue(scene, p, fat_fraction=p["local_fat_fraction"])
    an.neighbour_bone(
        scene, p, clearance_mm=p["vessel_diameter_mm"], gap_mm=p["bone_gap_mm"],
        radius_mm=uniform(rng, 15, 30),
    )
    main = tilted(rng, (0, 0, 1), 35)
    thr = float(ndtri(1.0 - p["coverage"]))
    for i in range(p["n_vessels"]):
        rv = 0.5 * p["vessel_diameter_mm"] * (1.0 if i == 0 else uniform(rng, 0.5, 1.0))
        side = np.cross(main, random_unit(rng))
        off = np.zeros(3) if i == 0 else side / np.linalg.norm(side) * uniform(rng, 9, 22)
        axes = basis(tilted(rng, main, 8), rng)
        f = scene.frame(off, axes)
        amp, lam, ph = uniform(rng, 0, 3), uniform(rng, 30, 80), uniform(rng, 0, 6.3)
        a = f.a - amp * np.sin(f.c * (2 * np.pi / lam) + ph)  # gentle meander
        rho = np.sqrt(a * a + f.b * f.b)
        scene.paint(f, rho - rv - p["wall_mm"], p["muscle_hu"] + 15)  # wall
        scene.paint(f, rho - rv, an.BLOOD_HU)  # lumen
        wall = np.abs(rho - rv - 0.5 * p["wall_mm"]) - 0.5 * p["wall_mm"]
        if p["medial"]:
            keep = an.smooth_step(scene.field(10.0) - thr, 0.5)
        else:
            ang = np.arctan2(f.b, a)
            ecc = np.cos(ang - uniform(rng, 0, 6.3))  # plaques favour one side of the wall
            keep = an.smooth_step(scene.field(4.0) + 0.8 * ecc - thr, 0.5)
        scene.paint_occ(
            f, scene.occupancy(wall) * keep, p["calc_hu"] * uniform(rng, 0.85, 1.1), mode="max"
        )


# -- calcinosis cutis ------------------------------------------------------------------------------
def sample_calcinosis_cutis(rng, d):
    return {
        "n_nodules": int(rng.integers(6, 25)),
        "nodule_max_mm": uniform(rng, 4, 10),
        "nodule_hu": uniform(rng, 400, 950),
        "cluster_mm": uniform(rng, 10, 35),
        "subcut_depth_mm": uniform(rng, 4, 12),
        "subcut_thickness_mm": uniform(rng, 8, 20),
        "bone_gap_mm": uniform(rng, 3, 20),
    }


def paint_calcinosis_cutis(scene, p):
    """CREST calcinosis: a cluster of small dense nodules of varied size in the subcutaneous fat,
    over a bony prominence (seed 004)."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    depth = p["subcut_depth_mm"]
    an.fat_layer(scene, p, offset_mm=-depth)
    # Beyond the subcutaneous fat: dermis and the soft tissue of the neighbouring finger/limb.
    an.fat_layer(scene, p, offset_mm=p["subcut_thickness_mm"] - depth, tissue_hu=p["muscle_hu"] - 5)
    an.bone(scene, p, gap_mm=depth + p["bone_gap_mm"], radius_mm=uniform(rng, 8, 20))
    h = 0.5 * p["cluster_mm"]
    pts = mx.clustered_points(rng, p["n_nodules"], (0.35 * h, h, h), 2, 0.3)
    pts[0] = 0.0
    for c in pts:
        size = float(np.exp(rng.uniform(np.log(1.5), np.log(p["nodule_max_mm"]))))
        mx.popcorn(scene, c, size_mm=size, hu=p["nodule_hu"] * uniform(rng, 0.8, 1.1), rng=rng)


BENIGN = {
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
