"""The LightningModule: one malignancy logit, BCE loss, AdamW + schedule, torchmetrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import CatMetric
from torchmetrics.functional.classification import binary_roc
from torchvision.ops import sigmoid_focal_loss

from calcinet import CLASS_NAMES
from calcinet.config import ConfigError
from calcinet.data.keys import QUANTILES_KEY
from calcinet.evaluation.calibration import fit_temperature
from calcinet.evaluation.metrics import METRIC_NAMES, point_metrics
from calcinet.imaging import intensity_profile
from calcinet.models.networks import build_network

OPERATING_POINTS = ("youden", "sensitivity")
CALIBRATIONS = ("temperature", "none")
LOSSES = ("bce", "focal")
LOSS_DEFAULTS = {"name": "bce", "pos_weight": None, "label_smoothing": 0.0, "focal_alpha": 0.25,
                 "focal_gamma": 2.0}


def malignancy_loss(
    logit: torch.Tensor,
    label: torch.Tensor,
    name: str = "bce",
    pos_weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> torch.Tensor:
    """Mean BCE (optionally class-weighted) or focal loss of malignancy logits.

    Label smoothing moves the targets to ``y * (1 - s) + s / 2`` in both cases.
    """
    target = label.float()
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if name == "focal":
        return sigmoid_focal_loss(logit.float(), target, alpha=focal_alpha, gamma=focal_gamma,
                                  reduction="mean")
    return F.binary_cross_entropy_with_logits(logit.float(), target, pos_weight=pos_weight)


def choose_thresholds(
    fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor, target_sensitivity: float
) -> tuple[float, float]:
    """``(Youden's J threshold, highest threshold whose sensitivity >= target)`` of a ROC curve.

    ``thresholds`` come from ``BinaryROC``: decreasing, with ``tpr`` and ``fpr`` increasing.
    """
    youden = float(thresholds[torch.argmax(tpr - fpr)])
    reached = torch.nonzero(tpr >= target_sensitivity - 1e-12)
    at_sensitivity = float(thresholds[reached[0, 0]]) if len(reached) else float(thresholds[-1])
    return min(youden, 1.0), min(at_sensitivity, 1.0)


class Scores:
    """The logits and labels of one evaluation pass, gathered over every rank (torchmetrics
    ``CatMetric``s, synchronised under DDP), so that the metrics cover the whole split."""

    def __init__(self, module: L.LightningModule, name: str) -> None:
        self.logits, self.labels = CatMetric(), CatMetric()
        module.add_module(f"{name}_logits", self.logits)
        module.add_module(f"{name}_labels", self.labels)

    def update(self, logit: torch.Tensor, label: torch.Tensor) -> None:
        self.logits.update(logit.detach().float().reshape(-1))
        self.labels.update(label.detach().float().reshape(-1))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` on the CPU, then reset; empty tensors when nothing came."""
        if not self.logits.update_called:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        logits = self.logits.compute().float().reshape(-1).cpu()
        labels = self.labels.compute().reshape(-1).long().cpu()
        self.logits.reset()
        self.labels.reset()
        return logits, labels


class CalciModule(L.LightningModule):
    """Benign-vs-malignant classifier around any network from :func:`build_network`.

    Everything needed to rebuild the model and its preprocessing is saved in the checkpoint's
    hyper-parameters, so ``CalciModule.load_from_checkpoint(path)`` needs no config files.

    Args:
        network: ``{"name": ..., **kwargs}`` for :func:`build_network`.
        optim: ``{"optimizer": <partial _target_>, "scheduler": <partial _target_ or None>}``;
            the scheduler is called with ``total_steps`` and stepped every optimiser step.
        loss: ``{"name": "bce" | "focal", "pos_weight": float | None, "label_smoothing": float,
            "focal_alpha": float, "focal_gamma": float}`` (see :func:`malignancy_loss`).
        preprocessing: facts about the input (``patch_size``, ``spacing``, ``hu_window``) kept
            for evaluation and export.
        operating_point: how the decision threshold is chosen on the validation set after every
            validation epoch: ``"youden"`` (max sensitivity + specificity - 1) or
            ``"sensitivity"`` (the highest threshold reaching ``target_sensitivity``). The
            threshold is saved in the checkpoint (buffer ``threshold``), never tuned on test data,
            and every thresholded validation metric (``val/sensitivity``, ``val/specificity``,
            ``val/accuracy``, ``val/ppv``, ``val/npv``, ``val/f1``) is measured at it, with the
            definitions ``calcinet-evaluate`` uses
            (:func:`calcinet.evaluation.metrics.point_metrics`).
        target_sensitivity: the sensitivity of the second stored threshold
            (buffer ``threshold_at_sensitivity``).
        calibration: ``"temperature"``: after every validation epoch the logit is divided by a
            temperature fitted on that validation split (buffer ``temperature``, see
            :mod:`calcinet.evaluation.calibration`), and thresholds and metrics are those of the
            calibrated probability; ``"none"``: temperature 1.
        channels_last: keep the network and its inputs in ``channels_last_3d`` memory format
            (faster convolutions on recent GPUs).
    """

    def __init__(
        self,
        network: dict[str, Any],
        optim: dict[str, Any],
        loss: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        class_names: tuple[str, str] = CLASS_NAMES,
        operating_point: str = "youden",
        target_sensitivity: float = 0.95,
        calibration: str = "temperature",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if operating_point not in OPERATING_POINTS:
            raise ConfigError(f"model.operating_point={operating_point!r}: expected one of "
                              f"{', '.join(OPERATING_POINTS)}")
        if calibration not in CALIBRATIONS:
            raise ConfigError(f"model.calibration={calibration!r}: expected one of "
                              f"{', '.join(CALIBRATIONS)}")
        if not 0.0 < target_sensitivity <= 1.0:
            raise ConfigError(f"model.target_sensitivity={target_sensitivity!r}: expected a "
                              "number in (0, 1]")
        unknown = set(loss or {}) - set(LOSS_DEFAULTS)
        if unknown:
            raise ConfigError(f"model.loss: unknown option(s) {sorted(unknown)}; expected "
                              f"{sorted(LOSS_DEFAULTS)}")
        self.loss_options = {**LOSS_DEFAULTS, **(loss or {})}
        if self.loss_options["name"] not in LOSSES:
            raise ConfigError(f"model.loss.name={self.loss_options['name']!r}: expected one of "
                              f"{', '.join(LOSSES)}")
        self.save_hyperparameters(logger=False)
        self.network = build_network(**network)
        if channels_last:
            self.network = self.network.to(memory_format=torch.channels_last_3d)
        pos_weight = self.loss_options["pos_weight"]
        self.pos_weight: torch.Tensor | None
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.tensor(float(pos_weight))
        )
        self.threshold: torch.Tensor
        self.threshold_at_sensitivity: torch.Tensor
        self.temperature: torch.Tensor
        self.register_buffer("threshold", torch.tensor(0.5))
        self.register_buffer("threshold_at_sensitivity", torch.tensor(0.5))
        self.register_buffer("temperature", torch.tensor(1.0))
        #: Facts about the run (MLflow run id, tracking URI, config hash), set by the training
        #: run and written into every checkpoint under ``checkpoint["calcinet"]``.
        self.run_info: dict[str, Any] = {}
        #: HU quantiles of the training patches (:func:`calcinet.imaging.intensity_profile`),
        #: gathered over the first training epoch and saved with every checkpoint, so that an
        #: exported model can tell predict when an input is far from what it was trained on.
        self.input_profile: dict[str, Any] = {}
        self._train_quantiles: list[torch.Tensor] = []
        self.val_scores = Scores(self, "val")
        self.test_scores = Scores(self, "test")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Malignancy logits ``[N]`` (before calibration) for windowed patches
        ``[N, 1, X, Y, Z]``."""
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        return self.network(image).squeeze(1)

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """Calibrated malignancy probabilities ``[N]``: ``sigmoid(logit / temperature)``."""
        return self.calibrated(self(image))

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """``sigmoid(logits / temperature)`` in float32, as the exported model computes it."""
        return torch.sigmoid(logits.float().to(self.temperature.device) / self.temperature)

    def _loss(self, logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        options = {k: v for k, v in self.loss_options.items() if k != "pos_weight"}
        return malignancy_loss(logit, label, pos_weight=self.pos_weight, **options)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if not self.input_profile and QUANTILES_KEY in batch:
            self._train_quantiles.append(batch[QUANTILES_KEY].detach().float().cpu())
        logit = self(batch["image"])
        loss = self._loss(logit, batch["label"])
        # sync_dist: the epoch mean over every rank's batches (one all-reduce per epoch).
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=logit.shape[0], sync_dist=True)
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, scores: Scores) -> None:
        logit = self(batch["image"])
        label = batch["label"].long()
        self.log(f"{stage}/loss", self._loss(logit, label), on_epoch=True, prog_bar=True,
                 batch_size=logit.shape[0], sync_dist=True)
        scores.update(logit, label)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_scores)

    def on_validation_epoch_end(self) -> None:
        """Fit the temperature, choose the thresholds, then measure every metric at the stored
        threshold, on the whole validation split."""
        logits, labels = self.val_scores.compute()
        if self.trainer.sanity_checking or labels.numel() == 0:
            return  # a few batches before training: nothing to choose or report
        if labels.unique().numel() < 2:
            raise ValueError(f"the validation split holds one class only ({labels.numel()} "
                             "samples); thresholds and AUROC need both classes")
        temperature = (fit_temperature(logits.numpy(), labels.numpy())
                       if self.hparams.calibration == "temperature" else 1.0)
        self.temperature.fill_(temperature)
        # The probabilities exactly as probability() and the exported model compute them
        # (float32): a large temperature can tie close logits, and the numbers must be those
        # of the model users run (calcinet-evaluate split=val gives the same).
        probability = self.calibrated(logits).cpu()
        fpr, tpr, thresholds = binary_roc(probability, labels)
        youden, at_sensitivity = choose_thresholds(fpr, tpr, thresholds,
                                                   self.hparams.target_sensitivity)
        chosen = youden if self.hparams.operating_point == "youden" else at_sensitivity
        self.threshold.fill_(chosen)
        self.threshold_at_sensitivity.fill_(at_sensitivity)
        metrics = point_metrics(labels.numpy(), probability.numpy(), chosen)
        self.log_dict({f"val/{name}": float(metrics[name]) for name in METRIC_NAMES})
        self.log_dict({"val/threshold": chosen, "val/temperature": temperature})

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_scores)

    def on_test_epoch_end(self) -> None:
        """Every metric on the test split at the stored threshold and temperature."""
        logits, labels = self.test_scores.compute()
        if labels.unique().numel() < 2:
            return
        probability = self.calibrated(logits).cpu()
        metrics = point_metrics(labels.numpy(), probability.numpy(), float(self.threshold))
        self.log_dict({f"test/{name}": float(metrics[name]) for name in METRIC_NAMES})

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.probability(batch["image"])

    def on_train_epoch_end(self) -> None:
        if not self.input_profile and self._train_quantiles:
            self.input_profile = intensity_profile(torch.cat(self._train_quantiles))
            self._train_quantiles.clear()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the run's identity, the validation metrics of this moment and the training
        patches' intensity profile with the weights."""
        val_metrics = {
            key: float(value) for key, value in self.trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        profile = self.input_profile or (
            intensity_profile(torch.cat(self._train_quantiles)) if self._train_quantiles else {})
        checkpoint["calcinet"] = {**self.run_info, "val_metrics": val_metrics,
                                  "input_profile": profile}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run keeps the profile of the epochs it already trained; a checkpoint from
        before calibration existed gets temperature 1 (what it was trained with)."""
        self.input_profile = dict((checkpoint.get("calcinet") or {}).get("input_profile") or {})
        checkpoint.get("state_dict", {}).setdefault("temperature", torch.tensor(1.0))

    def configure_optimizers(self) -> dict[str, Any]:
        # Both configs are `_partial_`: instantiate gives a factory, called with what only the
        # module knows (its parameters, the run's number of optimiser steps).
        optimizer = instantiate(self.hparams.optim["optimizer"])(self.parameters())
        scheduler_cfg = self.hparams.optim.get("scheduler")
        if not scheduler_cfg:
            return {"optimizer": optimizer}
        scheduler = instantiate(scheduler_cfg)(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
