"""The synthetic CT phantom: determinism, the pattern catalogue, HU physics, no shortcuts, I/O."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from calcinet.data.phantom import (
    BENIGN_PATTERNS,
    MALIGNANT_PATTERNS,
    NUISANCE_KEYS,
    PATTERNS,
    PhantomConfig,
    generate_sample,
    render,
    sample_params,
)
from calcinet.data.phantom.patterns import NEIGHBOUR_BONE_PATTERNS
from calcinet.data.phantom.sampling import LESIONS

SMALL = PhantomConfig(patch_size=(32, 32, 32), spacing=(1.5, 1.5, 1.5))
# Noise-free, thin-slice, centred, canonical pose: geometry can be asserted voxel by voxel.
CLEAN = PhantomConfig(
    noise_std_hu=(0.0, 0.0),
    slice_thickness_mm=(0.5, 0.5),
    blur_sigma_mm=(0.3, 0.3),
    hu_offset_hu=(0.0, 0.0),
    position_jitter_mm=0.0,
    random_orientation=False,
    hu_scale=(1.0, 1.0),
    blur_z_ratio=(1.0, 1.0),
    vessel_prob=0.0,
)


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _grid(config: PhantomConfig):
    """Patch-frame coordinates (mm from the patch centre) of every voxel, as (z, y, x)."""
    axes = [
        (np.arange(n) - (n - 1) / 2) * s
        for n, s in zip(config.patch_size, config.spacing, strict=True)
    ]
    return np.meshgrid(*axes, indexing="ij")


# -- determinism -----------------------------------------------------------------------------------
def test_same_index_and_seed_give_identical_voxels_and_params() -> None:
    a, b = generate_sample(3, 11, SMALL), generate_sample(3, 11, SMALL)
    assert a["params"] == b["params"]
    np.testing.assert_array_equal(a["image"], b["image"])
    c = generate_sample(4, 11, SMALL)
    assert not np.array_equal(a["image"], c["image"])
    assert a["params"]["render_seed"] != c["params"]["render_seed"]
    assert sample_params(3, 12, SMALL) != sample_params(3, 11, SMALL)


def test_samples_are_identical_in_another_process() -> None:
    code = (
        "import hashlib; from calcinet.data.phantom import PhantomConfig, generate_sample; "
        "c = PhantomConfig(patch_size=(32, 32, 32), spacing=(1.5, 1.5, 1.5)); "
        "print(hashlib.sha256(generate_sample(3, 11, c)['image'].tobytes()).hexdigest())"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    here = hashlib.sha256(generate_sample(3, 11, SMALL)["image"].tobytes()).hexdigest()
    assert out.stdout.strip() == here


def test_params_are_flat_and_json_serialisable() -> None:
    for pid in PATTERNS:
        p = sample_params(0, 0, pattern=pid)
        assert json.loads(json.dumps(p)) == p
        assert all(isinstance(v, int | float | str) for v in p.values())
        assert {"label", "true_label", "pattern", "render_seed", *NUISANCE_KEYS} <= set(p)


def test_morphology_and_nuisance_names_never_collide() -> None:
    rng = np.random.default_rng(0)
    for pid, (sampler, _) in LESIONS.items():
        assert not set(sampler(rng, 0.5)) & {"label", "true_label", "pattern", *NUISANCE_KEYS}, pid


# -- the catalogue ---------------------------------------------------------------------------------
def test_catalogue_has_the_twenty_documented_patterns() -> None:
    assert len(BENIGN_PATTERNS) == 11 and len(MALIGNANT_PATTERNS) == 9
    assert set(PATTERNS) == set(BENIGN_PATTERNS) | set(MALIGNANT_PATTERNS) == set(LESIONS)
    assert all(PATTERNS[p].label == 0 for p in BENIGN_PATTERNS)
    assert all(PATTERNS[p].label == 1 for p in MALIGNANT_PATTERNS)


@pytest.mark.parametrize("pid", list(PATTERNS))
def test_every_pattern_renders_with_its_label(pid: str) -> None:
    label = PATTERNS[pid].label
    config = replace(SMALL, patterns=[pid], malignant_fraction=float(label))
    s = generate_sample(0, 1, config)
    assert s["pattern"] == pid and s["label"] == label == s["params"]["true_label"]
    img = s["image"]
    assert img.shape == (32, 32, 32) and img.dtype == np.float32 and np.isfinite(img).all()
    # Physically plausible HU: nothing below air, nothing beyond dense cortex plus edge overshoot.
    assert img.min() > -1100 and img.max() < 2600
    assert img.max() > 150, "every pattern carries a calcification or bone"


def test_sampling_draws_every_pattern_and_follows_the_class_prior() -> None:
    config = PhantomConfig(malignant_fraction=0.3)
    draws = [sample_params(i, 2, config) for i in range(2000)]
    counts = {p: 0 for p in PATTERNS}
    for d in draws:
        counts[d["pattern"]] += 1
        assert d["label"] == d["true_label"] == PATTERNS[d["pattern"]].label
    assert all(n >= 20 for n in counts.values()), counts
    assert np.mean([d["label"] for d in draws]) == pytest.approx(0.3, abs=0.03)


def test_pattern_weights_and_label_noise() -> None:
    config = PhantomConfig(
        patterns={"enchondroma": 3.0, "tendinitis": 1.0, "chondrosarcoma_high_grade": 1.0},
        label_noise=0.2,
    )
    draws = [sample_params(i, 3, config) for i in range(1500)]
    benign = [d["pattern"] for d in draws if d["true_label"] == 0]
    assert set(benign) == {"enchondroma", "tendinitis"}
    assert benign.count("enchondroma") / len(benign) == pytest.approx(0.75, abs=0.05)
    flipped = np.mean([d["label"] != d["true_label"] for d in draws])
    assert flipped == pytest.approx(0.2, abs=0.03)


# -- HU physics ------------------------------------------------------------------------------------
def test_blastic_metastasis_is_ivory_above_1000_hu() -> None:
    z, y, x = _grid(CLEAN)
    r = np.sqrt(z * z + y * y + x * x)
    for i in range(4):
        p = sample_params(i, 0, CLEAN, pattern="blastic_metastasis")
        p["size_mm"] = max(p["size_mm"], 12.0)
        img = render(p, CLEAN)
        core = img[r < 0.3 * p["size_mm"] / 2]
        assert core.mean() > 1000 and img.max() > 1000


def test_phlebolith_has_a_lucent_centre() -> None:
    config = replace(CLEAN, patch_size=(32, 32, 32), spacing=(0.5, 0.5, 0.5))
    z, y, x = _grid(config)
    r = np.sqrt(z * z + y * y + x * x)
    for i in range(3):
        p = sample_params(i, 0, config, pattern="phlebolith")
        p.update(diameter_mm=6.0, rim_fraction=0.35)
        img = render(p, config)
        R = 3.0
        centre = img[r < 0.25 * R].mean()
        rim = img[(r > 0.72 * R) & (r < 0.95 * R)].mean()
        assert rim > centre + 200, (rim, centre)


def test_myositis_ossificans_shell_is_denser_than_its_core() -> None:
    z, y, x = _grid(CLEAN)
    for i in range(4):
        p = sample_params(i, 0, CLEAN, pattern="myositis_ossificans")
        img = render(p, CLEAN)
        R = p["size_mm"] / 2
        ra, rb = R * p["aspect"], R * p["aspect"] * p["aspect_v"]
        # Canonical pose: scene (u, v, w) = patch (y, x, z).
        q = np.sqrt((y / ra) ** 2 + (x / rb) ** 2 + (z / R) ** 2)
        core, rim = img[q < 0.3].mean(), img[(q > 0.85) & (q < 0.97)].mean()
        assert rim > core + 150, (rim, core)


def test_osteosarcoma_core_is_denser_than_its_periphery() -> None:
    z, y, x = _grid(CLEAN)
    r = np.sqrt(z * z + y * y + x * x)
    for i in range(4):
        p = sample_params(i, 0, CLEAN, pattern="osteosarcoma_sunburst")
        img = render(p, CLEAN)
        ra = p["size_mm"] / 2 * p["aspect"]
        core = img[r < 3.0].mean()
        # Periphery: the extraosseous mass away from the bone (+u = +y), where spicules radiate.
        cone = (y > 0.9 * ra) & (y < 1.2 * ra) & (np.hypot(x, z) < 0.5 * y)
        assert cone.sum() > 20
        assert core > img[cone].mean() + 250, (core, img[cone].mean())


def test_noise_std_and_offset_follow_the_params() -> None:
    p = sample_params(0, 0, CLEAN, pattern="tendinitis")
    for kernel in ("smooth", "sharp"):
        clean = render({**p, "kernel": kernel}, CLEAN)
        noisy = render({**p, "noise_std_hu": 30.0, "kernel": kernel, "hu_offset_hu": 7.0}, CLEAN)
        diff = noisy - clean - 7.0
        assert diff.std() == pytest.approx(30.0, rel=0.05)
        assert abs(diff.mean()) < 1.0


def test_hu_scale_is_a_gain_about_water() -> None:
    p = sample_params(0, 0, CLEAN, pattern="enchondroma")
    base = render(p, CLEAN)
    scaled = render({**p, "hu_scale": 1.04, "hu_offset_hu": 5.0}, CLEAN)
    np.testing.assert_allclose(scaled, 1.04 * base + 5.0, rtol=1e-5, atol=1e-2)


def _neighbour_correlation(noise: np.ndarray) -> float:
    a, b = noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("kernel", ["smooth", "sharp"])
def test_noise_correlation_length_sets_the_texture(kernel) -> None:
    """Smooth-kernel noise is white noise low-passed by a sampled Gaussian g of sigma s (mm): the
    correlation of x-neighbours is sum g[k] g[k+1] / sum g[k]^2 (-> exp(-h^2 / 4 s^2) for s >> h),
    computed here by hand from the kernel's definition."""
    p = {**sample_params(0, 0, CLEAN, pattern="tendinitis"), "kernel": kernel, "blur_z_ratio": 1.0}
    clean = render(p, CLEAN)
    h = CLEAN.spacing[2]
    corr = {}
    for s in (0.6, 1.2):
        noise = render({**p, "noise_std_hu": 20.0, "noise_correlation_mm": s}, CLEAN) - clean
        assert noise.std() == pytest.approx(20.0, rel=0.05)
        corr[s] = _neighbour_correlation(noise)
    if kernel == "smooth":
        for s, c in corr.items():
            k = np.arange(-int(np.ceil(3 * s / h)), int(np.ceil(3 * s / h)) + 1)
            g = np.exp(-0.5 * (k * h / s) ** 2)
            assert c == pytest.approx((g[:-1] * g[1:]).sum() / (g * g).sum(), abs=0.03)
    else:  # high-pass: anti-correlated neighbours, less so with a longer correlation length
        assert corr[0.6] < corr[1.2] < 0.0


def test_blur_z_ratio_blurs_through_plane_only() -> None:
    """Gaussians compose: a z blur of ratio 3 is the isotropic render further blurred along z
    only, by sigma sqrt(3^2 - 1) * 0.6 mm (scipy's filter as the reference)."""
    from scipy.ndimage import gaussian_filter1d

    p = sample_params(1, 0, CLEAN, pattern="enchondroma")
    iso = render({**p, "blur_sigma_mm": 0.6, "blur_z_ratio": 1.0}, CLEAN)
    aniso = render({**p, "blur_sigma_mm": 0.6, "blur_z_ratio": 3.0}, CLEAN)
    extra_px = np.sqrt(3.0**2 - 1.0) * 0.6 / CLEAN.spacing[0]
    expected = gaussian_filter1d(iso, extra_px, axis=0, mode="nearest")
    inner = (slice(6, -6),) * 3
    assert np.abs(aniso - expected)[inner].max() < 0.03 * float(np.ptp(iso))
    assert np.abs(aniso - iso)[inner].max() > 0.1 * float(np.ptp(iso))


def test_a_vessel_crosses_the_patch_with_its_drawn_density() -> None:
    """The vessel is a cylinder of the drawn radius and HU: its axis voxels hold vessel_hu."""
    config = replace(CLEAN, blur_sigma_mm=(0.0, 0.0), kernels=("sharp",))
    p = sample_params(2, 0, config, pattern="tendinitis")
    without = render({**p, "vessel": 0}, config)
    along = {"vessel_dir_u": 0.0, "vessel_dir_v": 0.0, "vessel_dir_w": 1.0}  # scene w = patch z
    q = {**p, **along, "vessel": 1, "vessel_hu": 250.0, "vessel_radius_mm": 4.0,
         "vessel_offset_mm": 14.0}
    with_vessel = render(q, config)
    changed = (with_vessel - without) > 120.0  # vessel 250 HU over muscle or fat
    # Along scene w = patch z (canonical pose): the same disc of changed voxels on every slice,
    # 4 mm in radius, whose centre lies 14 mm from the lesion centre (the patch centre).
    z, y, x = _grid(config)
    mid = changed[config.patch_size[0] // 2]
    area_mm2 = mid.sum() * config.spacing[1] * config.spacing[2]
    assert area_mm2 == pytest.approx(np.pi * 4.0**2, rel=0.25)
    cy, cx = y[0][mid].mean(), x[0][mid].mean()
    assert np.hypot(cy, cx) == pytest.approx(14.0, abs=1.0)
    on_axis = (np.hypot(y - cy, x - cx) < 1.0) & (np.abs(z) < 10)
    assert np.median(with_vessel[on_axis]) == pytest.approx(250.0, abs=30.0)


def test_a_neighbouring_bone_is_in_the_patch_exactly_when_its_flag_says() -> None:
    """`bone_in_patch` 1 paints the bone beside the finding, brought into the patch even when the
    pattern drew it beyond the patch's 30 mm half-width; 0 leaves it out."""
    p = sample_params(3, 0, CLEAN, pattern="injection_granuloma")
    z, y, x = _grid(CLEAN)
    far = np.sqrt(z**2 + y**2 + x**2) > p["size_mm"] + 5.0  # beyond every granuloma
    voxel_mm3 = float(np.prod(CLEAN.spacing))
    for gap_mm in (5.0, 40.0):
        with_bone = render({**p, "bone_gap_mm": gap_mm, "bone_in_patch": 1}, CLEAN)
        # Cortical bone is drawn at 1000-1900 HU; soft tissue and fat stay below 100 HU.
        assert (with_bone[far] > 900).sum() * voxel_mm3 > 500.0, gap_mm
    without = render({**p, "bone_in_patch": 0}, CLEAN)
    assert (without[far] > 300).sum() == 0


@pytest.mark.parametrize("pid", list(PATTERNS))
def test_exactly_the_neighbour_bone_patterns_honour_the_flag(pid: str) -> None:
    """The list `NEIGHBOUR_BONE_PATTERNS` and the painters that call `anatomy.neighbour_bone`
    agree: forcing the flag to 0 changes the image of those patterns and of no other."""
    p = sample_params(5, 0, CLEAN, pattern=pid)
    with_bone = render({**p, "bone_in_patch": 1}, CLEAN)
    without = render({**p, "bone_in_patch": 0}, CLEAN)
    assert (not np.array_equal(with_bone, without)) == (pid in NEIGHBOUR_BONE_PATTERNS)


def test_thick_slices_blur_along_z_only() -> None:
    p = sample_params(1, 0, CLEAN, pattern="enchondroma")
    thin = render(p, CLEAN)
    thick = render({**p, "slice_thickness_mm": 5.0}, CLEAN)
    dz = lambda v: np.abs(np.diff(v, axis=0)).mean()  # noqa: E731
    dx = lambda v: np.abs(np.diff(v, axis=2)).mean()  # noqa: E731
    assert dz(thick) < 0.7 * dz(thin)
    assert dx(thick) > 0.6 * dx(thin)


# -- no shortcuts ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nuisance_draws():
    draws = [sample_params(i, 2024, PhantomConfig()) for i in range(4000)]
    y = np.array([d["label"] for d in draws])
    return draws, y


def test_each_nuisance_factor_has_the_same_distribution_in_both_classes(nuisance_draws) -> None:
    draws, y = nuisance_draws
    for key in NUISANCE_KEYS:
        values = np.array([d[key] for d in draws])
        if values.dtype.kind in "fi":
            p = stats.ks_2samp(values[y == 0], values[y == 1]).pvalue
        else:
            cats = sorted(set(values))
            table = [[np.sum((values == c) & (y == k)) for c in cats] for k in (0, 1)]
            p = stats.chi2_contingency(table).pvalue if len(cats) > 1 else 1.0
        assert p > 0.01, f"{key} differs between classes (p={p:.2g})"


def test_a_classifier_on_nuisance_factors_is_at_chance(nuisance_draws) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_predict

    draws, y = nuisance_draws
    X = np.array(
        [[float(d[k] == "sharp") if k == "kernel" else d[k] for k in NUISANCE_KEYS] for d in draws]
    )
    clf = HistGradientBoostingClassifier(max_depth=3, max_iter=60, random_state=0)
    prob = cross_val_predict(clf, X, y, cv=5, method="predict_proba")[:, 1]
    assert abs(_auroc(y, prob) - 0.5) < 0.05


def test_a_neighbouring_bone_is_left_out_at_one_rate_whatever_the_pattern(nuisance_draws) -> None:
    """Among the patterns whose bone is only a neighbour (both classes have some), the bone is
    left out with `bone_absent_prob` for each pattern, so its presence does not tell the class;
    the other patterns keep their bone."""
    draws, y = nuisance_draws
    rate = PhantomConfig().bone_absent_prob
    assert {PATTERNS[k].label for k in NEIGHBOUR_BONE_PATTERNS} == {0, 1}
    for pid in PATTERNS:
        absent = np.array([1 - d["bone_in_patch"] for d in draws if d["pattern"] == pid])
        if pid in NEIGHBOUR_BONE_PATTERNS:
            p = stats.binomtest(int(absent.sum()), len(absent), rate).pvalue
            assert p > 0.01, f"{pid}: bone left out in {absent.mean():.2f} of {len(absent)}"
        else:
            assert absent.sum() == 0, pid
    neighbour = [d for d in draws if d["pattern"] in NEIGHBOUR_BONE_PATTERNS]
    table = [[sum(d["bone_in_patch"] == f and d["label"] == k for d in neighbour) for f in (0, 1)]
             for k in (0, 1)]
    assert stats.chi2_contingency(table).pvalue > 0.01, table
    # As a nuisance-only classifier among those patterns: the flag alone is at chance.
    flag = np.array([d["bone_in_patch"] for d in neighbour])
    assert abs(_auroc(np.array([d["label"] for d in neighbour]), flag) - 0.5) < 0.05


@pytest.fixture(scope="module")
def rendered():
    config = PhantomConfig()
    feats, y = [], []
    for i in range(300):
        s = generate_sample(i, 77, config)
        img, k = s["image"], 8
        corners = [
            img[a, b, c]
            for a in (slice(0, k), slice(-k, None))
            for b in (slice(0, k), slice(-k, None))
            for c in (slice(0, k), slice(-k, None))
        ]
        # Noise in a corner: robust std of x-differences (anatomy is smooth at that scale).
        noise = [np.median(np.abs(np.diff(c, axis=2))) * 1.4826 / np.sqrt(2) for c in corners]
        feats.append(
            {
                "corner_noise": np.median(noise),
                "corner_mean": np.median([c.mean() for c in corners]),
                "mean_hu": img.mean(),
                "bright_300": (img > 300).mean(),
                "bright_1000": (img > 1000).mean(),
                "fat": (img < -50).mean(),
            }
        )
        y.append(s["label"])
    return feats, np.array(y)


def test_background_statistics_do_not_separate_the_classes(rendered) -> None:
    feats, y = rendered
    for key in ("corner_noise", "corner_mean"):
        auc = _auroc(y, np.array([f[key] for f in feats]))
        assert abs(auc - 0.5) < 0.1, f"{key}: AUROC {auc:.3f}"


def test_no_single_global_statistic_is_a_strong_shortcut(rendered) -> None:
    """Malignant lesions are larger and sit in bone more often; the confounder pairs keep the
    patch's mean HU, bright and fat fractions overlapping between the classes."""
    feats, y = rendered
    for key in ("mean_hu", "bright_300", "bright_1000", "fat"):
        auc = _auroc(y, np.array([f[key] for f in feats]))
        assert abs(auc - 0.5) < 0.2, f"{key}: AUROC {auc:.3f}"


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"patch_size": (48, 8, 48)}, ["patch_size", "(48, 8, 48)", ">= 16"]),
        ({"patch_size": (48, 48)}, ["patch_size"]),
        ({"spacing": (1.0, 0.0, 1.0)}, ["spacing", "(1.0, 0.0, 1.0)"]),
        ({"patterns": ["enchondroma", "osteoma"]}, ["patterns", "osteoma", "phlebolith"]),
        ({"patterns": {"bogus": 1.0}}, ["patterns", "bogus"]),
        ({"patterns": ["enchondroma"]}, ["patterns", "malignant", "malignant_fraction"]),
        ({"malignant_fraction": 1.5}, ["malignant_fraction", "1.5"]),
        ({"difficulty": -0.1}, ["difficulty", "-0.1"]),
        ({"label_noise": 0.9}, ["label_noise", "0.9"]),
        ({"noise_std_hu": (40, 5)}, ["noise_std_hu", "(40, 5)"]),
        ({"kernels": ["soft"]}, ["kernels", "soft", "sharp"]),
        ({"position_jitter_mm": -1}, ["position_jitter_mm", "-1"]),
        ({"hu_scale": (1.1, 0.9)}, ["hu_scale", "(1.1, 0.9)"]),
        ({"noise_correlation_mm": (0.0, 1.0)}, ["noise_correlation_mm", "0.1"]),
        ({"blur_z_ratio": (1.0,)}, ["blur_z_ratio"]),
        ({"vessel_prob": 1.5}, ["vessel_prob", "1.5"]),
        ({"vessel_hu": (300, 30)}, ["vessel_hu", "(300, 30)"]),
        ({"bone_absent_prob": -0.2}, ["bone_absent_prob", "-0.2"]),
    ],
)
def test_config_errors_name_the_field_and_the_value(kwargs, needles) -> None:
    with pytest.raises(ValueError) as err:
        PhantomConfig(**kwargs)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_config_accepts_lists_and_stays_hashable() -> None:
    c = PhantomConfig(
        patch_size=[32, 40, 48],
        spacing=[2, 1, 1],
        noise_std_hu=[0, 0],
        patterns=["enchondroma", "chondrosarcoma_high_grade"],
    )
    assert c.patch_size == (32, 40, 48) and c.spacing == (2.0, 1.0, 1.0)
    assert hash(c) == hash(replace(c))


@pytest.mark.parametrize(
    ("size", "spacing"),
    [
        ((32, 32, 32), (1.5, 1.5, 1.5)),
        ((48, 48, 48), (1.25, 1.25, 1.25)),
        ((20, 48, 40), (3.0, 0.8, 0.9)),
        ((16, 24, 16), (2.0, 2.0, 2.0)),
    ],
)
def test_any_patch_size_and_spacing(size, spacing) -> None:
    config = PhantomConfig(patch_size=size, spacing=spacing)
    for i in range(3):
        img = generate_sample(i, 9, config)["image"]
        assert img.shape == size and img.dtype == np.float32 and np.isfinite(img).all()


def test_sample_params_rejects_bad_index_and_pattern() -> None:
    with pytest.raises(ValueError, match="index=-1"):
        sample_params(-1, 0)
    with pytest.raises(ValueError, match="'osteoma'"):
        sample_params(0, 0, pattern="osteoma")


# -- files -----------------------------------------------------------------------------------------
def test_write_dataset_round_trips_through_nifti(tmp_path) -> None:
    import nibabel as nib

    from calcinet.data.phantom.materialize import write_dataset

    manifest = write_dataset(tmp_path / "ds", 4, seed=5, config=SMALL)
    with manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    assert header[:4] == ["path", "label", "patient_id", "pattern"]
    assert set(NUISANCE_KEYS) <= set(header) and "render_seed" in header
    assert len(rows) == 4 and len({r["patient_id"] for r in rows}) == 4
    for i, row in enumerate(rows):
        params = sample_params(i, 5, SMALL)
        assert row["label"] == ("benign", "malignant")[params["label"]]
        assert row["pattern"] == params["pattern"]
        nii = nib.load(tmp_path / "ds" / row["path"])
        assert nii.get_data_dtype() == np.float32
        np.testing.assert_allclose(np.diag(nii.affine)[:3], SMALL.spacing[::-1])
        vol = np.asarray(nii.dataobj)
        np.testing.assert_array_equal(vol.transpose(2, 1, 0), render(params, SMALL))


def test_render_montage_writes_a_png(tmp_path) -> None:
    from calcinet.data.phantom.montage import render_montage

    path = render_montage(
        tmp_path / "m.png", SMALL, seed=1, patterns=["enchondroma", "chondrosarcoma_high_grade"]
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize(
    ("patch_size", "spacing"),
    [((24, 24, 24), (2.0, 2.0, 2.0)), ((16, 40, 32), (3.0, 0.9, 1.1))],
)
def test_every_pattern_renders_at_awkward_geometries(patch_size, spacing) -> None:
    """Lesions much larger than the patch and boxes clipped at its border must still render."""
    config = PhantomConfig(patch_size=patch_size, spacing=spacing)
    for pattern in PATTERNS:
        for index in range(12):
            params = sample_params(index, 99, config, pattern=pattern)
            image = render(params, config)
            assert image.shape == patch_size and np.isfinite(image).all(), (pattern, index)
