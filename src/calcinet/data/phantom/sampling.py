"""Drawing a sample's parameters, and rendering them into a CT patch.

A sample is fully described by the flat dict `sample_params(index, seed, config)` returns; `render`
turns that dict into voxels and is deterministic (its randomness comes from `render_seed`). The
class is drawn first, then a pattern within the class; morphology, nuisance factors and the render
seed come from separate child streams of `SeedSequence([seed, index])`, so the nuisance draws do
not even see which class or pattern was chosen: they are identically distributed by construction.
One flag is set once the pattern is known: `bone_in_patch` (0: a pattern whose bone is only a
neighbour leaves it out), with the same probability for every such pattern of either class.
The renderer family (`params["renderer"]`: "voxel" or one of `config.FAMILY_MODULES`) comes from a
fifth child stream, drawn after the pattern among the config's families that cover it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calcinet.data.phantom.backgrounds import background_patch, draw_location, insert_finding
from calcinet.data.phantom.benign import BENIGN
from calcinet.data.phantom.config import FAMILY_MODULES, RENDERERS, PhantomConfig, family
from calcinet.data.phantom.draws import quaternion_matrix
from calcinet.data.phantom.malignant import MALIGNANT
from calcinet.data.phantom.patterns import (
    BENIGN_PATTERNS,
    MALIGNANT_PATTERNS,
    NEIGHBOUR_BONE_PATTERNS,
    PATTERNS,
)
from calcinet.data.phantom.physics import acquire
from calcinet.data.phantom.shapes import Scene

LESIONS = {**BENIGN, **MALIGNANT}
# Names in the params that are nuisance factors: drawn from the same distribution whatever the
# class, so none of them may predict the label (tests/data/test_phantom.py checks it).
NUISANCE_KEYS: tuple[str, ...] = (
    "noise_std_hu",
    "kernel",
    "slice_thickness_mm",
    "slice_phase",
    "blur_sigma_mm",
    "hu_offset_hu",
    "jitter_z_mm",
    "jitter_y_mm",
    "jitter_x_mm",
    "rot_qw",
    "rot_qx",
    "rot_qy",
    "rot_qz",
    "fat_hu",
    "muscle_hu",
    "fluid_hu",
    "trabecular_hu",
    "cortical_hu",
    "fat_fraction",
    "subcut_fat_mm",
    "cortex_mm",
    "texture_hu",
    "trabecular_texture_hu",
    "hu_scale",
    "noise_correlation_mm",
    "blur_z_ratio",
    "vessel",
    "vessel_hu",
    "vessel_radius_mm",
    "vessel_offset_mm",
    "vessel_dir_u",
    "vessel_dir_v",
    "vessel_dir_w",
)

# Canonical pose (orientation quaternion = identity): the scene's long axis w runs along the
# scanner z axis (a limb or vessel seen in cross-section on axial slices), u along y, v along x.
CANONICAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _round(v: Any) -> Any:
    return round(float(v), 4) if isinstance(v, float | np.floating) else v


def sample_nuisance(rng: np.random.Generator, config: PhantomConfig) -> dict[str, Any]:
    """Scanner, pose and background-tissue factors; the HU ranges follow the table of
    docs/patterns.md (general radiology)."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    j = config.position_jitter_mm
    if config.random_orientation:
        q = rng.standard_normal(4)  # a normalised 4D Gaussian is a uniform random rotation
        q = q / np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
    else:
        rng.standard_normal(4)  # keep the stream aligned with the random-orientation case
        q = np.array([1.0, 0.0, 0.0, 0.0])
    out = {
        "noise_std_hu": u(*config.noise_std_hu),
        "kernel": str(config.kernels[int(rng.integers(len(config.kernels)))]),
        "slice_thickness_mm": u(*config.slice_thickness_mm),
        "slice_phase": u(0.0, 1.0),
        "blur_sigma_mm": u(*config.blur_sigma_mm),
        "hu_offset_hu": u(*config.hu_offset_hu),
        "jitter_z_mm": u(-j, j),
        "jitter_y_mm": u(-j, j),
        "jitter_x_mm": u(-j, j),
        "rot_qw": float(q[0]),
        "rot_qx": float(q[1]),
        "rot_qy": float(q[2]),
        "rot_qz": float(q[3]),
        "fat_hu": u(-120, -80),
        "muscle_hu": u(35, 60),
        "fluid_hu": u(0, 20),
        "trabecular_hu": u(200, 400),
        "cortical_hu": u(1000, 1900),
        "fat_fraction": u(0.02, 0.7),
        "subcut_fat_mm": u(6, 45),
        "cortex_mm": u(1.5, 4.0),
        "texture_hu": u(2, 12),
        "trabecular_texture_hu": u(40, 90),
    }
    # Domain randomisation, drawn after the factors above so that their values stay as they were.
    d = rng.standard_normal(3)
    d = d / np.linalg.norm(d)
    out.update(
        {
            "hu_scale": u(*config.hu_scale),
            "noise_correlation_mm": u(*config.noise_correlation_mm),
            "blur_z_ratio": u(*config.blur_z_ratio),
            "vessel": int(rng.random() < config.vessel_prob),
            "vessel_hu": u(*config.vessel_hu),
            "vessel_radius_mm": u(1.5, 5.0),
            "vessel_offset_mm": u(3.0, 20.0),
            "vessel_dir_u": float(d[0]),
            "vessel_dir_v": float(d[1]),
            "vessel_dir_w": float(d[2]),
        }
    )
    # Whether a neighbouring bone is in the patch: a uniform draw here, turned into the flag
    # `bone_in_patch` by `sample_params` once the pattern is known (drawn last, as above).
    out["bone_draw"] = float(rng.random())
    return out


def _check_index_seed(index: Any, seed: Any) -> None:
    for name, v in (("index", index), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"sample_params: {name}={v!r} is invalid: expected an integer >= 0")


def sample_params(
    index: int, seed: int, config: PhantomConfig | None = None, pattern: str | None = None
) -> dict[str, Any]:
    """Draw sample `index` of the dataset `seed`: class, pattern, morphology, nuisance factors and
    `render_seed`, as a flat JSON-serialisable dict. Cheap (no voxels). `pattern` forces one
    pattern (its class follows), for figures and tests."""
    config = PhantomConfig() if config is None else config
    _check_index_seed(index, seed)
    # Children 0-3 are those of the single-family phantom; child 4 only draws the renderer,
    # child 5 the background (synthetic or which real scan, and where).
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(6)
    s_class, s_morph, s_nuis, s_render, s_renderer = children[:5]
    rc = np.random.default_rng(s_class)
    draw_label = int(rc.random() < config.malignant_fraction)
    if pattern is None:
        ids = MALIGNANT_PATTERNS if draw_label else BENIGN_PATTERNS
        w = np.array([config.pattern_weights()[i] for i in ids])
        pattern = str(ids[int(rc.choice(len(ids), p=w / w.sum()))])
    elif pattern not in PATTERNS:
        raise ValueError(f"sample_params: pattern={pattern!r} is unknown; valid: {list(PATTERNS)}")
    else:
        rc.random()
    true_label = PATTERNS[pattern].label
    flip = bool(rc.random() < config.label_noise)
    families = config.renderers_for(pattern)
    if not families:
        raise ValueError(
            f"sample_params: pattern={pattern!r} cannot be rendered by "
            f"renderers={config.renderers!r}"
        )
    names = list(families)
    w = np.array([families[n] for n in names])
    renderer = names[int(np.random.default_rng(s_renderer).choice(len(names), p=w / w.sum()))]
    if renderer != "voxel":
        module = family(renderer)
        morph = module.sample_morphology(pattern, np.random.default_rng(s_morph), config.difficulty)
        nuisance = module.sample_nuisance(np.random.default_rng(s_nuis), config)
    else:
        sampler, _ = LESIONS[pattern]
        morph = sampler(np.random.default_rng(s_morph), config.difficulty)
        nuisance = sample_nuisance(np.random.default_rng(s_nuis), config)
        # 0: a pattern whose bone is only a neighbour is drawn without it (the same probability
        # for all such patterns); the others keep their bone.
        bone_draw = nuisance.pop("bone_draw")
        absent = pattern in NEIGHBOUR_BONE_PATTERNS and bone_draw < config.bone_absent_prob
        nuisance["bone_in_patch"] = int(not absent)
    params: dict[str, Any] = {
        "pattern": pattern,
        "renderer": renderer,
        "label": int(true_label ^ flip),
        "true_label": int(true_label),
        "difficulty": config.difficulty,
        "render_seed": int(s_render.generate_state(1, np.uint32)[0]),
    }
    params.update({k: _round(v) for k, v in nuisance.items()})
    params.update({k: _round(v) for k, v in morph.items()})
    params.update(draw_location(np.random.default_rng(children[5]), config))
    return params


def render(params: dict[str, Any], config: PhantomConfig | None = None) -> np.ndarray:
    """Voxels (float32 HU, shape `config.patch_size`, axes (z, y, x)) of the sample `params`
    describes. Only the patch geometry is read from `config`; everything else is in `params`,
    whose "renderer" ("voxel" when absent) picks the family.
    On a real background (`params["background"]` a scan path) the painted structures are
    inserted into the scan's patch (`backgrounds.insert_finding`) instead of passing through the
    acquisition model; the scanner nuisance factors then go unused."""
    config = PhantomConfig() if config is None else config
    pattern = params.get("pattern")
    renderer = params.get("renderer", "voxel")
    if renderer != "voxel":
        if renderer not in FAMILY_MODULES:
            raise ValueError(
                f"render: params['renderer']={renderer!r} is unknown; valid: {list(RENDERERS)}"
            )
        module = family(renderer)
        if pattern not in module.COVERED:
            raise ValueError(
                f"render: params['pattern']={pattern!r} is not covered by the {renderer} "
                f"renderer; covered: {list(module.COVERED)}"
            )
        s_object, s_scanner = np.random.SeedSequence(int(params["render_seed"])).spawn(2)
        obj, cover, tissue = module.render_layers(params, config, np.random.default_rng(s_object))
        if params.get("background", "synthetic") != "synthetic":
            scan, patch, z_start = background_patch(params, config)
            return insert_finding(patch, unmix(obj, tissue, cover), cover, scan, z_start)
        return module.acquire(obj, params, config.spacing, np.random.default_rng(s_scanner))
    if pattern not in LESIONS:
        raise ValueError(
            f"render: params['pattern']={pattern!r} is unknown; valid: {list(PATTERNS)}"
        )
    q = (params["rot_qw"], params["rot_qx"], params["rot_qy"], params["rot_qz"])
    rotation = quaternion_matrix(q) @ CANONICAL
    centre = (params["jitter_z_mm"], params["jitter_y_mm"], params["jitter_x_mm"])
    s_scene, s_noise = np.random.SeedSequence(int(params["render_seed"])).spawn(2)
    scene = Scene(
        config.patch_size, config.spacing, rotation, centre, np.random.default_rng(s_scene)
    )
    _, painter = LESIONS[pattern]
    painter(scene, params)
    if params.get("background", "synthetic") != "synthetic":
        scan, patch, z_start = background_patch(params, config)
        return insert_finding(patch, *scene_object(scene), scan, z_start)
    return acquire(scene.img, params, config.spacing, np.random.default_rng(s_noise))


def scene_object(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(obj, cover) of a painted scene: the structures painted over the background tissue, un-
    mixed from it (img = (1 - cover) * base + cover * obj), and the fraction they occupy."""
    cover = scene.cover
    if scene.base is None:  # nothing declared background: the whole image is the object
        return scene.img.copy(), np.ones_like(cover)
    return unmix(scene.img, scene.base, cover), cover.copy()


def unmix(image: np.ndarray, base: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """The structures alone where `cover` > 0, from `image = (1 - cover) * base + cover * obj`
    (partial-volume voxels hold a mix; inserting the mix itself would weigh their edge twice);
    `image` elsewhere."""
    some = cover > 0
    obj = image.copy()
    obj[some] = base[some] + (image[some] - base[some]) / cover[some]
    return obj


def generate_sample(index: int, seed: int, config: PhantomConfig | None = None) -> dict[str, Any]:
    """One training record: {"image": (D, H, W) float32 HU, "label", "pattern", "params"}."""
    config = PhantomConfig() if config is None else config
    params = sample_params(index, seed, config)
    return {
        "image": render(params, config),
        "label": params["label"],
        "pattern": params["pattern"],
        "params": params,
    }
