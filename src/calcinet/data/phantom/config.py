"""`PhantomConfig`: the geometry of a patch, the class/pattern mix and the nuisance ranges.

Every field is a plain JSON-able value (ints, floats, strings, lists, dicts) so that Hydra can pass
the config group straight through as keyword arguments. Tuples and lists are both accepted and are
normalised to tuples, which keeps the dataclass hashable and frozen.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from calcinet.data.phantom.patterns import BENIGN_PATTERNS, MALIGNANT_PATTERNS, PATTERNS

KERNELS = ("smooth", "sharp")
# Renderer families: "voxel" (SDF painting, separable-filter CT model: this package's own painters)
# and the families written apart from it, each a module with one interface (COVERED,
# sample_morphology, sample_nuisance, render_layers, render_deposits, acquire; the nuisance draws
# name the finding's offset from the patch centre jitter_z_mm, jitter_y_mm, jitter_x_mm): "implicit"
# (implicit shapes and point clouds, frequency-domain CT model) and "growth" (deposits grown on a
# fine lattice by random walks, Eden growth and excursion sets, cellular tissue, image-domain CT
# model).
FAMILY_MODULES = {"implicit": "calcinet.data.phantom.implicit",
                  "growth": "calcinet.data.phantom.growth"}
RENDERERS = ("voxel", *FAMILY_MODULES)
MIN_PATCH_SIZE = 16


def family(name: str) -> ModuleType:
    """The module of renderer family ``name`` (one of ``FAMILY_MODULES``), imported on first use.

    Raises:
        KeyError: ``name`` is "voxel" (no module of its own) or no family.
    """
    return importlib.import_module(FAMILY_MODULES[name])


def _err(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"PhantomConfig.{name}={value!r} is invalid: expected {expected}")


def _range(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    """Check a (min, max) pair lying inside [lo, hi]; returns it as a tuple of floats."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if ok:
        try:
            a, b = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            ok = False
    if not ok or not (lo <= a <= b <= hi) or not (math.isfinite(a) and math.isfinite(b)):
        raise _err(name, value, f"a pair (min, max) with {lo} <= min <= max <= {hi}")
    return a, b


def _weights(
    name: str, value: Any, valid: Sequence[str], what: str
) -> tuple[str, ...] | dict[str, float]:
    """Check a choice among `valid`: one name, a list of names or a dict name -> weight >= 0
    with at least one positive weight. Returns a tuple of names (in order) or a dict of float
    weights. A name given twice in a list is an error: it reads like a weight, which only the dict
    form gives."""
    valid_list = list(valid)
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for k, w in value.items():
            if k not in valid:
                raise _err(name, dict(value), f"{what} among {valid_list}; {k!r} is unknown")
            if (
                isinstance(w, bool)
                or not isinstance(w, int | float)
                or not (math.isfinite(w) and w >= 0)
            ):
                raise _err(name, dict(value), f"a weight >= 0 for {k!r}, got {w!r}")
            out[str(k)] = float(w)
        if not any(w > 0 for w in out.values()):
            raise _err(name, dict(value), "at least one positive weight")
        return out
    if isinstance(value, Sequence):
        names = tuple(str(x) for x in value)
        bad = [x for x in names if x not in valid]
        if not names or bad:
            unknown = f"; {bad[0]!r} is unknown" if bad else ""
            raise _err(name, list(value), f"a non-empty list of {what} among {valid_list}{unknown}")
        repeated = sorted({x for x in names if names.count(x) > 1})
        if repeated:
            raise _err(name, list(value), f"each of the {what} once ({repeated[0]!r} is repeated; "
                                          "a dict name -> weight weights them)")
        return names
    raise _err(name, value, f"a name, a list of names or a dict name -> weight, in {valid_list}")


@dataclass(frozen=True)
class PhantomConfig:
    """What the synthetic CT phantom generates.

    Geometry: `patch_size` voxels and `spacing` mm, both in (D, H, W) = (z, y, x) order.
    Mix: `malignant_fraction` is the class prior (the class is drawn first); `patterns` restricts
    or weights the patterns drawn within a class (None = all 20 with equal weight, a list of ids,
    or a dict id -> weight). `difficulty` in [0, 1] moves each confounder pair closer together.
    `label_noise` flips the emitted label with that probability (the truth stays in `true_label`).
    `renderers` names the renderer families drawn from (a name, a list of names or a dict name ->
    weight, among `RENDERERS`); each sample's family is drawn among those that cover its pattern.
    The remaining fields are the ranges of the nuisance factors, drawn identically for both
    classes.
    Real backgrounds: `backgrounds` lists CT scans (NIfTI, NRRD files or DICOM series folders);
    `real_background_fraction` of the samples, drawn independently of the class, show their
    finding inserted into a patch of one of them whose centre's neighbourhood has a median HU in
    `background_tissue_hu` (see `calcinet.data.phantom.backgrounds`).
    """

    patch_size: tuple[int, int, int] = (48, 48, 48)
    spacing: tuple[float, float, float] = (1.25, 1.25, 1.25)
    malignant_fraction: float = 0.5
    patterns: tuple[str, ...] | dict[str, float] | None = None
    difficulty: float = 0.5
    label_noise: float = 0.0
    # Nuisance ranges. Noise std and slice thickness follow patterns.md ("scanner noise 5-40 HU",
    # "slice thickness 0.5-5 mm then resampled").
    noise_std_hu: tuple[float, float] = (5.0, 40.0)
    slice_thickness_mm: tuple[float, float] = (0.5, 5.0)
    kernels: tuple[str, ...] = KERNELS
    hu_offset_hu: tuple[float, float] = (-10.0, 10.0)
    # In-plane point-spread function (Gaussian sigma, mm); clinical CT resolves ~0.6-1.2 mm FWHM.
    blur_sigma_mm: tuple[float, float] = (0.3, 0.8)
    # Lesion centre offset from the patch centre, per axis, uniform in [-j, j] mm.
    position_jitter_mm: float = 4.0
    # Domain randomisation: more factors that must not matter, drawn per sample whatever the class
    # (so only morphology stays predictive). Calibration gain about water (CT number accuracy is
    # specified within a few percent); noise correlation length (reconstruction kernels from
    # sharp to smooth); through-plane / in-plane blur ratio (anisotropic resolution); a
    # non-calcified vessel crossing the patch with probability `vessel_prob`, from unenhanced
    # blood to arterial contrast (`vessel_hu`), which both classes can have next to them.
    hu_scale: tuple[float, float] = (0.95, 1.05)
    noise_correlation_mm: tuple[float, float] = (0.5, 1.3)
    blur_z_ratio: tuple[float, float] = (0.8, 2.0)
    vessel_prob: float = 0.3
    vessel_hu: tuple[float, float] = (30.0, 300.0)
    # Probability that a pattern whose bone is only a neighbour (`NEIGHBOUR_BONE_PATTERNS`, both
    # classes have some) is drawn without that bone: the same for every such pattern, so among
    # them a bone in the patch says nothing about the class. With a bone in almost every benign
    # soft-tissue patch and none in half of the malignant soft-tissue masses, a model learnt
    # "soft-tissue finding, no bone in the patch: malignant".
    bone_absent_prob: float = 0.4
    # Whether the anatomy is given a uniformly random 3D orientation (False: a fixed pose, handy for
    # teaching figures); the drawn quaternion is a nuisance factor either way.
    random_orientation: bool = True
    # Real CT backgrounds (none by default: no scan ships with calcinet).
    backgrounds: tuple[str, ...] = ()
    real_background_fraction: float = 0.0
    # Median HU around a real patch's centre: soft tissue (fat to muscle) by default.
    background_tissue_hu: tuple[float, float] = (-100.0, 100.0)
    renderers: str | tuple[str, ...] | dict[str, float] = ("voxel",)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)

        ps = self.patch_size
        if (
            not isinstance(ps, Sequence)
            or isinstance(ps, str)
            or len(ps) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in ps)
            or min(ps) < MIN_PATCH_SIZE
        ):
            raise _err("patch_size", ps, f"three integers (D, H, W), each >= {MIN_PATCH_SIZE}")
        set_("patch_size", tuple(int(n) for n in ps))

        sp = self.spacing
        try:
            sp_t = tuple(float(s) for s in sp)
        except (TypeError, ValueError):
            sp_t = ()
        if len(sp_t) != 3 or not all(math.isfinite(s) and 0.1 <= s <= 10.0 for s in sp_t):
            raise _err("spacing", sp, "three voxel sizes in mm (z, y, x), each in [0.1, 10]")
        set_("spacing", sp_t)

        for name in ("malignant_fraction", "difficulty", "label_noise", "vessel_prob",
                     "bone_absent_prob"):
            v = getattr(self, name)
            hi = 0.5 if name == "label_noise" else 1.0
            if isinstance(v, bool) or not isinstance(v, int | float) or not (0.0 <= v <= hi):
                raise _err(name, v, f"a number in [0, {hi}]")
            set_(name, float(v))

        if self.patterns is not None:
            set_("patterns", _weights("patterns", self.patterns, PATTERNS, "pattern ids"))
        weights = self.pattern_weights()
        for label, cls_ids, cls_name in (
            (0, BENIGN_PATTERNS, "benign"),
            (1, MALIGNANT_PATTERNS, "malignant"),
        ):
            prior = self.malignant_fraction if label == 1 else 1.0 - self.malignant_fraction
            if prior > 0 and not any(weights[p] > 0 for p in cls_ids):
                raise _err(
                    "patterns",
                    self.patterns,
                    f"at least one {cls_name} pattern while malignant_fraction="
                    f"{self.malignant_fraction} gives that class a prior of {prior}; add one of "
                    f"{list(cls_ids)} or set malignant_fraction to {1.0 - label}",
                )

        set_("noise_std_hu", _range("noise_std_hu", self.noise_std_hu, 0.0, 500.0))
        set_("slice_thickness_mm", _range("slice_thickness_mm", self.slice_thickness_mm, 0.0, 20.0))
        set_("hu_offset_hu", _range("hu_offset_hu", self.hu_offset_hu, -200.0, 200.0))
        set_("blur_sigma_mm", _range("blur_sigma_mm", self.blur_sigma_mm, 0.0, 5.0))
        set_("hu_scale", _range("hu_scale", self.hu_scale, 0.5, 2.0))
        set_(
            "noise_correlation_mm",
            _range("noise_correlation_mm", self.noise_correlation_mm, 0.1, 5.0),
        )
        set_("blur_z_ratio", _range("blur_z_ratio", self.blur_z_ratio, 0.1, 10.0))
        set_("vessel_hu", _range("vessel_hu", self.vessel_hu, -100.0, 1000.0))

        k = self.kernels
        if isinstance(k, str):
            k = (k,)
        if not isinstance(k, Sequence) or len(k) == 0 or any(x not in KERNELS for x in k):
            raise _err("kernels", self.kernels, f"a non-empty list drawn from {list(KERNELS)}")
        set_("kernels", tuple(k))

        j = self.position_jitter_mm
        if isinstance(j, bool) or not isinstance(j, int | float) or not (0.0 <= j <= 30.0):
            raise _err("position_jitter_mm", j, "a number of mm in [0, 30]")
        set_("position_jitter_mm", float(j))
        if not isinstance(self.random_orientation, bool):
            raise _err("random_orientation", self.random_orientation, "true or false")
        set_("renderers", _weights("renderers", self.renderers, RENDERERS, "names"))
        for pattern, w in weights.items():
            if w > 0 and not self.renderers_for(pattern):
                raise _err(
                    "renderers",
                    self.renderers,
                    f"a renderer covering pattern {pattern!r}, which "
                    f"{' and '.join(repr(r) for r in self.renderer_weights() if r)} cannot render",
                )
        self._check_backgrounds()

    def _check_backgrounds(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        b = self.backgrounds
        b = (b,) if isinstance(b, str | Path) else b
        if not isinstance(b, Sequence) or not all(isinstance(x, str | Path) for x in b):
            raise _err("backgrounds", self.backgrounds, "a list of CT scan paths")
        b = tuple(str(x) for x in b)
        for path in b:
            if not Path(path).exists():
                raise _err(
                    "backgrounds",
                    list(b),
                    f"existing NIfTI / NRRD files or DICOM series "
                    f"folders; {path!r} does not exist (from {Path.cwd()})",
                )
        # The same file however it is spelled (../x/scan.nrrd, x/../x/scan.nrrd, a link).
        resolved = [Path(x).resolve() for x in b]
        repeated = [x for x, r in zip(b, resolved, strict=True) if resolved.count(r) > 1]
        if repeated:
            raise _err("backgrounds", list(b), f"each scan once ({repeated[0]!r} is repeated)")
        set_("backgrounds", b)
        f = self.real_background_fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not (0.0 <= f <= 1.0):
            raise _err("real_background_fraction", f, "a number in [0, 1]")
        if f > 0 and not b:
            raise _err(
                "real_background_fraction",
                f,
                "0 while backgrounds is empty (list scans in backgrounds to draw real backgrounds)",
            )
        if b and f == 0:  # the scans would be read and never used: say so rather than ignore
            raise _err(
                "real_background_fraction",
                f,
                f"a share of findings > 0 to draw into the {len(b)} scan(s) of backgrounds (or "
                "no backgrounds)",
            )
        set_("real_background_fraction", float(f))
        set_(
            "background_tissue_hu",
            _range("background_tissue_hu", self.background_tissue_hu, -1100.0, 4000.0),
        )

    def renderer_weights(self) -> dict[str, float]:
        """Weight of each renderer family (0 for the unused ones)."""
        r = self.renderers
        if isinstance(r, dict):
            return {k: float(r.get(k, 0.0)) for k in RENDERERS}
        return {k: float(k in r) for k in RENDERERS}

    def renderers_for(self, pattern: str) -> dict[str, float]:
        """The renderer families (name -> weight > 0) of this config that cover ``pattern``."""
        out = {}
        for name, w in self.renderer_weights().items():
            if w <= 0:
                continue
            if name != "voxel" and pattern not in family(name).COVERED:
                continue
            out[name] = w
        return out

    def pattern_weights(self) -> dict[str, float]:
        """Weight of every one of the 20 patterns (0 for the excluded ones)."""
        p = self.patterns
        if p is None:
            return {k: 1.0 for k in PATTERNS}
        if isinstance(p, dict):
            return {k: float(p.get(k, 0.0)) for k in PATTERNS}
        return {k: float(k in p) for k in PATTERNS}

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Physical size of the patch along (z, y, x), mm."""
        return tuple(n * s for n, s in zip(self.patch_size, self.spacing, strict=True))
