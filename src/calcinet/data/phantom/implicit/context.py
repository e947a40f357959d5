"""What the pattern painters share: the drawing context and the structures findings sit in
(a long bone with cortex and trabecular medulla, a soft-tissue mass)."""

from __future__ import annotations

import numpy as np

from calcinet.data.phantom.implicit.background import power_law_field
from calcinet.data.phantom.implicit.fields import (
    Canvas,
    Wobble,
    cylinder,
    ellipsoid,
    shell,
    wobbled,
)

STEP = 0.35  # mm between the points of a drawn line, ring or strand


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw of U(lo, hi) as a Python float (the morphology dicts hold plain floats)."""
    return float(rng.uniform(lo, hi))


class Context:
    """A canvas, the render generator and the class-independent ``deposit_density`` in [0, 1]
    that places every deposit's HU inside its pattern's clinical range."""

    def __init__(self, canvas: Canvas, rng: np.random.Generator, deposit_density: float):
        self.canvas = canvas
        self.rng = rng
        self.deposit_density = float(deposit_density)
        self._textures: dict[float, np.ndarray] = {}

    def deposit_hu(self, lo: float, hi: float) -> float:
        """HU of a deposit whose clinical range is [lo, hi]."""
        return lo + self.deposit_density * (hi - lo)

    def texture(self, beta: float) -> np.ndarray:
        """A unit-std power-law field over the patch voxels (flat [N]), one per exponent."""
        if beta not in self._textures:
            cv = self.canvas
            self._textures[beta] = power_law_field(
                cv.shape, tuple(cv.spacing), beta, self.rng
            ).ravel()
        return self._textures[beta]


def trabecular(ctx: Context, m: dict) -> np.ndarray:
    """Trabecular bone HU over the patch voxels (flat [N]): ``m["bone_trabecular_hu"]`` with a
    25 % power-law texture."""
    return m["bone_trabecular_hu"] + 0.25 * m["bone_trabecular_hu"] * ctx.texture(1.2)


def long_bone(ctx: Context, m: dict, axis_point) -> None:
    """A long bone along local axis 0 through ``axis_point``: trabecular medulla (``m``:
    ``bone_radius_mm``, ``cortex_mm``, ``cortical_hu``, ``trabecular_hu``) in a cortical tube."""
    cv = ctx.canvas
    outer = cylinder(axis_point, m["bone_radius_mm"])
    medulla = cylinder(axis_point, m["bone_radius_mm"] - m["bone_cortex_mm"])
    cv.paint(medulla, trabecular(ctx, m))
    cv.paint(shell(outer, m["bone_cortex_mm"]), m["bone_cortical_hu"])


def bone_morphology(rng: np.random.Generator, radius=(12.0, 22.0)) -> dict:
    """The draws of :func:`long_bone` (general-radiology HU table of patterns.md)."""
    return {
        "bone_radius_mm": float(rng.uniform(*radius)),
        "bone_cortex_mm": float(rng.uniform(1.5, 4.0)),
        "bone_cortical_hu": float(rng.uniform(1000, 1900)),
        "bone_trabecular_hu": float(rng.uniform(200, 400)),
    }


def soft_mass(ctx: Context, centre, axes, hu: float, roughness: float):
    """An irregular soft-tissue mass (noise-displaced ellipsoid); returns its shape."""
    w = Wobble(ctx.rng, roughness * min(axes), 0.8 * min(axes))
    s = wobbled(ellipsoid(centre, axes), w)
    ctx.canvas.paint(s, hu + 4.0 * ctx.texture(2.0))
    return s
