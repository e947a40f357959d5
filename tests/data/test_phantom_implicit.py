"""The implicit renderer family: API contract, pattern facts of docs/patterns.md on the ideal
object and its scanner model's noise level (its integration with the phantom and the
class-independence of its nuisances: tests/data/test_phantom_families.py)."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from calcinet.data.phantom import (
    PATTERNS,
    PhantomConfig,
    generate_sample,
    implicit,
    sample_params,
)
from calcinet.data.phantom.implicit import (
    COVERED,
    NUISANCE_KEYS,
    acquire,
    render_deposits,
    render_object,
    sample_morphology,
    sample_nuisance,
)

SMALL = PhantomConfig(patch_size=(32, 32, 32), spacing=(1.5, 1.5, 1.5), renderers="implicit")
# Centred, canonical pose: the finding sits at the patch centre.
CLEAN = replace(SMALL, position_jitter_mm=0.0, random_orientation=False)


def _params(pattern: str, seed: int, config=CLEAN, difficulty=0.5, **overrides) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "pattern": pattern,
        **sample_nuisance(rng, config),
        **sample_morphology(pattern, rng, difficulty),
        **overrides,
    }


def _radius_mm(config) -> np.ndarray:
    axes = [
        (np.arange(n) - (n - 1) / 2) * s
        for n, s in zip(config.patch_size, config.spacing, strict=True)
    ]
    return np.sqrt(sum(g**2 for g in np.meshgrid(*axes, indexing="ij")))


def test_covers_all_twenty_patterns_with_both_classes() -> None:
    assert set(COVERED) == set(PATTERNS)
    labels = [PATTERNS[p].label for p in COVERED]
    assert labels.count(0) >= 5 and labels.count(1) >= 5


def test_same_index_and_seed_give_identical_samples() -> None:
    a, b = generate_sample(4, 9, SMALL), generate_sample(4, 9, SMALL)
    assert a["params"] == b["params"] and a["params"]["renderer"] == "implicit"
    np.testing.assert_array_equal(a["image"], b["image"])
    c = generate_sample(5, 9, SMALL)
    assert not np.array_equal(a["image"], c["image"])


@pytest.mark.parametrize("pid", list(COVERED))
def test_every_pattern_renders_with_its_label(pid: str) -> None:
    label = PATTERNS[pid].label
    config = replace(SMALL, patterns=[pid], malignant_fraction=float(label))
    s = generate_sample(0, 1, config)
    assert s["pattern"] == pid and s["label"] == label == s["params"]["true_label"]
    img = s["image"]
    assert img.shape == (32, 32, 32) and img.dtype == np.float32 and np.isfinite(img).all()
    assert img.min() > -1100 and img.max() < 2600
    obj, cover = render_object(s["params"], config, np.random.default_rng(0))
    assert obj.shape == cover.shape == (32, 32, 32)
    assert obj.dtype == cover.dtype == np.float32
    assert cover.min() >= 0.0 and cover.max() <= 1.0 and cover.max() > 0.0
    assert obj.max() > 150, "every pattern carries a calcification or bone"


def test_params_are_flat_json_and_names_never_collide() -> None:
    import json

    p = sample_params(0, 0, SMALL)
    assert json.loads(json.dumps(p)) == p
    for pid in COVERED:
        m = sample_morphology(pid, np.random.default_rng(1), 0.5)
        assert not set(m) & {"label", "true_label", "pattern", "renderer", *NUISANCE_KEYS}, pid


# -- facts of patterns.md on the ideal object ------------------------------------------------------
def test_blastic_metastasis_is_ivory_above_1000_hu_even_at_the_lowest_deposit_density() -> None:
    for seed in range(3):
        p = _params("blastic_metastasis", seed, deposit_density=0.0)
        obj, _ = render_object(p, CLEAN, np.random.default_rng(seed))
        core = obj[_radius_mm(CLEAN) < 2.0]  # the lesion centre, 5 mm or more from its margin
        assert core.min() > 1000, core.min()


def test_enchondroma_rings_are_abundant_and_chondrosarcoma_rings_sparse() -> None:
    """ "abundant, organised rings-and-arcs" against "sparse, anarchic": count separate deposits
    in the central 9 mm ball (inside the medulla, away from the cortex)."""

    def deposits(pid: str, seed: int) -> int:
        p = _params(pid, seed, difficulty=0.0, deposit_density=1.0, bone_trabecular_hu=200.0)
        p["size_mm"] = 40.0
        obj, _ = render_object(p, CLEAN, np.random.default_rng(seed))
        mask = (obj > 400) & (_radius_mm(CLEAN) < 9.0)
        return ndimage.label(mask)[1]

    enchondroma = [deposits("enchondroma", s) for s in range(3)]
    sarcoma = [deposits("chondrosarcoma_high_grade", s) for s in range(3)]
    assert min(enchondroma) >= 8, enchondroma
    assert np.mean(enchondroma) > 2 * np.mean(sarcoma), (enchondroma, sarcoma)


def test_phlebolith_has_a_dense_rim_and_a_lucent_centre() -> None:
    p = _params("phlebolith", 0, deposit_density=1.0, size_mm=6.0, rim_fraction=0.4)
    config = replace(CLEAN, spacing=(0.5, 0.5, 0.5))
    obj, _ = render_object(p, config, np.random.default_rng(0))
    r = _radius_mm(config)
    assert obj[r < 0.6].mean() == pytest.approx(p["centre_hu"], abs=5)
    assert obj[(r > 2.1) & (r < 2.6)].mean() == pytest.approx(1500, abs=20)  # 600 + 1 * 900


def test_cover_is_zero_far_from_a_small_finding() -> None:
    p = _params("injection_granuloma", 3, size_mm=8.0)
    obj, cover = render_object(p, CLEAN, np.random.default_rng(0))
    r = _radius_mm(CLEAN)
    assert (cover[r > 8.0] == 0).all()
    assert cover[r < 2.0].min() == 1.0
    # Partial volume: supersampled edge voxels are neither empty nor full.
    assert ((cover > 0.05) & (cover < 0.95)).sum() > 50


# -- deposits stay visible after the scanner, at the default geometry ---------------------------
DEFAULT = PhantomConfig(renderers="implicit")  # 48^3 voxels of 1.25 mm, default difficulty
# Lines, rings and strands 1-2 mm thick (chondrocalcinosis "lines 1-2 mm thick", chondroid
# rings, reticular strands, spicules, eggshells): partial volume and the scanner blur dim them,
# but calcium (150-1500 HU) stays far above soft tissue (35-60 HU): >= 200 HU.
THIN = {
    "chondrocalcinosis",
    "enchondroma",
    "chondrosarcoma_high_grade",
    "hodgkin_reticular",
    "osteosarcoma_sunburst",
    "osteosarcoma_telangiectatic",
}
N_SCANS = 6


def _draw_scans(pid: str):
    """``N_SCANS`` samples of ``pid`` at the default geometry and nuisance ranges: the scanned
    image and the fraction of each voxel taken by the finding's deposits."""
    config = replace(DEFAULT, patterns=[pid], malignant_fraction=float(PATTERNS[pid].label))
    out = []
    for i in range(N_SCANS):
        p = sample_params(i, 11, config)
        seed = int(p["render_seed"])
        obj, deposit = render_deposits(p, config, np.random.default_rng(seed))
        out.append((acquire(obj, p, config.spacing, np.random.default_rng(seed + 1)), deposit, p))
    return out


@functools.cache
def _scans(pid: str):
    return _draw_scans(pid)


@pytest.mark.parametrize("pid", list(COVERED))
def test_deposits_reach_calcium_hu_after_the_scanner(pid: str) -> None:
    """patterns.md: "typical calcification 150 to 1500 HU", typical foci 300-1000 HU; deposits of
    1.5 mm or more must show >= 300 HU at their centre, thin lines and rings >= 200 HU, in most
    samples (the median over the samples: thick slices of 5 mm may dim a few)."""
    threshold = 200.0 if pid in THIN else 300.0
    peaks = []
    for image, deposit, _ in _scans(pid):
        assert deposit.max() > 0.5, f"{pid}: no deposit fills half a voxel"
        peaks.append(np.percentile(image[deposit >= 0.5 * deposit.max()], 99.9))
    assert np.median(peaks) > threshold, (pid, np.round(peaks))


def _components(image, deposit, hu: float) -> int:
    """Separate deposits: connected groups of voxels above ``hu`` HU within 1 voxel of one."""
    near = ndimage.binary_dilation(deposit > 0.25)
    return ndimage.label((image > hu) & near)[1]


def test_parasitic_shows_several_separate_rice_grains() -> None:
    """ "many elongated rice-grain calcifications", 2-4 mm each: at least 3 separate grains."""
    counts = [_components(image, dep, 200.0) for image, dep, _ in _scans("parasitic")]
    assert np.median(counts) >= 3, counts


def test_enchondroma_shows_many_rings_and_arcs() -> None:
    """ "abundant, organised rings-and-arcs": many separate curved deposits in the ideal object
    (the scanner then merges neighbours with the trabecular bone around them)."""
    for _, dep, p in _scans("enchondroma")[:3]:
        n = ndimage.label(dep > 0.3)[1]
        assert n >= 8, (n, p["size_mm"])


def test_vascular_wall_is_calcified_around_a_lucent_lumen() -> None:
    """ "tubular tram-track or ring-shaped wall calcification": in the canonical pose the
    vessel runs along z; the wall reaches calcium HU, the lumen stays at blood HU."""
    config = replace(DEFAULT, position_jitter_mm=0.0, random_orientation=False)
    for seed in range(4):
        p = _params("vascular", seed, config, size_mm=8.0, noise_std_hu=5.0, ssp_fwhm_mm=1.0)
        obj, _ = render_object(p, config, np.random.default_rng(seed))
        image = acquire(obj, p, config.spacing, np.random.default_rng(seed))
        axes = [(np.arange(n) - (n - 1) / 2) * 1.25 for n in config.patch_size]
        zz, yy, xx = np.meshgrid(*axes, indexing="ij")
        rho = np.hypot(yy, xx)
        wall_peak = image[(rho > 2.5) & (rho < 4.5)].max()
        assert wall_peak > 300, wall_peak
        assert np.median(image[rho < 1.0]) < 100  # blood 30-50 HU in the lumen


def test_chondrocalcinosis_draws_a_long_thin_line() -> None:
    """ "thin linear calcification running parallel to cartilage", 1-2 mm thick: the deposit is
    much longer (principal extent) than it is thick."""
    for _, dep, _ in _scans("chondrocalcinosis")[:3]:
        pts = np.argwhere(dep > 0.3) * 1.25
        spread = np.sqrt(np.linalg.eigvalsh(np.cov(pts.T)))
        assert spread[-1] > 3.0 * spread[0], spread


# -- the scanner model -----------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["smooth", "sharp"])
@pytest.mark.parametrize("ssp", ["gaussian", "triangle"])
def test_noise_std_on_a_flat_phantom_equals_the_drawn_std(kernel: str, ssp: str) -> None:
    p = _params("phlebolith", 0, kernel=kernel, ssp_shape=ssp, noise_std_hu=25.0)
    p["apodisation"] = float(np.mean(implicit.APODISATION[kernel]))
    p["hu_offset_hu"], p["ssp_fwhm_mm"] = 6.0, 3.0
    flat = np.full((48, 48, 48), 40.0, np.float32)
    img = acquire(flat, p, (1.25, 1.25, 1.25), np.random.default_rng(1))
    noise = img - (40.0 * p["hu_scale"] + 6.0)
    assert noise.std() == pytest.approx(25.0, rel=0.04)
    assert abs(noise.mean()) < 1.0


def test_thick_slices_blur_along_z_only() -> None:
    p = _params("enchondroma", 1, noise_std_hu=0.0)
    obj, _ = render_object(p, CLEAN, np.random.default_rng(0))
    thin = acquire(obj, {**p, "ssp_fwhm_mm": 0.5}, CLEAN.spacing, np.random.default_rng(0))
    thick = acquire(obj, {**p, "ssp_fwhm_mm": 5.0}, CLEAN.spacing, np.random.default_rng(0))
    dz = lambda v: np.abs(np.diff(v, axis=0)).mean()  # noqa: E731
    dx = lambda v: np.abs(np.diff(v, axis=2)).mean()  # noqa: E731
    assert dz(thick) < 0.7 * dz(thin)
    assert dx(thick) > 0.8 * dx(thin)
