"""Background anatomy shared by the patterns: soft tissue, bone, soft-tissue masses, fluid.

Tissue densities come from the sample's nuisance parameters, drawn from the ranges of the HU table
in docs/patterns.md (general radiology): fat -120..-80, muscle 35..60, fluid 0..20, trabecular
bone 200..400, cortical bone 1000..1900. Every pattern uses these same draws, so a tissue's HU never
tells the class; only the geometry (which tissue is where) belongs to the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from calcinet.data.phantom.shapes import F32, Frame, Scene, basis, ellipsoid

# Hyaline cartilage and tendon are a little denser than muscle on CT (general radiology: cartilage
# ~80-110 HU, tendon ~75-115 HU); expressed as offsets so they follow the sampled muscle HU.
CARTILAGE_OVER_MUSCLE_HU = 45.0
TENDON_OVER_MUSCLE_HU = 35.0
# Unclotted blood ~40-50 HU, layered (haematocrit) blood ~60-80 HU.
BLOOD_HU = 45.0


def smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    """0 -> 1 ramp of the given width centred on x == 0 (a soft threshold)."""
    return np.clip(0.5 + x * (1.0 / width), 0.0, 1.0)


def soft_tissue(scene: Scene, p: dict, fat_fraction: float | None = None) -> None:
    """Fill the patch with muscle marbled by fat (the high values of a smooth random field).

    The fat share is the sample's `fat_fraction` unless the pattern's context overrides it
    (pelvic, mediastinal or perivascular fat); a weak texture stands in for fibre bundles."""
    ff = p["fat_fraction"] if fat_fraction is None else fat_fraction
    f = scene.field(10.0)
    thr = float(ndtri(1.0 - np.clip(ff, 1e-3, 1 - 1e-3)))  # quantile of a unit Gaussian field
    fat = smooth_step(f - thr, 0.4)
    tex = scene.field(2.5)
    img = scene.img
    img[...] = p["muscle_hu"] + (p["fat_hu"] - p["muscle_hu"]) * fat + p["texture_hu"] * tex
    # Subcutaneous fat beyond `subcut_fat_mm` on the side away from the bone (+u); the patterns'
    # bones and masses are drawn afterwards and displace it.
    fat_layer(scene, p, offset_mm=p["subcut_fat_mm"])
    if p.get("vessel"):
        vessel(scene, p)
    scene.mark_background()


def vessel(scene: Scene, p: dict) -> None:
    """A non-calcified vessel crossing the patch (domain randomisation: both classes can have
    one): a cylinder of `vessel_radius_mm` along the drawn direction, passing
    `vessel_offset_mm` from the lesion centre, filled with blood or contrast (`vessel_hu`)."""
    d = np.array([p["vessel_dir_u"], p["vessel_dir_v"], p["vessel_dir_w"]], dtype=np.float64)
    axes = basis(d)
    origin = p["vessel_offset_mm"] * axes[:, 0]
    fr = scene.frame(origin, axes)
    r = np.sqrt(fr.a * fr.a + fr.b * fr.b)
    scene.paint(fr, r - p["vessel_radius_mm"], p["vessel_hu"])


def fat_layer(
    scene: Scene, p: dict, *, offset_mm: float, normal=(1.0, 0.0, 0.0),
    tissue_hu: float | None = None,
) -> None:
    """Subcutaneous / pelvic fat (or `tissue_hu`) filling the half space
    {x : x . normal > offset_mm} (scene mm), its boundary gently undulating."""
    fr = scene.full()
    n = np.asarray(normal, dtype=F32)
    d = offset_mm - (n[0] * fr.a + n[1] * fr.b + n[2] * fr.c)
    if float(d.min()) > 6.0:  # wholly outside the patch
        return
    hu = p["fat_hu"] if tissue_hu is None else tissue_hu
    scene.paint(fr, d + 2.0 * scene.field(12.0), hu + p["texture_hu"] * 0.5 * scene.field(3.0))


@dataclass
class Bone:
    """A long bone / vertebral body modelled as a cylinder along scene w. Its axis passes through
    (u, v) = (axis_u, 0); `radius` is the outer (periosteal) radius, `cortex` the cortical
    thickness, both mm."""

    axis_u: float
    radius: float
    cortex: float

    def distance(self, fr: Frame) -> np.ndarray:
        """Distance from the bone's axis (mm) of the voxels of a scene-aligned frame."""
        assert fr.aligned, "Bone.distance needs a frame with the scene's axes"
        return np.sqrt((fr.a + (fr.origin[0] - self.axis_u)) ** 2 + (fr.b + fr.origin[1]) ** 2)

    def radial(self, point) -> np.ndarray:
        """Unit vector (scene) perpendicular to the bone surface at the level of `point`."""
        d = np.array([point[0] - self.axis_u, point[1], 0.0])
        return d / (np.linalg.norm(d) + 1e-9)


def bone(
    scene: Scene,
    p: dict,
    *,
    gap_mm: float,
    radius_mm: float,
    marrow_hu: float | None = None,
) -> Bone:
    """Paint a bone whose nearest surface lies `gap_mm` below the lesion centre along -u (a
    negative gap puts the lesion centre that deep inside the bone). Cortex: the sampled cortical
    HU and thickness. Medulla: trabecular bone, with a mottled texture for the trabeculae."""
    cortex = min(p["cortex_mm"], 0.4 * radius_mm)
    b = Bone(axis_u=-(gap_mm + radius_mm), radius=radius_mm, cortex=cortex)
    fr = scene.full()
    # Skip the work when the bone lies wholly outside the patch.
    reach = float(np.linalg.norm(np.asarray(scene.shape) * np.asarray(scene.spacing)) / 2)
    if abs(b.axis_u) - radius_mm > reach + float(np.linalg.norm(scene.centre)):
        return b
    r = b.distance(fr)
    scene.paint(fr, r - radius_mm, p["cortical_hu"])
    marrow = p["trabecular_hu"] if marrow_hu is None else marrow_hu
    tex = trabecular_texture(scene, p)
    scene.paint(fr, r - (radius_mm - cortex), marrow + tex)
    return b


def neighbour_bone(
    scene: Scene,
    p: dict,
    *,
    clearance_mm: float,
    gap_mm: float,
    radius_mm: float,
    marrow_hu: float | None = None,
) -> Bone | None:
    """The bone beside a finding of `patterns.NEIGHBOUR_BONE_PATTERNS`, painted by :func:`bone`
    with its surface `clearance_mm + gap_mm` below the lesion centre (`clearance_mm`: how far the
    finding itself reaches that way), or nothing when the sample's `bone_in_patch` is 0.

    When the flag was drawn (params without it render as before), a drawn bone is brought close
    enough to lie in the patch whatever the orientation: `gap_mm` is cut so that the surface is
    at most the inscribed sphere's radius less the finding's offset from the patch centre and
    2 mm away, but never to less than 2 mm off the finding (a bone under a large finding stays
    apart from it rather than run into it)."""
    if "bone_in_patch" in p:
        if not p["bone_in_patch"]:
            return None
        reach = 0.5 * float(np.min(np.asarray(scene.shape) * np.asarray(scene.spacing)))
        reach -= float(np.linalg.norm(scene.centre)) + 2.0
        gap_mm = min(gap_mm, max(2.0, reach - clearance_mm))
    return bone(scene, p, gap_mm=clearance_mm + gap_mm, radius_mm=radius_mm, marrow_hu=marrow_hu)


def trabecular_texture(scene: Scene, p: dict) -> np.ndarray:
    """Zero-mean mottling of cancellous bone: trabeculae are below CT resolution, so what shows is
    a grainy texture a couple of millimetres across (amplitude from the nuisance draw)."""
    return p["trabecular_texture_hu"] * scene.field(2.2)


def mass(
    scene: Scene,
    p: dict,
    *,
    radii,
    hu: float,
    origin=(0.0, 0.0, 0.0),
    axes=None,
    lobulation: float = 3.0,
    scale: float = 12.0,
    texture: float = 6.0,
    soft: float = 1.0,
):
    """A lobulated soft-tissue mass; returns its frame and SDF for later use (masks, matrices)."""
    rmax = max(radii) + 2.5 * lobulation + 2.0
    fr = scene.frame(origin, axes, radius=rmax)
    if fr is None:
        return None, None
    d = ellipsoid(fr, *radii)
    if lobulation > 0:
        d = d + lobulation * fr.take(scene.field(scale))
    val = hu + texture * fr.take(scene.field(3.0))
    scene.paint(fr, d, val, soft=soft)
    return fr, d


def fluid_levels(
    scene: Scene, fr: Frame, inside: np.ndarray, *, level_mm: float, top_hu: float,
    bottom_hu: float,
) -> None:
    """Fill `inside` (an occupancy) with two layers split by a horizontal level (gravity along the
    patch's +y: the patient lies supine), `level_mm` above the frame origin: fluid-fluid levels
    (blood products) or fluid-calcium levels (milk of calcium)."""
    h = scene.height(fr)
    below = smooth_step(level_mm - h, scene.pv)
    scene.paint_occ(fr, inside, top_hu + (bottom_hu - top_hu) * below)
