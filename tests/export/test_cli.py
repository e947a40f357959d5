"""``calcinet-export``: the entry point users call, end to end, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.helpers import compose_config, run_cli


def test_export_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("export", ["ckpt_path=x.ckpt"], run_dir=tmp_path)
    assert cfg.output_path is None and cfg.torch_export is True
    assert cfg.parity.tolerance == 1e-5
    assert cfg.mlflow.register_as == "calcinet"


def test_cli_exports_logs_and_registers(tiny_checkpoint: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "exported" / "model.ts"
    done = run_cli(
        ["calcinet-export", f"ckpt_path={tiny_checkpoint}", f"output_path={out}"],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.is_file() and out.with_suffix(".pt2").is_file()
    assert "Parity:" in done.stdout and "Registered:    calcinet version 1" in done.stdout
    assert "the checkpoint names no MLflow run" in done.stdout
    versions = MlflowClient(uri).search_model_versions("name='calcinet'")
    assert len(versions) == 1
    # The run folder's export.log holds the report the command printed.
    (log_file,) = (tmp_path / "outputs" / "export" / "runs").glob("*/export.log")
    logged = log_file.read_text()
    assert done.stdout.strip() and all(line in logged for line in done.stdout.splitlines())


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    done = run_cli(
        ["calcinet-export", f"ckpt_path={missing}", "mlflow.enabled=false"], cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"calcinet: error: ckpt_path={missing}: no such file; expected a .ckpt written by "
        "calcinet-train"
    )
    done = run_cli(["calcinet-export"], cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("calcinet: error: ckpt_path=null: expected the checkpoint to export")
    )
