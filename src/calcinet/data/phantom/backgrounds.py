"""Real CT backgrounds: findings rendered by the phantom, inserted into patches of real scans.

A model trained on the phantom alone learns the phantom's own tissue and noise. With
`PhantomConfig.backgrounds` (scan paths) and `real_background_fraction` > 0, that share of the
samples is drawn on a patch cut from one of the scans instead: the scan's noise, texture,
anatomy and resolution are real; only the finding (and the structures its pattern paints over the
background tissue: bone, mass, fat) is rendered.

Three steps, each deterministic:

1. :func:`load_scan` reads a scan once per process (a module-level cache keyed by path and
   patch spacing, so each DataLoader worker reads each scan once) with calcinet's one reader
   (`calcinet.imaging.read_volume`) and resamples it in HU to the patch spacing with its one
   resampler (`calcinet.imaging.cut_patch`, trilinear), as a (z, y, x) array of the RAS grid:
   the phantom's layout (`calcinet.data.transforms.phantom_volume` reads its arrays as RAS), so a
   real-background sample reaches the model oriented as `cut_patch` gives real findings.
2. :func:`draw_location` picks which scan and where from a random stream: a patch centre among
   the lattice sites (:data:`SITE_STRIDE_MM`) whose whole patch lies inside the body and inside
   the volume and whose neighbourhood (a cube of :data:`TISSUE_PROBE_MM`) has a median HU in
   `background_tissue_hu` (soft tissue by default; a lung range such as (-950, -600) works too).
3. :func:`insert_finding` adds the finding in HU with the scan's own blur and leaves the scan's
   noise in place everywhere, over the finding too (the model is in its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from calcinet.data.phantom.physics import _interp_z, box_kernel, gaussian_kernel

F32 = np.float32

#: HU above which a voxel counts as the patient (body outline; air and lung are below, and the
#: lungs are filled in as holes of the outline slice by slice).
BODY_THRESHOLD_HU = -500.0
#: Side of the cube (mm) whose median HU decides the tissue around a candidate patch centre.
TISSUE_PROBE_MM = 6.0
#: Spacing (mm) of the lattice of candidate patch centres.
SITE_STRIDE_MM = 5.0
#: Gaussian sigma (mm) of the scan's local background level (the anatomy under the noise).
LEVEL_SIGMA_MM = 2.0
#: The scanner's in-plane point-spread (Gaussian sigma, mm) before the pixel's own aperture; the
#: phantom's `blur_sigma_mm` range centre (clinical CT resolves about 0.6-1.2 mm FWHM).
SYSTEM_PSF_SIGMA_MM = 0.5


@dataclass(frozen=True)
class Scan:
    """A real scan resampled for insertion.

    `hu`: float32 [Z, Y, X] HU at `spacing` (z, y, x) mm on the RAS grid (axis 0 superior, 1
    anterior, 2 right: the phantom's layout); `native_spacing` (z, y, x) mm and
    `slice_thickness_mm` describe the acquisition (the DICOM SliceThickness, else the slice
    interval); `path`: the source as configured.
    """

    path: str
    hu: np.ndarray
    spacing: tuple[float, float, float]
    native_spacing: tuple[float, float, float]
    slice_thickness_mm: float

    @property
    def inplane_sigma_mm(self) -> float:
        """In-plane point-spread (Gaussian sigma, mm): the system's and the pixel's box aperture
        (variance pixel^2 / 12) combined."""
        pixel = float(np.mean(self.native_spacing[1:]))
        return float(np.sqrt(SYSTEM_PSF_SIGMA_MM**2 + pixel**2 / 12.0))


def _slice_thickness(path: Path, interval_mm: float) -> float:
    """DICOM SliceThickness of the series in `path` (a folder or file), else the interval."""
    if not path.is_dir():
        return interval_mm
    import pydicom

    for file in sorted(p for p in path.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SliceThickness"])
        except Exception:  # noqa: BLE001 - non-DICOM files in a series folder are skipped
            continue
        value = ds.get("SliceThickness")
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return interval_mm


@lru_cache(maxsize=8)
def load_scan(path: str, spacing: tuple[float, float, float]) -> Scan:
    """Read the scan at `path` (NIfTI, NRRD or a DICOM series folder) and resample it in HU to
    `spacing` (z, y, x) mm. Cached per process by (path, spacing).

    Raises:
        ValueError: one line naming the path, the reason and what was expected (a missing or
            unreadable file, a 2D image, values that cannot be CT in HU, such as a label mask:
            :func:`calcinet.data.validation.image_problems`, the manifest check's rule).
    """
    # Imported here: the reader pulls in the imaging stack (torch for patches), which the
    # synthetic-only phantom never needs.
    from nibabel.orientations import io_orientation

    from calcinet.data.validation import ImageFacts, image_problems
    from calcinet.imaging import cut_patch, read_volume
    from calcinet.imaging.geometry import voxel_sizes

    volume = read_volume(path)
    # The file's own values (resampling pads outside them), judged as the manifest check judges
    # a training scan.
    problems = image_problems(ImageFacts.of(volume), whole_scan=True)
    if problems:
        raise ValueError(f"{path}: {problems[0]}; expected a CT scan as background")
    # RAS axis of each file axis, so the native voxel sizes come out in (x, y, z) = (R, A, S).
    ras_axis = io_orientation(volume.affine)[:, 0].astype(int)
    native_xyz = np.empty(3)
    native_xyz[ras_axis] = voxel_sizes(volume.affine)
    shape_xyz = np.empty(3, dtype=np.int64)
    shape_xyz[ras_axis] = volume.array.shape
    target_xyz = np.asarray(spacing[::-1], float)
    grid = np.maximum(1, np.round(shape_xyz * native_xyz / target_xyz).astype(np.int64))
    patch = cut_patch(volume, grid.tolist(), target_xyz.tolist())
    ras = patch.values[0].numpy()  # [X, Y, Z] RAS
    hu = np.ascontiguousarray(ras.transpose(2, 1, 0), dtype=F32)  # [Z, Y, X] of the RAS grid
    hu.flags.writeable = False
    native = (float(native_xyz[2]), float(native_xyz[1]), float(native_xyz[0]))
    return Scan(
        path=str(path),
        hu=hu,
        spacing=tuple(float(s) for s in spacing),
        native_spacing=native,
        slice_thickness_mm=_slice_thickness(Path(path), native[0]),
    )


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient: voxels above :data:`BODY_THRESHOLD_HU` with each axial slice's holes (lungs,
    bowel gas) filled, largest 3D component only (the table and the air outside drop out)."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    body = ndi.binary_fill_holes(hu > BODY_THRESHOLD_HU, structure=in_plane)
    labels, n = ndi.label(body)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        body = labels == int(np.argmax(sizes))
    return body


@lru_cache(maxsize=16)
def patch_sites(
    path: str,
    spacing: tuple[float, float, float],
    patch_size: tuple[int, int, int],
    tissue_hu: tuple[float, float],
) -> np.ndarray:
    """Centres (int [N, 3], voxel (z, y, x) of the resampled scan) where a `patch_size` patch
    lies wholly inside the body and the volume and the median HU of the :data:`TISSUE_PROBE_MM`
    cube around the centre is in `tissue_hu`.

    Raises:
        ValueError: no such site in the scan (names the path, the patch and the HU range).
    """
    scan = load_scan(path, spacing)
    size = np.asarray(patch_size)
    # Minimum over the patch box: 1 where every voxel of the patch centred there is body (scipy
    # centres a box of n on n // 2, as the patch is); the constant 0 outside the volume makes
    # patches that leave it fail too.
    inside = ndi.minimum_filter(body_mask(scan.hu).astype(np.uint8), size=tuple(size),
                                mode="constant", cval=0)
    stride = np.maximum(1, np.round(SITE_STRIDE_MM / np.asarray(spacing)).astype(int))
    half_probe = np.maximum(1, np.round(TISSUE_PROBE_MM / 2 / np.asarray(spacing)).astype(int))
    lattice = np.stack(np.meshgrid(*(np.arange(size[k] // 2, scan.hu.shape[k] - size[k] // 2,
                                               stride[k]) for k in range(3)), indexing="ij"),
                       axis=-1).reshape(-1, 3)
    lattice = lattice[inside[tuple(lattice.T)] > 0]
    # Each patch box inside the volume, checked exactly (the lattice already keeps to it).
    start = lattice - size // 2
    ok = np.all(start >= 0, axis=1) & np.all(start + size <= scan.hu.shape, axis=1)
    lattice = lattice[ok]
    if len(lattice):
        windows = np.lib.stride_tricks.sliding_window_view(scan.hu, tuple(2 * half_probe + 1))
        probe = windows[tuple((lattice - half_probe).T)]
        median = np.median(probe.reshape(len(lattice), -1), axis=1)
        lattice = lattice[(median >= tissue_hu[0]) & (median <= tissue_hu[1])]
    if not len(lattice):
        raise ValueError(
            f"{path}: no {'x'.join(map(str, patch_size))}-voxel patch at {list(spacing)} mm lies "
            f"inside the body with a median HU in [{tissue_hu[0]}, {tissue_hu[1]}] around its "
            "centre; expected a CT scan in HU covering that tissue (check "
            "background_tissue_hu and the patch size)")
    lattice = lattice.astype(np.int64)
    lattice.flags.writeable = False
    return lattice


def check_scans(config) -> None:
    """Read every scan of `config.backgrounds` and find its patch sites (cached for the draws).

    Raises:
        ValueError: a scan that cannot be read, or has no site (the message names its path).
    """
    for path in config.backgrounds:
        patch_sites(path, tuple(config.spacing), tuple(config.patch_size),
                    tuple(config.background_tissue_hu))


def draw_location(rng: np.random.Generator, config) -> dict[str, object]:
    """The background of one sample from its own stream: `background` ("synthetic" or the scan's
    path) and, on a real scan, the patch centre `background_z`, `_y`, `_x` (voxels of the
    resampled scan). Draws the same numbers whatever the outcome, so the stream stays aligned."""
    real = bool(rng.random() < config.real_background_fraction)
    pick, where = rng.random(), rng.random()
    if not real:
        return {"background": "synthetic"}
    path = config.backgrounds[min(int(pick * len(config.backgrounds)),
                                  len(config.backgrounds) - 1)]
    sites = patch_sites(path, config.spacing, config.patch_size, config.background_tissue_hu)
    z, y, x = (int(v) for v in sites[min(int(where * len(sites)), len(sites) - 1)])
    return {"background": path, "background_z": z, "background_y": y, "background_x": x}


def background_patch(params: dict, config) -> tuple[Scan, np.ndarray, int]:
    """The scan, its float32 [D, H, W] HU patch around the sample's centre and the patch's first
    slice index in the resampled scan (for the slice grid's phase)."""
    scan = load_scan(str(params["background"]), config.spacing)
    centre = np.asarray([params["background_z"], params["background_y"], params["background_x"]])
    start = centre - np.asarray(config.patch_size) // 2
    end = start + np.asarray(config.patch_size)
    if np.any(start < 0) or np.any(end > scan.hu.shape):
        raise ValueError(f"{scan.path}: patch centre {centre.tolist()} puts the patch outside "
                         f"the resampled scan of {list(scan.hu.shape)} voxels")
    sl = tuple(slice(int(a), int(b)) for a, b in zip(start, end, strict=True))
    return scan, scan.hu[sl].copy(), int(start[0])


def insert_finding(
    background: np.ndarray,
    obj: np.ndarray,
    cover: np.ndarray,
    scan: Scan,
    z_start: int = 0,
) -> np.ndarray:
    """Insert an ideal finding into a real background patch, in HU, with the scan's resolution.

    Args:
        background: float32 [D, H, W] HU, cut from `scan` (resampled to `scan.spacing`).
        obj: [D, H, W] HU of the structures before any scanner model (what a voxel would hold if
            they filled it); cover: [D, H, W] in [0, 1], the fraction of each voxel they occupy.
            A renderer's ideal image on a background b is (1 - cover) * b + cover * obj.
        scan: the scan's facts (native spacing, slice thickness).
        z_start: index in the resampled scan of the patch's first slice (the slice grid's phase).

    Returns:
        float32 [D, H, W] HU: ``background + blur(cover * (obj - level))``.

    Model (linear CT, as in `physics.acquire`; the scanner's image is the blurred object plus
    noise, e.g. Hsieh, *Computed Tomography*, 2nd ed., ch. 3 and 6): the finding replaces the
    tissue under it, so its contrast is ``cover * (obj - level)`` where ``level`` is the scan's
    local background (the background patch smoothed by a Gaussian of :data:`LEVEL_SIGMA_MM`: the
    anatomy without the noise). That contrast is degraded as the scan itself was: in-plane by a
    Gaussian point-spread (:data:`SYSTEM_PSF_SIGMA_MM` with the pixel's aperture,
    `Scan.inplane_sigma_mm`), along z by the slice profile (a box of the slice thickness, the
    nominal slice sensitivity profile), sampled on the scan's slice grid and interpolated back
    linearly, as `cut_patch` interpolated the background. It is then added to the background, so
    the scan's own noise and texture stay everywhere, over the finding too, and the patch is
    unchanged, bit for bit, wherever the blurred contrast is zero (outside the blurred support of
    `cover`). Neither extra noise nor an HU offset is added: the scan brings its own.
    """
    sz, sy, sx = scan.spacing
    background = np.asarray(background, F32)
    level = ndi.gaussian_filter(background, [LEVEL_SIGMA_MM / s for s in scan.spacing],
                                mode="nearest", truncate=3.0)
    vol = (np.asarray(cover, F32) * (np.asarray(obj, F32) - level)).astype(F32)
    sigma = scan.inplane_sigma_mm
    for axis, s in ((1, sy), (2, sx)):
        k = gaussian_kernel(round(sigma / s, 3))
        if len(k) > 1:
            vol = ndi.correlate1d(vol, k, axis=axis, mode="constant", cval=0.0)
    thickness = scan.slice_thickness_mm / sz
    if thickness > 1.0:
        vol = ndi.correlate1d(vol, box_kernel(round(thickness, 3)), axis=0, mode="constant",
                              cval=0.0)
    ratio = scan.native_spacing[0] / sz  # native slice interval, in patch voxels
    if ratio > 1.0 + 1e-6:
        # Native slice k sits at resampled index k * ratio (cut_patch's grid starts at slice 0).
        depth = vol.shape[0]
        k = np.arange(int(np.floor(z_start / ratio)) - 1,
                      int(np.ceil((z_start + depth - 1) / ratio)) + 2)
        sampled = _interp_z(vol, k * ratio - z_start)
        vol = _interp_z(sampled, (np.arange(depth) + z_start) / ratio - k[0])
    out = background.copy()
    touched = vol != 0
    out[touched] += vol[touched]
    return out
