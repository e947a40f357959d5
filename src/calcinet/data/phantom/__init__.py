"""Synthetic CT calcification phantom: the embedded default dataset, the test fixture and a
teaching tool.

Each sample is a small 3D CT patch (float32 HU, axes (z, y, x)) centred on one of the 20
calcification patterns of docs/patterns.md (11 benign, 9 malignant), drawn in true 3D with
partial-volume edges and passed through a CT acquisition model (blur, kernel-correlated noise,
slice thickness, HU drift). Nuisance factors are drawn identically for both classes, so a model
can only succeed by learning morphology. numpy + scipy only (no torch).

    from calcinet.data.phantom import PhantomConfig, generate_sample
    s = generate_sample(index=0, seed=0, config=PhantomConfig())
    s["image"].shape, s["label"], s["pattern"]
"""

from calcinet.data.phantom.config import PhantomConfig
from calcinet.data.phantom.patterns import (
    BENIGN_PATTERNS,
    MALIGNANT_PATTERNS,
    PATTERNS,
    Pattern,
)
from calcinet.data.phantom.sampling import (
    NUISANCE_KEYS,
    generate_sample,
    render,
    sample_params,
)

__all__ = [
    "BENIGN_PATTERNS",
    "MALIGNANT_PATTERNS",
    "NUISANCE_KEYS",
    "PATTERNS",
    "Pattern",
    "PhantomConfig",
    "generate_sample",
    "render",
    "sample_params",
]
