"""What ``calcinet-export`` prints: the files written, the parity check, the MLflow model."""

from __future__ import annotations

from calcinet.export.exporter import ExportResult


def summary(result: ExportResult) -> str:
    meta = result.metadata
    parity = result.parity
    lines = [
        "",
        f"TorchScript:   {result.torchscript} ({meta['export']['torchscript_method']})",
        f"torch.export:  {result.program if result.program else 'not written'}",
        f"Input:         float32 HU [N, 1, {', '.join(map(str, meta['input']['patch_size']))}] "
        f"(x, y, z), RAS, spacing {meta['input']['spacing_mm']} mm",
        f"Output:        [N] probability of {meta['class_names'][1]!r}; threshold "
        f"{meta['decision']['threshold']:.4f} ({meta['decision']['operating_point']}), "
        f"{meta['decision']['threshold_at_sensitivity']:.4f} at sensitivity "
        f"{meta['decision']['target_sensitivity']}",
        f"Parity:        max |difference| {parity.torchscript_max_abs_diff:.2e} (TorchScript)"
        + (
            f", {parity.torch_export_max_abs_diff:.2e} (torch.export)"
            if parity.torch_export_max_abs_diff is not None
            else ""
        )
        + f" on {parity.num_patches} patches, tolerance {parity.tolerance:g}, {parity.checked_in}",
    ]
    if result.card is not None:
        lines.append(f"Model card:    {result.card}")
    if result.bundle is not None:
        lines.append(f"MONAI bundle:  {result.bundle}")
    outcome = result.mlflow
    if outcome.logged:
        lines.append(
            f"MLflow:        {outcome.model_uri} in run {outcome.run_id} ({outcome.tracking_uri})"
        )
        if outcome.registered:
            lines.append(f"Registered:    {outcome.registered}")
    for note in [*result.notes, *outcome.notes]:
        lines.append(f"Note:          {note}")
    if result.seconds:
        lines.append("Time:          " + ", ".join(
            f"{step} {seconds:.1f} s" for step, seconds in result.seconds.items()))
    lines.append(
        f"Predict:       calcinet-predict --model-path {result.torchscript} SCAN.nii.gz "
        "[--center x,y,z]"
    )
    return "\n".join(lines)
