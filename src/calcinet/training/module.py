"""The LightningModule: one malignancy logit, BCE loss, AdamW + schedule, torchmetrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryRecall,
    BinarySpecificity,
)

from calcinet import CLASS_NAMES
from calcinet.models.networks import build_network


def classification_metrics(prefix: str) -> MetricCollection:
    """Threshold-free (AUROC, AP) and 0.5-threshold metrics of malignancy probabilities."""
    return MetricCollection(
        {
            "auroc": BinaryAUROC(),
            "ap": BinaryAveragePrecision(),
            "accuracy": BinaryAccuracy(),
            "sensitivity": BinaryRecall(),
            "specificity": BinarySpecificity(),
            "f1": BinaryF1Score(),
        },
        prefix=prefix,
    )


class CalciModule(L.LightningModule):
    """Benign-vs-malignant classifier around any network from :func:`build_network`.

    Everything needed to rebuild the model and its preprocessing is saved in the checkpoint's
    hyper-parameters, so ``CalciModule.load_from_checkpoint(path)`` needs no config files.

    Args:
        network: ``{"name": ..., **kwargs}`` for :func:`build_network`.
        optim: ``{"optimizer": <partial _target_>, "scheduler": <partial _target_ or None>}``;
            the scheduler is called with ``total_steps`` and stepped every optimiser step.
        loss: ``{"pos_weight": float | None}``: weight of the malignant class in the BCE loss.
        preprocessing: facts about the input (``patch_size``, ``spacing``, ``hu_window``) kept
            for evaluation and export.
    """

    def __init__(
        self,
        network: dict[str, Any],
        optim: dict[str, Any],
        loss: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        class_names: tuple[str, str] = CLASS_NAMES,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.network = build_network(**network)
        pos_weight = (loss or {}).get("pos_weight")
        self.pos_weight: torch.Tensor | None
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.tensor(float(pos_weight))
        )
        self.val_metrics = classification_metrics("val/")
        self.test_metrics = classification_metrics("test/")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Malignancy logits ``[N]`` for windowed patches ``[N, 1, X, Y, Z]``."""
        return self.network(image).squeeze(1)

    def _loss(self, logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            logit.float(), label.float(), pos_weight=self.pos_weight
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logit = self(batch["image"])
        loss = self._loss(logit, batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=logit.shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> None:
        logit = self(batch["image"])
        label = batch["label"].long()
        self.log(f"{stage}/loss", self._loss(logit, label), on_epoch=True, prog_bar=True,
                 batch_size=logit.shape[0], sync_dist=True)
        metrics.update(torch.sigmoid(logit.float()), label)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=False)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch["image"]).float())

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
