"""Temperature scaling: one number that makes the malignancy probabilities mean what they say.

A network trained with cross-entropy is usually over- or under-confident; dividing its logit by a
temperature ``T`` fitted on held-out data (the validation split) fixes most of it without moving
any ranking, so AUROC and the order of the findings are unchanged (Guo et al., "On Calibration
of Modern Neural Networks", ICML 2017). ``T`` is fitted by minimising the binary cross-entropy
of ``sigmoid(logit / T)``; ``T > 1`` softens, ``T < 1`` sharpens.
"""

from __future__ import annotations

import numpy as np

#: Fitted temperatures are kept within these bounds (a wider one means the fit failed).
TEMPERATURE_BOUNDS = (0.01, 100.0)


def at_bound(temperature: float) -> bool:
    """Whether a fitted temperature sits at (within 1 % of) a :data:`TEMPERATURE_BOUNDS` end:
    the search stopped at the edge, the scores did not calibrate."""
    low, high = TEMPERATURE_BOUNDS
    return not low * 1.01 < temperature < high / 1.01


def bound_note(temperature: float) -> str | None:
    """The note export and evaluation give a model whose temperature is :func:`at_bound`."""
    if not at_bound(temperature):
        return None
    low, high = TEMPERATURE_BOUNDS
    return (f"calibration temperature {temperature:.4g} is at a bound of its fit [{low:g}, "
            f"{high:g}]: the validation scores did not calibrate (a model that separates "
            "nothing gives about 0.5 everywhere); check the run's val/auroc")


def _bce(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    # log(1 + exp(-|z|)) + max(z, 0) - y z: the numerically stable binary cross-entropy.
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the cross-entropy of ``sigmoid(logits / T)`` on ``labels``
    (bounded search on ``log T`` within :data:`TEMPERATURE_BOUNDS`); 1.0 when the set holds
    one class only."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if logits.size == 0 or len(np.unique(labels)) < 2:
        return 1.0
    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(lambda log_t: _bce(logits, labels, float(np.exp(log_t))),
                            bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def uncalibrated(probability: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling, from the calibrated ones."""
    from scipy.special import expit, logit

    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    return expit(logit(p) * temperature)


def calibration_effect(label: np.ndarray, probability: np.ndarray, temperature: float,
                       n_bins: int = 10) -> dict:
    """Brier score and ECE of the probabilities before and after the model's temperature."""
    from sklearn.metrics import brier_score_loss

    from calcinet.evaluation.metrics import expected_calibration_error

    label = np.asarray(label, dtype=int)
    after = np.asarray(probability, dtype=np.float64)
    before = uncalibrated(after, temperature)
    return {
        "method": "temperature" if temperature != 1.0 else "none",
        "temperature": float(temperature),
        "before": {"brier": float(brier_score_loss(label, before)),
                   "ece": expected_calibration_error(label, before, n_bins)},
        "after": {"brier": float(brier_score_loss(label, after)),
                  "ece": expected_calibration_error(label, after, n_bins)},
    }
