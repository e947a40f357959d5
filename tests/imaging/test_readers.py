"""Readers: HU values and voxel-to-RAS affines from NIfTI, NRRD, NumPy and DICOM series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcinet.imaging import ReadError, read_volume
from tests.inference.files import (
    phantom_volume,
    write_dicom_series,
    write_nifti,
    write_nrrd_lps,
)

SHAPE = (6, 5, 4)


def test_nifti_keeps_values_and_affine(tmp_path: Path) -> None:
    hu = phantom_volume(SHAPE)
    affine = np.diag([0.7, 0.8, 2.0, 1.0])
    affine[:3, 3] = [10, -20, 30]
    volume = read_volume(write_nifti(tmp_path / "a.nii.gz", hu, affine))
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.affine, affine)


def test_nrrd_lps_becomes_ras(tmp_path: Path) -> None:
    hu = phantom_volume(SHAPE)
    volume = read_volume(write_nrrd_lps(tmp_path / "a.nrrd", hu, (0.7, 0.8, 2.0), (5, 6, 7)))
    np.testing.assert_array_equal(volume.array, hu)
    expected = np.diag([-0.7, -0.8, 2.0, 1.0])
    expected[:3, 3] = [-5, -6, 7]
    np.testing.assert_allclose(volume.affine, expected)


def test_numpy_uses_the_given_spacing(tmp_path: Path) -> None:
    hu = phantom_volume(SHAPE)
    np.save(tmp_path / "a.npy", hu)
    volume = read_volume(tmp_path / "a.npy", (0.5, 0.6, 3.0))
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.affine, np.diag([0.5, 0.6, 3.0, 1.0]))


def test_dicom_series_is_sorted_rescaled_and_in_ras(tmp_path: Path) -> None:
    hu = phantom_volume(SHAPE)
    folder = write_dicom_series(tmp_path / "series", hu, (0.7, 0.8, 2.0), (5.0, 6.0, 7.0))
    (folder / "notes.txt").write_text("not DICOM")
    volume = read_volume(folder)
    np.testing.assert_array_equal(volume.array, hu)  # slope 2, intercept -1024 undone
    expected = np.diag([-0.7, -0.8, 2.0, 1.0])  # LPS -> RAS
    expected[:3, 3] = [-5.0, -6.0, 7.0]
    np.testing.assert_allclose(volume.affine, expected)


@pytest.mark.parametrize("kind", ["nifti1", "nifti2", "big-endian", "scaled-int16",
                                  "two-members", "uncompressed"])
def test_nifti_reads_as_nibabel_loads_it(tmp_path: Path, kind: str) -> None:
    """Every NIfTI flavour gives nibabel's own ``load`` values and affine (the reference)."""
    import gzip

    import nibabel as nib

    hu = phantom_volume(SHAPE)
    affine = np.diag([0.7, -0.8, 2.0, 1.0])
    klass = nib.Nifti2Image if kind == "nifti2" else nib.Nifti1Image
    image = klass(hu.astype(">f4") if kind == "big-endian" else hu, affine)
    if kind == "scaled-int16":
        image = klass(np.round((hu + 1024) / 2).astype(np.int16), affine)
        image.header.set_slope_inter(2.0, -1024.0)
    path = tmp_path / ("a.nii" if kind == "uncompressed" else "a.nii.gz")
    image.to_filename(path)
    if kind == "two-members":  # as concatenating tools (and some writers) leave them
        data = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(data[:500]) + gzip.compress(data[500:]))
    reference = nib.load(path)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, reference.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert volume.array.dtype == np.float32


def test_truncated_nifti_is_named(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", phantom_volume(SHAPE), np.eye(4))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ReadError,
                       match=f"^{path}: cannot be read as NIfTI .*expected a complete NIfTI file"):
        read_volume(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.nii.gz", b"\x1f\x8b not really gzip", "cannot be read"),
        ("flat.npy", None, "a 2D image (shape [4, 4]); expected a 3D CT volume"),
        ("voxel.npy", np.zeros((1, 1, 1)), "a single voxel (shape [1, 1, 1]); expected a 3D CT"),
        ("scan.mha", b"not an image", "unknown file type"),
        ("empty.nrrd", b"", "an empty file (0 bytes); expected "),
        ("empty.nii.gz", b"", "an empty file (0 bytes); expected "),
        ("hollow.npy", np.zeros((48, 48, 0)), "no voxels (shape [48, 48, 0]); expected a 3D CT"),
        ("gone.nii", "missing", "no such file"),
    ],
)
def test_unreadable_inputs_are_named(tmp_path: Path, name: str, content, reason: str) -> None:
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif content == "missing":
        pass
    elif content is None:
        np.save(path, np.zeros((4, 4)))
    else:
        path.write_bytes(content)
    with pytest.raises(ReadError, match=f"^{path}: ") as caught:
        read_volume(path)
    assert reason in str(caught.value)


def test_nifti_without_orientation_is_read_with_a_warning(tmp_path: Path) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(phantom_volume(SHAPE), np.diag([0.7, 0.8, 2.0, 1.0]))
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    nib.save(image, str(tmp_path / "bare.nii.gz"))
    volume = read_volume(tmp_path / "bare.nii.gz")
    (warning,) = volume.warnings
    assert warning.startswith("NIfTI without orientation (sform_code and qform_code 0)")
    assert read_volume(write_nifti(tmp_path / "a.nii.gz", phantom_volume(SHAPE),
                                   np.eye(4))).warnings == []


def test_nifti_with_a_singular_affine_is_named(tmp_path: Path) -> None:
    # An sform whose third axis is all zeros: nibabel reads it, orienting it cannot work.
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = [1, 0, 0, 0], [0, 1, 0, 0], [0] * 4
    nib.Nifti1Image(phantom_volume(SHAPE), None, header=header).to_filename(tmp_path / "z.nii")
    assert np.linalg.det(nib.load(tmp_path / "z.nii").affine) == 0
    with pytest.raises(ReadError) as caught:
        read_volume(tmp_path / "z.nii")
    assert str(caught.value) == (
        f"{tmp_path / 'z.nii'}: NIfTI sform voxel-to-world matrix [[1.0, 0.0, 0.0], [0.0, 1.0, "
        "0.0], [0.0, 0.0, 0.0]] is singular; expected the voxel size and orientation of each axis")


@pytest.mark.parametrize("name", ["bitpix.nii", "bitpix.nii.gz"])
def test_header_problems_nibabel_repairs_are_the_volumes_warnings(
    tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # A bitpix that contradicts the datatype: nibabel repairs it and would print so on stderr,
    # without the file's name.
    import gzip
    import io

    import nibabel as nib

    data = bytearray(nib.Nifti1Image(phantom_volume(SHAPE), np.eye(4)).to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data)), check=False)
    header["bitpix"] = 8
    data[:348] = header.binaryblock
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    volume = read_volume(tmp_path / name)
    assert volume.warnings == [
        "NIfTI header: bitpix does not match datatype; read as nibabel repairs it"]
    np.testing.assert_array_equal(volume.array, phantom_volume(SHAPE))
    assert capfd.readouterr().err == ""


def test_a_zero_voxel_size_is_refused_where_it_makes_the_affine(tmp_path: Path) -> None:
    # pixdim gives the voxel size of the qform (and of nibabel's fallback affine), not of an
    # sform: nibabel would read 0 as 1 mm.
    import io

    import nibabel as nib

    affine = np.diag([0.6, 0.6, 5.0, 1.0])
    for sform_code, name in ((0, "qform.nii"), (1, "sform.nii")):
        image = nib.Nifti1Image(phantom_volume(SHAPE), affine)
        image.set_sform(affine, code=sform_code)
        image.set_qform(affine, code=1)
        data = bytearray(image.to_bytes())  # saving would write pixdim from the qform again
        header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data)), check=False)
        header["pixdim"][1] = 0
        data[:348] = header.binaryblock
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ReadError) as caught:
        read_volume(tmp_path / "qform.nii")
    assert str(caught.value) == (
        f"{tmp_path / 'qform.nii'}: NIfTI pixdim[1:4] = [0.0, 0.6000000238418579, 5.0] (voxel "
        "size, mm) and no sform: the voxel size is unknown; expected three positive values")
    volume = read_volume(tmp_path / "sform.nii")
    assert volume.warnings == [] and np.allclose(volume.affine, affine)


@pytest.mark.parametrize("name", ["tenth.nii.gz", "tenth.npy", "tenth.nrrd"])
def test_eight_bit_voxels_without_scaling_get_a_warning(tmp_path: Path, name: str) -> None:
    # HU / 10 stored as int8, as a patch: nothing in the values alone says it is not HU.
    import io

    import nibabel as nib
    import nrrd

    values = np.clip(phantom_volume(SHAPE) / 10, -128, 127).astype(np.int8)
    if name.endswith(".npy"):
        np.save(tmp_path / name, values)
    elif name.endswith(".nrrd"):
        nrrd.write(str(tmp_path / name), values, {"space": "left-posterior-superior",
                                                   "space directions": np.eye(3)})
    else:
        nib.Nifti1Image(values, np.eye(4)).to_filename(tmp_path / name)
    volume = read_volume(tmp_path / name)
    assert volume.warnings == [
        "voxels stored as int8 (-128..127) without scaling, which cannot hold HU (air -1000, bone "
        "above 1000); were the values scaled (HU / 10) or windowed?"]
    # The same bytes with scl_slope 10 (saving would reset the slope of int8 data).
    data = bytearray(nib.Nifti1Image(values, np.eye(4)).to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data)), check=False)
    header["scl_slope"], header["scl_inter"] = 10.0, 0.0
    data[:348] = header.binaryblock
    (tmp_path / "scaled.nii").write_bytes(data)
    scaled = read_volume(tmp_path / "scaled.nii")
    assert scaled.warnings == [] and scaled.array.min() == 10.0 * values.min()


@pytest.mark.parametrize("name", ["complex.nii.gz", "complex.npy"])
def test_complex_voxels_are_refused_not_cut_to_their_real_part(
    tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    import nibabel as nib

    values = (phantom_volume(SHAPE) + 1j).astype(np.complex64)
    if name.endswith(".npy"):
        np.save(tmp_path / name, values)
    else:
        nib.Nifti1Image(values, np.eye(4)).to_filename(tmp_path / name)
    with pytest.raises(ReadError) as caught:
        read_volume(tmp_path / name)
    assert str(caught.value) == (
        f"{tmp_path / name}: voxels of type complex64; expected real numbers (HU)")
    assert capfd.readouterr().err == ""  # no NumPy ComplexWarning beside the line


@pytest.mark.parametrize(("degrees", "warned"), [(0.0, False), (4.0, False), (30.0, True)])
def test_an_oblique_scan_is_read_with_a_warning(tmp_path: Path, degrees: float,
                                                warned: bool) -> None:
    # Voxel axes turned about x (a tilted gantry): nibabel's obliquity is the angle itself.
    turn = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(turn), -np.sin(turn)],
                         [0, np.sin(turn), np.cos(turn)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.0])
    volume = read_volume(write_nifti(tmp_path / "tilted.nii.gz", phantom_volume(SHAPE), affine))
    expected = (f"oblique scan: its voxel axes lie up to {degrees:.1f} degrees from R, A and S; "
                "the patch is cut along the scan's own axes (those nearest to R, A and S), as "
                "training cuts it, not resampled onto RAS axes")
    assert volume.warnings == ([expected] if warned else [])


@pytest.mark.parametrize(
    ("slope", "inter", "warned"),
    [(np.inf, -1024.0, True), (-np.inf, 0.0, True), (0.0, -1024.0, True),
     (np.nan, -1024.0, True), (np.nan, np.nan, False), (0.0, 0.0, False), (1.0, -1024.0, False)],
)
def test_a_scale_nibabel_drops_is_named_when_the_intercept_meant_something(
    tmp_path: Path, slope: float, inter: float, warned: bool
) -> None:
    import io

    import nibabel as nib

    stored = np.round(phantom_volume(SHAPE) + 1024).astype(np.int16)
    data = bytearray(nib.Nifti1Image(stored, np.eye(4)).to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(data)), check=False)
    header["scl_slope"], header["scl_inter"] = slope, inter
    data[:348] = header.binaryblock
    (tmp_path / "scan.nii").write_bytes(data)
    volume = read_volume(tmp_path / "scan.nii")
    # What nibabel reads is what calcinet reads: scaled only by a finite non-zero slope.
    expected = nib.load(tmp_path / "scan.nii").get_fdata(dtype=np.float32)
    assert np.array_equal(volume.array, expected)
    assert np.array_equal(volume.array, stored + (inter if slope == 1.0 else 0.0))
    named = [w for w in volume.warnings if w.startswith("NIfTI scl_slope")]
    assert named == ([f"NIfTI scl_slope = {np.float32(slope)} with scl_inter = "
                      f"{np.float32(inter)}: no usable scale, so the voxels are read as stored "
                      "and the intercept is ignored (nibabel); expected a finite non-zero "
                      "scl_slope for scaled data"] if warned else [])


def test_a_nifti_named_gz_without_compression_is_read_and_a_text_file_is_named(
    tmp_path: Path,
) -> None:
    import nibabel as nib

    values = phantom_volume(SHAPE)
    nib.Nifti1Image(values, np.diag([0.7, 0.7, 2.5, 1.0])).to_filename(tmp_path / "scan.nii")
    (tmp_path / "plain.nii.gz").write_bytes((tmp_path / "scan.nii").read_bytes())
    plain = read_volume(tmp_path / "plain.nii.gz")
    reference = nib.load(tmp_path / "scan.nii")  # nibabel refuses the misnamed file itself
    assert np.array_equal(plain.array, reference.get_fdata(dtype=np.float32))
    assert np.array_equal(plain.affine, reference.affine)
    assert plain.warnings == [
        "named .gz but not gzip-compressed: read as an uncompressed NIfTI"]
    with pytest.raises(Exception, match="not a gzip file"):
        nib.load(tmp_path / "plain.nii.gz").get_fdata()

    (tmp_path / "notes.nii.gz").write_text("patient 12, series 3\n")
    with pytest.raises(ReadError) as caught:
        read_volume(tmp_path / "notes.nii.gz")
    assert str(caught.value) == (
        f"{tmp_path / 'notes.nii.gz'}: not a NIfTI file (neither its header size, the first 4 "
        "bytes b'pati', nor its magic string says NIfTI); expected a NIfTI-1 or NIfTI-2 file")
