"""k-fold by patient: the split, the DataModule option and the calcinet-cv helper."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from calcinet.data.datamodule import CalciDataModule
from calcinet.data.splits import kfold_patient_split
from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli
from tests.scaling.conftest import TINY


def test_kfold_keeps_patients_together_and_balances_classes() -> None:
    patients = [f"p{i // 3}" for i in range(90)]  # 30 patients, 3 findings each
    labels = [int(i // 3 % 3 == 0) for i in range(90)]
    folds = kfold_patient_split(labels, patients, num_folds=5, seed=0)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for patient in set(patients):
        assert len({f for p, f in zip(patients, folds, strict=True) if p == patient}) == 1
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 3
    malignant = Counter(f for f, lab in zip(folds, labels, strict=True) if lab)
    assert max(malignant.values()) - min(malignant.values()) <= 3
    assert folds == kfold_patient_split(labels, patients, num_folds=5, seed=0)
    with pytest.raises(ValueError, match="data.num_folds=1"):
        kfold_patient_split(labels, patients, num_folds=1)


class _Source:
    """Records with patient ids, as the manifest source gives them."""

    def records(self, split: str) -> list[dict]:
        size = {"train": 24, "val": 6, "test": 4}[split]
        return [{"id": f"{split}{i}", "patient_id": f"{split}-pt{i // 2}", "label": i % 2}
                for i in range(size)]


def test_datamodule_folds_cover_train_and_val_once_and_keep_test() -> None:
    seen_val: list[str] = []
    for fold in range(3):
        dm = CalciDataModule(_Source(), (16, 16, 16), (2, 2, 2), (-200, 1800), num_folds=3,
                             fold=fold)
        train = {r["id"] for r in dm.records("train")}
        val = {r["id"] for r in dm.records("val")}
        assert not train & val and len(train | val) == 30
        patients = {r["patient_id"] for r in dm.records("val")}
        assert not patients & {r["patient_id"] for r in dm.records("train")}
        assert [r["id"] for r in dm.records("test")] == [f"test{i}" for i in range(4)]
        seen_val += sorted(val)
    assert len(seen_val) == len(set(seen_val)) == 30
    with pytest.raises(ValueError, match=r"data.fold=3: expected an integer in 0..2"):
        CalciDataModule(_Source(), (16, 16, 16), (2, 2, 2), (-200, 1800), num_folds=3, fold=3)


def _data_files(folder: Path) -> dict[str, list[str]]:
    """The overrides that point every data option at a small real file of its own."""
    from tests.data.conftest import patch_rows, write_manifest
    from tests.data.test_nodulemnist import write_npz

    manifest = write_manifest(folder / "manifest.csv", patch_rows(folder, 16))
    npz = write_npz(folder / "nodulemnist3d.npz")
    return {"synthetic": ["data.source.num_train=16", "data.source.num_val=8"],
            "manifest": [f"data.manifest={manifest}", "data.patch_size=[12,12,12]"],
            "nodulemnist3d": [f"data.path={npz}"]}


@pytest.mark.parametrize("option", ["synthetic", "manifest", "nodulemnist3d"])
def test_shared_data_keys_reach_the_datamodule_for_every_data_option(
        option: str, tmp_path: Path) -> None:
    """Folds and the balanced sampler are keys of every data option (conf/data/_base.yaml)."""
    overrides = [f"data={option}", "data.num_folds=3", "data.fold=1", "data.balanced_sampler=true",
                 "data.cache=none", *_data_files(tmp_path)[option]]
    cfg = compose_config("train", overrides, run_dir=tmp_path / "run")
    dm = instantiate(cfg.data)
    assert dm.num_folds == 3 and dm.fold == 1 and dm.balanced_sampler
    pool = dm.source.records("train") + dm.source.records("val")
    train, val = dm.records("train"), dm.records("val")
    assert len(train) + len(val) == len(pool) and {r["id"] for r in val} <= {r["id"] for r in pool}
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    sampler = dm.balanced_sampler_for("train")
    weights = sampler.weights.numpy()
    labels = np.array([r["label"] for r in train])
    # Each class has half of the total weight: both equally likely in every draw.
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())


@pytest.mark.slow
def test_calcinet_cv_runs_every_fold_and_reports_mean_and_std(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "cv"
    result = run_cli(["calcinet-cv", *TINY, "trainer.max_epochs=1", "data.num_folds=2",
                      f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"\| mean ± std \| \d\.\d{4} ± \d\.\d{4} \|", result.stdout), result.stdout
    summary = json.loads((run_dir / "cv_results.json").read_text())
    assert len(summary["val_auroc"]) == 2
    assert (run_dir / "fold_0" / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "fold_1" / "checkpoints" / "last.ckpt").is_file()

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    (parent,) = [r for r in runs if "calcinet.parent_key" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    assert parent.data.metrics["cv/val_auroc_mean"] == pytest.approx(summary["mean"])
    assert children[0].data.params["data.num_folds"] == "2"
