"""`calcinet-evaluate` on a tiny real checkpoint: outputs, numbers, MLflow, TorchScript, errors."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from calcinet.config import ConfigError
from calcinet.evaluation import EvaluationError
from calcinet.evaluation.metrics import METRIC_NAMES, THRESHOLD_METRICS, point_metrics
from calcinet.evaluation.run import evaluate
from tests.helpers import compose_config, run_cli

# 24 phantom samples at the checkpoint's 24^3 / 1.5 mm, no worker processes, a short bootstrap.
SMALL = [
    "data.source.num_train=16",
    "data.source.num_val=16",
    "data.source.num_test=24",
    "data.num_workers=0",
    "data.cache_workers=1",
    "bootstrap.n=200",
    "device=cpu",
]
FIGURES = (
    "roc",
    "pr",
    "decision_curve",
    "calibration",
    "confusion",
    "histogram",
    "breakdown_pattern",
    "gradcam_errors",
)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> SimpleNamespace:
    """One evaluation with TTA, logged to a private MLflow store under a training run."""
    root = tmp_path_factory.mktemp("evaluate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment(
            "calcinet", artifact_location=str(root / "mlartifacts")
        )
        parent = client.create_run(experiment).info.run_id
        checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
        checkpoint["calcinet"].update(
            mlflow_run_id=parent, mlflow_tracking_uri=uri, mlflow_experiment_id=experiment
        )
        path = root / "trained.ckpt"
        torch.save(checkpoint, path)
        run_dir = root / "first"
        cfg = compose_config("evaluate", [f"ckpt_path={path}", *SMALL, "tta=true"], run_dir)
        report = evaluate(cfg)
    return SimpleNamespace(
        root=root,
        uri=uri,
        parent=parent,
        experiment=experiment,
        report=report,
        run_dir=run_dir,
        ckpt=path,
    )


def test_writes_predictions_report_and_figures(first: SimpleNamespace) -> None:
    out = first.run_dir
    for name in ("predictions.csv", "report.json", "report.md", "config.yaml"):
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000, name
    assert (out / "figures" / "roc_tta.png").is_file()
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(predictions.columns) == [
        "id",
        "path",
        "label",
        "probability",
        "prediction",
        "probability_tta",
        "prediction_tta",
        "pattern",
    ]
    assert len(predictions) == 24 and set(predictions["path"]) == {""}
    assert predictions["id"].is_unique and set(predictions["label"]) == {0, 1}
    markdown = (out / "report.md").read_text()
    assert "## Metrics" in markdown and "## By pattern" in markdown and "Grad-CAM" in markdown
    assert "## Decision curve" in markdown and "figures/decision_curve.png" in markdown
    report = json.loads((out / "report.json").read_text())
    rows = {row["threshold"]: row for row in report["decision_curve"]["rows"]}
    operating = report["operating_point"]["threshold"]
    assert {0.05, 0.1, 0.2, 0.3, 0.5} <= set(rows)
    assert (operating in rows and rows[operating]["operating"]) or not 0 < operating < 1


def test_report_numbers_are_scikit_learns(first: SimpleNamespace) -> None:
    report = json.loads((first.run_dir / "report.json").read_text())
    predictions = pd.read_csv(first.run_dir / "predictions.csv", keep_default_na=False)
    y = predictions["label"].to_numpy()
    threshold = report["operating_point"]["threshold"]
    assert threshold == pytest.approx(
        float(torch.load(first.ckpt, weights_only=False)["state_dict"]["threshold"])
    )
    for section, column in ((report, "probability"), (report["tta"], "probability_tta")):
        p = predictions[column].to_numpy()
        assert set(section["metrics"]) == set(METRIC_NAMES)
        expected = point_metrics(y, p, threshold)
        assert section["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))
        assert section["metrics"]["ap"]["value"] == pytest.approx(average_precision_score(y, p))
        assert section["metrics"]["brier"]["value"] == pytest.approx(brier_score_loss(y, p))
        for name in METRIC_NAMES:
            entry = section["metrics"][name]
            assert len(entry["ci95"]) == 2
            if entry["value"] is None:
                assert np.isnan(expected[name]), name
            else:
                assert entry["value"] == pytest.approx(expected[name]), name
        at_half = point_metrics(y, p, 0.5)
        assert section["at_threshold_0.5"]["threshold"] == 0.5
        for name in THRESHOLD_METRICS:
            value = section["at_threshold_0.5"]["metrics"][name]["value"]
            assert (value is None and np.isnan(at_half[name])) or value == pytest.approx(
                at_half[name]
            ), name
        assert "target_sensitivity" in section["at_target_sensitivity"]
    assert (predictions["prediction"] == (predictions["probability"] >= threshold)).all()
    assert report["counts"] == {
        "n": 24,
        "n_malignant": int(y.sum()),
        "n_benign": int((y == 0).sum()),
        "prevalence": y.mean(),
    }
    assert report["bootstrap"]["n"] == 200 and report["bootstrap"]["unit"] == "sample"
    assert report["model"]["patch_size"] == [24, 24, 24]
    assert report["data"]["source"] == "synthetic" and len(report["data"]["fingerprint"]) == 16
    groups = report["breakdowns"]["pattern"]["groups"]
    assert sum(g["n"] for g in groups) == 24
    assert report["gradcam"]["status"] == "produced"
    assert report["gradcam"]["layer"] == "stages.0.1"  # the deepest 12^3 map of a 24^3 patch


def test_mlflow_run_is_nested_under_the_training_run(first: SimpleNamespace) -> None:
    client = MlflowClient(tracking_uri=first.uri)
    info = first.report["mlflow"]
    run = client.get_run(info["run_id"])
    assert run.data.tags["mlflow.parentRunId"] == first.parent
    assert run.info.experiment_id == first.experiment
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["test/auroc"] == pytest.approx(first.report["metrics"]["auroc"]["value"])
    assert metrics["test/auroc_ci95_low"] == pytest.approx(
        first.report["metrics"]["auroc"]["ci95"][0]
    )
    assert "test/tta/auroc" in metrics and "test/at_threshold_0.5/accuracy" in metrics
    artifacts = {a.path for a in client.list_artifacts(info["run_id"])}
    assert {"predictions.csv", "report.json", "report.md", "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(info["run_id"], "figures")}
    assert "figures/gradcam_errors.png" in figures
    # calcinet-compare reads the run's predictions.csv back by run id.
    from calcinet.evaluation.compare import compare_predictions, load_predictions

    name, downloaded = load_predictions(info["run_id"], tracking_uri=first.uri)
    assert name.endswith(f"({info['run_id'][:8]})")
    table = compare_predictions([(name, downloaded), load_predictions(str(first.run_dir))]).table
    assert table.loc[1, "p_value"] == 1.0 and table.loc[1, "delta_auroc"] == 0.0


def test_same_model_twice_gives_identical_numbers(
    first: SimpleNamespace, tiny_checkpoint: Path, tmp_path: Path, tmp_tracking: str
) -> None:
    # The plain checkpoint knows no training run: its evaluation gets its own experiment.
    cfg = compose_config(
        "evaluate",
        [f"ckpt_path={tiny_checkpoint}", *SMALL, "gradcam.enabled=false"],
        tmp_path / "second",
    )
    second = evaluate(cfg)
    a = json.loads((first.run_dir / "report.json").read_text())
    b = json.loads((tmp_path / "second" / "report.json").read_text())
    for key in ("metrics", "at_threshold_0.5", "at_target_sensitivity", "confusion", "counts"):
        assert a[key] == b[key], key
    pa = pd.read_csv(first.run_dir / "predictions.csv")
    pb = pd.read_csv(tmp_path / "second" / "predictions.csv")
    assert (pa["probability"] == pb["probability"]).all()
    run = MlflowClient(tracking_uri=tmp_tracking).get_run(second["mlflow"]["run_id"])
    assert "mlflow.parentRunId" not in run.data.tags
    experiment = MlflowClient(tracking_uri=tmp_tracking).get_experiment(run.info.experiment_id)
    assert experiment.name == "calcinet-evaluation"
    assert "gradcam.enabled=false" in (tmp_path / "second" / "report.md").read_text()


class _Exported(torch.nn.Module):
    """What calcinet-export promises, written here by hand: raw HU in, windowing inside, the
    logit divided by the calibration temperature, probability out."""

    def __init__(self, network: torch.nn.Module, low: float, high: float,
                 temperature: float) -> None:
        super().__init__()
        self.network, self.low, self.high = network, low, high
        self.temperature = temperature

    def forward(self, hu: torch.Tensor) -> torch.Tensor:
        x = ((hu - self.low) / (self.high - self.low)).clamp(0.0, 1.0)
        return torch.sigmoid(self.network(x).reshape(-1) / self.temperature)


@pytest.mark.parametrize("suffix", [".ts", ".pt2"])
def test_exported_model_gives_the_checkpoints_probabilities(
    first: SimpleNamespace, tmp_path: Path, suffix: str
) -> None:
    from calcinet.export.checkpoint import read_checkpoint
    from calcinet.export.metadata import build_metadata
    from calcinet.training.module import CalciModule

    module = CalciModule.load_from_checkpoint(first.ckpt, map_location="cpu").eval()
    temperature = float(torch.load(first.ckpt, weights_only=False)["state_dict"]["temperature"])
    thresholds = (float(module.threshold), float(module.threshold_at_sensitivity))
    metadata = build_metadata(read_checkpoint(first.ckpt), thresholds, "trace", temperature)
    assert metadata["training"]["mlflow_run_id"] == first.parent
    example = torch.zeros(2, 1, 24, 24, 24)
    model = _Exported(module.network, -200.0, 1800.0, temperature).eval()
    path = tmp_path / f"model{suffix}"
    if suffix == ".ts":
        torch.jit.save(torch.jit.trace(model, example), str(path),
                       _extra_files={"metadata.json": json.dumps(metadata)})
    else:
        from calcinet.export.torch_export import export_program, save_program

        save_program(export_program(model, example), path, metadata)
    cfg = compose_config(
        "evaluate", [f"model_path={path}", *SMALL, "mlflow.enabled=false"], tmp_path / "ts"
    )
    report = evaluate(cfg)
    exported = pd.read_csv(tmp_path / "ts" / "predictions.csv")
    reference = pd.read_csv(first.run_dir / "predictions.csv")
    np.testing.assert_allclose(exported["probability"], reference["probability"], atol=1e-5)
    assert report["model"]["kind"] == ("torchscript" if suffix == ".ts" else "torch.export")
    assert report["model"]["training_run_id"] == first.parent
    assert report["model"]["patch_size"] == [24, 24, 24]
    assert report["operating_point"]["threshold"] == pytest.approx(float(module.threshold))
    assert report["calibration"]["temperature"] == pytest.approx(temperature)
    assert report["gradcam"]["status"] == "skipped"
    assert "TorchScript" in report["gradcam"]["reason"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.patch_size=[32,32,32]",
            "data.patch_size=[32, 32, 32] does not match the model's patch_size [24, 24, 24]",
        ),
        (
            "data.spacing=[1.0,1.0,1.0]",
            "data.spacing=[1.0, 1.0, 1.0] does not match the model's spacing [1.5, 1.5, 1.5]",
        ),
    ],
)
def test_mismatched_preprocessing_is_refused(
    tiny_checkpoint: Path, tmp_path: Path, override: str, message: str
) -> None:
    cfg = compose_config("evaluate", [f"ckpt_path={tiny_checkpoint}", *SMALL, override], tmp_path)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["data.source.phantom.malignant_fraction=0.0"],
            "split='test' of data=synthetic holds one class only: all 24 samples are benign",
        ),
        (["data.source.num_test=0"], "split='test' of data=synthetic has no samples"),
    ],
)
def test_unusable_sets_are_refused(
    tiny_checkpoint: Path, tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_config("evaluate", [f"ckpt_path={tiny_checkpoint}", *SMALL, *overrides], tmp_path)
    with pytest.raises(EvaluationError, match=message):
        evaluate(cfg)


def test_a_model_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ckpt_path=null and model_path=null"):
        evaluate(compose_config("evaluate", SMALL, tmp_path))
    with pytest.raises(EvaluationError, match="no such file or folder"):
        evaluate(compose_config("evaluate", ["ckpt_path=/nonexistent.ckpt", *SMALL], tmp_path))


def test_cli_error_is_one_line(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from calcinet.cli.evaluate import main

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "calcinet-evaluate",
            f"ckpt_path={tiny_checkpoint}",
            "data.patch_size=[32,32,32]",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("calcinet: error: data.patch_size=[32, 32, 32]")


def test_evaluate_config_composes_with_every_data_option(tmp_path: Path) -> None:
    from calcinet.cli import CONFIG_DIR

    for option in sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml")):
        cfg = compose_config("evaluate", [f"data={option}"], tmp_path)
        # The model fixes these; the data config's own values are replaced by null.
        assert cfg.data.patch_size is None and cfg.data.spacing is None, option
        assert cfg.data.hu_window is None, option
    cfg = compose_config("evaluate", [], tmp_path)
    assert cfg.split == "test" and cfg.metric_prefix == "test" and cfg.bootstrap.n == 1000


def _top_level_imports(module: str) -> set[str]:
    """Modules imported at import time of ``module`` (function-level imports excluded)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_evaluation_maths_does_not_import_lightning_or_torch() -> None:
    # metrics, figures, reports and comparisons work on arrays: importing them (and
    # calcinet-compare) must not pull in torch, Lightning, MONAI or MLflow.
    todo = [
        "calcinet.evaluation.metrics",
        "calcinet.evaluation.breakdown",
        "calcinet.evaluation.plots",
        "calcinet.evaluation.report",
        "calcinet.evaluation.compare",
        "calcinet.cli.compare",
    ]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for imported in _top_level_imports(module):
            root = imported.split(".")[0]
            assert root not in {"lightning", "torch", "monai", "mlflow"}, (module, imported)
            if root == "calcinet":
                todo.append(imported)
    assert "calcinet.evaluation" in seen


@pytest.mark.slow
def test_console_script_end_to_end(tiny_checkpoint: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    # A run folder is accepted: its best checkpoint is evaluated.
    result = run_cli(
        [
            "calcinet-evaluate",
            f"ckpt_path={tiny_checkpoint.parent}",
            *SMALL,
            "bootstrap.n=50",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert Path(report["model"]["path"]).name == tiny_checkpoint.name
    assert "Report:" in result.stdout and "MLflow run:" in result.stdout
    # evaluate.log in the run folder holds what the command printed.
    logged = (run_dir / "evaluate.log").read_text()
    for line in result.stdout.splitlines():
        if line.strip():
            assert line.strip() in logged, line
    (run,) = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("calcinet-evaluation").experiment_id]
    )
    assert run.data.metrics["test/auroc"] == pytest.approx(report["metrics"]["auroc"]["value"])
    # Named after its folder; its duration is the evaluation's (logged at the end, started at
    # the start): at least the seconds the command reported, to their rounding.
    assert run.info.run_name == f"{run_dir.parent.name}/{run_dir.name}"
    seconds = float(re.search(r"in (\d+(?:\.\d+)?) s", result.stdout).group(1))
    assert (run.info.end_time - run.info.start_time) / 1000 >= seconds - 1


def test_evaluation_run_has_source_user_dataset_and_experiment_kind(
    first: SimpleNamespace,
) -> None:
    import getpass

    client = MlflowClient(tracking_uri=first.uri)
    run = client.get_run(first.report["mlflow"]["run_id"])
    tags = run.data.tags
    assert tags["mlflow.user"] == getpass.getuser()
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"]
    assert tags["calcinet.training_run_id"] == first.parent
    (entry,) = run.inputs.dataset_inputs
    assert entry.dataset.digest == first.report["data"]["fingerprint"]
    assert entry.dataset.source_type == "code"
    source = json.loads(entry.dataset.source)["tags"]
    assert source["generator"] == "calcinet.data.phantom"
    assert source["seed"] == str(first.report["data"]["describe"]["seed"])
    assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == "test"
    experiment = client.get_experiment(first.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_model_card_carries_the_test_results(
    first: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluate of a checkpoint -> export picks it up; evaluate of the exported, registered
    model -> model.MODEL_CARD.md beside it and the version's description say so, and the
    evaluation run links the model version."""
    from calcinet.export import MlflowOptions, export_checkpoint
    from calcinet.export.card import evaluation_path

    record = json.loads(evaluation_path(first.ckpt).read_text())
    assert record["checkpoint_sha256"] == hashlib.sha256(first.ckpt.read_bytes()).hexdigest()
    metrics = first.report["metrics"]
    assert record["evaluation"]["metrics"]["auroc"] == {
        "value": metrics["auroc"]["value"], "ci95": metrics["auroc"]["ci95"]}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", first.uri)
    result = export_checkpoint(first.ckpt, tmp_path / "model" / "model.ts", torch_export=False,
                               mlflow=MlflowOptions(register=True, register_as="calcinet-eval"))
    assert result.metadata["card"]["evaluation"] == record["evaluation"]
    card = (tmp_path / "model" / "model.MODEL_CARD.md").read_text()
    low, high = metrics["auroc"]["ci95"]
    assert (f"| auroc | {metrics['auroc']['value']:.3f} (95 % CI {low:.3f}-{high:.3f}) |"
            in card)
    groups = first.report["breakdowns"]["pattern"]["groups"]
    worst = min(groups, key=lambda g: (g["accuracy"], -g["n"]))
    assert f"- {worst['group']}: accuracy {worst['accuracy']:.2f}" in card

    cfg = compose_config("evaluate", [f"model_path={result.torchscript}", *SMALL,
                                      "bootstrap.seed=5"], tmp_path / "eval_ts")
    report = evaluate(cfg)
    client = MlflowClient(tracking_uri=first.uri)
    version = client.get_model_version("calcinet-eval", result.mlflow.version)
    run = client.get_run(report["mlflow"]["run_id"])
    assert run.data.tags["calcinet.model_versions"] == f"calcinet-eval/{version.version}"
    assert [m.model_id for m in run.inputs.model_inputs] == [result.mlflow.model_uri[8:]]
    assert result.mlflow.model_uri.startswith("models:/m-")
    assert report["model_card"]["registered_versions"] == [f"calcinet-eval/{version.version}"]
    new = report["metrics"]["auroc"]
    line = (f"| auroc | {new['value']:.3f} (95 % CI {new['ci95'][0]:.3f}-"
            f"{new['ci95'][1]:.3f}) |")
    assert line in (tmp_path / "model" / "model.MODEL_CARD.md").read_text()
    assert line in version.description
    assert "Research use only" in version.description


def test_a_manifest_is_the_dataset_source_without_mlflow_warning_of_two_readings(
    tmp_path: Path,
) -> None:
    # MLflow registers its local-file source for two URI schemes and warns that a plain path
    # matches both; the evaluation logs the manifest path without passing that on.
    import warnings

    from calcinet.evaluation.mlflow_log import dataset_input

    manifest = tmp_path / "held_out.csv"
    manifest.write_text("path,label\na.nii.gz,0\n")
    report = {"split": "all", "data": {"source": "manifest", "fingerprint": "abc123",
                                       "describe": {"manifest": str(manifest)}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entry = dataset_input(report)
    assert entry.dataset.source_type == "local"
    assert json.loads(entry.dataset.source) == {"uri": str(manifest)}
    assert entry.dataset.digest == "abc123" and entry.dataset.name == "manifest-all"
    assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": "all"}


@pytest.mark.parametrize(("temperature", "noted"), [(99.99, True), (0.0100, True), (1.3, False)])
def test_a_model_whose_calibration_did_not_fit_is_named_in_the_notes(
    temperature: float, noted: bool
) -> None:
    # A model that separates nothing (a smoke run) gets its temperature fitted to the bound and
    # gives about 0.5 everywhere: its AUROC rests on differences of 1e-6.
    from calcinet.evaluation.predict import LoadedModel
    from calcinet.evaluation.run import _notes

    model = LoadedModel(kind="checkpoint", path=Path("best.ckpt"), predict=torch.sigmoid,
                        preprocessing={}, threshold=0.5, threshold_at_sensitivity=None,
                        target_sensitivity=None, operating_point="youden",
                        temperature=temperature)
    report = {"data": {"fingerprint": "abc"}, "bootstrap": {"unit": "sample", "n": 10,
                                                            "undefined_resamples": {}}}
    notes = _notes(report, model, "test")
    expected = (f"Calibration temperature {temperature:.4g} is at a bound of its fit [0.01, 100]: "
                "the validation scores did not calibrate (a model that separates nothing gives "
                "about 0.5 everywhere); check the run's val/auroc.")
    assert notes == ([expected] if noted else [])
