"""A teaching figure: one row per pattern, axial / coronal / sagittal slices through the lesion,
with orientation letters (the phantom's arrays are (z, y, x); as a patch they are RAS [X, Y, Z]).

Uses matplotlib's object API with the Agg canvas directly, so it neither needs a display nor
changes the process-wide matplotlib backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.patterns import PATTERNS
from calcinet.data.phantom.sampling import render, sample_params
from calcinet.views import VIEWS, display_slice, mark_orientation, pixel_aspect

# Bone window (level 400, width 1800): shows fat, soft tissue, calcium and cortex at once.
BONE_WINDOW = (400.0, 1800.0)


def lesion_voxel(params: dict, config: PhantomConfig) -> tuple[int, int, int]:
    """Voxel index (z, y, x) of the lesion centre (patch centre + position jitter)."""
    out = []
    for k, key in enumerate(("jitter_z_mm", "jitter_y_mm", "jitter_x_mm")):
        n, s = config.patch_size[k], config.spacing[k]
        out.append(int(np.clip(round((n - 1) / 2 + params[key] / s), 0, n - 1)))
    return tuple(out)


def render_montage(
    path,
    config: PhantomConfig | None = None,
    seed: int = 0,
    patterns: Sequence[str] | None = None,
    window=BONE_WINDOW,
    renderer: str | None = None,
) -> Path:
    """Write :func:`montage_figure` as a PNG to ``path``; returns the path."""
    figure = montage_figure(config, seed, patterns, window, renderer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def montage_figure(
    config: PhantomConfig | None = None,
    seed: int = 0,
    patterns: Sequence[str] | None = None,
    window=BONE_WINDOW,
    renderer: str | None = None,
):
    """A matplotlib ``Figure`` with one row per pattern (all 20 by default; sample ``seed`` of
    each) and the axial, coronal and sagittal slices through the lesion centre in ``window``
    (level, width HU), orientation letters on every slice.

    ``renderer`` (one of ``RENDERERS``) draws every row with that family; None keeps the
    config's own ``renderers``.

    Raises:
        ValueError: an unknown pattern.
    """
    if renderer is not None:
        config = replace(config or PhantomConfig(), renderers=(renderer,))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = PhantomConfig() if config is None else config
    ids = list(PATTERNS) if patterns is None else list(patterns)
    bad = [p for p in ids if p not in PATTERNS]
    if bad:
        raise ValueError(f"render_montage: patterns={bad} unknown; valid: {list(PATTERNS)}")
    level, width = window
    vmin, vmax = level - width / 2, level + width / 2
    spacing_xyz = tuple(reversed(config.spacing))

    # Constrained layout keeps the title and the row labels clear of the slices.
    fig = Figure(figsize=(6.6, 2.2 * len(ids) + 0.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ids), 3, squeeze=False)
    for row, pid in enumerate(ids):
        params = sample_params(seed, seed, config, pattern=pid)
        volume = render(params, config).transpose(2, 1, 0)  # (z, y, x) -> RAS [X, Y, Z]
        z, y, x = lesion_voxel(params, config)
        through = {"axial": z, "coronal": y, "sagittal": x}
        for col, name in enumerate(VIEWS):
            ax = axes[row, col]
            image, letters = display_slice(volume, name, through[name])
            ax.imshow(
                image,
                cmap="gray",
                vmin=vmin,
                vmax=vmax,
                aspect=pixel_aspect(spacing_xyz, name),
                interpolation="nearest",
            )
            mark_orientation(ax, letters, fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
        cls = "malignant" if PATTERNS[pid].label else "benign"
        axes[row, 0].set_ylabel(f"{cls}\n{pid}\n({params['renderer']})", fontsize=8)
    families = ", ".join(k for k, w in config.renderer_weights().items() if w > 0)
    fig.suptitle(
        f"calcinet phantom ({families}), seed {seed}, window L{level:g}/W{width:g}\n"
        "slices through the lesion, radiological convention",
        fontsize=10,
    )
    return fig
