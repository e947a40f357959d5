"""Evaluation of a trained model on a held-out set: predictions, metrics with bootstrap
confidence intervals, breakdowns by metadata, figures, Grad-CAM, MLflow logging and the
comparison of several models (DeLong).

The modules that compute and draw (:mod:`metrics`, :mod:`breakdown`, :mod:`plots`,
:mod:`report`, :mod:`compare`) work on plain arrays and DataFrames; only :mod:`predict` (which
runs a model) and :mod:`run` (which builds the DataModule) need torch, MONAI or Lightning.
"""

from __future__ import annotations


class EvaluationError(ValueError):
    """An evaluation that cannot give meaningful numbers; the message names file, key and value."""


__all__ = ["EvaluationError"]
