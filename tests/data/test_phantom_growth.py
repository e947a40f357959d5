"""The growth renderer family, called directly: API contract, pattern facts of docs/patterns.md on
the ideal object and after the scanner, the scanner model against hand computations and scipy,
and class-independence of its nuisance draws."""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from calcinet.data.phantom import PATTERNS, PhantomConfig
from calcinet.data.phantom.growth import (
    COVERED,
    NUISANCE_KEYS,
    RESERVED,
    acquire,
    render_deposits,
    render_layers,
    render_object,
    sample_morphology,
    sample_nuisance,
)
from calcinet.data.phantom.growth import scanner as growth_scanner

SMALL = PhantomConfig(patch_size=(32, 32, 32), spacing=(1.5, 1.5, 1.5))
CLEAN = replace(SMALL, position_jitter_mm=0.0, random_orientation=False)
DEFAULT = PhantomConfig()  # 48^3 voxels of 1.25 mm
DEFAULT_CLEAN = replace(DEFAULT, position_jitter_mm=0.0, random_orientation=False)


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


# -- interface -------------------------------------------------------------------------------------
def test_covers_all_twenty_patterns_with_both_classes() -> None:
    assert set(COVERED) == set(PATTERNS)
    labels = [PATTERNS[p].label for p in COVERED]
    assert labels.count(0) == 11 and labels.count(1) == 9


@pytest.mark.parametrize("pid", list(COVERED))
def test_every_pattern_renders_finite_layers_of_the_right_shape(pid: str) -> None:
    p = _params(pid, 3, SMALL)
    obj, cover, tissue = render_layers(p, SMALL, np.random.default_rng(0))
    for a in (obj, cover, tissue):
        assert a.shape == (32, 32, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    assert cover.min() >= 0.0 and cover.max() <= 1.0 and cover.max() > 0.0
    # Plain background where nothing is painted: obj = (1 - cover) * tissue + cover * structures.
    np.testing.assert_array_equal(obj[cover == 0], tissue[cover == 0])
    assert obj.max() > 150, "every pattern carries a calcification or bone"
    assert -150 < np.median(tissue) < 80, "background is fat or muscle"
    _, deposit = render_deposits(p, SMALL, np.random.default_rng(0))
    assert deposit.dtype == np.float32 and deposit.min() >= 0 and deposit.max() <= 1
    assert deposit.max() > 0.5 and (deposit <= cover + 1e-5).all()
    image = acquire(obj, p, SMALL.spacing, np.random.default_rng(1))
    assert image.shape == obj.shape and image.dtype == np.float32 and np.isfinite(image).all()
    assert image.min() > -1100 and image.max() < 2600


@pytest.mark.parametrize("pid", list(COVERED))
def test_every_pattern_renders_on_an_anisotropic_grid(pid: str) -> None:
    config = PhantomConfig(patch_size=(16, 40, 36), spacing=(2.5, 0.9, 1.0))
    p = _params(pid, 4, config)
    obj, deposit = render_deposits(p, config, np.random.default_rng(0))
    assert obj.shape == deposit.shape == (16, 40, 36) and np.isfinite(obj).all()
    image = acquire(obj, p, config.spacing, np.random.default_rng(1))
    assert image.shape == (16, 40, 36) and np.isfinite(image).all()


def test_same_rng_seed_gives_identical_output() -> None:
    for pid in ("enchondroma", "chordoma", "parasitic"):
        p = _params(pid, 5, SMALL)
        a = render_layers(p, SMALL, np.random.default_rng(7))
        b = render_layers(p, SMALL, np.random.default_rng(7))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        ia = acquire(a[0], p, SMALL.spacing, np.random.default_rng(8))
        ib = acquire(b[0], p, SMALL.spacing, np.random.default_rng(8))
        np.testing.assert_array_equal(ia, ib)
        c = render_layers(p, SMALL, np.random.default_rng(9))
        assert not np.array_equal(a[0], c[0])
    assert _params("chordoma", 1) == _params("chordoma", 1)


def test_params_are_flat_json_and_names_never_collide() -> None:
    n = sample_nuisance(np.random.default_rng(0), DEFAULT)
    assert set(n) == set(NUISANCE_KEYS) and len(NUISANCE_KEYS) == len(set(NUISANCE_KEYS))
    assert not set(n) & RESERVED
    for pid in COVERED:
        m = sample_morphology(pid, np.random.default_rng(1), 0.5)
        assert not set(m) & (set(NUISANCE_KEYS) | RESERVED), pid
        p = {"pattern": pid, **n, **m}
        assert json.loads(json.dumps(p)) == p
        assert all(type(v) in (int, float, str, bool) for v in p.values()), pid


def test_uncovered_patterns_fail_naming_the_pattern_and_the_covered_list() -> None:
    with pytest.raises(ValueError, match="'nodule'.*covered: \\[") as info:
        sample_morphology("nodule", np.random.default_rng(0), 0.5)
    assert "enchondroma" in str(info.value)
    p = {**_params("phlebolith", 0), "pattern": "nodule"}
    with pytest.raises(ValueError, match="'nodule'"):
        render_layers(p, SMALL, np.random.default_rng(0))


def test_nuisance_follows_the_config_ranges() -> None:
    config = replace(
        DEFAULT,
        noise_std_hu=(7.0, 9.0),
        slice_thickness_mm=(2.0, 2.5),
        kernels=("sharp",),
        hu_offset_hu=(3.0, 4.0),
        hu_scale=(1.01, 1.02),
        blur_sigma_mm=(0.5, 0.6),
        position_jitter_mm=1.0,
        random_orientation=False,
    )
    for seed in range(20):
        n = sample_nuisance(np.random.default_rng(seed), config)
        assert 7 <= n["g_noise_std_hu"] <= 9 and 2 <= n["g_slice_mm"] <= 2.5
        assert n["g_kernel"] == "sharp" and 3 <= n["g_hu_offset_hu"] <= 4
        assert 1.01 <= n["g_hu_scale"] <= 1.02 and 0.5 <= n["g_psf_sigma_mm"] <= 0.6
        assert max(abs(n[f"jitter_{a}_mm"]) for a in "zyx") <= 1.0
        assert (n["rot_qw"], n["rot_qx"], n["rot_qy"], n["rot_qz"]) == (1, 0, 0, 0)


# -- facts of patterns.md on the ideal object ------------------------------------------------------
def test_blastic_metastasis_is_ivory_above_1000_hu() -> None:
    for seed in range(3):
        p = _params("blastic_metastasis", seed, DEFAULT_CLEAN, difficulty=1.0, gm_size_mm=8.0)
        obj, _ = render_object(p, DEFAULT_CLEAN, np.random.default_rng(seed))
        core = _radius_mm(DEFAULT_CLEAN) < 2.0
        assert obj[core].min() > 1000, obj[core].min()
        scan = {**p, "g_noise_std_hu": 5.0, "g_slice_mm": 1.0, "g_hu_offset_hu": 0.0}
        image = acquire(obj, scan, DEFAULT_CLEAN.spacing, np.random.default_rng(seed))
        assert np.median(image[core]) > 1000


def _components(pid: str, seed: int) -> int:
    p = _params(pid, seed, DEFAULT_CLEAN, difficulty=0.0, gm_size_mm=40.0)
    _, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
    return ndimage.label(deposit > 0.3)[1]


def test_enchondroma_rings_are_abundant_and_chondrosarcoma_rings_sparse() -> None:
    """ "abundant, organised rings-and-arcs" against "sparse, anarchic": separate deposits."""
    enchondroma = [_components("enchondroma", s) for s in range(3)]
    sarcoma = [_components("chondrosarcoma_high_grade", s) for s in range(3)]
    assert min(enchondroma) >= 8, enchondroma
    assert np.mean(enchondroma) > 2 * np.mean(sarcoma), (enchondroma, sarcoma)


def test_phlebolith_rim_is_denser_than_its_lucent_centre() -> None:
    config = replace(CLEAN, spacing=(0.5, 0.5, 0.5))
    p = _params(
        "phlebolith",
        0,
        config,
        gm_size_mm=6.0,
        gm_rim_fraction=0.4,
        gm_rim_hu=1000.0,
        gm_centre_hu=100.0,
    )
    obj, _ = render_object(p, config, np.random.default_rng(0))
    r = _radius_mm(config)
    # Radius 3 mm, rim max(1, 0.4 * 3) = 1.2 mm: centre ball 1.8 mm, rim shell 1.8-3 mm.
    assert obj[r < 1.2].mean() == pytest.approx(100.0, abs=5)
    assert obj[(r > 2.1) & (r < 2.7)].mean() == pytest.approx(1000.0, abs=30)
    assert (obj[r > 3.6] < 400).all()


def test_zonation_myositis_shell_densest_and_sunburst_centre_densest() -> None:
    r = _radius_mm(DEFAULT_CLEAN)
    for seed in range(2):
        for pid, sign in (("myositis_ossificans", -1), ("osteosarcoma_sunburst", 1)):
            p = _params(pid, seed, DEFAULT_CLEAN, difficulty=1.0, gm_size_mm=40.0)
            obj, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
            centre = obj[(deposit > 0.9) & (r < 4.0)].mean()
            outer = obj[(deposit > 0.9) & (r > 8.0) & (r < 18.0)].mean()
            assert sign * (centre - outer) > 50, (pid, centre, outer)


def test_cover_is_zero_far_from_a_small_finding() -> None:
    p = _params(
        "injection_granuloma", 3, DEFAULT_CLEAN, gm_size_mm=8.0, gm_count=1, g_bone=0, g_vessel=0
    )
    obj, cover = render_object(p, DEFAULT_CLEAN, np.random.default_rng(0))
    r = _radius_mm(DEFAULT_CLEAN)
    assert (cover[r > 9.0] == 0).all() and cover[r < 2.0].min() == 1.0
    assert ((cover > 0.05) & (cover < 0.95)).sum() > 50  # 2x2x2 block-averaged edges


# -- deposits after the scanner --------------------------------------------------------------------
THIN = {
    "chondrocalcinosis",
    "enchondroma",
    "chondrosarcoma_high_grade",
    "hodgkin_reticular",
    "osteosarcoma_telangiectatic",
    "vascular",
    "parasitic",
}


@functools.cache
def _scans(pid: str):
    out = []
    for i in range(4):
        p = _params(pid, 100 + i, DEFAULT)
        obj, deposit = render_deposits(p, DEFAULT, np.random.default_rng(i))
        out.append((acquire(obj, p, DEFAULT.spacing, np.random.default_rng(i + 50)), deposit))
    return out


@pytest.mark.parametrize("pid", list(COVERED))
def test_deposits_reach_calcium_hu_after_the_scanner(pid: str) -> None:
    """Calcium 150-1500 HU: deposits show >= 300 HU at their core after the scanner (thin
    lines, rings and grains >= 200 HU), in most samples."""
    threshold = 200.0 if pid in THIN else 300.0
    peaks = [np.percentile(img[dep >= 0.5 * dep.max()], 99.9) for img, dep in _scans(pid)]
    assert np.median(peaks) > threshold, (pid, np.round(peaks))


# -- the scanner model -----------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["smooth", "sharp"])
@pytest.mark.parametrize("slice_mm, gain", [(0.5, 0.0), (4.0, 0.3)])
def test_noise_std_on_a_flat_object_equals_the_drawn_std(kernel, slice_mm, gain) -> None:
    p = _params(
        "phlebolith",
        0,
        DEFAULT,
        g_kernel=kernel,
        g_noise_std_hu=25.0,
        g_slice_mm=slice_mm,
        g_noise_attn_gain=gain,
        g_hu_offset_hu=6.0,
    )
    flat = np.full((48, 48, 48), 40.0, np.float32)
    img = acquire(flat, p, DEFAULT.spacing, np.random.default_rng(1))
    noise = img - (40.0 * p["g_hu_scale"] + 6.0)
    assert noise.std() == pytest.approx(25.0, rel=0.1)
    assert abs(noise.mean()) < 1.5


def test_noise_is_denser_where_attenuation_is_higher() -> None:
    p = _params(
        "phlebolith", 0, DEFAULT, g_noise_std_hu=20.0, g_noise_attn_gain=0.4, g_slice_mm=0.5
    )
    obj = np.zeros((48, 48, 48), np.float32)
    obj[:, :, 24:] = 1000.0
    img = acquire(obj, p, DEFAULT.spacing, np.random.default_rng(2))
    assert img[:, :, 36:].std() > 1.2 * img[:, :, :12].std()


def test_psf_matches_the_gaussian_sum_from_scipy() -> None:
    """A point seen through a thin slice: the in-plane response is (1 - t) G(s) + t G(k s) for
    the smooth kernel and (1 + t) G(s) - t G(k s) for the sharp one (scipy Gaussians)."""
    for kernel, sign in (("smooth", 1), ("sharp", -1)):
        p = _params(
            "phlebolith",
            0,
            DEFAULT,
            g_kernel=kernel,
            g_noise_std_hu=0.0,
            g_slice_mm=0.5,
            g_hu_scale=1.0,
            g_hu_offset_hu=0.0,
            g_psf_sigma_mm=0.8,
            g_psf_tail=0.25,
            g_psf_tail_ratio=2.5,
        )
        obj = np.zeros((1, 41, 41), np.float32)
        obj[0, 20, 20] = 1000.0
        img = acquire(obj, p, (1.25, 1.25, 1.25), np.random.default_rng(0))[0]
        s1, s2 = 0.8 / 1.25, 2.0 / 1.25
        expect = (1 - sign * 0.25) * ndimage.gaussian_filter(obj[0], s1) + sign * 0.25 * (
            ndimage.gaussian_filter(obj[0], s2)
        )
        np.testing.assert_allclose(img, expect, atol=2.0)
        assert img.sum() == pytest.approx(1000.0, rel=1e-3)
    assert img.min() < -1.0  # the sharp kernel's undershoot


def test_thick_slices_blur_along_z_only() -> None:
    p = _params("enchondroma", 1, CLEAN, g_noise_std_hu=0.0)
    obj, _ = render_object(p, CLEAN, np.random.default_rng(0))

    def scan(o, mm):
        return acquire(o, {**p, "g_slice_mm": mm}, CLEAN.spacing, np.random.default_rng(0))

    thin, thick = scan(obj, 0.5), scan(obj, 5.0)
    dz = lambda v: np.square(np.diff(v, axis=0)).mean()  # noqa: E731
    assert dz(thick) < 0.5 * dz(thin)
    # An object constant along z is left as it is; one varying along z alone is blurred.
    flat_z = np.repeat(obj[16:17], 32, axis=0)
    np.testing.assert_allclose(scan(flat_z, 5.0), scan(flat_z, 0.5), atol=1e-2)
    only_z = np.broadcast_to(obj[:, 16:17, 16:17], obj.shape).copy()
    assert dz(scan(only_z, 5.0)) < 0.5 * dz(scan(only_z, 0.5))
    # The slice profile is a box of the slice width: 5 mm / 1.5 mm = 3.33 voxels.
    box = growth_scanner.slice_box(5.0 / 1.5)
    np.testing.assert_allclose(box, np.array([1 / 6, 1, 1, 1, 1 / 6]) / (10 / 3), atol=1e-9)
    ref = ndimage.correlate1d(thin, box, axis=0, mode="nearest")
    np.testing.assert_allclose(thick, ref, atol=0.05)


# -- no shortcuts ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nuisance_draws():
    """Labels drawn first, then nuisance factors from a separate stream, as the phantom does."""
    labels = np.random.default_rng(2024).integers(0, 2, 2000)
    draws = [sample_nuisance(np.random.default_rng([2024, i]), DEFAULT) for i in range(2000)]
    return draws, labels


def _numeric(draws, key) -> np.ndarray:
    values = [d[key] for d in draws]
    if isinstance(values[0], str):
        cats = sorted(set(values))
        return np.array([cats.index(v) for v in values], float)
    return np.array(values, float)


def test_each_nuisance_key_alone_is_at_chance(nuisance_draws) -> None:
    from sklearn.metrics import roc_auc_score

    draws, y = nuisance_draws
    for key in NUISANCE_KEYS:
        auroc = roc_auc_score(y, _numeric(draws, key))
        assert abs(auroc - 0.5) < 0.05, f"{key}: AUROC {auroc:.3f}"
    leak = _numeric(draws, "g_noise_std_hu") + 10 * y  # the check can fail
    assert roc_auc_score(y, leak) > 0.6


def test_all_nuisance_keys_together_are_at_chance(nuisance_draws) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    draws, y = nuisance_draws
    X = np.stack([_numeric(draws, k) for k in NUISANCE_KEYS], 1)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    prob = cross_val_predict(clf, X, y, cv=5, method="predict_proba")[:, 1]
    assert abs(roc_auc_score(y, prob) - 0.5) < 0.05
    X_leak = np.concatenate([X, (y + np.random.default_rng(0).normal(0, 1, len(y)))[:, None]], 1)
    prob = cross_val_predict(clf, X_leak, y, cv=5, method="predict_proba")[:, 1]
    assert roc_auc_score(y, prob) > 0.6


# -- pattern facts added with the reworked painters ----------------------------------------------
def _ring_like(component: np.ndarray) -> bool:
    """A ring, shell or arc: closing it (2 voxels) and filling its holes adds to its volume (a
    solid dot or a straight strand gains nothing)."""
    comp = np.pad(component, 3)
    filled = ndimage.binary_fill_holes(ndimage.binary_closing(comp, iterations=2))
    return filled.sum() > 1.05 * comp.sum()


def _matrix_counts(pid: str, seed: int, difficulty: float) -> tuple[int, int]:
    p = _params(pid, seed, DEFAULT_CLEAN, difficulty=difficulty, g_bone=0, g_vessel=0)
    _, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
    lab, n = ndimage.label(deposit > 0.5)
    rings = sum(_ring_like(lab[sl] == i) for i, sl in enumerate(ndimage.find_objects(lab), 1))
    return n, rings


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_enchondroma_has_many_rings_and_chondrosarcoma_few_at_every_difficulty(difficulty) -> None:
    """Abundant organised rings-and-arcs (>= 15 ring / arc components, each hollow or concave)
    against sparse anarchic ones (<= 10 deposit components in all)."""
    for seed in range(3):
        _, rings = _matrix_counts("enchondroma", seed, difficulty)
        assert rings >= 15, (seed, rings)
        n, _ = _matrix_counts("chondrosarcoma_high_grade", seed, difficulty)
        assert 1 <= n <= 10, (seed, n)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        assert sample_morphology("enchondroma", rng, difficulty)["gm_rings"] >= 15
        assert sample_morphology("chondrosarcoma_high_grade", rng, difficulty)["gm_rings"] <= 10


def _rays_without_cortex(pid: str, seed: int, **overrides) -> int:
    """Rays from the finding (the patch centre) outwards in the plane across the shaft (x = 0:
    with no rotation the shaft runs along x) that cross no cortex voxel before the patch edge."""
    over = {"g_bone": 0, "g_vessel": 0, "g_cortical_hu": 1500.0, "g_cortex_mm": 2.5}
    p = _params(pid, seed, DEFAULT_CLEAN, **{**over, **overrides})
    obj, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
    cortex = (obj > 900) & (deposit < 0.2)
    n = DEFAULT_CLEAN.patch_size[0]
    open_rays = 0
    for ang in np.linspace(0, 2 * np.pi, 72, endpoint=False):
        t = np.arange(0, n / 2, 0.25)
        z = np.rint((n - 1) / 2 + t * np.cos(ang)).astype(int)
        y = np.rint((n - 1) / 2 + t * np.sin(ang)).astype(int)
        ok = (z >= 0) & (z < n) & (y >= 0) & (y < n)
        open_rays += not cortex[z[ok], y[ok], n // 2].any()
    return open_rays


def test_chondrosarcoma_breaks_the_cortex_and_enchondroma_keeps_it_intact() -> None:
    for seed in range(3):
        assert _rays_without_cortex("chondrosarcoma_high_grade", seed, gm_bone_radius_mm=14.0) > 0
        assert _rays_without_cortex("enchondroma", seed, gm_rings=20, gm_cortex_mm=2.5) == 0


def test_hodgkin_network_spans_20_mm_inside_a_fibrotic_mass() -> None:
    spacing = DEFAULT_CLEAN.spacing[0]
    for seed in range(4):
        p = _params("hodgkin_reticular", seed, DEFAULT_CLEAN, g_bone=0, g_vessel=0, gm_rib=False)
        obj, cover, tissue = render_layers(p, DEFAULT_CLEAN, np.random.default_rng(seed))
        _, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
        idx = np.argwhere(deposit > 0.5)
        extent = (idx.max(0) - idx.min(0)).max() * spacing
        assert extent >= 20.0, (seed, extent)
        mass = (cover > 0.9) & (deposit < 0.05)
        assert mass.sum() * spacing**3 > 4 / 3 * np.pi * 8.0**3  # a mass of >= 16 mm
        assert obj[mass].mean() - tissue[mass].mean() >= 10.0
        around = ndimage.binary_dilation(cover > 0.5, iterations=2)
        assert around[deposit > 0.5].mean() > 0.95  # the network lies in the mass


def test_tumour_necrosis_calcium_is_eccentric_in_a_visible_mass() -> None:
    spacing = DEFAULT_CLEAN.spacing[0]
    for seed in range(4):
        p = _params("tumour_necrosis_dystrophic", seed, DEFAULT_CLEAN, g_bone=0, g_vessel=0)
        obj, cover, tissue = render_layers(p, DEFAULT_CLEAN, np.random.default_rng(seed))
        _, deposit = render_deposits(p, DEFAULT_CLEAN, np.random.default_rng(seed))
        mass = cover > 0.5
        centre = np.array(ndimage.center_of_mass(mass))
        radius = (3 * mass.sum() / (4 * np.pi)) ** (1 / 3)
        calcium = np.array(ndimage.center_of_mass(deposit))
        assert np.linalg.norm(calcium - centre) >= 0.2 * radius, (seed, calcium, centre, radius)
        soft = mass & (deposit < 0.05)
        contrast = np.abs(obj[soft] - tissue[soft]).mean()
        necrotic = (obj[soft] < 30).mean()
        assert contrast >= 15.0 or necrotic > 0.1, (seed, contrast, necrotic)
        assert radius * spacing >= 5.0
