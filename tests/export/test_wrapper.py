"""The HU model: windowing identical to training, shape checks, metadata that reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.transforms import ScaleIntensityRange

from calcinet.export.checkpoint import CheckpointInfo
from calcinet.export.metadata import build_metadata
from calcinet.export.wrapper import HUClassifier, window_hu
from calcinet.inference.metadata import METADATA_FILE, MetadataError, dumps, parse_metadata
from calcinet.models.networks import build_network


@pytest.mark.parametrize("window", [(-200.0, 1800.0), (-1000.0, 400.0), (130.0, 131.5)])
def test_window_equals_monai_scale_intensity_ranged(window: tuple[float, float]) -> None:
    generator = torch.Generator().manual_seed(0)
    hu = torch.rand((3, 1, 9, 8, 7), generator=generator) * 6000.0 - 3000.0  # far outside too
    hu[0, 0, 0, 0, :4] = torch.tensor([window[0], window[1], -1e6, 1e6])
    expected = ScaleIntensityRange(
        a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0, clip=True
    )(hu.clone())
    got = window_hu(hu, *window)
    assert torch.equal(got, torch.as_tensor(expected))
    scripted = torch.jit.script(window_hu)
    assert torch.equal(scripted(hu, *window), got)


def test_model_is_window_network_sigmoid_and_refuses_other_shapes() -> None:
    torch.manual_seed(0)
    network = build_network("compact", channels=[8, 16], dropout=0.0).eval()
    model = HUClassifier(network, (-200.0, 1800.0), (24, 24, 24)).eval()
    hu = torch.rand(2, 1, 24, 24, 24) * 3000 - 1000
    with torch.no_grad():
        expected = torch.sigmoid(network(window_hu(hu, -200.0, 1800.0)).squeeze(1))
        assert torch.equal(model(hu), expected)
        for bad in (torch.zeros(2, 24, 24, 24), torch.zeros(1, 1, 24, 24, 20)):
            with pytest.raises(
                ValueError,
                match=r"expected float32 HU patches of shape "
                r"\[N, 1, 24, 24, 24\]",
            ):
                model(bad)


def _info(tmp_path: Path) -> CheckpointInfo:
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    return CheckpointInfo(
        path=checkpoint,
        network={"name": "compact", "channels": [8, 16]},
        patch_size=[24, 32, 40],
        spacing=[0.8, 0.9, 2.5],
        hu_window=[-200.0, 1800.0],
        class_names=["benign", "malignant"],
        operating_point="youden",
        target_sensitivity=0.9,
        run={
            "mlflow_run_id": "abc",
            "mlflow_tracking_uri": "sqlite:///x.db",
            "config_hash": "f" * 16,
            "data_fingerprint": "d" * 16,
            "calcinet_version": "0.1.0",
            "val_metrics": {"val/auroc": 0.75, "val/loss": float("nan")},
        },
    )


def test_metadata_round_trip(tmp_path: Path) -> None:
    metadata = build_metadata(_info(tmp_path), (0.42, 0.17), "script")
    text = dumps(metadata)
    info = parse_metadata(text, "model.ts")
    assert info.patch_size == (24, 32, 40)
    assert info.spacing == (0.8, 0.9, 2.5)
    assert info.hu_window == (-200.0, 1800.0)
    assert (info.threshold, info.threshold_at_sensitivity, info.target_sensitivity) == (
        0.42,
        0.17,
        0.9,
    )
    assert info.class_names == ("benign", "malignant")
    assert info.pad_value_hu == -1000.0
    raw = json.loads(text)
    assert raw["input"]["layout"] == "N,C,X,Y,Z" and raw["input"]["orientation"] == "RAS"
    assert raw["input"]["axis_order"] == "x,y,z"
    assert raw["network"] == {"name": "compact", "kwargs": {"channels": [8, 16]}}
    training = raw["training"]
    assert training["mlflow_run_id"] == "abc" and training["config_hash"] == "f" * 16
    assert training["data_fingerprint"] == "d" * 16
    assert training["val_metrics"] == {"val/auroc": 0.75, "val/loss": None}  # NaN is not JSON

    # And through a real TorchScript file's extra files.
    model = torch.jit.script(HUClassifier(torch.nn.Identity(), (-200, 1800), (24, 32, 40)))
    path = tmp_path / "model.ts"
    torch.jit.save(model, str(path), _extra_files={METADATA_FILE: text})
    extra = {METADATA_FILE: ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[METADATA_FILE]) == raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("format"), "field format=None: expected 'calcinet-model'"),
        (lambda m: m.update(format_version=99), "field format_version=99"),
        (lambda m: m["input"].pop("spacing_mm"), "has no field 'input.spacing_mm'"),
        (
            lambda m: m["input"].update(patch_size=[24, 0, 24]),
            "input.patch_size=[24, 0, 24]: expected 3 positive integers",
        ),
        (
            lambda m: m["preprocessing"].update(hu_window=[5, 1]),
            "preprocessing.hu_window=[5.0, 1.0]: expected [low, high] with low < high",
        ),
    ],
)
def test_bad_metadata_is_named(tmp_path: Path, change, message: str) -> None:
    metadata = build_metadata(_info(tmp_path), (0.5, 0.5), "script")
    change(metadata)
    with pytest.raises(MetadataError, match="^model.ts: ") as caught:
        parse_metadata(json.dumps(metadata), "model.ts")
    assert message in str(caught.value)
