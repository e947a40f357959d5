"""The 9 malignant patterns: morphology draws and painters (same contract as `benign.py`).

`difficulty` in [0, 1] moves each pattern towards its benign confounder: fewer/fainter spicules,
more and more regular chondroid rings, a smaller soft-tissue mass, density closer to 1000 HU.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from calcinet.data.phantom import anatomy as an
from calcinet.data.phantom import matrix as mx
from calcinet.data.phantom.draws import uniform
from calcinet.data.phantom.shapes import F32, ellipsoid, random_unit, sphere


# -- blastic metastasis ----------------------------------------------------------------------------
def sample_blastic_metastasis(rng, d):
    size = uniform(rng, 5, 40)
    return {
        "size_mm": size,
        "n_foci": int(rng.integers(1, 4)),
        # Seed 000: osteoblastic prostate metastases are homogeneous "ivory" above 1000 HU.
        # Difficulty lowers the floor towards 1000 HU, next to the densest benign deposits.
        "lesion_hu": uniform(rng, 1000 + 250 * (1 - d), 1650),
        "margin_softness": uniform(rng, 1.2, 3.0),
        "lobulation": uniform(rng, 0.12, 0.3),
        "bone_radius_mm": max(uniform(rng, 16, 32), 0.5 * size + 3),
        "depth_mm": uniform(rng, 0.5, 6),
    }


def paint_blastic_metastasis(scene, p):
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    b = an.bone(scene, p, gap_mm=-(R + p["depth_mm"]), radius_mm=p["bone_radius_mm"])
    lob = p["lobulation"] * R
    hu = p["lesion_hu"]
    fr, _ = an.mass(
        scene,
        p,
        radii=(R, R * uniform(rng, 0.7, 1.0), R * uniform(rng, 0.7, 1.1)),
        hu=hu,
        lobulation=lob,
        scale=max(4.0, 0.8 * R),
        texture=25.0,
        soft=p["margin_softness"],
    )
    for _ in range(p["n_foci"] - 1):  # confluent satellite foci, within the medulla
        c = mx.points_in_ellipsoid(rng, 1, (R, R, R), regular=0)[0] * 1.1
        r = R * uniform(rng, 0.3, 0.6)
        f = scene.frame(c, radius=1.5 * r + 3.0)
        if f is None:
            continue
        sdf = sphere(f, r) + 0.2 * r * f.take(scene.field(max(3.0, r)))
        sdf = np.maximum(sdf, b.distance(f) - (b.radius - b.cortex))
        scene.paint(
            f,
            sdf,
            hu * uniform(rng, 0.95, 1.05) + 25 * f.take(scene.field(3.0)),
            soft=p["margin_softness"],
        )


# -- high-grade chondrosarcoma ---------------------------------------------------------------------
def sample_chondrosarcoma_high_grade(rng, d):
    size = uniform(rng, 30, 100)
    return {
        "size_mm": size,
        # Hyaline-cartilage tumour: hypodense to muscle.
        "mass_offset_hu": uniform(rng, -25, -5),
        # Sparse and anarchic (seed 000: grade III calcifications "clairsemées et anarchiques"):
        # few rings on a coarse lattice, clumped, of irregular size, thickness and density.
        # Difficulty makes them more numerous and regular, as in an enchondroma.
        "ring_radius_mm": uniform(rng, 1.8, 3.5),
        "cell_factor": uniform(rng, 3.2, 4.2) - 0.3 * d,
        "ring_presence": uniform(rng, 0.12, 0.3) + 0.2 * d,
        "clustering": uniform(rng, 0.8, 1.5) * (1 - 0.5 * d),
        "ring_radius_cv": uniform(rng, 0.35, 0.55) - 0.15 * d,
        "ring_thickness_mm": uniform(rng, 0.7, 1.6),
        "ring_thickness_cv": uniform(rng, 0.25, 0.5) - 0.1 * d,
        "arc_fraction": uniform(rng, 0.25, 0.5) + 0.2 * d,
        "ring_hu": uniform(rng, 350, 900),
        "bone_radius_mm": uniform(rng, 14, 30),
        "depth_mm": uniform(rng, 0, 10),
        # How far the soft-tissue mass bulges out of the bone (fraction of its radius).
        "extraosseous_fraction": uniform(rng, 0.25, 0.6) * (1 - 0.5 * d),
    }


def paint_chondrosarcoma_high_grade(scene, p):
    """A large lobulated cartilage mass arising in bone, destroying the cortex and bulging into
    the soft tissues, with sparse, clumped, irregular rings-and-arcs and cortical fragments."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    an.bone(scene, p, gap_mm=-p["depth_mm"], radius_mm=p["bone_radius_mm"])
    radii = np.array([R * uniform(rng, 0.5, 0.75), R * uniform(rng, 0.7, 1.0), R])
    off = np.array([p["extraosseous_fraction"] * radii[0], 0.0, 0.0])
    # The mass replaces medulla and cortex alike: cortical destruction.
    fr, sdf = an.mass(
        scene,
        p,
        radii=radii,
        hu=p["muscle_hu"] + p["mass_offset_hu"],
        origin=off,
        lobulation=3.0,
        scale=12.0,
        texture=8.0,
        soft=1.5,
    )
    _cortex_fragments(scene, p, rng, R)
    if fr is None:
        return
    rr = p["ring_radius_mm"]
    mx.ring_lattice(
        scene,
        fr,
        scene.occupancy(sdf + 1.0),
        rng,
        mx.RingLattice(
            cell_mm=p["cell_factor"] * rr,
            presence=p["ring_presence"],
            radius_mm=rr,
            radius_cv=p["ring_radius_cv"],
            thick_mm=p["ring_thickness_mm"],
            thick_cv=p["ring_thickness_cv"],
            arc_fraction=p["arc_fraction"],
            arc_spread=0.35,
            hu=p["ring_hu"],
            hu_cv=0.3,
            clustering=p["clustering"],
            soft=uniform(rng, 1.0, 1.6),
        ),
    )


def _cortex_fragments(scene, p, rng, R):
    """Residual islands of destroyed cortex floating at the margin of a destructive mass."""
    for _ in range(int(rng.integers(0, 4))):
        c = np.array(
            [uniform(rng, -2, 2), uniform(rng, -0.7, 0.7) * R, uniform(rng, -0.8, 0.8) * R]
        )
        mx.nodule(
            scene, c, radius_mm=uniform(rng, 0.8, 2.0), hu=p["cortical_hu"] * uniform(rng, 0.6, 0.9)
        )


# -- sunburst osteosarcoma -------------------------------------------------------------------------
def sample_osteosarcoma_sunburst(rng, d):
    size = uniform(rng, 30, 100)
    return {
        "size_mm": size,
        "mass_offset_hu": uniform(rng, -5, 15),
        # Cloud-like osteoid densest at the centre (seed 000); difficulty fades the centre.
        "matrix_peak_hu": uniform(rng, 700, 1250) - 250 * d,
        "matrix_extent": uniform(rng, 0.18, 0.32),
        # Spicules on a jittered grid over the cortex: spacing, share present, length, width.
        "spicule_spacing_mm": uniform(rng, 2.5, 4.5),
        "spicule_density": uniform(rng, 0.55, 0.95) * (1 - 0.4 * d),
        "spicule_length_mm": uniform(rng, 10, 28),
        "spicule_width_mm": uniform(rng, 1.0, 1.8),
        "spicule_hu": uniform(rng, 650, 1200) - 150 * d,
        "bone_radius_mm": uniform(rng, 10, 25),
        "depth_mm": uniform(rng, 0, 6),
        "aspect": uniform(rng, 0.55, 0.85),
    }


def paint_osteosarcoma_sunburst(scene, p):
    """A destructive mass centred on the cortex: cloud-like osteoid, densest at the centre, fills
    the medulla and the middle of the lesion; in the extraosseous soft-tissue mass, spicules
    radiate from the cortex outwards, perpendicular to it ("rayons de soleil")."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    b = an.bone(scene, p, gap_mm=-p["depth_mm"], radius_mm=p["bone_radius_mm"])
    radii = np.array([R * p["aspect"], R * uniform(rng, 0.75, 0.95), R])
    off = np.array([0.35 * radii[0], 0.0, 0.0])
    fr = scene.frame(off, radius=R + 8.0)
    if fr is None:
        return
    sdf = ellipsoid(fr, *radii) + 2.5 * fr.take(scene.field(12.0))
    inside = scene.occupancy(sdf, soft=2.0)
    # Fluffy osteoid: Gaussian fall-off from the lesion centre, modulated by a coarse field.
    rc = max(p["matrix_extent"] * R, 4.0)
    r2 = (fr.a + off[0]) ** 2 + fr.b**2 + fr.c**2
    cloud = np.exp(-0.5 * r2 / rc**2) * np.clip(1.0 + 0.3 * fr.take(scene.field(7.0)), 0, 2)
    val = p["muscle_hu"] + p["mass_offset_hu"] + 6 * fr.take(scene.field(3.0))
    scene.paint_occ(fr, inside, val + p["matrix_peak_hu"] * cloud)

    # Spicules: radial rods rooted on a jittered grid over the cortex (arc length x along-axis),
    # evaluated at once in cylindrical coordinates around the bone, only for the voxels of the
    # mass within reach of a spicule.
    g = p["spicule_spacing_mm"]
    ni = int(np.ceil(np.pi * b.radius / g)) + 2
    nj = int(np.ceil((R + 10.0) / g)) + 2
    margin = 0.5 * p["spicule_width_mm"] / g + 0.05
    jit = rng.uniform(margin, 1.0 - margin, size=(2, 2 * ni, 2 * nj))
    s0 = (np.arange(2 * ni)[:, None] - ni + jit[0]) * g
    w0 = (np.arange(2 * nj)[None, :] - nj + jit[1]) * g
    present = rng.random((2 * ni, 2 * nj)) < p["spicule_density"]
    # Longest over the centre of the lesion, shorter towards its edges (the sunburst fan).
    fall = np.exp(-0.5 * ((s0 / radii[1]) ** 2 + (w0 / radii[2]) ** 2) / 0.35)
    length = p["spicule_length_mm"] * (0.25 + 0.75 * fall) * rng.uniform(0.7, 1.2, fall.shape)
    length = np.where(present, length, 0.0).astype(np.float32)
    hu = p["spicule_hu"] * (1 + 0.15 * fr.take(scene.field(4.0)))

    ua = (fr.a + F32(off[0] - b.axis_u)).ravel()
    vb = fr.b.ravel()
    height = np.sqrt(ua * ua + vb * vb) - F32(b.radius)
    reach = (inside.ravel() > 0.01) & (height > -1.5) & (height < float(length.max()) + 1.0)
    sel = np.flatnonzero(reach)
    if sel.size == 0:
        return
    ua, vb, w, h = ua[sel], vb[sel], fr.c.ravel()[sel], height[sel]
    rho = h + F32(b.radius)
    theta = np.arctan2(vb, ua)
    ii = np.clip(np.floor(theta * (b.radius / g)).astype(np.int64) + ni, 0, 2 * ni - 1)
    jj = np.clip(np.floor(w / g).astype(np.int64) + nj, 0, 2 * nj - 1)
    dist = np.sqrt(((theta - s0[ii, jj] / b.radius) * rho) ** 2 + (w - w0[ii, jj]) ** 2)
    L = length[ii, jj]
    r = 0.5 * p["spicule_width_mm"] * np.clip(1.0 - 0.6 * h / (L + 1e-3), 0.4, 1.0)
    occ = np.zeros(inside.size, F32)
    occ[sel] = (
        scene.occupancy(dist - r)
        * an.smooth_step(L - h, 1.0)
        * an.smooth_step(h + 1.0, 1.0)
        * inside.ravel()[sel]
    )
    scene.paint_occ(fr, occ.reshape(inside.shape), hu, mode="max")


# -- telangiectatic osteosarcoma -------------------------------------------------------------------
def sample_osteosarcoma_telangiectatic(rng, d):
    size = uniform(rng, 30, 100)
    return {
        "size_mm": size,
        "n_cysts": int(rng.integers(2, 7)),
        # Blood-filled cysts: fluid-fluid levels with sedimented cells below (~60-80 HU).
        "fluid_level": int(rng.random() < 0.7),
        "sediment_hu": uniform(rng, 55, 85),
        # Seed 000: "moins de calcifications matricielles ... calcifications périphériques en
        # coquille d'oeuf": a thin incomplete peripheral shell.
        "eggshell_mm": uniform(rng, 0.7, 1.4),
        "eggshell_hu": uniform(rng, 300, 750),
        "eggshell_coverage": uniform(rng, 0.3, 0.8),
        "n_matrix_specks": int(rng.integers(0, 7)),
        "bone_radius_mm": uniform(rng, 14, 30),
        "depth_mm": uniform(rng, 0, 12),
    }


def paint_osteosarcoma_telangiectatic(scene, p):
    """An expansile lytic mass of blood-filled cysts (fluid levels, thin septa) destroying the
    cortex, rimmed by a thin broken eggshell of calcification, with scant matrix."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    an.bone(scene, p, gap_mm=-p["depth_mm"], radius_mm=p["bone_radius_mm"])
    radii = np.array([R * uniform(rng, 0.55, 0.8), R * uniform(rng, 0.7, 0.95), R])
    f = scene.frame(radius=R + 6.0)
    if f is None:
        return
    d = ellipsoid(f, *radii) + 2.0 * f.take(scene.field(12.0))
    thr = float(ndtri(1.0 - p["eggshell_coverage"]))
    keep = an.smooth_step(f.take(scene.field(8.0)) - thr, 0.5)
    egg = scene.occupancy(np.abs(d) - 0.5 * p["eggshell_mm"]) * keep
    scene.paint(f, d, p["muscle_hu"] + 10 + 5 * f.take(scene.field(3.0)))  # septa / wall
    fluid = p["fluid_hu"] + 8
    # The cysts' boxes differ from the mass's: read the mass boundary from a full-patch copy.
    d_full = np.full(scene.shape, 1e3, dtype=np.float32)
    d_full[f.sl] = d
    centres = mx.points_in_ellipsoid(rng, p["n_cysts"], radii * 0.55, regular=0.6)
    for c in centres:
        r = float(np.min(radii)) * uniform(rng, 0.35, 0.65)
        fc = scene.frame(c, radius=r + 2.0)
        if fc is None:
            continue
        inside = scene.occupancy(sphere(fc, r) + 0.7) * scene.occupancy(fc.take(d_full) + 1.2)
        if p["fluid_level"]:
            an.fluid_levels(
                scene,
                fc,
                inside,
                level_mm=r * uniform(rng, -0.6, 0.2),
                top_hu=fluid,
                bottom_hu=p["sediment_hu"],
            )
        else:
            scene.paint_occ(fc, inside, fluid + 15)
    scene.paint_occ(f, egg, p["eggshell_hu"], mode="max")
    for c in mx.points_in_ellipsoid(rng, p["n_matrix_specks"], radii * 0.8, regular=0):
        mx.popcorn(scene, c, size_mm=uniform(rng, 1.0, 2.5), hu=uniform(rng, 300, 700), rng=rng)


# -- chordoma --------------------------------------------------------------------------------------
def sample_chordoma(rng, d):
    size = uniform(rng, 30, 80)
    return {
        "size_mm": size,
        # Myxoid (physaliferous) tumour: a little less dense than muscle.
        "mass_offset_hu": uniform(rng, -25, 0),
        "n_calcifications": int(rng.integers(12, 50)),
        "calc_size_mm": uniform(rng, 2.0, 4.5),
        "calc_hu": uniform(rng, 350, 950),
        # Heterogeneous distribution (seed 000: "distribution plus hétérogène").
        "clustering": uniform(rng, 1.5, 3.0) * (1 - 0.4 * d),
        "n_bone_fragments": int(rng.integers(1, 8)),
        "local_fat_fraction": uniform(rng, 0.25, 0.6),  # presacral / pelvic fat
        "bone_radius_mm": uniform(rng, 25, 40),
        "depth_mm": uniform(rng, 0, 15),
    }


def paint_chordoma(scene, p):
    """A lobulated midline mass destroying a large bone block (sacrum / clivus), with popcorn
    calcifications and sequestered bone fragments scattered unevenly through it."""
    rng = scene.rng
    an.soft_tissue(scene, p, fat_fraction=p["local_fat_fraction"])
    R = 0.5 * p["size_mm"]
    an.bone(scene, p, gap_mm=-p["depth_mm"], radius_mm=p["bone_radius_mm"])
    radii = np.array([R * uniform(rng, 0.6, 0.85), R * uniform(rng, 0.75, 1.0), R])
    fr, sdf = an.mass(
        scene,
        p,
        radii=radii,
        hu=p["muscle_hu"] + p["mass_offset_hu"],
        lobulation=4.0,
        scale=10.0,
        texture=7.0,
        soft=1.5,
    )
    if fr is None:
        return
    # Septa between lobules: slightly denser thin walls.
    mx.reticular(
        scene,
        fr,
        scene.occupancy(sdf + 2.0),
        scale_mm=12.0,
        thickness_mm=0.8,
        hu=p["muscle_hu"] + 15,
        coverage=0.6,
    )
    # Heterogeneous placement: accept candidate points with probability rising with a field.
    cand = mx.points_in_ellipsoid(
        rng, 6 * p["n_calcifications"], np.minimum(radii * 0.9, 22.0), regular=0
    )
    dens = scene.field(12.0)
    vox = _patch_index(scene, cand)
    w = np.exp(p["clustering"] * dens[tuple(vox.T)])
    pick = rng.choice(
        len(cand), size=min(p["n_calcifications"], len(cand)), replace=False, p=w / w.sum()
    )
    for c in cand[pick]:
        mx.popcorn(
            scene,
            c,
            size_mm=p["calc_size_mm"] * uniform(rng, 0.5, 1.5),
            hu=p["calc_hu"] * uniform(rng, 0.6, 1.2),
            rng=rng,
        )
    for c in mx.points_in_ellipsoid(rng, p["n_bone_fragments"], radii * 0.8, regular=0):
        r = uniform(rng, 1.0, 3.0)
        fc = scene.frame(c, radius=r + 3.0)
        if fc is not None:
            irregular = sphere(fc, r) + 0.8 * fc.take(scene.field(3.0))
            scene.paint(fc, irregular, p["trabecular_hu"] * uniform(rng, 1.0, 2.0), mode="max")


def _patch_index(scene, pts_scene) -> np.ndarray:
    """Nearest voxel (clamped) of scene points."""
    P = scene.centre[None, :] + pts_scene @ scene.R.T
    idx = [
        np.clip(np.round((P[:, k] - scene.grid[k][0]) / scene.spacing[k]), 0, scene.shape[k] - 1)
        for k in range(3)
    ]
    return np.stack(idx, 1).astype(np.intp)


# -- mixed metastasis ------------------------------------------------------------------------------
def sample_mixed_metastasis(rng, d):
    size = uniform(rng, 10, 40)
    return {
        "size_mm": size,
        "lytic_fraction": uniform(rng, 0.3, 0.65),
        "sclerotic_hu": uniform(rng, 600, 1250),
        "tumour_offset_hu": uniform(rng, -10, 15),
        "heterogeneity_mm": uniform(rng, 3.0, 7.0),
        "margin_softness": uniform(rng, 1.5, 3.0),
        "cortical_breach": int(rng.random() < 0.4),
        "bone_radius_mm": max(uniform(rng, 16, 32), 0.5 * size + 3),
        "depth_mm": uniform(rng, -4, 6),
    }


def paint_mixed_metastasis(scene, p):
    """Within a trabecular bone, an ill-defined region where lytic holes (tumour soft tissue)
    alternate with sclerotic patches (seed 000: breast metastases, "plages lytiques et zones
    ostéocondensantes")."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    depth = p["depth_mm"] + (0.0 if p["cortical_breach"] else 3.0 + p["cortex_mm"])
    b = an.bone(scene, p, gap_mm=-(R + depth), radius_mm=p["bone_radius_mm"])
    f = scene.frame(radius=R + 8.0)
    if f is None:
        return
    region = ellipsoid(
        f, R, R * uniform(rng, 0.75, 1.0), R * uniform(rng, 0.8, 1.2)
    ) + 0.15 * R * f.take(scene.field(max(4.0, R)))
    if not p["cortical_breach"]:  # keep the lesion inside the medulla
        region = np.maximum(region, b.distance(f) - (b.radius - b.cortex))
    occ = scene.occupancy(region, soft=p["margin_softness"])
    h = f.take(scene.field(p["heterogeneity_mm"]))
    thr = float(ndtri(p["lytic_fraction"]))
    scl = an.smooth_step(h - thr, 0.6)
    lytic = p["muscle_hu"] + p["tumour_offset_hu"]
    val = lytic + (p["sclerotic_hu"] - lytic) * scl + 30 * f.take(scene.field(2.5))
    scene.paint_occ(f, occ, val)


# -- malignant calcified pleural plaque ------------------------------------------------------------
def sample_pleural_plaque_malignant(rng, d):
    return {
        "size_mm": uniform(rng, 20, 60),
        "plaque_thickness_mm": uniform(rng, 2.0, 7.0),
        "irregularity": uniform(rng, 0.5, 1.0),
        "plaque_hu": uniform(rng, 300, 850),
        "effusion_mm": uniform(rng, 8, 40),
        "pleural_thickening_mm": uniform(rng, 2, 8),
        "rib_radius_mm": uniform(rng, 5, 8),
        "rib_offset_mm": uniform(rng, 3, 10),
        "rib_sclerosis": uniform(rng, 0.2, 1.0),
        "chest_wall_muscle_mm": uniform(rng, 2, 10),  # then subcutaneous fat
    }


def paint_pleural_plaque_malignant(scene, p):
    """Chest wall (u < 0): muscle and fat with a rib; parietal pleura at u = 0, thickened and
    nodular, carrying an irregular calcified plaque; pleural effusion (u > 0) and collapsed lung
    beyond it. The rib under the plaque is invaded (mottled sclerosis, breached cortex)."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    fr = scene.full()
    u = fr.a
    bump = scene.field(9.0)
    # Effusion, then atelectatic lung (a soft-tissue density) beyond it.
    scene.paint(fr, -u, p["fluid_hu"] + 3 * scene.field(4.0))
    scene.paint(fr, p["effusion_mm"] - u, p["muscle_hu"] + 5 * scene.field(4.0))
    # Thickened nodular pleura; the plaque lies within it.
    t = p["pleural_thickening_mm"] * (1 + 0.5 * bump)
    extent = 0.5 * p["size_mm"]
    ecc = uniform(rng, 0.6, 1.0)
    lat = np.sqrt((fr.b / ecc) ** 2 + fr.c**2)
    footprint = lat - extent * (1 + 0.3 * scene.field(8.0))
    scene.paint(
        fr, np.maximum(np.abs(u) - 0.5 * np.maximum(t, 1.0), footprint - 8.0), p["muscle_hu"] + 10
    )
    th = p["plaque_thickness_mm"] * (1 + 0.6 * p["irregularity"] * scene.field(5.0))
    sheet = np.abs(u - p["irregularity"] * 1.5 * bump) - 0.5 * np.maximum(th, 0.3)
    plaque = np.maximum(sheet, footprint)
    val = p["plaque_hu"] * (1 + 0.25 * scene.field(3.0))
    scene.paint(fr, plaque, val, soft=1.3)
    # Rib just outside the pleura, running along w, partly invaded.
    rr = p["rib_radius_mm"]
    ua = -(p["rib_offset_mm"] + rr)
    dist = np.sqrt((u - ua) ** 2 + (fr.b - uniform(rng, -10, 10)) ** 2)
    scene.paint(fr, dist - rr, p["cortical_hu"] * 0.9)
    marrow = p["trabecular_hu"] + an.trabecular_texture(scene, p)
    inv = an.smooth_step(scene.field(4.0) + p["rib_sclerosis"] - 0.5, 0.7)
    marrow = marrow + inv * (650 * p["rib_sclerosis"])
    scene.paint(fr, dist - rr + min(p["cortex_mm"], 0.35 * rr), marrow)
    # Subcutaneous fat outside the chest-wall muscles (u below that depth).
    an.fat_layer(
        scene,
        p,
        offset_mm=p["rib_offset_mm"] + 2 * rr + p["chest_wall_muscle_mm"],
        normal=(-1.0, 0.0, 0.0),
    )


# -- nodular-sclerosis Hodgkin lymphoma ------------------------------------------------------------
def sample_hodgkin_reticular(rng, d):
    return {
        "size_mm": uniform(rng, 20, 50),
        "mass_offset_hu": uniform(rng, 0, 20),  # fibrotic: as dense as muscle or a little more
        "line_thickness_mm": uniform(rng, 0.9, 1.6),
        "network_scale_mm": uniform(rng, 5, 11),
        "calc_hu": uniform(rng, 300, 750),
        "coverage": uniform(rng, 0.4, 0.8),
        "local_fat_fraction": uniform(rng, 0.45, 0.85),  # mediastinal fat
        "rib_gap_mm": uniform(rng, 2, 25),
        "rib_radius_mm": uniform(rng, 5, 8),
    }


def paint_hodgkin_reticular(scene, p):
    """A lobulated fibrotic mass in mediastinal fat carrying linear and reticular calcification
    (seed 000: "aspect linéaire ou réticulé"), a rib at the chest wall nearby."""
    rng = scene.rng
    an.soft_tissue(scene, p, fat_fraction=p["local_fat_fraction"])
    R = 0.5 * p["size_mm"]
    an.neighbour_bone(
        scene,
        p,
        clearance_mm=R,
        gap_mm=p["rib_gap_mm"],
        radius_mm=p["rib_radius_mm"],
        marrow_hu=p["trabecular_hu"] + 150,
    )
    radii = (R * uniform(rng, 0.6, 0.9), R * uniform(rng, 0.75, 1.0), R)
    fr, sdf = an.mass(
        scene,
        p,
        radii=radii,
        hu=p["muscle_hu"] + p["mass_offset_hu"],
        lobulation=3.0,
        scale=9.0,
        texture=6.0,
    )
    if fr is None:
        return
    mx.reticular(
        scene,
        fr,
        scene.occupancy(sdf + 1.0),
        scale_mm=p["network_scale_mm"],
        thickness_mm=p["line_thickness_mm"],
        hu=p["calc_hu"],
        coverage=p["coverage"],
    )


# -- dystrophic calcification of tumour necrosis ---------------------------------------------------
def sample_tumour_necrosis_dystrophic(rng, d):
    return {
        "size_mm": uniform(rng, 10, 50),
        "mass_offset_hu": uniform(rng, -10, 10),
        "necrosis_fraction": uniform(rng, 0.3, 0.65),
        "n_blobs": int(rng.integers(3, 10)),
        "blob_size_mm": uniform(rng, 3.0, 7.0),
        "calc_hu": uniform(rng, 300, 800),
        "eccentricity": uniform(rng, 0.3, 0.65),
        "bone_gap_mm": uniform(rng, 2, 40),
    }


def paint_tumour_necrosis_dystrophic(scene, p):
    """A soft-tissue sarcoma (Ewing) with an irregular necrotic core and amorphous, ill-defined
    calcification clustered eccentrically in it."""
    rng = scene.rng
    an.soft_tissue(scene, p)
    R = 0.5 * p["size_mm"]
    an.neighbour_bone(scene, p, clearance_mm=R, gap_mm=p["bone_gap_mm"],
                      radius_mm=uniform(rng, 15, 30))
    radii = np.array([R * uniform(rng, 0.7, 0.95), R * uniform(rng, 0.75, 1.0), R])
    fr, sdf = an.mass(
        scene,
        p,
        radii=radii,
        hu=p["muscle_hu"] + p["mass_offset_hu"],
        lobulation=2.5,
        scale=9.0,
        texture=6.0,
        soft=1.5,
    )
    if fr is None:
        return
    nec = sdf + (1 - p["necrosis_fraction"]) * R * 0.8 + 2.0 * fr.take(scene.field(5.0))
    scene.paint(fr, nec, p["fluid_hu"] + 15 + 5 * fr.take(scene.field(3.0)), soft=2.0)
    hub = random_unit(rng) * p["eccentricity"] * radii
    for _ in range(p["n_blobs"]):
        c = hub + rng.standard_normal(3) * 0.18 * R
        r = 0.5 * p["blob_size_mm"] * uniform(rng, 0.5, 1.4)
        fc = scene.frame(c, radius=r + 4.0)
        if fc is None:
            continue
        blob = sphere(fc, r) + 0.6 * r * fc.take(scene.field(2.5))
        scene.paint(fc, blob, p["calc_hu"] * uniform(rng, 0.6, 1.2), soft=2.0, mode="max")


MALIGNANT = {
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
