"""The ``metadata.json`` an exported model carries, and the checks a consumer runs on it.

The exporter (:mod:`calcinet.export.metadata`) writes it; this module defines its name, version and
the fields inference needs, so that a consumer only depends on ``torch`` and this small parser.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from calcinet.imaging.geometry import pad_value_hu

#: Name of the extra file inside the TorchScript archive (``_extra_files``) and the ``.pt2``.
METADATA_FILE = "metadata.json"
#: Identifies the metadata layout; bump when a field changes meaning.
FORMAT = "calcinet-model"
FORMAT_VERSION = 1
#: Tensor layout of the model input: batch, channel, then the RAS voxel axes.
INPUT_LAYOUT = "N,C,X,Y,Z"
ORIENTATION = "RAS"
class MetadataError(ValueError):
    """Metadata that is missing, unreadable or of another format; the message names the field."""


@dataclass(frozen=True)
class ModelInfo:
    """The facts inference needs from the metadata (the whole document stays in ``raw``)."""

    class_names: tuple[str, str]
    patch_size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    hu_window: tuple[float, float]
    threshold: float
    threshold_at_sensitivity: float
    target_sensitivity: float | None
    pad_value_hu: float
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: HU quantiles of the training patches (:func:`calcinet.imaging.intensity_profile`); empty
    #: for models exported before it was recorded.
    intensity_profile: dict[str, Any] = field(default_factory=dict, compare=False)


def _field(doc: dict[str, Any], dotted: str, source: str) -> Any:
    node: Any = doc
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise MetadataError(f"{source}: {METADATA_FILE} has no field {dotted!r}")
        node = node[key]
    return node


def _numbers(
    value: Any, count: int, dotted: str, source: str, positive: bool = False, integer: bool = False
) -> tuple:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == count
        and all(
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (not positive or v > 0)
            and (not integer or float(v).is_integer())
            for v in value
        )
    )
    if not ok:
        kind = "positive " if positive else ""
        kind += "integers" if integer else "numbers"
        raise MetadataError(
            f"{source}: {METADATA_FILE} field {dotted}={value!r}: expected {count} {kind}"
        )
    return tuple(int(v) if integer else float(v) for v in value)


def parse_metadata(text: str | bytes, source: str = "model") -> ModelInfo:
    """Parse and check ``metadata.json``; ``source`` (the model path) prefixes every error."""
    if not text:
        raise MetadataError(
            f"{source}: no {METADATA_FILE} inside; expected a model written by calcinet-export"
        )
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MetadataError(f"{source}: {METADATA_FILE} is not valid JSON ({error})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        shown = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise MetadataError(
            f"{source}: {METADATA_FILE} field format={shown!r}: expected {FORMAT!r}"
        )
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise MetadataError(
            f"{source}: {METADATA_FILE} field format_version={version!r}: this "
            f"calcinet reads version {FORMAT_VERSION}; use a matching calcinet"
        )
    names = _field(doc, "class_names", source)
    if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise MetadataError(
            f"{source}: {METADATA_FILE} field class_names={names!r}: expected "
            "two names (negative, positive)"
        )
    window = _numbers(
        _field(doc, "preprocessing.hu_window", source), 2, "preprocessing.hu_window", source
    )
    if window[0] >= window[1]:
        raise MetadataError(
            f"{source}: {METADATA_FILE} field preprocessing.hu_window="
            f"{list(window)}: expected [low, high] with low < high"
        )
    thresholds = [
        _numbers([_field(doc, f"decision.{key}", source)], 1, f"decision.{key}", source)[0]
        for key in ("threshold", "threshold_at_sensitivity")
    ]
    target = doc.get("decision", {}).get("target_sensitivity")
    pad = doc.get("input", {}).get("pad_value_hu", pad_value_hu(window))
    return ModelInfo(
        class_names=(names[0], names[1]),
        patch_size=_numbers(
            _field(doc, "input.patch_size", source),
            3,
            "input.patch_size",
            source,
            positive=True,
            integer=True,
        ),
        spacing=_numbers(
            _field(doc, "input.spacing_mm", source), 3, "input.spacing_mm", source, positive=True
        ),
        hu_window=window,
        threshold=thresholds[0],
        threshold_at_sensitivity=thresholds[1],
        target_sensitivity=None if target is None else float(target),
        pad_value_hu=float(pad),
        intensity_profile=dict(doc.get("input", {}).get("intensity_profile") or {}),
        raw=doc,
    )


def dumps(doc: dict[str, Any]) -> str:
    """Serialise metadata the same way everywhere (sorted keys, readable indentation)."""
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False)
