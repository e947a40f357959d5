"""``calcinet-export ckpt_path=CKPT [output_path=model.ts]``: TorchScript, .pt2, MLflow."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from calcinet.cli import fail, hydra_command, log
from calcinet.runtime import tune_malloc

#: When the command's module was imported: start-up is the time to the export itself.
STARTED = time.perf_counter()


@hydra_command("export", lightning=True)
def main(cfg: DictConfig) -> None:
    tune_malloc()
    if not cfg.ckpt_path:
        fail(
            "ckpt_path=null: expected the checkpoint to export, e.g. calcinet-export "
            "ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt"
        )
    if not (isinstance(cfg.parity.num_patches, int) and cfg.parity.num_patches >= 1):
        fail(f"parity.num_patches={cfg.parity.num_patches!r}: expected a positive integer")
    if not (isinstance(cfg.parity.tolerance, int | float) and cfg.parity.tolerance > 0):
        fail(f"parity.tolerance={cfg.parity.tolerance!r}: expected a positive number")
    from calcinet.export import ExportError, MlflowOptions, export_checkpoint
    from calcinet.export.report import summary

    exporting = time.perf_counter()
    try:
        result = export_checkpoint(
            Path(cfg.ckpt_path),
            Path(cfg.output_path) if cfg.output_path else None,
            torch_export=bool(cfg.torch_export),
            parity_patches=int(cfg.parity.num_patches),
            tolerance=float(cfg.parity.tolerance),
            seed=int(cfg.parity.seed),
            mlflow=MlflowOptions(**cfg.mlflow),
            bundle_dir=Path(cfg.bundle_dir) if cfg.get("bundle_dir") else None,
        )
    except ExportError as error:
        fail(error)
    # Start-up: Hydra's config, torch's import; the steps' own times follow.
    result.seconds = {"start-up": exporting - STARTED, **result.seconds,
                      "in all": time.perf_counter() - STARTED}
    log.info(summary(result))


if __name__ == "__main__":
    main()
