"""The LightningModule on its own: loss, metrics, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from torch.utils.data import DataLoader

from calcinet.training.module import CalciModule, choose_thresholds

OPTIM = {
    "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
    "scheduler": {"_target_": "calcinet.training.schedules.warmup_cosine", "_partial_": True},
}
NETWORK = {"name": "compact", "channels": [8, 16], "dropout": 0.0}
PREP = {"patch_size": [16, 16, 16], "spacing": [1.25] * 3, "hu_window": [-200.0, 1800.0]}


def _batches(n: int = 24, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % 2
    image = torch.rand(n, 1, 16, 16, 16, generator=g) * 0.2
    image[label == 1, :, 5:11, 5:11, 5:11] += 0.7
    return [{"image": image[i : i + 8], "label": label[i : i + 8]} for i in range(0, n, 8)]


def test_pos_weight_enters_the_loss() -> None:
    logit, label = torch.tensor([0.3, -0.2]), torch.tensor([1, 0])
    plain = CalciModule(NETWORK, OPTIM)._loss(logit, label)
    weighted = CalciModule(NETWORK, OPTIM, loss={"pos_weight": 3.0})._loss(logit, label)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logit, label.float(), pos_weight=torch.tensor(3.0)
    )
    assert weighted == pytest.approx(expected.item())
    assert weighted > plain


@pytest.mark.parametrize("calibration", ["temperature", "none"])
def test_validation_metrics_are_scikit_learns_at_the_stored_threshold(
        calibration: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = CalciModule(NETWORK, OPTIM, preprocessing=PREP, calibration=calibration)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    batches = _batches()
    # A few steps on the toy problem first: an untrained network's logits may run against the
    # labels (a negative temperature, outside the bounded search), whatever its initialisation.
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-2)
    for _ in range(10):
        for batch in batches:
            optimiser.zero_grad()
            module._loss(module(batch["image"]), batch["label"]).backward()
            optimiser.step()
    trainer.validate(module, dataloaders=DataLoader(batches, batch_size=None))
    logged = trainer.callback_metrics
    module.eval()
    with torch.no_grad():
        logits = torch.cat([module(b["image"]) for b in batches]).double().numpy()
    labels = torch.cat([b["label"] for b in batches]).numpy()
    # Temperature scaling is a logistic regression on the logit without intercept: a = 1 / T.
    if calibration == "temperature":
        fit = LogisticRegression(penalty=None, fit_intercept=False, tol=1e-10, max_iter=10_000)
        temperature = 1.0 / float(fit.fit(logits[:, None], labels).coef_[0, 0])
        assert float(module.temperature) == pytest.approx(temperature, rel=1e-3)
    else:
        temperature = 1.0
        assert float(module.temperature) == 1.0
    # The probabilities users get (float32, as the exported model computes them) ...
    with torch.no_grad():
        probs = torch.cat([module.probability(b["image"]) for b in batches]).double().numpy()
    assert probs == pytest.approx(1.0 / (1.0 + np.exp(-logits / float(module.temperature))),
                                  abs=1e-6)
    # The stored operating threshold is Youden's J on these calibrated probabilities ...
    fpr, tpr, thresholds = roc_curve(labels, probs)
    youden = thresholds[np.argmax(tpr - fpr)]
    assert float(module.threshold) == pytest.approx(float(youden), abs=1e-6)
    assert float(logged["val/threshold"]) == pytest.approx(float(youden), abs=1e-6)
    first_reaching = thresholds[np.nonzero(tpr >= 0.95)[0][0]]
    assert float(module.threshold_at_sensitivity) == pytest.approx(float(first_reaching), abs=1e-6)
    # ... and every thresholded metric is measured at it, as scikit-learn counts.
    predicted = (probs >= youden).astype(int)
    expected = {
        "auroc": roc_auc_score(labels, probs),
        "accuracy": accuracy_score(labels, predicted),
        "sensitivity": recall_score(labels, predicted),
        "specificity": recall_score(labels, predicted, pos_label=0),
        "f1": f1_score(labels, predicted),
        "brier": brier_score_loss(labels, probs),
    }
    for name, value in expected.items():
        assert float(logged[f"val/{name}"]) == pytest.approx(value, abs=1e-5), name
    assert float(logged["val/temperature"]) == pytest.approx(float(module.temperature))


def test_choose_thresholds_on_a_known_curve() -> None:
    fpr = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = torch.tensor([0.0, 0.5, 0.5, 1.0, 1.0])
    thresholds = torch.tensor([1.0, 0.9, 0.6, 0.4, 0.1])
    assert choose_thresholds(fpr, tpr, thresholds, 0.95) == (pytest.approx(0.9), pytest.approx(0.4))


def test_invalid_operating_point_is_named() -> None:
    with pytest.raises(ValueError, match="model.operating_point='f1': expected one of youden"):
        CalciModule(NETWORK, OPTIM, operating_point="f1")


def test_fits_and_reloads_from_checkpoint_alone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    optim = {**OPTIM, "optimizer": {**OPTIM["optimizer"], "lr": 1e-2}}
    module = CalciModule(NETWORK, optim, preprocessing=PREP)
    trainer = L.Trainer(max_epochs=10, logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, enable_model_summary=False)
    loader = DataLoader(_batches(), batch_size=None)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert float(trainer.callback_metrics["val/auroc"]) > 0.9
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    reloaded = CalciModule.load_from_checkpoint(path).eval()
    module.eval()
    x = _batches()[0]["image"]
    with torch.no_grad():
        assert torch.equal(reloaded(x), module(x))
    assert reloaded.hparams.preprocessing == PREP
    assert reloaded.hparams.network["name"] == "compact"
    assert float(reloaded.threshold) == float(module.threshold)
    assert float(reloaded.temperature) == float(module.temperature) != 1.0


def test_focal_loss_and_label_smoothing() -> None:
    from torchvision.ops import sigmoid_focal_loss

    from calcinet.training.module import malignancy_loss

    logit, label = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 0, 0])
    focal = malignancy_loss(logit, label, name="focal", focal_alpha=0.3, focal_gamma=1.5)
    expected = sigmoid_focal_loss(logit, label.float(), alpha=0.3, gamma=1.5, reduction="mean")
    assert focal.item() == pytest.approx(expected.item())
    smoothed = malignancy_loss(logit, label, label_smoothing=0.2)
    targets = torch.tensor([0.9, 0.1, 0.1])
    assert smoothed.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logit, targets).item()
    )
    module = CalciModule(NETWORK, OPTIM, loss={"name": "focal", "focal_gamma": 1.5,
                                               "focal_alpha": 0.3})
    assert module._loss(logit, label).item() == pytest.approx(expected.item())


def test_unknown_loss_options_are_named() -> None:
    with pytest.raises(ValueError, match="model.loss.name='hinge': expected one of bce, focal"):
        CalciModule(NETWORK, OPTIM, loss={"name": "hinge"})
    with pytest.raises(ValueError, match=r"model.loss: unknown option\(s\) \['gamma'\]"):
        CalciModule(NETWORK, OPTIM, loss={"gamma": 2.0})
