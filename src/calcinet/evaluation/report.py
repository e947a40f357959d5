"""``report.json`` (for programs) and ``report.md`` (for people) of one evaluation.

The JSON layout (``schema_version`` 1):

- ``metrics``: every metric of :data:`~calcinet.evaluation.metrics.METRIC_NAMES` as
  ``{"value": x, "ci95": [low, high]}``; threshold metrics at the operating threshold stored with
  the model (chosen on the validation set during training, never on this set);
- ``at_threshold_0.5`` and ``at_target_sensitivity``: ``{"threshold", "metrics", "confusion"}``
  with the threshold metrics at 0.5 and at the stored target-sensitivity threshold;
- ``operating_point``, ``confusion``, ``counts``, ``bootstrap``, ``calibration``;
- ``decision_curve``: net benefit (Vickers & Elkin 2006) with 95 % bootstrap intervals at a
  few threshold probabilities (``rows``) and along the whole grid (``curve``), beside the
  "treat all" strategy;
- ``breakdowns``: ``{column: {"grouping": how, "groups": [rows]}}``;
- ``model`` and ``data``: what was evaluated on what; ``gradcam``, ``figures``, ``notes``;
- ``tta`` (only with ``tta=true``): the same metric sections for the flip-averaged
  probabilities.

Undefined numbers (a ratio with an empty denominator) are ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from calcinet.evaluation.metrics import METRIC_NAMES, METRIC_TITLES, THRESHOLD_METRICS

SCHEMA_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN and infinities to None, paths to str."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n")
    return path


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _with_ci(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    low, high = entry.get("ci95") or (None, None)
    value = _number(entry.get("value"))
    if low is None or high is None or not all(map(math.isfinite, (low, high))):
        return value
    return f"{value} ({_number(low)}-{_number(high)})"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_number(c) if not isinstance(c, str) else c for c in row) + " |"
        for row in rows
    ]
    return lines


def _metric_sections(section: Mapping[str, Any], title: str) -> list[str]:
    """The metric table of ``report`` or of ``report["tta"]``: operating threshold, 0.5 and the
    target-sensitivity threshold side by side."""
    operating = section["operating_point"]["threshold"]
    columns = [("operating", section["metrics"], operating)]
    for key, name in (("at_threshold_0.5", "0.5"), ("at_target_sensitivity", "target sens.")):
        if section.get(key):
            target = section[key].get("target_sensitivity")
            shown = f"sensitivity {_number(target, 2)} target" if target is not None else name
            columns.append((shown, section[key]["metrics"], section[key]["threshold"]))
    header = ["metric"] + [f"{name} (t={_number(t)})" for name, _, t in columns]
    rows = []
    for metric in METRIC_NAMES:
        if metric in THRESHOLD_METRICS:
            rows.append([METRIC_TITLES[metric]] + [_with_ci(m.get(metric)) for _, m, _ in columns])
        else:
            rows.append(
                [METRIC_TITLES[metric], _with_ci(section["metrics"][metric])]
                + ["same" for _ in columns[1:]]
            )
    return [f"## {title}", "", *_table(header, rows), ""]


def _decision_section(report: Mapping[str, Any]) -> list[str]:
    """Net benefit at a few threshold probabilities, with treat all / treat none beside it."""
    decision = report.get("decision_curve")
    if not decision:
        return []
    rows = [
        [
            _number(row["threshold"]) + (" (operating)" if row["operating"] else ""),
            _with_ci({"value": row["net_benefit"], "ci95": row["ci95"]}),
            row["treat_all"],
            0.0,
        ]
        for row in decision["rows"]
    ]
    figure = (report.get("figures") or {}).get("decision_curve")
    return [
        "## Decision curve",
        "",
        f"Net benefit {decision['formula']} ({decision['reference']}): true positives gained "
        "per finding, false positives weighted by the odds of the threshold probability. The "
        "model is worth using at the thresholds where it beats both treat all and treat none.",
        "",
        *_table(["threshold probability", "model (95 % CI)", "treat all", "treat none"], rows),
        "",
        *([f"![decision curve]({figure})", ""] if figure else []),
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """A readable summary of ``report`` (the dict that is written as ``report.json``)."""
    model, data, counts = report["model"], report["data"], report["counts"]
    boot = report["bootstrap"]
    lines = [
        f"# Evaluation: {Path(model['path']).name} on the {report['split']} split",
        "",
        f"- Model: `{model['path']}` ({model['kind']}, sha256 {model.get('sha256', '')[:12]})",
        f"- Training run: {model.get('training_run_id') or 'unknown'}",
        f"- Trained with patch {model['patch_size']} voxels at {model['spacing']} mm, "
        f"HU window {model['hu_window']}",
        f"- Data: {data.get('source', 'unknown')} "
        f"(fingerprint {data.get('fingerprint') or 'n/a'}), "
        f"split `{report['split']}`",
        f"- Samples: {counts['n']} ({counts['n_malignant']} malignant, {counts['n_benign']} "
        f"benign, prevalence {_number(counts['prevalence'])})"
        + (f", {counts['n_patients']} patients" if counts.get("n_patients") else ""),
        f"- Operating threshold: {_number(report['operating_point']['threshold'], 4)} "
        f"({report['operating_point']['source']})",
        f"- 95 % intervals: percentile bootstrap, {boot['n']} resamples of {boot['unit']}s "
        f"(seed {boot['seed']})",
        "",
    ]
    lines += _metric_sections(report, "Metrics (value and 95 % CI)")
    calibration = report.get("calibration") or {}
    if "before" in calibration:
        lines += [
            "## Calibration",
            "",
            f"Method: {calibration['method']} (temperature "
            f"{_number(calibration['temperature'], 4)}, fitted on the training run's validation "
            "split). Brier score and ECE of the probabilities without it and with it (the model's "
            "output):",
            "",
            *_table(["", "Brier score", "ECE"],
                    [[name, calibration[key]["brier"], calibration[key]["ece"]]
                     for name, key in (("before", "before"), ("after", "after"))]),
            "",
        ]
    c = report["confusion"]
    lines += [
        "## Confusion at the operating threshold",
        "",
        *_table(
            ["truth \\ prediction", "benign", "malignant"],
            [["benign", c["tn"], c["fp"]], ["malignant", c["fn"], c["tp"]]],
        ),
        "",
    ]
    lines += _decision_section(report)
    if report.get("tta"):
        lines += _metric_sections(
            report["tta"], f"Test-time augmentation ({report['tta']['views']} flipped views)"
        )
    breakdowns = report.get("breakdowns") or {}
    for column, entry in breakdowns.items():
        header = [
            "group",
            "n",
            "malignant",
            "benign",
            "errors",
            "accuracy",
            "sensitivity",
            "specificity",
            "mean p",
            "AUROC",
        ]
        rows = [
            [
                str(g["group"]),
                g["n"],
                g["n_malignant"],
                g["n_benign"],
                g["errors"],
                g["accuracy"],
                g["sensitivity"],
                g["specificity"],
                g["mean_probability"],
                g["auroc"],
            ]
            for g in entry["groups"]
        ]
        lines += [
            f"## By {column} ({entry['grouping']}; worst first)",
            "",
            *_table(header, rows),
            "",
        ]
    skipped = {
        k: v for k, v in (report.get("breakdown_notes") or {}).items() if k not in breakdowns
    }
    if skipped:
        by_reason: dict[str, list[str]] = {}
        for column, reason in skipped.items():
            by_reason.setdefault(reason, []).append(f"`{column}`")
        lines += ["Columns without a breakdown:", ""]
        lines += [f"- {reason}: {', '.join(columns)}" for reason, columns in by_reason.items()]
        lines.append("")
    gradcam = report.get("gradcam") or {}
    lines += ["## Grad-CAM of the most confident errors", ""]
    if gradcam.get("status") == "produced":
        lines += [
            f"Layer `{gradcam['layer']}`; samples: {', '.join(gradcam['samples'])}.",
            "",
            f"![Grad-CAM]({gradcam['figure']})",
            "",
        ]
    else:
        lines += [f"Skipped: {gradcam.get('reason', 'not requested')}.", ""]
    figures = report.get("figures") or {}
    if figures:
        lines += ["## Figures", ""]
        lines += [
            f"![{name}]({path})"
            for name, path in figures.items()
            if name not in ("gradcam", "decision_curve")
        ]
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in report["notes"]], ""]
    return "\n".join(lines)


def write_markdown(report: Mapping[str, Any], path: Path) -> Path:
    path.write_text(markdown(to_jsonable(report)))
    return path
