"""The NoduleMNIST3D adapter on a generated file with the MedMNIST key layout, dtypes and shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from calcinet.data.datamodule import CalciDataModule
from calcinet.data.nodulemnist import NoduleMNISTSource
from calcinet.data.validation import DataValidationError
from tests.helpers import compose_config

COUNTS = {"train": 10, "val": 4, "test": 4}


def write_npz(path: Path, side: int = 28, counts: dict[str, int] = COUNTS, **replace) -> Path:
    """A tiny ``nodulemnist3d.npz``: uint8 ``(N, side, side, side)`` images, ``(N, 1)`` labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in counts.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return path


def test_samples_are_the_file_padded_to_32_and_windowed(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "nodulemnist3d.npz")
    source = NoduleMNISTSource(path)
    assert [len(source.records(s)) for s in ("train", "val", "test")] == [10, 4, 4]
    dm = CalciDataModule(source, (32, 32, 32), (1.0, 1.0, 1.0), (0.0, 255.0), batch_size=4,
                         cache="memory", cache_workers=1, augment=None)
    dm.setup("validate")
    sample = dm.datasets["val"][1]
    original = np.load(path)["val_images"][1].astype(np.float32) / 255.0
    assert sample["image"].shape == (1, 32, 32, 32)
    np.testing.assert_allclose(sample["image"][0, 2:30, 2:30, 2:30].numpy(), original, atol=1e-6)
    assert float(sample["image"][0, :2].abs().max()) == 0.0  # padding
    assert sample["label"] == 1 and sample["id"] == "val-00001"
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32, 32) and batch["label"].dtype == torch.int64


def test_64_cube_release_is_read_as_is(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "n64.npz", side=64, counts={"train": 2, "val": 2, "test": 2})
    source = NoduleMNISTSource(path)
    record = source.records("test")[0]
    (load,) = source.load_transforms()
    image = load(dict(record))["image"]
    assert image.shape == (64, 64, 64) and "index" not in load(dict(record))


def test_every_file_problem_is_reported(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "bad.npz", test_labels=None,
                     val_images=np.zeros((4, 28, 28, 28), dtype=np.float32),
                     train_labels=np.array([[0], [1], [2]] + [[0]] * 7, dtype=np.uint8),
                     test_images=np.zeros((4, 30, 30, 30), dtype=np.uint8))
    with pytest.raises(DataValidationError) as caught:
        NoduleMNISTSource(path)
    report = str(caught.value)
    assert report.splitlines()[0] == f"{path}: 4 problems"
    for fragment in [
        "key 'train_labels': values [2]; expected 0 (benign) or 1 (malignant)",
        "key 'val_images': dtype float32; expected uint8 (0-255)",
        "missing key 'test_labels' (keys found: test_images, train_images, train_labels, "
        "val_images, val_labels)",
        "key 'test_images': shape (4, 30, 30, 30); expected (N, 28, 28, 28) or (N, 64, 64, 64)",
    ]:
        assert fragment in report, report
    with pytest.raises(DataValidationError, match="file not found: .*nope.npz; expected "
                                                  "nodulemnist3d.npz from MedMNIST"):
        NoduleMNISTSource(tmp_path / "nope.npz")


def test_config_trains_on_the_file_with_the_8_bit_window(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "nodulemnist3d.npz")
    cfg = compose_config("train", ["data=nodulemnist3d", f"data.path={path}", "debug=smoke"],
                         run_dir=tmp_path / "run")
    assert list(cfg.data.hu_window) == [0.0, 255.0] and list(cfg.data.patch_size) == [32] * 3
    dm = instantiate(cfg.data)
    assert isinstance(dm, CalciDataModule) and dm.source.kind == "nodulemnist3d"
    assert len(dm.source.records("train")) == 10  # smoke caps at 32
    assert dm.source.validation_report().endswith("test 2 benign / 2 malignant")
    assert [p.name for p in dm.source.write_artifacts(tmp_path / "art")] == ["nodulemnist3d.json"]
    assert len(dm.source.fingerprint()) == 16
