"""The LightningDataModule: records from a source -> MONAI datasets -> loaders."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset, partition_dataset
from monai.data.utils import json_hashing
from torch.utils.data import WeightedRandomSampler

from calcinet import progress
from calcinet.config import ConfigError
from calcinet.data.augment import BatchAugment, augment_options
from calcinet.data.sources import RecordSource
from calcinet.data.splits import SPLITS, kfold_patient_split
from calcinet.data.transforms import PATCH_FORMAT, build_transforms

CACHE_MODES = ("none", "memory", "disk")
AUGMENT_ON = ("device", "loader")


class CalciDataModule(L.LightningDataModule):
    """Batches of ``{"image": [N, 1, X, Y, Z] float32 in [0, 1], "label": [N] int64, ...metadata}``.

    Args:
        source: a :class:`~calcinet.data.sources.RecordSource` (phantom, manifest,
            NoduleMNIST3D).
        patch_size: patch shape in voxels, (x, y, z).
        spacing: voxel size in mm, (x, y, z).
        hu_window: ``[low, high]`` HU mapped to ``[0, 1]`` (values outside are clipped).
        batch_size: samples per batch (training and evaluation).
        num_workers: loader worker processes (0 loads in the training process).
        cache: ``"memory"`` (MONAI ``CacheDataset``), ``"disk"`` (``PersistentDataset`` keyed on
            the transform chain) or ``"none"``.
        cache_dir: folder for ``cache="disk"``.
        cache_workers: threads that fill the memory cache.
        augment: augmentation strengths (see ``augment.DEFAULT_AUGMENT``), or None for none.
        augment_on: ``"device"`` augments whole training batches with torch operations after
            they reach the training device (:class:`~calcinet.data.augment.BatchAugment`, in
            ``on_after_batch_transfer``), so the cache holds finished samples; ``"loader"`` runs
            the same augmentations per sample as MONAI transforms in the loader.
        pin_memory: pin host memory for faster copies to a GPU.
        balanced_sampler: draw training samples with replacement, weighted so that both classes
            are equally likely in every batch (instead of shuffling).
        num_folds, fold: k-fold cross-validation by patient: the source's train and val
            findings are pooled and split into ``num_folds`` patient-disjoint, class-stratified
            folds; fold ``fold`` validates and the others train (test is unchanged). The patient
            is ``record["patient_id"]``, else ``record["id"]`` (synthetic: one sample, one
            patient). None: the source's own split.
        fold_seed: the seed of the fold assignment.

    Under multi-process training (DDP) every rank builds (and caches) only its own share of
    each split: training records are partitioned evenly per rank and reshuffled within it, so
    ``Trainer(use_distributed_sampler=False)`` is expected (``trainer=ddp`` sets it); metrics are
    synchronised across ranks by torchmetrics, so they cover the whole split.
        **source_keys: options a data config exposes as ``data.<key>`` for the command line
            (``data.manifest=...``, ``data.on_error=skip``) and hands to its source by
            interpolation (``${data.manifest}``); the DataModule only keeps them for reference.
            Hydra already refuses keys that the config does not declare.
    """

    def __init__(
        self,
        source: RecordSource,
        patch_size: Sequence[int],
        spacing: Sequence[float],
        hu_window: Sequence[float],
        batch_size: int = 16,
        num_workers: int = 0,
        cache: str = "memory",
        cache_dir: str | None = None,
        cache_workers: int = 2,
        augment: Mapping[str, float] | None = None,
        augment_on: str = "device",
        pin_memory: bool = False,
        balanced_sampler: bool = False,
        num_folds: int | None = None,
        fold: int | None = None,
        fold_seed: int = 0,
        **source_keys: Any,
    ) -> None:
        super().__init__()
        if num_folds is not None:
            if not isinstance(num_folds, int) or num_folds < 2:
                raise ConfigError(f"data.num_folds={num_folds!r}: expected an integer >= 2 "
                                  "(or null for the source's own split)")
            if not isinstance(fold, int) or not 0 <= fold < num_folds:
                raise ConfigError(f"data.fold={fold!r}: expected an integer in 0..{num_folds - 1} "
                                  f"with data.num_folds={num_folds}")
        elif fold is not None:
            raise ConfigError(f"data.fold={fold!r} needs data.num_folds (the number of folds)")
        self.num_folds = num_folds
        self.fold = fold
        self.fold_seed = int(fold_seed)
        if cache not in CACHE_MODES:
            raise ConfigError(f"data.cache={cache!r}: expected one of {', '.join(CACHE_MODES)}")
        if cache == "disk" and not cache_dir:
            raise ConfigError("data.cache_dir=None: expected a folder when data.cache='disk'")
        self.source = source
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing = tuple(float(s) for s in spacing)
        self.hu_window = tuple(float(v) for v in hu_window)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.cache = cache
        self.cache_dir = cache_dir
        self.cache_workers = int(cache_workers)
        if augment_on not in AUGMENT_ON:
            raise ConfigError(f"data.augment_on={augment_on!r}: expected one of "
                              f"{', '.join(AUGMENT_ON)}")
        self.augment = augment_options(augment) if augment is not None else None
        self.augment_on = augment_on
        self.batch_augment = (BatchAugment(hu_window, **self.augment)
                              if self.augment is not None and augment_on == "device" else None)
        self.pin_memory = bool(pin_memory)
        self.balanced_sampler = bool(balanced_sampler)
        self.source_keys = source_keys
        self.datasets: dict[str, Dataset] = {}

    def records(self, split: str) -> list[dict[str, Any]]:
        """The records of ``split``: the source's, or this fold's under k-fold (``num_folds``);
        ``"all"``: every split's, train then val then test."""
        if split == "all":
            return [r for s in SPLITS for r in self.records(s)]
        if self.num_folds is None or split == "test":
            return self.source.records(split)
        pool = self.source.records("train") + self.source.records("val")
        folds = kfold_patient_split([int(r["label"]) for r in pool],
                                    [r.get("patient_id", r["id"]) for r in pool],
                                    self.num_folds, self.fold_seed)
        return [r for r, f in zip(pool, folds, strict=True) if (f == self.fold) == (split == "val")]

    def rank_records(self, split: str) -> list[dict[str, Any]]:
        """This process's share of ``split`` under DDP (all of it in a single process).

        Training shares are equal in size (a few records repeat) so every rank runs the same
        number of steps; evaluation shares are disjoint so synchronised metrics count each
        record once.
        """
        records = self.records(split)
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        if world <= 1:
            return records
        train = split == "train"
        return partition_dataset(records, num_partitions=world, shuffle=train,
                                 seed=self.fold_seed, even_divisible=train)[trainer.global_rank]

    def class_counts(self, split: str) -> dict[int, int]:
        """``{0: benign count, 1: malignant count}`` of a split, without loading any image."""
        counts = Counter(int(r["label"]) for r in self.records(split))
        return {0: counts.get(0, 0), 1: counts.get(1, 0)}

    def transforms(self, split: str, windowed: bool = True):
        """The MONAI chain of ``split`` (augmented for ``"train"`` with ``augment_on="loader"``);
        ``windowed=False``: patches in HU (:func:`calcinet.data.transforms.build_transforms`)."""
        per_sample = split == "train" and self.augment_on == "loader"
        return build_transforms(
            self.source.load_transforms(), self.patch_size, self.spacing, self.hu_window,
            augment=self.augment if per_sample else None, windowed=windowed,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on their device (``augment_on="device"``)."""
        trainer = self.trainer
        if self.batch_augment is not None and trainer is not None and trainer.training:
            batch["image"] = self.batch_augment(batch["image"])
        return batch

    def _dataset(self, split: str) -> Dataset:
        records = self.rank_records(split)
        transform = self.transforms(split)
        if self.cache == "memory":
            # MONAI's bar is a plain tqdm: shown on a terminal only, as calcinet.progress does.
            return CacheDataset(records, transform, num_workers=self.cache_workers,
                                progress=not progress.quiet() and sys.stderr.isatty(),
                                copy_cache=False)
        if self.cache == "disk":
            # MONAI hashes the transform chain by class names only; the folder name adds what
            # those names miss (the data itself and every parameter of the deterministic stage).
            return PersistentDataset(records, transform, cache_dir=self._disk_cache_folder(),
                                     hash_transform=json_hashing)
        return Dataset(records, transform)

    def _disk_cache_folder(self) -> Path:
        key = json.dumps([self.source.fingerprint(), self.patch_size, self.spacing,
                          self.hu_window, PATCH_FORMAT])
        return Path(self.cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:16]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("test",)}.get(stage or "", ("train", "val", "test"))
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def balanced_sampler_for(self, split: str) -> WeightedRandomSampler:
        """A sampler giving each class half of the draws (weights 1 / class count)."""
        labels = [int(r["label"]) for r in self.rank_records(split)]
        counts = Counter(labels)
        weights = torch.tensor([1.0 / counts[label] for label in labels], dtype=torch.double)
        return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate"}.get(split, "test"))
        sampler = self.balanced_sampler_for(split) if shuffle and self.balanced_sampler else None
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def evaluation_loader(self, split: str, windowed: bool = True) -> DataLoader:
        """An unshuffled, unaugmented loader over ``split`` (``train``, ``val``, ``test`` or
        ``all``) of this fold, in :meth:`records` order: what ``calcinet-evaluate`` reads.
        ``windowed=False``: the patches in HU, as ``calcinet-predict`` gives them to an
        exported model (read once, not cached)."""
        if windowed and split in ("val", "test"):
            return self._loader(split, shuffle=False)
        return DataLoader(Dataset(self.records(split), self.transforms("val", windowed)),
                          batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
