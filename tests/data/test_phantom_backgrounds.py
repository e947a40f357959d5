"""Real CT backgrounds of the phantom: scan facts, drawing, insertion, defaults and errors.

The scans are the real fixtures of ../shared/fixtures/real/ (see its README for the facts).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from calcinet.data.phantom import PhantomConfig, generate_sample, render, sample_params
from calcinet.data.phantom import shapes as shapes_module
from calcinet.data.phantom.anatomy import soft_tissue
from calcinet.data.phantom.backgrounds import (
    TISSUE_PROBE_MM,
    background_patch,
    insert_finding,
    load_scan,
    patch_sites,
)
from calcinet.data.phantom.config import RENDERERS
from calcinet.data.phantom.sampling import scene_object
from calcinet.data.phantom.shapes import Scene, sphere

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"
LUNG1 = REAL / "nrrd" / "lung1_image.nrrd"
AXIAL = REAL / "dicom" / "axial_series"
SPACING = (1.25, 1.25, 1.25)
CONFIG = PhantomConfig(patch_size=(32, 32, 32), spacing=SPACING, backgrounds=(str(LUNG1),),
                       real_background_fraction=1.0)

pytestmark = pytest.mark.skipif(not LUNG1.exists(), reason="real CT fixtures not present")


@pytest.fixture(scope="module")
def lung1():
    return load_scan(str(LUNG1), SPACING)


def _ball(shape, spacing, radius_mm: float, value: float) -> tuple[np.ndarray, np.ndarray]:
    """A hand-made ideal finding: a ball of `value` HU at the patch centre, its cover the exact
    volume fraction of each voxel (4^3 sub-samples per voxel)."""
    sub = 4
    axes = [((np.arange(n * sub) + 0.5) / sub - n / 2) * s for n, s in zip(shape, spacing,
                                                                           strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = (z * z + y * y + x * x <= radius_mm**2).astype(np.float32)
    cover = inside.reshape(shape[0], sub, shape[1], sub, shape[2], sub).mean(axis=(1, 3, 5))
    return np.full(shape, value, np.float32), cover.astype(np.float32)


def _flat_site(scan, size: int = 32) -> tuple[np.ndarray, int]:
    """The soft-tissue patch (from the scan's own candidate sites) whose central 10 mm cube is the
    flattest, and its first slice index."""
    best = None
    for c in patch_sites(scan.path, SPACING, (size,) * 3, CONFIG.background_tissue_hu)[::7]:
        core = scan.hu[c[0] - 4:c[0] + 4, c[1] - 4:c[1] + 4, c[2] - 4:c[2] + 4]
        if best is None or core.std() < best[0]:
            best = (float(core.std()), c)
    c = best[1]
    start = c - size // 2
    patch = scan.hu[start[0]:start[0] + size, start[1]:start[1] + size, start[2]:start[2] + size]
    return patch.copy(), int(start[0])


# -- scan facts ------------------------------------------------------------------------------------
def test_scan_facts_match_the_fixture_readme(lung1) -> None:
    import nrrd

    raw, _ = nrrd.read(str(LUNG1))
    # README: 512 x 512 x 48, spacing 0.570 x 0.570 x 5.0 mm; (z, y, x) here.
    assert lung1.native_spacing == pytest.approx((5.0, 0.570, 0.570), abs=1e-3)
    assert lung1.slice_thickness_mm == 5.0
    assert lung1.hu.shape == (round(48 * 5.0 / 1.25), round(512 * 0.5703125 / 1.25),
                              round(512 * 0.5703125 / 1.25))
    # Trilinear resampling stays within the file's HU range and keeps its mean.
    assert raw.min() - 0.01 <= lung1.hu.min() < -1000 < 1000 < lung1.hu.max() <= raw.max() + 0.01
    assert float(lung1.hu.mean()) == pytest.approx(float(raw.mean()), abs=15.0)
    assert lung1.path == str(LUNG1)


def test_dicom_series_facts_and_slice_thickness_tag() -> None:
    scan = load_scan(str(AXIAL), SPACING)
    # README: 28 slices of 512 x 512, 0.451 mm pixels, 5 mm slices (SliceThickness).
    assert scan.native_spacing == pytest.approx((5.0, 0.451, 0.451), abs=1e-3)
    assert scan.slice_thickness_mm == 5.0
    assert scan.hu.shape == (112, 185, 185)


def test_a_scan_is_loaded_once_per_process(lung1) -> None:
    before = load_scan.cache_info()
    for i in range(3):
        generate_sample(i, 5, CONFIG)
    after = load_scan.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 3


# -- drawing ---------------------------------------------------------------------------------------
def test_drawing_is_deterministic_and_independent_of_the_class(lung1) -> None:
    a, b = generate_sample(2, 9, CONFIG), generate_sample(2, 9, CONFIG)
    assert a["params"] == b["params"]
    np.testing.assert_array_equal(a["image"], b["image"])
    keys = ("background", "background_z", "background_y", "background_x")
    where = [tuple(sample_params(i, 9, CONFIG)[k] for k in keys) for i in range(12)]
    assert len(set(where)) > 6  # different places for different indices
    # The background has its own stream: the same draw whatever the class prior.
    benign = replace(CONFIG, malignant_fraction=0.0)
    malignant = replace(CONFIG, malignant_fraction=1.0)
    for i in range(12):
        pb, pm = sample_params(i, 9, benign), sample_params(i, 9, malignant)
        assert pb["true_label"] == 0 and pm["true_label"] == 1
        assert tuple(pb[k] for k in keys) == tuple(pm[k] for k in keys) == where[i]


def test_real_background_fraction_is_the_share_of_real_samples() -> None:
    config = replace(CONFIG, real_background_fraction=0.3)
    real = [sample_params(i, 1, config)["background"] != "synthetic" for i in range(400)]
    assert 0.3 - 3 * 0.023 < np.mean(real) < 0.3 + 3 * 0.023  # binomial sd sqrt(.3*.7/400)
    assert sample_params(0, 0, PhantomConfig())["background"] == "synthetic"


@pytest.mark.parametrize("tissue", [(-100.0, 100.0), (-950.0, -600.0)])
def test_patch_centre_lies_in_the_tissue_range_inside_the_volume(lung1, tissue) -> None:
    config = replace(CONFIG, background_tissue_hu=tissue)
    half = round(TISSUE_PROBE_MM / 2 / 1.25)
    for i in range(15):
        p = sample_params(i, 3, config)
        c = np.array([p["background_z"], p["background_y"], p["background_x"]])
        assert np.all(c - 16 >= 0) and np.all(c + 16 <= lung1.hu.shape)
        probe = lung1.hu[tuple(slice(v - half, v + half + 1) for v in c)]
        assert tissue[0] <= float(np.median(probe)) <= tissue[1]
        scan, patch, z_start = background_patch(p, config)
        assert patch.shape == (32, 32, 32) and z_start == c[0] - 16


# -- insertion -------------------------------------------------------------------------------------
def test_outside_the_blurred_support_the_patch_is_the_background_exactly(lung1) -> None:
    bg, z_start = _flat_site(lung1)
    obj, cover = _ball(bg.shape, SPACING, 4.0, 600.0)
    out = insert_finding(bg, obj, cover, lung1, z_start)
    # Reach of the blur (hand count, voxels): in-plane 3 sigma of 0.53 mm -> 2; along z half the
    # 5 mm slice box (2) plus one native slice interval either side for the interpolation (4).
    reach = np.ones((2 * (2 + 4 + 1) + 1, 2 * 2 + 1, 2 * 2 + 1), bool)
    support = ndi.binary_dilation(cover > 0, structure=reach)
    assert support.mean() < 0.5
    np.testing.assert_array_equal(out[~support], bg[~support])
    assert np.abs(out - bg)[support].max() > 100.0


def test_noise_is_the_scans_far_from_and_over_the_finding(lung1) -> None:
    bg, z_start = _flat_site(lung1)
    obj, cover = _ball(bg.shape, SPACING, 12.0, 300.0)
    out = insert_finding(bg, obj, cover, lung1, z_start)
    far = (slice(None), slice(0, 4), slice(0, 4))  # 15+ mm from the ball in-plane
    assert out[far].std() == bg[far].std()
    core = (slice(12, 20), slice(12, 20), slice(12, 20))  # within 5 mm of the centre
    # Over the finding the scan's fluctuations remain (not a clean object): their std is that
    # of the background there, less the slow anatomy the local level takes out.
    assert 0.6 * bg[core].std() < out[core].std() < 1.05 * bg[core].std()
    assert out[core].std() > 1.0  # a clean object pasted there would have std 0


def test_large_finding_reaches_its_hu_at_the_centre(lung1) -> None:
    bg, z_start = _flat_site(lung1)
    obj, cover = _ball(bg.shape, SPACING, 12.0, 300.0)
    out = insert_finding(bg, obj, cover, lung1, z_start)
    # Hand computation: 3 mm around the centre lies > 9 mm inside the ball, beyond the reach of
    # the 5 mm slice profile and its interpolation (5 mm) and of the in-plane PSF, so there the
    # output is 300 + (background - its local level), whose mean is about 0.
    core = (slice(14, 18), slice(14, 18), slice(14, 18))
    assert float(out[core].mean()) == pytest.approx(300.0, abs=12.0)
    # A small finding is diluted by the 5 mm slices: a 1.5 mm ball keeps less than half its
    # contrast (its 3 mm diameter fills at most 3/5 of a slice).
    small_obj, small_cover = _ball(bg.shape, SPACING, 1.5, 1300.0)
    small = insert_finding(bg, small_obj, small_cover, lung1, z_start)
    level = float(np.median(bg[14:18, 14:18, 14:18]))
    assert float((small - bg).max()) < 0.6 * (1300.0 - level)


# -- the voxel renderer's cover --------------------------------------------------------------------
def test_scene_cover_unmixes_what_is_painted_over_the_tissue() -> None:
    config = PhantomConfig(patch_size=(24, 24, 24), spacing=(1.0, 1.0, 1.0))
    p = sample_params(0, 0, config)
    scene = Scene(config.patch_size, config.spacing, np.eye(3), (0, 0, 0),
                  np.random.default_rng(0))
    soft_tissue(scene, p)
    assert scene.cover.max() == 0.0 and np.array_equal(scene.base, scene.img)
    fr = scene.full()
    scene.paint(fr, sphere(fr, 5.0), 700.0)
    obj, cover = scene_object(scene)
    r = fr.radius()
    assert np.all(cover[r < 4.4] == 1.0) and np.all(cover[r > 5.6] == 0.0)
    edge = (cover > 0.05) & (cover < 0.95)
    assert edge.any()
    np.testing.assert_allclose(obj[cover > 0.05], 700.0, atol=0.05)
    np.testing.assert_allclose((1 - cover) * scene.base + cover * obj, scene.img, atol=1e-3)


def test_default_rendering_is_bit_identical_to_drawing_without_cover(monkeypatch) -> None:
    """60 default samples hash the same with the cover bookkeeping as with the drawing alone."""

    def digest() -> str:
        h = hashlib.sha256()
        for i in range(60):
            h.update(generate_sample(i, 0, PhantomConfig())["image"].tobytes())
        return h.hexdigest()

    with_cover = digest()

    def paint_occ(self, fr, occ, value, mode="replace"):  # the drawing, no cover
        view = self.img[fr.sl]
        if mode == "replace":
            view += occ * (value - view)
        elif mode == "add":
            view += occ * value
        else:
            np.maximum(view, view + occ * (value - view), out=view)

    monkeypatch.setattr(shapes_module.Scene, "paint_occ", paint_occ)
    monkeypatch.setattr(shapes_module.Scene, "mark_background", lambda self: None)
    assert digest() == with_cover


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a_real_sample_keeps_the_background_far_from_the_finding(lung1, renderer) -> None:
    config = replace(CONFIG, renderers=(renderer,))
    p = sample_params(0, 0, config, pattern="phlebolith")
    assert p["renderer"] == renderer
    image = render(p, config)
    _, patch, _ = background_patch(p, config)
    assert image.shape == patch.shape and image.dtype == np.float32
    differs = image != patch
    assert 0.0 < differs.mean() < 1.0
    assert np.abs(image - patch).max() > 100.0  # the phlebolith's calcium


# -- configuration errors --------------------------------------------------------------------------
def test_missing_scan_is_one_line_naming_it() -> None:
    with pytest.raises(ValueError) as error:
        PhantomConfig(backgrounds=("nowhere/scan.nrrd",), real_background_fraction=0.5)
    message = str(error.value)
    assert "\n" not in message and "nowhere/scan.nrrd" in message and "backgrounds" in message


def test_unreadable_scan_is_one_line_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nrrd"
    broken.write_text("not a scan\n")
    config = replace(CONFIG, backgrounds=(str(broken),))
    with pytest.raises(ValueError) as error:
        sample_params(0, 0, config)
    message = str(error.value)
    assert "\n" not in message and str(broken) in message


def test_a_label_mask_is_refused_as_a_background() -> None:
    """The fixture's nodule mask (0 and 1, the README's lung1_label.nrrd) is not CT in HU."""
    mask = REAL / "nrrd" / "lung1_label.nrrd"
    config = replace(CONFIG, backgrounds=(str(mask),))
    with pytest.raises(ValueError) as error:
        sample_params(0, 0, config)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{mask}: all values within 1 of each")
    assert message.endswith("expected a CT scan as background")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"real_background_fraction": 0.5}, "real_background_fraction"),
        ({"backgrounds": (str(LUNG1),), "real_background_fraction": 1.5},
         "real_background_fraction"),
        ({"background_tissue_hu": (100.0, -100.0)}, "background_tissue_hu"),
        ({"backgrounds": 7}, "backgrounds"),
        ({"backgrounds": (str(LUNG1), str(LUNG1)), "real_background_fraction": 0.5},
         "backgrounds"),
        ({"backgrounds": (str(LUNG1), str(LUNG1.parent / ".." / "nrrd" / LUNG1.name)),
          "real_background_fraction": 0.5}, "backgrounds"),
        ({"backgrounds": (str(LUNG1),)}, "real_background_fraction"),
    ],
)
def test_bad_background_options_name_the_field(options, field) -> None:
    with pytest.raises(ValueError, match=rf"^PhantomConfig\.{field}=.*expected") as error:
        PhantomConfig(**options)
    assert "\n" not in str(error.value)


def test_hydra_override_from_the_repository_root(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from tests.helpers import compose_config

    path = "../shared/fixtures/real/nrrd/lung1_image.nrrd"
    cfg = compose_config("train", [f"data.source.phantom.backgrounds=[{path}]",
                                   "data.source.phantom.real_background_fraction=0.5",
                                   "data.source.num_train=4", "data.source.num_val=2",
                                   "data.source.num_test=2"], run_dir=tmp_path)
    source = instantiate(cfg.data.source)
    assert source.config.backgrounds == (path,)
    assert {r["params"]["background"] for r in source.records("train")} <= {"synthetic", path}


@pytest.mark.parametrize(
    ("phantom", "fragments"),
    [
        ({"renderers": ["pixel"]}, ["data.source.phantom: PhantomConfig.renderers", "'pixel'"]),
        ({"fat_fraction": 0.3}, ["data.source.phantom.fat_fraction: unknown phantom option",
                                 "'vessel_prob'"]),
        ({"backgrounds": [str(REAL / "README.md")], "real_background_fraction": 0.5},
         ["data.source.phantom: ", "README.md: unknown file type"]),
        ({"backgrounds": [str(LUNG1)], "real_background_fraction": 0.5,
          "background_tissue_hu": [3000, 4000]},
         ["data.source.phantom: ", "lung1_image.nrrd: no 32x32x32-voxel patch",
          "[3000.0, 4000.0]"]),
    ],
)
def test_the_synthetic_source_names_the_bad_phantom_option(phantom, fragments) -> None:
    """Scans are read and searched when the source is built, before any sample is drawn."""
    from calcinet.config import ConfigError
    from calcinet.data.sources import SyntheticSource

    with pytest.raises(ConfigError) as caught:
        SyntheticSource(patch_size=(32, 32, 32), spacing=SPACING, phantom=phantom)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
