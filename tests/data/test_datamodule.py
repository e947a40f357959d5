"""The DataModule on the synthetic source: shapes, dtypes, windowing, label balance, caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calcinet.data.datamodule import CalciDataModule
from calcinet.data.phantom import render
from calcinet.data.sources import SyntheticSource, phantom_config

PATCH = (24, 24, 24)
SPACING = (1.5, 1.5, 1.5)
WINDOW = (-200.0, 1800.0)


def _datamodule(**kw) -> CalciDataModule:
    source = SyntheticSource(num_train=16, num_val=8, num_test=8, seed=5,
                             patch_size=PATCH, spacing=SPACING)
    options = dict(batch_size=4, num_workers=0, cache="memory", cache_workers=1, augment=None)
    options.update(kw)
    return CalciDataModule(source, PATCH, SPACING, WINDOW, **options)


def test_batches_have_the_documented_shapes_and_types() -> None:
    dm = _datamodule()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, *PATCH)
    assert batch["image"].dtype == torch.float32
    assert type(batch["image"]) is torch.Tensor  # plain tensors, not MetaTensor
    assert batch["label"].dtype == torch.int64
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
    assert len(batch["pattern"]) == 4 and len(batch["id"]) == 4
    assert "params" not in batch


def test_validation_images_are_the_windowed_render() -> None:
    dm = _datamodule()
    dm.setup("validate")
    record = dm.source.records("val")[0]
    sample = dm.datasets["val"][0]
    hu = render(record["params"], phantom_config(PATCH, SPACING))  # (z, y, x)
    expected = np.clip((hu.transpose(2, 1, 0) - WINDOW[0]) / (WINDOW[1] - WINDOW[0]), 0, 1)
    np.testing.assert_allclose(sample["image"][0].numpy(), expected, atol=1e-5)
    assert sample["label"] == record["label"]


def test_label_balance_follows_the_class_prior() -> None:
    source = SyntheticSource(num_train=400, num_val=0, num_test=0, seed=0,
                             phantom={"malignant_fraction": 0.3})
    dm = CalciDataModule(source, (48,) * 3, (1.25,) * 3, WINDOW)
    counts = dm.class_counts("train")
    assert counts[0] + counts[1] == 400
    assert counts[1] / 400 == pytest.approx(0.3, abs=0.06)


def test_splits_are_disjoint_and_deterministic() -> None:
    a, b = _datamodule(), _datamodule()
    ids = {s: [r["params"]["render_seed"] for r in a.source.records(s)] for s in ("train", "val")}
    assert not set(ids["train"]) & set(ids["val"])
    a.setup("validate")
    b.setup("validate")
    assert torch.equal(a.datasets["val"][3]["image"], b.datasets["val"][3]["image"])


FLIPS_ONLY = {"flip_prob": 1.0, "rotate90_prob": 0.0, "affine_prob": 0.0, "noise_prob": 0.0}


def test_loader_augmentation_changes_training_samples_only() -> None:
    dm = _datamodule(augment=FLIPS_ONLY, augment_on="loader")
    dm.setup("fit")
    plain = _datamodule()
    plain.setup("fit")
    # Three certain flips reverse every axis.
    flipped = dm.datasets["train"][0]["image"]
    assert torch.equal(flipped, torch.flip(plain.datasets["train"][0]["image"], dims=(1, 2, 3)))
    assert torch.equal(dm.datasets["val"][0]["image"], plain.datasets["val"][0]["image"])


def test_device_augmentation_changes_training_batches_only(tmp_path: Path) -> None:
    import lightning as L

    from calcinet.training.module import CalciModule

    seen: dict[str, dict] = {}

    class Capture(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen["train"] = batch

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx,
                                      dataloader_idx=0) -> None:
            seen["val"] = batch

    dm = _datamodule(augment=FLIPS_ONLY)  # augment_on="device" is the default
    plain = _datamodule()
    plain.setup("fit")
    module = CalciModule(network={"name": "compact", "channels": [4, 8], "dropout": 0.0},
                         optim={"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True,
                                              "lr": 1e-3}})
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Capture()],
                        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    # The cache holds finished, unaugmented samples ...
    assert torch.equal(dm.datasets["train"][0]["image"], plain.datasets["train"][0]["image"])
    # ... and the model sees every training sample flipped along all three axes.
    by_id = {r["id"]: r["image"] for r in (plain.datasets["train"][i]
                                           for i in range(len(plain.datasets["train"])))}
    train = seen["train"]
    for sample_id, image in zip(train["id"], train["image"], strict=True):
        assert torch.equal(image, by_id[sample_id].flip(1, 2, 3))
    val = seen["val"]
    assert torch.equal(val["image"], next(iter(plain.val_dataloader()))["image"])


def test_bad_augment_on_is_named() -> None:
    with pytest.raises(ValueError, match="data.augment_on='gpu': expected one of device, loader"):
        _datamodule(augment_on="gpu")


def test_unknown_augment_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"data.augment: unknown option\(s\) \['blur'\]"):
        _datamodule(augment={"blur": 1.0}).setup("fit")


@pytest.mark.parametrize("cache", ["none", "disk"])
def test_every_cache_mode_gives_the_same_samples(cache: str, tmp_path: Path) -> None:
    reference = _datamodule()
    reference.setup("validate")
    other = _datamodule(cache=cache, cache_dir=str(tmp_path))
    other.setup("validate")
    for i in range(3):
        assert torch.equal(other.datasets["val"][i]["image"], reference.datasets["val"][i]["image"])
    if cache == "disk":
        assert list(tmp_path.rglob("*.pt"))


def test_bad_cache_mode_is_named() -> None:
    with pytest.raises(ValueError, match="data.cache='ram': expected one of none, memory, disk"):
        _datamodule(cache="ram")


def test_balanced_sampler_draws_both_classes_equally() -> None:
    source = SyntheticSource(num_train=300, num_val=0, num_test=0, seed=0,
                             phantom={"malignant_fraction": 0.2})
    dm = CalciDataModule(source, (48,) * 3, (1.25,) * 3, WINDOW, balanced_sampler=True)
    labels = [source.records("train")[i]["label"] for i in dm.balanced_sampler_for("train")]
    torch.manual_seed(0)
    draws = [source.records("train")[i]["label"] for _ in range(20)
             for i in dm.balanced_sampler_for("train")]
    assert len(labels) == 300
    assert np.mean(draws) == pytest.approx(0.5, abs=0.03)
    assert np.mean([r["label"] for r in source.records("train")]) == pytest.approx(0.2, abs=0.06)
