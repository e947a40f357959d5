"""Read a CT volume in HU with its voxel-to-RAS affine, from any supported format.

:func:`read_volume` is the one reader of calcinet: training, evaluation, export checks and
``calcinet-predict`` all call it. NIfTI is read by nibabel (a ``.nii.gz`` inflated by ISA-L),
NRRD by pynrrd, ``.npy`` by NumPy and DICOM by :mod:`calcinet.imaging.dicom`; all of them are
small, so an exported model's consumer needs no training stack to read its inputs.

NRRD rule: the world space comes from the ``space`` field (``right-anterior-superior``,
``left-posterior-superior``, ``left-anterior-superior`` and their short forms). A file without it
is read as **LPS**, the way ITK (and so 3D Slicer, SimpleITK and MONAI's ITK reader) reads it, and
the volume carries a warning saying so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calcinet.imaging.geometry import (
    FORMATS_TEXT,
    image_format,
)


class ReadError(ValueError):
    """An input that cannot be read as a CT volume: ``"<path>: <reason>; <what to do>"``."""


@dataclass
class Volume:
    """HU values ``array[i, j, k]`` (float32) and the voxel-to-RAS-mm ``affine`` (4x4).

    ``warnings`` are facts about the reading a user should hear (an assumed NRRD space, a
    resampled DICOM series); ``modality`` is DICOM's Modality when the file states one.
    """

    array: np.ndarray
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)
    modality: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]


def as_hu_array(array: np.ndarray, path: Path) -> np.ndarray:
    """A float32 ``[i, j, k]`` array; trailing axes of length 1 (4D NIfTI) are dropped.

    The array keeps its memory order (NIfTI and NRRD voxels are Fortran-ordered): a transposing
    copy of a whole scan would cost its size again in memory, and
    :func:`calcinet.imaging.cut_patch` reads only the box of the patch, in either order."""
    array = np.asarray(array)
    if array.size == 0:
        raise ReadError(f"{path}: no voxels (shape {list(array.shape)}); expected a 3D CT volume")
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and 1 in array.shape):
        kind = "a single voxel" if array.size == 1 else "a 2D image"
        raise ReadError(f"{path}: {kind} (shape {list(array.shape)}); expected a 3D CT volume")
    if array.ndim != 3:
        raise ReadError(f"{path}: image of shape {list(array.shape)}; expected a 3D volume "
                        "(one channel, one time point)")
    _check_real(array.dtype, path)
    array = np.asarray(array, dtype=np.float32)
    if array.flags.c_contiguous or array.flags.f_contiguous:
        return array
    return np.ascontiguousarray(array)


def _check_real(dtype: np.dtype, path: Path) -> None:
    """Refuse voxels that are not real numbers (complex, strings, records)."""
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ReadError(f"{path}: voxels of type {dtype}; expected real numbers (HU)")


def _load_nifti(path: Path):
    """nibabel's NIfTI-1 or NIfTI-2 image of ``path``, its header as the file has it (nibabel
    repairs the image's own, and moves the scaling into the data), the problems nibabel found in
    it and other notes on the file, one warning line each; a ``.nii.gz`` is inflated in memory
    by ISA-L (``isal.igzip``, the gzip format whole, several members included).

    Raises:
        ReadError: the bytes are not a NIfTI file.

    Why not ``nibabel.load`` on a ``.nii.gz``: it streams the file through Python's ``gzip``
    module in small reads, 8.4 ms of inflating for a 64^3 float32 patch file against 4.6 ms for
    ``igzip.decompress`` on the whole file (2-core AMD EPYC), and predict reads one file per
    finding.
    """
    import nibabel as nib
    from nibabel import imageglobals

    # nibabel prints a header's problems on stderr as it repairs them ("pixdim[1,2,3] should be
    # non-zero; setting 0 dims to 1"), without the file's name; they reach the user as this
    # volume's warnings instead (diagnose_binaryblock below: the same checks, no global state,
    # so reading threads cannot mix them up).
    if imageglobals.logger.level != logging.CRITICAL:  # setLevel clears every logger's cache
        imageglobals.logger.setLevel(logging.CRITICAL)
    data = path.read_bytes()
    notes = []
    if path.name.lower().endswith(".gz"):
        if data[:2] == b"\x1f\x8b":  # gzip's magic number
            from isal import igzip

            data = igzip.decompress(data)
        else:  # nibabel refuses it ("not a gzip file"); the bytes may be a NIfTI
            notes.append("named .gz but not gzip-compressed: read as an uncompressed NIfTI")
    # sizeof_hdr, the first field, tells the version (in the file's byte order).
    sizes = {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
    magic = data[344:348] in (b"n+1\0", b"ni1\0") or data[4:8] in (b"n+2\0", b"ni2\0")
    if not (sizes & {348, 540} or magic):  # a wrong size alone is one nibabel repairs
        raise ReadError(f"{path}: not a NIfTI file (neither its header size, the first 4 bytes "
                        f"{data[:4]!r}, nor its magic string says NIfTI); expected a NIfTI-1 or "
                        "NIfTI-2 file")
    klass = nib.Nifti2Image if 540 in sizes else nib.Nifti1Image
    block = data[:klass.header_class.template_dtype.itemsize]
    report = klass.header_class.diagnose_binaryblock(block)
    raw = klass.header_class(block, check=False)
    problems = [f"NIfTI header: {line}; read as nibabel repairs it"
                for line in report.splitlines() if line.strip()]
    return klass.from_bytes(data), raw, problems, notes


def read_nifti(path: Path) -> Volume:
    """NIfTI: ``get_fdata`` applies the file's scaling (scl_slope/inter); nibabel's affine is RAS
    (the sform when set, else the qform). A file with neither gets nibabel's fallback affine and
    a warning: its orientation is unknown."""
    image, raw, problems, warnings = _load_nifti(path)
    header = image.header
    with_sform = "sform_code" in header and int(header["sform_code"]) > 0
    if with_sform:  # pixdim does not enter an sform's affine: nothing to repair that matters
        problems = [p for p in problems if not p.startswith("NIfTI header: pixdim")]
    else:  # the qform and nibabel's fallback affine take the voxel size from pixdim
        zooms = np.asarray(raw["pixdim"][1:4], float)
        if not (np.isfinite(zooms) & (zooms > 0)).all():
            raise ReadError(f"{path}: NIfTI pixdim[1:4] = {zooms.tolist()} (voxel size, mm) and "
                            "no sform: the voxel size is unknown; expected three positive values")
    warnings += problems
    if not with_sform and int(header["qform_code"]) == 0:
        warnings.append("NIfTI without orientation (sform_code and qform_code 0): read with "
                        "nibabel's fallback affine, voxel sizes only and the first axis towards "
                        "the patient's left; save the file with its qform or sform to be sure")
    affine = np.asarray(image.affine, float)
    linear = affine[:3, :3]
    if not np.isfinite(linear).all() or abs(np.linalg.det(linear)) < 1e-9:
        form = "sform" if with_sform else "qform"
        raise ReadError(f"{path}: NIfTI {form} voxel-to-world matrix {linear.round(4).tolist()} "
                        "is singular; expected the voxel size and orientation of each axis")
    _check_real(image.get_data_dtype(), path)  # before get_fdata drops imaginary parts
    slope, inter = raw.get_slope_inter()  # None, None: no scaling (slope 0 or NaN)
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    warnings += _unusable_scale_warnings(raw)
    warnings += _narrow_storage_warnings(image.get_data_dtype(), scaled)
    return Volume(as_hu_array(image.get_fdata(dtype=np.float32), path), affine, warnings)


def _unusable_scale_warnings(header) -> list[str]:
    """NIfTI scaling that nibabel drops as a whole: a slope of 0 or NaN means "no scaling"
    (NIfTI-1; nibabel writes NaN for unscaled images) and an infinite one cannot be applied, so
    the voxels are read as stored and ``scl_inter`` is ignored too. Harmless when the intercept
    is 0 or NaN; an intercept such as -1024 says the file meant its values to be shifted."""
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if math.isinf(slope) or (
        (slope == 0 or math.isnan(slope)) and math.isfinite(inter) and inter != 0
    ):
        return [f"NIfTI scl_slope = {slope} with scl_inter = {inter}: no usable scale, so the "
                "voxels are read as stored and the intercept is ignored (nibabel); expected a "
                "finite non-zero scl_slope for scaled data"]
    return []


def _narrow_storage_warnings(dtype: np.dtype, scaled: bool = False) -> list[str]:
    """A file storing 8-bit integers without scaling cannot hold HU: CT spans -1000 (air) to
    well above 1000 (bone); such values were most likely divided (HU / 10) or windowed."""
    dtype = np.dtype(dtype)
    if scaled or dtype.kind not in "iu" or dtype.itemsize != 1:
        return []
    info = np.iinfo(dtype)
    return [f"voxels stored as {dtype} ({info.min}..{info.max}) without scaling, which cannot "
            "hold HU (air -1000, bone above 1000); were the values scaled (HU / 10) or "
            "windowed?"]


#: NRRD ``space`` -> the sign of each world axis in RAS.
NRRD_SPACES = {
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
}
NRRD_DEFAULT_SPACE = "left-posterior-superior"
#: A volume whose voxel axes lie further than this from the world axes (nibabel's obliquity,
#: degrees) is read with a warning: patches follow its own axes (calcinet.imaging.patches).
OBLIQUE_DEGREES = 5.0


def read_nrrd(path: Path) -> Volume:
    """NRRD: axes in the file's order (pynrrd ``index_order="F"``), world from the ``space``
    fields (see the module's rule for a file without ``space``)."""
    import nrrd

    data, header = nrrd.read(str(path), index_order="F")
    warnings = _narrow_storage_warnings(data.dtype)
    array = as_hu_array(data, path)
    space = header.get("space")
    if space is None:
        space = NRRD_DEFAULT_SPACE
        warnings.append("NRRD without a 'space' field: read as left-posterior-superior (LPS), "
                        "as ITK and 3D Slicer read it; add 'space:' to the header to be sure")
    space = str(space).strip().lower()
    if space not in NRRD_SPACES:
        raise ReadError(f"{path}: NRRD field space={space!r}; expected one of "
                        f"{', '.join(sorted(NRRD_SPACES))} (a patient space)")
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(d, float) for d in directions
                if d is not None and not np.any(np.isnan(np.asarray(d, float)))]
        linear = np.asarray(rows, float)
        if linear.shape != (3, 3):
            raise ReadError(f"{path}: NRRD field 'space directions'={directions!r}; expected "
                            "three 3D vectors, one per spatial axis")
        linear = linear.T  # column j: the world step of voxel axis j
        origin = np.asarray(header.get("space origin", np.zeros(3)), float)
    else:
        spacings = np.nan_to_num(np.asarray(header.get("spacings", [1.0, 1.0, 1.0]), float)[:3],
                                 nan=1.0)
        linear, origin = np.diag(spacings), np.zeros(3)
        warnings.append("NRRD without 'space directions': voxel axes taken along the world axes "
                        f"of {space} with spacings {spacings.tolist()} mm")
    if not np.isfinite(linear).all() or abs(np.linalg.det(linear)) < 1e-9:
        raise ReadError(f"{path}: NRRD 'space directions' {linear.T.round(4).tolist()} are "
                        "singular; expected the voxel size and orientation")
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    return Volume(array, np.diag([*NRRD_SPACES[space], 1.0]) @ affine, warnings)


def read_numpy(path: Path, spacing: tuple[float, float, float]) -> Volume:
    """NumPy ``.npy``: HU in (x, y, z) axis order, RAS, voxel size ``spacing`` (mm), origin 0."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ReadError(f"{path}: not a plain NumPy array ({error}); expected an .npy file of "
                        "HU values") from None
    return Volume(as_hu_array(array, path), np.diag([*map(float, spacing), 1.0]),
                  _narrow_storage_warnings(array.dtype))


def read_volume(path: str | Path, npy_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
                ) -> Volume:
    """Read ``path`` by its kind: NIfTI, NRRD, NumPy, a DICOM series folder, a DICOMDIR or a
    multi-frame DICOM file. Every failure is a :class:`ReadError` naming the file, the reason
    and what was expected."""
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder; expected {FORMATS_TEXT}")
    if path.is_file() and path.stat().st_size == 0:
        raise ReadError(f"{path}: an empty file (0 bytes); expected {FORMATS_TEXT}")
    fmt = image_format(path)
    if fmt is None:
        raise ReadError(f"{path}: unknown file type; expected {FORMATS_TEXT}")
    try:
        if fmt == "dicom":
            from calcinet.imaging.dicom import read_dicom

            volume = read_dicom(path)
        elif fmt == "nifti":
            volume = read_nifti(path)
        elif fmt == "nrrd":
            volume = read_nrrd(path)
        else:
            volume = read_numpy(path, npy_spacing)
    except ReadError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # readers raise many types for damaged files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        kind = {"nifti": "NIfTI", "nrrd": "NRRD", "npy": "NumPy", "dicom": "DICOM"}[fmt]
        raise ReadError(f"{path}: cannot be read as {kind} ({type(error).__name__}: "
                        f"{reason[:200]}); expected a complete {kind} file") from None
    from nibabel.affines import obliquity

    tilt = float(np.degrees(obliquity(volume.affine)).max())
    if tilt > OBLIQUE_DEGREES:
        volume.warnings.append(
            f"oblique scan: its voxel axes lie up to {tilt:.1f} degrees from R, A and S; the "
            "patch is cut along the scan's own axes (those nearest to R, A and S), as training "
            "cuts it, not resampled onto RAS axes")
    return volume


