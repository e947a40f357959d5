"""The manifest source: every format reads back in HU and RAS, crops land on the centre, records
collate, artifacts are written."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from calcinet.data.datamodule import CalciDataModule
from calcinet.data.manifest import ManifestSource
from calcinet.data.transforms import CutPatchd, ReadVolumed, build_transforms
from calcinet.imaging import cut_patch, pad_value_hu, read_volume
from tests.data.conftest import (
    ODD_AFFINE,
    patch_rows,
    smooth_volume,
    write_dicom_series,
    write_manifest,
    write_nifti,
    write_nrrd,
)

WIDE = (-1024.0, 3071.0)  # window wide enough to invert to HU exactly
SHAPE = (9, 7, 6)


def _hu(source: ManifestSource, record: dict, patch, spacing) -> np.ndarray:
    """The sample the validation chain makes of ``record``, back in HU."""
    chain = build_transforms(source.load_transforms(), patch, spacing, WIDE, augment=None)
    image = chain(dict(record))["image"][0].numpy()
    return image * (WIDE[1] - WIDE[0]) + WIDE[0]


def _ras(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``volume`` reoriented to RAS by nibabel (independently of MONAI)."""
    ornt = nib.orientations.io_orientation(affine)
    return nib.orientations.apply_orientation(volume, ornt)


def _source_of(tmp_path: Path, rows: list[dict], **kw) -> ManifestSource:
    # Two extra plain rows of each class so every split can hold both classes.
    extra = patch_rows(tmp_path / "extra", 6)
    for row in extra:
        row["path"] = f"extra/{row['path']}"
    split = {"split": "train"}
    rows = [{**split, "patient_id": f"Q{i}", **r} for i, r in enumerate(rows)]
    extra = [{**r, "split": s} for r, s in zip(extra, ["val", "val", "test", "test", "train",
                                                         "train"], strict=True)]
    manifest = write_manifest(tmp_path / "manifest.csv", [*rows, *extra])
    return ManifestSource(manifest, **kw)


@pytest.mark.parametrize("fmt", ["nifti", "nrrd", "npy", "dicom"])
def test_every_format_reads_back_in_hu_and_ras(fmt: str, tmp_path: Path) -> None:
    volume = smooth_volume(SHAPE)
    row = {"path": "", "label": "malignant"}
    if fmt == "nifti":
        row["path"] = write_nifti(tmp_path / "a.nii.gz", volume).name
        expected, spacing = _ras(volume, ODD_AFFINE), (0.8, 1.2, 2.0)
    elif fmt == "nrrd":
        row["path"] = write_nrrd(tmp_path / "a.nrrd", volume).name
        expected, spacing = _ras(volume, ODD_AFFINE), (0.8, 1.2, 2.0)
    elif fmt == "npy":
        np.save(tmp_path / "a.npy", volume)
        row.update(path="a.npy", spacing_x=0.8, spacing_y=1.2, spacing_z=2.0)
        expected, spacing = volume, (0.8, 1.2, 2.0)
    else:
        # Stored as (HU + 1024) / 2 with slope 2, intercept -1024: true HU only if MONAI rescales.
        write_dicom_series(tmp_path / "series", volume, pixel_spacing=(0.9, 0.7),
                           slice_spacing=2.5)
        row["path"] = "series"
        quantised = np.rint((volume + 1024) / 2) * 2 - 1024
        expected, spacing = quantised[::-1, ::-1, :], (0.7, 0.9, 2.5)  # LPS -> RAS
    source = _source_of(tmp_path, [row])
    (record,) = [r for r in source.records("train") if r["manifest_line"] == 2]
    hu = _hu(source, record, expected.shape, spacing)
    assert hu.shape == expected.shape
    np.testing.assert_allclose(hu, expected, atol=0.05)


def test_dicom_rescale_is_applied_by_the_reader(tmp_path: Path) -> None:
    volume = np.full((6, 5, 4), 40.0, dtype=np.float32)
    volume[0, 0, 0] = -1000.0
    series = write_dicom_series(tmp_path / "s", volume, (0.5, 0.5), 1.0, slope=2.0,
                                intercept=-1024.0)
    image = read_volume(series)
    assert image.shape == (6, 5, 4)
    assert sorted(np.unique(image.array).tolist()) == [-1000.0, 40.0]
    np.testing.assert_allclose(np.diag(image.affine)[:3], [-0.5, -0.5, 1.0])


def _centroid(hu: np.ndarray, threshold: float) -> np.ndarray:
    """Centre of the voxels above ``threshold``, weighted by how far above."""
    weight = np.clip(hu - threshold, 0, None)
    grid = np.indices(hu.shape).reshape(3, -1)
    return (grid * weight.reshape(-1)).sum(axis=1) / weight.sum()


def _scan_with_markers(tmp_path: Path, name: str, centre_vox, affine=ODD_AFFINE,
                       shape=(40, 24, 30)) -> tuple[Path, np.ndarray]:
    """A scan of soft tissue with a bright 3-voxel blob at ``centre_vox`` and a dimmer blob
    4 mm from it along +x (RAS: towards the patient's left... in RAS, x grows to the right)."""
    volume = np.full(shape, 40.0, dtype=np.float32)
    volume[-3:] = -1000.0  # some air, as in any scan (far from the findings used here)
    c = np.asarray(centre_vox)
    volume[tuple(slice(v - 1, v + 2) for v in c)] = 3000.0
    # +4 mm along RAS x: voxel axis i runs to -x at 0.8 mm, so 5 voxels back along i.
    offset = c - np.array([5, 0, 0]) if affine is ODD_AFFINE else c + np.array([5, 0, 0])
    volume[tuple(slice(max(v - 1, 0), v + 2) for v in offset)] = 1500.0
    return write_nifti(tmp_path / name, volume, affine), c


@pytest.mark.parametrize("space", ["voxel", "world", "lps"])
def test_crop_centres_the_finding_in_every_coordinate_space(space: str, tmp_path: Path) -> None:
    patch, spacing = (15, 15, 15), (1.0, 1.0, 1.0)
    rows = []
    for name, vox in [("a.nii.gz", (20, 12, 15)), ("edge.nii.gz", (6, 1, 28))]:
        _, c = _scan_with_markers(tmp_path, name, vox)
        point = c.astype(float) if space == "voxel" else (ODD_AFFINE @ [*c, 1.0])[:3]
        if space == "lps":
            point = point * [-1, -1, 1]
        rows.append({"path": name, "label": "benign", "center_x": point[0],
                     "center_y": point[1], "center_z": point[2], "coord_space": space})
    source = _source_of(tmp_path, rows, patch_size=patch, spacing=spacing)
    records = [r for r in source.records("train") if r["manifest_line"] in (2, 3)]
    assert len(records) == 2
    for record in records:
        hu = _hu(source, record, patch, spacing)
        assert hu.shape == patch
        np.testing.assert_allclose(_centroid(hu, 2000.0), (7, 7, 7), atol=0.75,
                                   err_msg=record["id"])
    # Orientation: the dimmer blob is 4 mm towards +x (R) in the RAS patch.
    hu = _hu(source, records[0], patch, spacing)
    dim = _centroid(hu[10:, 4:11, 4:11], 700.0) + (10, 4, 4)
    np.testing.assert_allclose(dim, (11, 7, 7), atol=0.75)
    assert hu[3, 7, 7] < 100
    # Near the border the patch is padded with air, or the window's low end if lower (as predict).
    edge = _hu(source, records[1], patch, spacing)
    assert edge.min() == pytest.approx(pad_value_hu(WIDE), abs=1e-3) == -1024.0


def test_patch_affine_puts_the_centre_voxel_on_the_finding(tmp_path: Path) -> None:
    path, c = _scan_with_markers(tmp_path, "a.nii.gz", (20, 12, 15))
    chain = [ReadVolumed(), CutPatchd(patch_size=(10, 10, 10), spacing=(1.0, 1.0, 1.0),
                                      pad_value=-1000.0)]
    out = {"image": str(path), "finding": {"center": c.tolist(), "coord_space": "voxel"}}
    for transform in chain:
        out = transform(out)
    assert "finding" not in out and out["image"].shape == (1, 10, 10, 10)
    patch = cut_patch(read_volume(path), (10, 10, 10), (1.0, 1.0, 1.0), c.tolist(), "voxel",
                      -1000.0)
    np.testing.assert_array_equal(out["image"], patch.values.numpy())  # the transform's patch
    # Patch voxel 5 (size // 2) lies within half a patch voxel of the finding's world point.
    centre = (patch.affine @ [5, 5, 5, 1])[:3]
    assert np.abs(centre - (ODD_AFFINE @ [*c, 1])[:3]).max() <= 0.5
    assert float(out["image"][0, 5, 5, 5]) == 3000.0


def test_records_collate_and_keep_metadata(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 12)
    for i, row in enumerate(rows):
        row.update(pattern=["popcorn", ""][i % 2 if i < 4 else 0], size_mm=(2.5 if i else ""),
                   reader=i)
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows), val_fraction=0.25,
                            test_fraction=0.25, patch_size=(12, 12, 12), spacing=(1, 1, 1.5))
    dm = CalciDataModule(source, (12, 12, 12), (1.0, 1.0, 1.5), WIDE, batch_size=4,
                         cache="none", augment=None)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 12, 12, 12)
    assert isinstance(batch["pattern"], list) and isinstance(batch["patient_id"], list)
    assert batch["size_mm"].dtype == torch.float64 and batch["reader"].dtype == torch.int64
    assert set(batch["split"]) == {"train"}
    record = next(r for s in ("train", "val", "test") for r in source.records(s)
                  if r["manifest_line"] == 2)
    assert record["pattern"] == "popcorn" and np.isnan(record["size_mm"])
    assert record["id"] == "img000.nii.gz"


def test_limits_keep_both_classes_and_fingerprint_follows_the_data(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 20)
    manifest = write_manifest(tmp_path / "m.csv", rows)
    full = ManifestSource(manifest)
    small = ManifestSource(manifest, num_train=4)
    assert len(small.records("train")) == 4
    assert {r["label"] for r in small.records("train")} == {0, 1}
    assert len(full.records("val")) == len(small.records("val"))
    assert full.fingerprint() == ManifestSource(manifest).fingerprint()
    assert full.fingerprint() != small.fingerprint()
    write_nifti(tmp_path / "img003.nii.gz", smooth_volume((12, 12, 13)))
    assert ManifestSource(manifest).fingerprint() != full.fingerprint()


def test_artifacts_list_the_split_of_every_row(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 12)
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows))
    paths = source.write_artifacts(tmp_path / "artifacts")
    assert {p.name for p in paths} == {"manifest.csv", "splits.csv"}
    with (tmp_path / "artifacts" / "splits.csv").open() as fh:
        splits = list(csv.DictReader(fh))
    assert [int(r["manifest_line"]) for r in splits] == list(range(2, 14))
    assert {r["split"] for r in splits} == {"train", "val", "test"}
    assert b"\r" not in (tmp_path / "artifacts" / "splits.csv").read_bytes()


def test_image_facts_are_cached_on_size_and_mtime(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rows = patch_rows(tmp_path, 12)
    manifest = write_manifest(tmp_path / "m.csv", rows)
    ManifestSource(manifest, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "image_facts.json").is_file()
    reads = []
    import calcinet.data.manifest as module

    original = module.read_volume
    monkeypatch.setattr(module, "read_volume", lambda *a, **k: reads.append(a) or original(*a, **k))
    ManifestSource(manifest, cache_dir=tmp_path / "cache")
    assert reads == []
    write_nifti(tmp_path / "img004.nii.gz", smooth_volume((12, 12, 12)) * np.nan)
    with pytest.raises(ValueError, match="1728 NaN or infinite voxels"):
        ManifestSource(manifest, cache_dir=tmp_path / "cache")
    assert len(reads) == 1


def test_crop_in_a_dicom_series_from_patient_coordinates(tmp_path: Path) -> None:
    """The realistic case: a DICOM scan and a finding given in DICOM (LPS) millimetres."""
    hu = np.full((30, 26, 14), 40.0, dtype=np.float32)
    hu[:, :3] = -1000.0
    hu[17:20, 9:12, 7:10] = 2000.0  # blob centred on voxel (18, 10, 8): column, row, slice
    origin = (-20.0, 15.0, 100.0)
    write_dicom_series(tmp_path / "scan", hu, pixel_spacing=(0.9, 0.7), slice_spacing=2.5,
                       origin=origin)
    lps = [origin[0] + 18 * 0.7, origin[1] + 10 * 0.9, origin[2] + 8 * 2.5]
    row = {"path": "scan", "label": "malignant", "center_x": lps[0], "center_y": lps[1],
           "center_z": lps[2], "coord_space": "lps"}
    patch, spacing = (11, 11, 11), (1.0, 1.0, 1.0)
    source = _source_of(tmp_path, [row], patch_size=patch, spacing=spacing)
    (record,) = [r for r in source.records("train") if r["manifest_line"] == 2]
    np.testing.assert_allclose(_centroid(_hu(source, record, patch, spacing), 1000.0), (5, 5, 5),
                               atol=0.75)


def test_disk_cache_gives_the_same_samples(tmp_path: Path) -> None:
    rows = patch_rows(tmp_path, 12)
    source = ManifestSource(write_manifest(tmp_path / "m.csv", rows))
    options = dict(batch_size=4, augment=None, cache_workers=1)
    memory = CalciDataModule(source, (12, 12, 12), (1.0, 1.0, 1.5), WIDE, **options)
    disk = CalciDataModule(source, (12, 12, 12), (1.0, 1.0, 1.5), WIDE, cache="disk",
                           cache_dir=str(tmp_path / "cache"), **options)
    memory.setup("validate")
    disk.setup("validate")
    for i in range(len(source.records("val"))):
        assert torch.equal(memory.datasets["val"][i]["image"], disk.datasets["val"][i]["image"])
    assert list((tmp_path / "cache").rglob("*.pt"))
