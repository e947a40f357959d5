"""DICOM read by geometry, on the real files of ``../shared/fixtures/real/`` and cases derived
from them; every expected value comes from the file headers (pydicom) or the fixtures' README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from calcinet.imaging import LPS_TO_RAS, ReadError, read_volume
from tests.imaging.real import (
    AXIAL,
    COLOUR,
    ENCODINGS,
    ENHANCED,
    GAP,
    SLICE,
    axial_case,
    axial_slices,
    real,
    write_slices,
)


def _header_affine(first: pydicom.Dataset, second: pydicom.Dataset) -> np.ndarray:
    """Voxel [column, row, slice] -> RAS mm from two neighbouring slices' headers."""
    orientation = np.asarray(first.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * column_spacing
    affine[:3, 1] = orientation[3:] * row_spacing
    affine[:3, 2] = np.subtract(second.ImagePositionPatient, first.ImagePositionPatient)
    affine[:3, 3] = first.ImagePositionPatient
    return LPS_TO_RAS @ affine


def test_axial_series_is_read_by_position_in_hu() -> None:
    slices = axial_slices()  # sorted here by ImagePositionPatient z, from pydicom alone
    volume = read_volume(real(AXIAL))
    assert volume.shape == (512, 512, 28)
    expected = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in slices], axis=-1)
    np.testing.assert_array_equal(volume.array, expected.transpose(1, 0, 2))
    np.testing.assert_allclose(volume.affine, _header_affine(slices[0], slices[1]), atol=1e-6)
    # README: pixel 0.451 mm, 5 mm slices, origin (-115.5, -1.85, 696.21) LPS.
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0),
                               [0.451171875, 0.451171875, 5.0], atol=1e-6)
    np.testing.assert_allclose(LPS_TO_RAS[:3, :3] @ volume.affine[:3, 3], [-115.5, -1.85, 696.21])


@pytest.mark.parametrize("case", ["reversed", "interleaved"])
def test_instance_numbers_against_the_position_do_not_move_the_slices(
        case: str, tmp_path: Path) -> None:
    reference = read_volume(axial_case(tmp_path, "marked")[0])
    folder, _ = axial_case(tmp_path, case)
    numbers = [pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber
               for p in sorted(folder.iterdir())]
    assert numbers != sorted(numbers)  # the files' numbering is not the slice order
    volume = read_volume(folder)
    np.testing.assert_array_equal(volume.array, reference.array)
    np.testing.assert_array_equal(volume.affine, reference.affine)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("removed", r"a gap of 10\.00 mm between slices S0014 \(InstanceNumber \d+\) at 761\.21 "
                    r"mm and S0015 \(InstanceNumber \d+\) at 771\.21 mm where the series steps "
                    r"5\.00 mm"),
        ("duplicated", r"slices S0011 \(InstanceNumber 11\) and S0029 \(InstanceNumber 11\) are "
                       r"at one position \(746\.21 mm along the slice normal\)"),
        ("two_series", r"2 DICOM series in one folder \(1\.3\.46\.670589\.[\d.]+: 28 files "
                       r"'STD BRAIN 5MM'; [\d.]+: 3 files 'STD BRAIN 5MM'\); expected one series "
                       r"per folder"),
        ("tilted", r"slices are not stacked along their normal \(gantry tilt 5\.00 degrees"),
        ("varying", r"a gap of 6\.00 mm between slices S0008"),
    ],
)
def test_a_series_that_cannot_be_stacked_is_refused_by_name(
        case: str, message: str, tmp_path: Path) -> None:
    folder, _ = axial_case(tmp_path, case)
    with pytest.raises(ReadError, match=f"^{folder}: {message}") as caught:
        read_volume(folder)
    assert "\n" not in str(caught.value) and "expected" in str(caught.value)


def test_real_series_with_missing_slices_is_refused_with_the_gap() -> None:
    # README: InstanceNumber 18, 180, 181, 182 at z -99.48, 103.02, 104.27, 105.52 mm.
    with pytest.raises(ReadError, match=r"a gap of 202\.50 mm between slices 7106 \(InstanceNumber "
                       r"18\) at -99\.48 mm and 7136 \(InstanceNumber 180\) at 103\.02 mm where "
                       r"the series steps 1\.25 mm"):
        read_volume(real(GAP))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (SLICE, "a single 2D slice (one image of series"),
        (ENCODINGS / "CT1_UNC.explicit_big_endian.dcm", "a single 2D slice"),
        (COLOUR, "a colour image (SamplesPerPixel 3, PhotometricInterpretation YBR_FULL_422)"),
        (COLOUR / "ctbrain1.dcm", "a colour image (SamplesPerPixel 3"),
        (ENCODINGS, "are at one position (-75.70 mm along the slice normal); expected each "
                    "position once"),
        (ENHANCED, "4 objects in one series, 4 of them multi-frame; expected one Enhanced CT file"),
    ],
)
def test_what_is_not_a_ct_volume_gets_one_line(path: Path, message: str) -> None:
    with pytest.raises(ReadError) as caught:
        read_volume(real(path))
    text = str(caught.value)
    assert message in text and "\n" not in text and "expected" in text
    assert text.startswith(f"{path}: ") or text.startswith(f"{path.parent}: ")


def test_a_folder_holding_one_slice_is_refused_as_2d(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "CT_small.dcm").write_bytes(real(SLICE).read_bytes())
    with pytest.raises(ReadError, match="a single 2D slice .*give the folder holding every slice"):
        read_volume(folder)


def test_each_encoding_alone_gives_the_same_hu() -> None:
    values = []
    for file in sorted(real(ENCODINGS).iterdir()):
        ds = pydicom.dcmread(file)
        values.append(apply_modality_lut(ds.pixel_array, ds))
    assert all(np.array_equal(values[0], v) for v in values[1:])


@pytest.mark.parametrize("name", ["eCT_Supplemental.dcm", "CT0012.not_fragmented_bot_rle.dcm",
                                  "CT0012.fragmented_no_bot_jpeg_lossless.70.dcm",
                                  "CT0012.fragmented_no_bot_jpeg_ls.80.dcm"])
def test_enhanced_ct_is_read_from_its_functional_groups(name: str) -> None:
    file = real(ENHANCED / name)
    volume = read_volume(file)
    assert volume.shape == (512, 512, 2)
    # README: pixel 0.389 mm, frames 10 mm apart, IOP (-1, 0, 0, 0, 1, 0), rescale 1 / -1024.
    ds = pydicom.dcmread(file)
    shared = ds.SharedFunctionalGroupsSequence[0]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    np.testing.assert_allclose(np.linalg.norm(volume.affine[:3, :3], axis=0),
                               [spacing[1], spacing[0], 10.0], atol=1e-4)
    lps = LPS_TO_RAS @ volume.affine
    np.testing.assert_allclose(lps[:3, 0] / spacing[1], [-1, 0, 0], atol=1e-6)  # along a row
    np.testing.assert_allclose(lps[:3, 1] / spacing[0], [0, 1, 0], atol=1e-6)  # down a column
    frames = ds.PerFrameFunctionalGroupsSequence
    corner = [float(v) for v in frames[0].PlanePositionSequence[0].ImagePositionPatient]
    positions = {tuple(float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient)
                 for f in frames}
    assert tuple((lps @ [0, 0, 0, 1])[:3].round(4)) in {tuple(np.round(p, 4)) for p in positions}
    assert corner in [list(p) for p in positions]
    rescale = (frames[0].get("PixelValueTransformationSequence")
               or shared.PixelValueTransformationSequence)[0]
    stored = ds.pixel_array.astype(np.float64)  # [frame, row, column]
    hu = stored * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
    by_frame = {round(float((lps @ [0, 0, k, 1])[2]), 3): volume.array[:, :, k] for k in range(2)}
    for f, frame in enumerate(frames):
        z = round(float(frame.PlanePositionSequence[0].ImagePositionPatient[2]), 3)
        np.testing.assert_array_equal(by_frame[z], hu[f].T)


def test_dicomdir_is_followed_to_its_series(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for file in sorted(real(AXIAL).iterdir()):
        if file.name != "DIRFILE":
            fileset.add(pydicom.dcmread(file))
    fileset.write(tmp_path / "cd")
    assert (tmp_path / "cd" / "DICOMDIR").is_file()
    reference = read_volume(real(AXIAL))
    for given in (tmp_path / "cd", tmp_path / "cd" / "DICOMDIR"):
        volume = read_volume(given)
        np.testing.assert_array_equal(volume.array, reference.array)
        np.testing.assert_allclose(volume.affine, reference.affine)
    # A tree without DICOMDIR: the images are in sub-folders only.
    (tmp_path / "cd" / "DICOMDIR").unlink()
    with pytest.raises(ReadError, match="no DICOM image directly in the folder .* expected the "
                                        "folder of one series"):
        read_volume(tmp_path / "cd")


def test_dicomdir_with_two_series_names_them(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet
    from pydicom.uid import generate_uid

    fileset = FileSet()
    for file in sorted(real(AXIAL).iterdir())[:6]:
        if file.name != "DIRFILE":
            fileset.add(pydicom.dcmread(file))
    other = generate_uid()
    for file in sorted(real(AXIAL).iterdir())[6:9]:
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID = other
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        fileset.add(ds)
    fileset.write(tmp_path / "cd")
    with pytest.raises(ReadError, match=r"a DICOMDIR listing 2 series \(5 images in .*; 3 images "
                                        r"in .*\); expected one: give the folder of the series"):
        read_volume(tmp_path / "cd")


def test_a_slice_of_another_size_or_a_truncated_file_is_named(tmp_path: Path) -> None:
    slices = axial_slices()[:5]
    slices[3].PixelSpacing = [0.5, 0.5]
    folder = write_slices(tmp_path / "spacing", slices)
    with pytest.raises(ReadError, match=r"slice S0004 \(InstanceNumber \d+\) is 512x512 pixels "
                                        r"of \[0.5, 0.5\] mm where S0001 .* expected one image "
                                        r"size and pixel spacing in a series"):
        read_volume(folder)
    folder = write_slices(tmp_path / "truncated", axial_slices()[:5])
    whole = (folder / "S0003").read_bytes()
    (folder / "S0003").write_bytes(whole[: len(whole) - 1000])
    with pytest.raises(ReadError, match="pixel data that cannot be read .* expected complete "
                                        "files: was one truncated while copying"):
        read_volume(folder)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("Modality", "MR", "DICOM Modality 'MR'; calcinet reads CT in HU, expected Modality 'CT'"),
    ("ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"], "slice S0001 (InstanceNumber 1) is a "
                                                        "localizer (scout) image, not part of a "
                                                        "CT volume; expected the axial series "
                                                        "only (move the localizer out of the "
                                                        "folder)"),
])
def test_what_is_not_an_axial_ct_series_is_refused(field: str, value, message: str,
                                                   tmp_path: Path) -> None:
    slices = axial_slices()[:4]
    for ds in slices:
        setattr(ds, field, value)
    folder = write_slices(tmp_path / "series", slices)
    with pytest.raises(ReadError, match=f"^{folder}: {re.escape(message)}$"):
        read_volume(folder)


#: What pylibjpeg-libjpeg and pyjpegls install (their modules, extensions and metadata).
DECODERS = ("libjpeg", "_libjpeg", "pylibjpeg_libjpeg", "jpeg_ls", "pyjpegls")
READ = r"""
import sys
from calcinet.imaging import ReadError, read_volume
try:
    read_volume(sys.argv[1])
except ReadError as error:
    print(error)
"""


def _site_without(folder: Path, prefixes: tuple[str, ...]) -> Path:
    """A copy (by symbolic links) of this environment's site-packages without the entries whose
    names start with ``prefixes``: for a fresh interpreter, those packages are not installed."""
    import calcinet

    site = Path(np.__file__).resolve().parents[1]
    folder.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(prefixes) and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return Path(calcinet.__file__).resolve().parents[1]  # the source tree, for PYTHONPATH


@pytest.mark.parametrize("name", ["CT0012.fragmented_no_bot_jpeg_lossless.70.dcm",
                                  "CT0012.fragmented_no_bot_jpeg_ls.80.dcm"])
def test_a_missing_decoder_names_the_package(name: str, tmp_path: Path) -> None:
    source = _site_without(tmp_path / "site", DECODERS)
    done = subprocess.run(
        [sys.executable, "-S", "-c", READ, str(real(ENHANCED / name))], capture_output=True,
        text=True, timeout=300, env={"PYTHONPATH": f"{tmp_path / 'site'}:{source}"})
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "\n" not in message
    assert "compressed pixel data that no installed decoder reads" in message
    assert "pylibjpeg-libjpeg" in message  # the package to install, named in full
    if name.endswith(".80.dcm"):
        assert "pyjpegls" in message
