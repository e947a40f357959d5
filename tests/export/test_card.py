"""The model card and the MONAI bundle of a real tiny export, against the recorded facts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from calcinet.data.sources import SyntheticSource
from calcinet.export import export_checkpoint
from calcinet.export.card import CARD_EXTRA_FILE, render, training_data
from tests.helpers import REPO, compose_config


@pytest.fixture(scope="module")
def recorded(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny checkpoint with the facts calcinet-train records (training.run.run_info) for
    the phantom it was trained on (tests.helpers.make_checkpoint: 16/16/16, seed 0)."""
    folder = tmp_path_factory.mktemp("card")
    source = SyntheticSource(num_train=16, num_val=16, num_test=16, seed=0,
                             patch_size=(24, 24, 24), spacing=(1.5, 1.5, 1.5))
    counts = {}
    for split in ("train", "val", "test"):
        labels = [r["label"] for r in source.records(split)]
        counts[split] = {0: labels.count(0), 1: labels.count(1)}
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    checkpoint["calcinet"].update(
        debug=None, git_commit="0123456789abcdef0123456789abcdef01234567",
        data={"kind": source.kind, "describe": source.describe(), "class_counts": counts})
    path = folder / "best.ckpt"
    torch.save(checkpoint, path)
    result = export_checkpoint(path, folder / "model" / "model.ts", torch_export=False,
                               bundle_dir=folder / "bundle")
    return {"result": result, "facts": checkpoint["calcinet"], "counts": counts,
            "folder": folder}


def test_card_fields_come_from_the_checkpoint_and_pyproject(recorded: dict) -> None:
    result, facts = recorded["result"], recorded["facts"]
    beside = result.torchscript.parent / "model.MODEL_CARD.md"
    assert result.card == beside
    text = beside.read_text()
    extra = {CARD_EXTRA_FILE: ""}
    torch.jit.load(str(result.torchscript), _extra_files=extra)
    assert extra[CARD_EXTRA_FILE].decode() == text == render(result.metadata)
    # Metadata read back from JSON with sorted keys (as evaluate does) renders the same card.
    assert render(json.loads(json.dumps(result.metadata, sort_keys=True))) == text
    assert text.index("| train |") < text.index("| val |") < text.index("| test |")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"- Licence: {project['license']}" in text
    assert f"- Authors: {', '.join(a['name'] for a in project['authors'])}" in text
    assert "Research use only" in text and "Not a medical device; not for diagnosis" in text
    assert "Trained on a synthetic CT phantom, not on patient findings" in text
    assert "- Kind: synthetic CT phantom" in text
    # SyntheticSource's phantom defaults: the voxel family, no real CT background.
    assert "- renderer families: voxel\n" in text
    assert "- real CT backgrounds: none\n" in text
    for split, count in recorded["counts"].items():
        assert f"| {split} | {count[0]} | {count[1]} |" in text
    assert sum(c[0] + c[1] for c in recorded["counts"].values()) == 48
    assert f"- Config hash: `{facts['config_hash']}`" in text
    assert f"- Git commit: `{facts['git_commit']}`" in text
    assert "- Debug run: no" in text
    assert "spacing [1.5, 1.5, 1.5] mm" in text and "[N, 1, 24, 24, 24]" in text
    for name, value in facts["val_metrics"].items():
        if value == value:  # NaN is written as n/a
            assert f"- {name}: {value:.4f}" in text
    assert "Not evaluated on held-out data yet" in text
    card = result.metadata["card"]
    assert card["training_data"]["class_counts"]["train"] == {
        "benign": recorded["counts"]["train"][0], "malignant": recorded["counts"]["train"][1]}
    assert card["evaluation"] is None


def test_the_card_names_the_phantom_families_and_real_backgrounds() -> None:
    phantom = {"difficulty": 0.5, "renderers": {"voxel": 1.0, "growth": 3.0},
               "real_background_fraction": 0.25, "backgrounds": ["scans/lung1_image.nrrd"]}
    data = training_data({"data": {"kind": "synthetic",
                                   "describe": {"seed": 3, "phantom": phantom}}})
    assert data["origin"] == {
        "seed": 3, "difficulty": 0.5, "renderer families": "voxel 1, growth 3",
        "real CT backgrounds": "0.25 of the findings, in patches of scans/lung1_image.nrrd"}
    text = render({"card": {"training_data": data}})
    assert text.index("- seed: 3") < text.index("- renderer families: voxel 1, growth 3") \
        < text.index("- real CT backgrounds: 0.25 of the findings")


def test_two_exports_into_one_folder_keep_their_own_cards(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Each card beside a model is named after it: a second export into the same folder leaves
    the first model's card as it was."""
    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    commits = {"first": "1" * 40, "second": "2" * 40}
    results = {}
    for name, commit in commits.items():
        checkpoint["calcinet"]["git_commit"] = commit
        torch.save(checkpoint, tmp_path / f"{name}.ckpt")
        results[name] = export_checkpoint(tmp_path / f"{name}.ckpt",
                                          tmp_path / "models" / f"{name}.ts", torch_export=False)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "first.MODEL_CARD.md", "first.ts", "second.MODEL_CARD.md", "second.ts"]
    for name, commit in commits.items():
        result = results[name]
        assert result.card == tmp_path / "models" / f"{name}.MODEL_CARD.md"
        extra = {CARD_EXTRA_FILE: ""}
        torch.jit.load(str(result.torchscript), _extra_files=extra)
        text = result.card.read_text()
        assert text == extra[CARD_EXTRA_FILE].decode()
        assert f"- Git commit: `{commit}`" in text


def test_debug_choice_is_recorded_from_the_composed_config(tmp_path: Path) -> None:
    from calcinet.training.run import _debug_choice

    compose_config("train", ["debug=smoke"], tmp_path / "run")
    assert _debug_choice() == "smoke"
    compose_config("train", [], tmp_path / "run2")
    assert _debug_choice() is None


def test_bundle_metadata_has_the_keys_monai_requires(recorded: dict) -> None:
    from monai.bundle.utils import DEFAULT_METADATA

    bundle = recorded["result"].bundle
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    # MONAI's verify_metadata downloads its JSON schema (no network here): the required keys
    # are those of MONAI's own metadata template.
    assert set(DEFAULT_METADATA) <= set(meta)
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["spatial_shape"] == [24, 24, 24] and image["num_channels"] == 1
    assert image["orientation"] == "RAS" and image["spacing_mm"] == [1.5, 1.5, 1.5]
    assert image["format"] == "hounsfield" and image["modality"] == "CT"
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["value_range"] == [0, 1] and pred["type"] == "probabilities"
    assert (bundle / "models" / "model.ts").read_bytes() == \
        recorded["result"].torchscript.read_bytes()
    assert (bundle / "docs" / "README.md").read_text() == recorded["result"].card.read_text()


def test_bundle_runs_with_monai_and_agrees_with_calcinet_predict(
    recorded: dict, tmp_path: Path
) -> None:
    """MONAI's bundle runner on NIfTI files at the model's spacing in LPS order (so
    Orientationd acts), one larger (cropped) and one smaller (padded with air) than the patch:
    MONAI's chain and calcinet's reader + crop give the same probability to 1e-5."""
    from calcinet.inference import cut_patch, load_model, read_volume

    bundle = recorded["result"].bundle
    rng = np.random.default_rng(3)
    affine = np.diag([-1.5, -1.5, 1.5, 1.0])  # LPS voxel axes, 1.5 mm
    paths = []
    for name, shape in (("large", (30, 27, 24)), ("small", (20, 24, 17))):
        values = rng.normal(40, 300, shape).astype(np.float32)
        values[8:14, 9:15, 5:11] = 1500.0
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(values, affine), path)
        paths.append(path)
    out = tmp_path / "eval"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # MONAI's own runner (monai.bundle.run, which `python -m monai.bundle run` calls through
    # the optional `fire` package) in a fresh process.
    code = ("import sys, json; from monai.bundle import run; run(config_file=sys.argv[1], "
            "meta_file=sys.argv[2], bundle_root=sys.argv[3], output_dir=sys.argv[4], "
            "input_path=json.loads(sys.argv[5]))")
    done = subprocess.run(
        [sys.executable, "-c", code, str(bundle / "configs" / "inference.json"),
         str(bundle / "configs" / "metadata.json"), str(bundle), str(out),
         json.dumps([str(p) for p in paths])],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = dict(line.split(",") for line in (out / "predictions.csv").read_text().splitlines())
    model = load_model(recorded["result"].torchscript, torch.device("cpu"))
    info = model.info
    for path in paths:
        patch = cut_patch(read_volume(path), info.patch_size, info.spacing,
                          pad_value=recorded["result"].metadata["input"]["pad_value_hu"])
        with torch.no_grad():
            expected = float(model(patch.values[None]).reshape(-1)[0])
        assert float(rows[str(path)]) == pytest.approx(expected, abs=1e-5)
