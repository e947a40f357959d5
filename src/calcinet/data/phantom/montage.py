"""A teaching figure: one row per pattern, axial / coronal / sagittal slices through the lesion.

Uses matplotlib's object API with the Agg canvas directly, so it neither needs a display nor
changes the process-wide matplotlib backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.patterns import PATTERNS
from calcinet.data.phantom.sampling import render, sample_params

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
) -> Path:
    """Write a PNG with one row per pattern (all 20 by default; sample `seed` of each) and the three
    orthogonal slices through the lesion centre, in a bone window. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    config = PhantomConfig() if config is None else config
    ids = list(PATTERNS) if patterns is None else list(patterns)
    bad = [p for p in ids if p not in PATTERNS]
    if bad:
        raise ValueError(f"render_montage: patterns={bad} unknown; valid: {list(PATTERNS)}")
    level, width = window
    vmin, vmax = level - width / 2, level + width / 2
    sz, sy, sx = config.spacing

    fig = Figure(figsize=(6.6, 2.2 * len(ids)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ids), 3, squeeze=False)
    for row, pid in enumerate(ids):
        params = sample_params(seed, seed, config, pattern=pid)
        img = render(params, config)
        z, y, x = lesion_voxel(params, config)
        views = (
            ("axial", img[z], sx / sy),
            ("coronal", img[:, y, :], sx / sz),
            ("sagittal", img[:, :, x], sy / sz),
        )
        for col, (name, sl, aspect) in enumerate(views):
            ax = axes[row, col]
            # `aspect` is height/width of a pixel: row spacing over column spacing.
            ax.imshow(
                sl,
                cmap="gray",
                vmin=vmin,
                vmax=vmax,
                aspect=1.0 / aspect,
                interpolation="nearest",
                origin="upper" if col == 0 else "lower",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
        cls = "malignant" if PATTERNS[pid].label else "benign"
        axes[row, 0].set_ylabel(f"{cls}\n{pid}", fontsize=8)
    fig.suptitle(f"calcinet phantom, seed {seed}, window L{level:g}/W{width:g}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.995))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
