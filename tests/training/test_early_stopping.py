"""Early stopping leaves a warm-up unjudged (calcinet.training.callbacks.EarlyStopping)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from calcinet.training.callbacks import EarlyStopping

# A validation AUROC that sits in a plateau for five epochs, then learns (the shape of a
# renderer-family mix's first epochs), then flattens.
SCRIPT = [0.60, 0.59, 0.58, 0.57, 0.56, 0.80, 0.90, 0.91, 0.91, 0.91, 0.95, 0.96]


class Scripted(L.LightningModule):
    """Logs ``SCRIPT[epoch]`` as ``val/auroc``; trains one weight on nothing in particular."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/auroc", SCRIPT[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _epochs_trained(callback: L.Callback, **trainer_args) -> int:
    data = DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = L.Trainer(max_epochs=len(SCRIPT), callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", **trainer_args)
    trainer.fit(Scripted(), data, data)
    return trainer.current_epoch


def test_warm_up_epochs_are_not_judged() -> None:
    kwargs = dict(monitor="val/auroc", mode="max", patience=2)
    # Lightning's callback: best 0.60 at epoch 1, no gain at 2 and 3 -> stops after epoch 3.
    assert _epochs_trained(LightningEarlyStopping(**kwargs)) == 3
    # Lightning's Trainer guard only holds the stop back: the plateau's epochs still count
    # against the patience, so the run ends at epoch 5, still in the plateau.
    assert _epochs_trained(LightningEarlyStopping(**kwargs), min_epochs=5) == 5
    # Warm-up of 5 epochs: judged from epoch 6 (0.80), best 0.91 at epoch 8, no gain at 9 and
    # 10 -> stops after epoch 10.
    assert _epochs_trained(EarlyStopping(start_from_epoch=5, **kwargs)) == 10
    # start_from_epoch=0 is Lightning's behaviour.
    assert _epochs_trained(EarlyStopping(start_from_epoch=0, **kwargs)) == 3


@pytest.mark.parametrize("value", [-1, 2.5, "six", True])
def test_a_warm_up_that_is_not_a_count_of_epochs_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=f"start_from_epoch={value!r}: expected a whole number"):
        EarlyStopping(monitor="val/auroc", start_from_epoch=value)
