"""Scalar draws shared by the benign and malignant painters (`benign.py`, `malignant.py`), and the
two conventions every renderer family shares: a pose quaternion's rotation matrix and the plain
Python values a sample's params hold."""

from __future__ import annotations

from typing import Any

import numpy as np


def uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw from U(low, high), as a Python float (what the sample's params store)."""
    return float(rng.uniform(low, high))


def tilted(rng: np.random.Generator, axis, max_deg: float) -> np.ndarray:
    """A unit vector (scene) within about `max_deg` degrees of `axis`."""
    v = np.asarray(axis, dtype=np.float64) + np.tan(np.radians(max_deg)) * rng.uniform(-1, 1, 3)
    return v / np.linalg.norm(v)


def quaternion_matrix(q) -> np.ndarray:
    """3x3 rotation of the quaternion ``q = (w, x, y, z)`` (normalised here; zero: identity)."""
    w, x, y, z = (float(v) for v in q)
    n = np.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def plain(v: Any) -> Any:
    """``v`` as a plain Python scalar (bool, int, float, str) when it is a NumPy one, so that a
    sample's params are JSON-able; anything else unchanged."""
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.str_):
        return str(v)
    return v
