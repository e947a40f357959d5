"""NoduleMNIST3D (MedMNIST): LIDC-IDRI nodule crops, benign vs malignant, in one ``.npz`` file.

``calcinet-train data=nodulemnist3d data.path=/path/nodulemnist3d.npz``. The file holds
``{train,val,test}_images`` (uint8, ``(N, 28, 28, 28)`` or ``(N, 64, 64, 64)``) and
``{train,val,test}_labels`` (``(N, 1)``, 0 benign / 1 malignant); the file's own splits are used.
The images are 0-255 display values, not HU: the data config windows ``[0, 255]``. The array axes
are taken as (x, y, z) at ``file_spacing`` mm (1 mm for the 28^3 release).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Hashable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Transform

from calcinet.data.splits import SPLITS, first_keeping_ratio
from calcinet.data.validation import DataValidationError, Problem, format_report
from calcinet.imaging import Volume

SIDES = (28, 64)


@lru_cache(maxsize=2)
def _arrays(path: str, stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    """All arrays of the file, read once per process (``stamp`` re-reads a changed file)."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


class NoduleImaged(MapTransform):
    """Replace ``data["index"]`` of split ``data["split"]`` by ``data["image"]``: a
    :class:`~calcinet.imaging.Volume` of the file's 0-255 values, affine ``diag(file_spacing)``."""

    def __init__(self, path: str | Path, file_spacing: float = 1.0) -> None:
        super().__init__(keys=["index"])
        self.path = str(path)
        self.file_spacing = float(file_spacing)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        index = int(d.pop("index"))
        volume = _arrays(self.path, _stamp(Path(self.path)))[f"{d['split']}_images"][index]
        array = np.ascontiguousarray(volume, dtype=np.float32)
        d["image"] = Volume(array, np.diag([self.file_spacing] * 3 + [1.0]))
        return d


class NoduleMNISTSource:
    """The NoduleMNIST3D npz file as a record source (the file's train/val/test splits).

    Args:
        path: the ``.npz`` file (``data.path``).
        file_spacing: voxel size in mm of the file's images (1.0 for 28^3).
        validate_only: never raise; the caller prints :meth:`validation_report`.
        num_train, num_val, num_test: use at most this many samples of a split (None: all),
            keeping the class ratio.
    """

    kind = "nodulemnist3d"

    def __init__(
        self,
        path: str | Path,
        file_spacing: float = 1.0,
        validate_only: bool = False,
        num_train: int | None = None,
        num_val: int | None = None,
        num_test: int | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.file_spacing = float(file_spacing)
        self.limits = {"train": num_train, "val": num_val, "test": num_test}
        self.problems: list[Problem] = []
        self.labels: dict[str, np.ndarray] = {}
        self._check()
        if self.problems and not validate_only:
            raise DataValidationError(self.validation_report())

    def _check(self) -> None:
        """Every key, dtype, shape and label problem of the file, each naming key and value."""
        if not self.path.is_file():
            self.problems.append(Problem(
                f"file not found: {self.path.resolve()}; expected nodulemnist3d.npz from MedMNIST "
                "(data.path=/path/to/nodulemnist3d.npz)"))
            return
        try:
            arrays = _arrays(str(self.path), _stamp(self.path))
        except (OSError, ValueError) as error:
            self.problems.append(Problem(f"cannot be read as .npz: {type(error).__name__}: "
                                         f"{error}"))
            return
        sides = set()
        for split in SPLITS:
            images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
            for key, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
                if array is None:
                    self.problems.append(Problem(
                        f"missing key {key!r} (keys found: {', '.join(sorted(arrays)) or 'none'})"))
            shape_ok = False
            if images is not None:
                key = f"{split}_images"
                cube = images.ndim == 4 and len(set(images.shape[1:])) == 1
                if not cube or images.shape[1] not in SIDES:
                    self.problems.append(Problem(
                        f"key {key!r}: shape {images.shape}; expected (N, 28, 28, 28) or "
                        "(N, 64, 64, 64)"))
                else:
                    shape_ok = True
                    sides.add(images.shape[1])
                if images.dtype != np.uint8:
                    self.problems.append(Problem(f"key {key!r}: dtype {images.dtype}; expected "
                                                 "uint8 (0-255)"))
            if labels is None:
                continue
            key = f"{split}_labels"
            flat = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else None
            expected = len(images) if images is not None else "N"
            if flat is None or (images is not None and len(flat) != len(images)):
                self.problems.append(Problem(
                    f"key {key!r}: shape {labels.shape}; expected ({expected}, 1), one label "
                    "per image"))
                continue
            unknown = sorted(set(np.unique(flat).tolist()) - {0, 1})
            if unknown:
                self.problems.append(Problem(f"key {key!r}: values {unknown}; expected 0 "
                                             "(benign) or 1 (malignant)"))
                continue
            if len(np.unique(flat)) < 2:
                self.problems.append(Problem(
                    f"key {key!r}: only class {int(flat[0])} in {len(flat)} samples; expected "
                    "both classes"))
            if shape_ok:
                self.labels[split] = flat.astype(np.int64)
        if len(sides) > 1:
            self.problems.append(Problem(f"splits of different sizes {sorted(sides)}; expected "
                                         "one image size"))

    def records(self, split: str) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        labels = self.labels.get(split, np.zeros(0, dtype=np.int64))
        keep = first_keeping_ratio(labels.tolist(), self.limits[split])
        return [{"id": f"{split}-{i:05d}", "label": int(labels[i]), "index": i, "split": split}
                for i in keep]

    def load_transforms(self) -> list[Transform]:
        return [NoduleImaged(self.path, self.file_spacing)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path.resolve()),
                "file_spacing": self.file_spacing, "limits": self.limits}

    def fingerprint(self) -> str:
        stat = os.stat(self.path)
        key = [self.kind, self.path.name, stat.st_size, stat.st_mtime_ns, self.file_spacing,
               self.limits]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``nodulemnist3d.json``: the file and the per-split class counts used."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        counts = {s: {"benign": sum(r["label"] == 0 for r in self.records(s)),
                      "malignant": sum(r["label"] == 1 for r in self.records(s))} for s in SPLITS}
        out = folder / "nodulemnist3d.json"
        out.write_text(json.dumps({"path": str(self.path.resolve()), "counts": counts}, indent=2))
        return [out]

    def validation_report(self) -> str:
        if self.problems:
            return format_report(str(self.path), self.problems)
        counts = ", ".join(f"{s} {int((self.labels[s] == 0).sum())} benign / "
                           f"{int((self.labels[s] == 1).sum())} malignant" for s in SPLITS)
        return f"{self.path}: no problems; {counts}"
