"""Write the phantom to disk as NIfTI files plus a manifest, like a real dataset.

Layout of `out_dir`:
    images/<sample_id>.nii.gz   float32 HU, one per sample
    manifest.csv                path,label,patient_id,pattern, then every sampled parameter

Axis convention: the phantom's arrays are (D, H, W) = (z, y, x); NIfTI (nibabel) arrays are
(i, j, k) = (x, y, z). Files therefore hold `image.transpose(2, 1, 0)`, with the affine
diag(sx, sy, sz) (mm) translated so that the patch centre sits at the world origin. The phantom
has no patient orientation, so the axes are nominal (read back with `.transpose(2, 1, 0)`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.sampling import NUISANCE_KEYS, render, sample_params

FIXED_COLUMNS = ("path", "label", "patient_id", "pattern")
CLASS_NAMES = ("benign", "malignant")


def sample_id(seed: int, index: int) -> str:
    return f"phantom-s{seed}-{index:06d}"


def affine_for(config: PhantomConfig) -> np.ndarray:
    """Voxel (x, y, z) index -> mm, the patch centre at the origin."""
    sz, sy, sx = config.spacing
    D, H, W = config.patch_size
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = [-(W - 1) / 2 * sx, -(H - 1) / 2 * sy, -(D - 1) / 2 * sz]
    return aff


def write_dataset(
    out_dir,
    num_samples: int,
    seed: int,
    config: PhantomConfig | None = None,
) -> Path:
    """Render samples 0..num_samples-1 of dataset `seed` into `out_dir`; returns manifest.csv.

    The manifest's `path` is relative to `out_dir`, `label` is "benign"/"malignant" (after any
    label noise; the truth is in `true_label`), `patient_id` is the sample id; then the sampled
    parameters (the union over all rows; a pattern's own parameters are blank for the others)."""
    import nibabel as nib

    config = PhantomConfig() if config is None else config
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise ValueError(
            f"write_dataset: num_samples={num_samples!r} is invalid: expected an integer >= 0"
        )
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    affine = affine_for(config)
    rows, extra = [], []
    from calcinet.progress import bar

    for i in bar(range(num_samples), desc="synth", unit="sample"):
        params = sample_params(i, seed, config)
        img = render(params, config)
        sid = sample_id(seed, i)
        rel = f"images/{sid}.nii.gz"
        nii = nib.Nifti1Image(np.ascontiguousarray(img.transpose(2, 1, 0)), affine)
        nii.header.set_xyzt_units("mm")
        nii.header.set_data_dtype(np.float32)
        nib.save(nii, str(out / rel))
        row = {
            "path": rel,
            "label": CLASS_NAMES[params["label"]],
            "patient_id": sid,
            "pattern": params["pattern"],
        }
        for k, v in params.items():
            if k in ("label", "pattern"):
                continue
            row[k] = v
            if k not in extra:
                extra.append(k)
        rows.append(row)
    lead = ["true_label", "difficulty", "render_seed", *NUISANCE_KEYS]
    columns = [
        *FIXED_COLUMNS,
        *[k for k in lead if k in extra],
        *sorted(k for k in extra if k not in lead),
    ]
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest
