"""The synthetic phantom written as NIfTI + manifest reloads exactly as rendered, and trains end to
end through the real entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from calcinet.data.datamodule import CalciDataModule
from calcinet.data.phantom import sample_params
from calcinet.data.phantom.materialize import write_dataset
from calcinet.data.sources import phantom_config
from calcinet.data.transforms import RenderPhantomd, build_transforms
from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli

PATCH = (24, 24, 24)
SPACING = (1.5, 1.5, 1.5)
WINDOW = (-200.0, 1800.0)


def test_written_phantom_reloads_as_the_in_memory_render(tmp_path: Path) -> None:
    config = phantom_config(PATCH, SPACING)
    manifest = write_dataset(tmp_path / "synthetic", 8, 3, config)
    cfg = compose_config("train", ["data=manifest", f"data.manifest={manifest}",
                                   "data.patch_size=[24,24,24]", "data.spacing=[1.5,1.5,1.5]",
                                   "data.val_fraction=0.25", "data.test_fraction=0.25"],
                         run_dir=tmp_path / "run")
    dm = instantiate(cfg.data)
    assert isinstance(dm, CalciDataModule) and dm.source.kind == "manifest"
    from_files = build_transforms(dm.source.load_transforms(), PATCH, SPACING, WINDOW)
    rendered = build_transforms([RenderPhantomd(config)], PATCH, SPACING, WINDOW)
    records = [r for s in ("train", "val", "test") for r in dm.source.records(s)]
    assert len(records) == 8
    for record in records:
        index = int(record["id"].split("-")[-1].split(".")[0])
        params = sample_params(index, 3, config)
        assert record["label"] == params["label"] and record["pattern"] == params["pattern"]
        a = from_files(dict(record))["image"]
        b = rendered({"params": params})["image"]
        assert torch.allclose(a, b, atol=1e-5), record["id"]
    # The raw read: same HU and layout as the render (x, y, z), affine = diag(spacing).
    raw = dm.source.load_transforms()[0](dict(records[0]))["image"]
    params = sample_params(int(records[0]["id"].split("-")[-1].split(".")[0]), 3, config)
    expected = RenderPhantomd(config)({"params": params})["image"]
    np.testing.assert_allclose(raw.array, expected.array, atol=1e-4)
    np.testing.assert_allclose(np.diag(raw.affine)[:3], SPACING)


@pytest.mark.slow
def test_training_from_a_manifest_end_to_end(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data" / "synthetic", 40, 0,
                             phantom_config(PATCH, SPACING))
    run_dir = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        ["calcinet-train", "data=manifest", f"data.manifest={manifest}", "debug=smoke",
         "data.patch_size=[24,24,24]", "data.spacing=[1.5,1.5,1.5]", "data.val_fraction=0.2",
         "model.network.channels=[8,16]",
         "data.test_fraction=0.2", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")} >= {"last.ckpt"}
    artifacts = run_dir / "artifacts"
    with (artifacts / "splits.csv").open() as fh:
        splits = list(csv.DictReader(fh))
    assert len(splits) == 40 and {r["split"] for r in splits} == {"train", "val", "test"}
    assert (artifacts / "manifest.csv").read_text() == manifest.read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    assert run.data.tags["calcinet.data_source"] == "manifest"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert {"data/manifest.csv", "data/splits.csv"} <= logged


@pytest.mark.slow
def test_bad_manifest_is_reported_whole_by_the_entry_point(tmp_path: Path) -> None:
    from tests.data.conftest import patch_rows, write_manifest

    rows = patch_rows(tmp_path, 12)
    rows[3]["label"] = "maybe"
    rows[5]["path"] = "missing.nii.gz"
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    common = ["calcinet-train", "data=manifest", f"data.manifest={manifest}",
              "data.patch_size=[16,16,16]", "model.network.channels=[8,16]",
              f"hydra.run.dir={tmp_path / 'run'}"]

    checked = run_cli([*common, "data.validate_only=true"], cwd=tmp_path, env=env)
    assert checked.returncode == 1, checked.stderr[-2000:]
    assert "maybe" in checked.stdout and "missing.nii.gz" in checked.stdout

    refused = run_cli(common, cwd=tmp_path, env=env)
    assert refused.returncode == 2
    assert "calcinet: error: " in refused.stderr
    assert "maybe" in refused.stderr and "missing.nii.gz" in refused.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
