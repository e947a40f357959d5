"""Scalar draws shared by the benign and malignant painters (`benign.py`, `malignant.py`)."""

from __future__ import annotations

import numpy as np


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw from U(low, high), as a Python float (what the sample's params store)."""
    return float(rng.uniform(low, high))


def tilted(rng: np.random.Generator, axis, max_deg: float) -> np.ndarray:
    """A unit vector (scene) within about `max_deg` degrees of `axis`."""
    v = np.asarray(axis, dtype=np.float64) + np.tan(np.radians(max_deg)) * rng.uniform(-1, 1, 3)
    return v / np.linalg.norm(v)
