"""Record sources: turn a dataset description into lists of records, one list per split.

A record is a plain dict that MONAI transforms understand: ``{"id", "label", ...metadata}`` plus
whatever the source's *load* transforms need (phantom parameters, a file path). Every source
implements :class:`RecordSource` (the phantom here, :class:`calcinet.data.manifest.ManifestSource`,
:class:`calcinet.data.nodulemnist.NoduleMNISTSource`); the DataModule, training and evaluation
use nothing else of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from monai.transforms import Transform

from calcinet.data.phantom import PhantomConfig, sample_params
from calcinet.data.transforms import RenderPhantomd

SPLITS = ("train", "val", "test")


@runtime_checkable
class RecordSource(Protocol):
    """What a dataset description must offer to be trained and evaluated on."""

    #: Short name of the kind of source (``"synthetic"``, ``"manifest"``, ...), logged as a tag.
    kind: ClassVar[str]
    #: Problems found while reading the data (empty when it is usable as it is); a source built
    #: with ``validate_only=true`` keeps them here instead of raising.
    problems: Sequence[Any]

    def records(self, split: str) -> list[dict[str, Any]]:
        """The records of ``"train"``, ``"val"`` or ``"test"``.

        Raises:
            ValueError: another split name.
        """
        ...

    def load_transforms(self) -> list[Transform]:
        """The MONAI transforms that produce ``record["image"]`` in HU (with its affine)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the data is, as JSON-able values (stored with evaluation reports)."""
        ...

    def fingerprint(self) -> str:
        """A short hash that changes whenever the data would change."""
        ...

    def write_artifacts(self, folder: Path) -> list[Path]:
        """Files worth keeping with a run (a montage, the split); returns their paths."""
        ...

    def validation_report(self) -> str:
        """Every problem, one per line, or a one-line summary of usable data."""
        ...


def phantom_config(
    patch_size: Sequence[int], spacing: Sequence[float], **options: Any
) -> PhantomConfig:
    """A :class:`PhantomConfig` from MONAI-order (x, y, z) ``patch_size`` and ``spacing``.

    The phantom works in array order (z, y, x); this is the one place that reverses the axes.
    """
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return PhantomConfig(
        patch_size=tuple(int(s) for s in reversed(patch_size)),
        spacing=tuple(float(s) for s in reversed(spacing)),
        **options,
    )


def checked_phantom_config(
    patch_size: Sequence[int], spacing: Sequence[float], options: dict[str, Any], key: str
) -> PhantomConfig:
    """:func:`phantom_config`, with its real CT backgrounds read and searched for patch sites,
    so that a bad value fails here, before any sample is drawn.

    Raises:
        ConfigError: an unknown option, a bad value or an unusable scan; the message names
            ``key`` (e.g. ``data.source.phantom``), the option and what was expected.
    """
    from calcinet.config import ConfigError

    known = {f.name for f in dataclasses.fields(PhantomConfig)} - {"patch_size", "spacing"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown phantom option; expected one of "
                          f"{sorted(known)}")
    try:
        config = phantom_config(patch_size, spacing, **options)
        if config.real_background_fraction > 0:
            from calcinet.data.phantom.backgrounds import check_scans

            check_scans(config)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{key}: {error}") from None
    return config


def split_seed(seed: int, split: str) -> int:
    """An independent generator seed per split, so no sample appears in two splits."""
    digest = hashlib.sha256(f"calcinet:{int(seed)}:{split}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class SyntheticSource:
    """The synthetic CT phantom, generated on the fly and deterministic per index and seed.

    Args:
        num_train, num_val, num_test: samples per split.
        seed: dataset seed (independent of the training seed, so ``seed=7`` retrains on the same
            data with another initialisation).
        patch_size, spacing: patch shape (voxels) and voxel size (mm) in MONAI's (x, y, z) order;
            the phantom itself works in (z, y, x) and gets them reversed.
        phantom: other keyword arguments of :class:`calcinet.data.phantom.PhantomConfig`
            (class prior, pattern mix, difficulty, label noise, nuisance ranges).
    """

    kind = "synthetic"
    #: Generated data has nothing to check.
    problems: tuple[()] = ()

    def __init__(
        self,
        num_train: int = 1600,
        num_val: int = 400,
        num_test: int = 400,
        seed: int = 0,
        patch_size: Sequence[int] = (48, 48, 48),
        spacing: Sequence[float] = (1.25, 1.25, 1.25),
        phantom: dict[str, Any] | None = None,
    ) -> None:
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        from calcinet.config import ConfigError

        for split, size in self.sizes.items():
            if size < 0:
                raise ConfigError(f"data.source.num_{split}={size}: expected a count >= 0")
        self.seed = int(seed)
        self.config = checked_phantom_config(patch_size, spacing, dict(phantom or {}),
                                             key="data.source.phantom")

    @cache  # noqa: B019 - one source lives as long as its DataModule
    def records(self, split: str) -> list[dict[str, Any]]:
        if split not in self.sizes:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        seed = split_seed(self.seed, split)
        records = []
        for index in range(self.sizes[split]):
            params = sample_params(index, seed, self.config)
            records.append(
                {
                    "id": f"{split}-{index:05d}",
                    "label": int(params["label"]),
                    "pattern": str(params["pattern"]),
                    "params": params,
                }
            )
        return records

    def load_transforms(self) -> list[Transform]:
        return [RenderPhantomd(self.config)]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "sizes": self.sizes,
                "phantom": dataclasses.asdict(self.config)}

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode())
        for split in SPLITS:
            for record in self.records(split):
                h.update(json.dumps(record["params"], sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    def validation_report(self) -> str:
        sizes = ", ".join(f"{split} {size}" for split, size in self.sizes.items())
        return f"synthetic phantom (seed {self.seed}): no problems; {sizes} samples"

    def write_artifacts(self, folder: Path) -> list[Path]:
        from calcinet.data.phantom.montage import render_montage

        folder.mkdir(parents=True, exist_ok=True)
        return [render_montage(folder / "phantom_montage.png", self.config, seed=self.seed)]
