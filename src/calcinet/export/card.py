"""The model card: what an exported model is for, how it was made and how well it did.

Every fact comes from a record: the checkpoint (``checkpoint["calcinet"]``: training data, debug
option, config hash, git commit, validation metrics), the package metadata (licence and authors
from ``pyproject.toml``) and, when ``calcinet-evaluate`` has run on the model or its checkpoint,
that evaluation's report (test metrics with 95 % intervals, the weakest per-pattern results).
:func:`card_facts` gathers them into the ``card`` entry of ``metadata.json``; :func:`render` turns
a ``metadata.json`` document into Markdown, the one text found in the ``.ts`` (``model_card.md``),
as ``<model stem>.MODEL_CARD.md`` beside it (:func:`card_path`), in a MONAI bundle's
``docs/README.md`` and as the registered MLflow model version's description.

An evaluation of a checkpoint is kept beside it as ``<checkpoint>.evaluation.json``
(:func:`evaluation_path`) so that a later export of the same file (same SHA-256) carries it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

#: The card's file name inside the TorchScript file, and the ending of its name beside it.
CARD_EXTRA_FILE = "model_card.md"
CARD_SUFFIX = ".MODEL_CARD.md"

DATA_KINDS = {
    "synthetic": "synthetic CT phantom (calcinet.data.phantom)",
    "manifest": "CT scans listed in a manifest CSV",
    "nodulemnist3d": "NoduleMNIST3D (LIDC-IDRI CT crops)",
}

INTENDED_USE = (
    "Research use only: studying how 3D CNNs separate benign from malignant calcification "
    "patterns on CT patches. Not a medical device; not for diagnosis, treatment or any "
    "clinical decision."
)

#: Metrics the card reports, in order, with the names evaluate's report uses.
CARD_METRICS = ("auroc", "ap", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
                "brier", "ece")
#: How many of the lowest per-pattern results the card lists.
WEAKEST = 4

#: The order the card lists the splits and the data's origin in.
SPLIT_ORDER = ("train", "val", "test")
ORIGIN_ORDER = ("seed", "difficulty", "renderer families", "real CT backgrounds", "manifest",
                "path")


def project_facts() -> dict[str, Any]:
    """Licence, authors and version of the installed calcinet package (from pyproject.toml)."""
    meta = package_metadata.metadata("calcinet")
    authors = meta.get_all("Author") or []
    for entry in meta.get_all("Author-email") or []:
        authors.append(entry)
    return {
        "license": meta.get("License-Expression") or meta.get("License") or "unknown",
        "authors": [a.strip() for a in authors if a and a.strip()] or ["unknown"],
        "version": meta.get("Version"),
    }


def _families(renderers: Any) -> str | None:
    """``voxel, growth`` for a list of renderer families, ``voxel 1, growth 3`` for weights."""
    if isinstance(renderers, str):
        return renderers
    if isinstance(renderers, Mapping):
        return ", ".join(f"{name} {weight:g}" for name, weight in renderers.items())
    return ", ".join(renderers) if renderers else None


def _real_backgrounds(phantom: Mapping[str, Any]) -> str | None:
    fraction = phantom.get("real_background_fraction")
    if not fraction:
        return None if fraction is None else "none"
    files = ", ".join(str(b) for b in phantom.get("backgrounds") or [])
    return f"{fraction:g} of the findings, in patches of {files}"


def training_data(run: Mapping[str, Any]) -> dict[str, Any]:
    """What the model was trained on, from ``checkpoint["calcinet"]["data"]`` (``unknown``
    when the checkpoint predates these records)."""
    data = run.get("data") or {}
    kind = data.get("kind")
    describe = data.get("describe") or {}
    counts = {
        split: {"benign": int(c.get("0", c.get(0, 0))), "malignant": int(c.get("1", c.get(1, 0)))}
        for split, c in (data.get("class_counts") or {}).items()
    }
    origin: dict[str, Any] = {}
    if kind == "synthetic":
        phantom = describe.get("phantom") or {}
        origin = {"seed": describe.get("seed"), "difficulty": phantom.get("difficulty"),
                  "renderer families": _families(phantom.get("renderers")),
                  "real CT backgrounds": _real_backgrounds(phantom)}
    elif kind == "manifest":
        origin = {"manifest": describe.get("manifest")}
    elif kind == "nodulemnist3d":
        origin = {"path": describe.get("path")}
    return {
        "kind": kind or "unknown",
        "description": DATA_KINDS.get(kind, "unknown (the checkpoint does not record it)"),
        "origin": {k: v for k, v in origin.items() if v is not None},
        "class_counts": counts,
    }


def limitations(kind: str) -> list[str]:
    notes = [
        "Not validated clinically; its numbers describe the data below, not any patient "
        "population.",
        "Expects raw HU patches in RAS at the stated spacing and patch size; other inputs "
        "(MR, normalised images, other spacings) give meaningless probabilities.",
    ]
    if kind == "synthetic":
        notes.insert(0, "Trained on a synthetic CT phantom, not on patient findings (its findings "
                        "are drawn, also where they are inserted into real CT backgrounds): "
                        "performance on real CT is unknown.")
    elif kind == "unknown":
        notes.insert(0, "The training data is not recorded in the checkpoint.")
    return notes


def card_facts(run: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``card`` entry of ``metadata.json``."""
    data = training_data(run)
    project = project_facts()
    return {
        "intended_use": INTENDED_USE,
        "limitations": limitations(data["kind"]),
        "license": project["license"],
        "authors": project["authors"],
        "training_data": data,
        "debug": run.get("debug"),
        "git_commit": run.get("git_commit"),
        "evaluation": dict(evaluation) if evaluation else None,
    }


def evaluation_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``calcinet-evaluate``'s report a card shows: split, data, counts, the
    metrics with their 95 % intervals and the weakest per-pattern (or other breakdown) groups."""
    metrics = {
        name: _finite({"value": report["metrics"][name]["value"],
                       "ci95": report["metrics"][name]["ci95"]})
        for name in CARD_METRICS if name in report.get("metrics", {})
    }
    breakdowns = report.get("breakdowns") or {}
    column = "pattern" if "pattern" in breakdowns else next(iter(breakdowns), None)
    weakest = []
    if column is not None:
        groups = sorted(breakdowns[column]["groups"], key=lambda g: (g["accuracy"], -g["n"]))
        weakest = _finite([{"group": g["group"], "n": g["n"], "accuracy": g["accuracy"],
                            "errors": g["errors"]} for g in groups[:WEAKEST]])
    data = report.get("data") or {}
    return {
        "split": report["split"],
        "evaluated_at": report.get("evaluated_at"),
        "data_source": data.get("source"),
        "data_fingerprint": data.get("fingerprint"),
        "counts": dict(report["counts"]),
        "threshold": report["operating_point"]["threshold"],
        "metrics": metrics,
        "bootstrap": {k: (report.get("bootstrap") or {}).get(k) for k in ("n", "unit")},
        "weakest": {"column": column, "groups": weakest} if column else None,
        "mlflow_run_id": (report.get("mlflow") or {}).get("run_id"),
    }


def _finite(value: Any) -> Any:
    """NaN and infinities -> None, so that the record is valid JSON (an undefined metric)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def card_path(model: Path) -> Path:
    """``<model stem>.MODEL_CARD.md`` beside an exported ``.ts`` or ``.pt2`` (one card for both,
    as the program is ``<stem>.pt2``): two models exported into one folder keep their cards."""
    return model.with_name(model.stem + CARD_SUFFIX)


def evaluation_path(checkpoint: Path) -> Path:
    """``<checkpoint>.evaluation.json``: the last held-out evaluation of that checkpoint."""
    return checkpoint.with_name(checkpoint.name + ".evaluation.json")


def read_evaluation(checkpoint: Path, sha256: str) -> dict[str, Any] | None:
    """The evaluation recorded beside ``checkpoint`` when it is of this very file, else None."""
    path = evaluation_path(checkpoint)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record.get("evaluation") if record.get("checkpoint_sha256") == sha256 else None


def _value(entry: Mapping[str, Any] | None) -> str:
    if not entry or entry.get("value") is None:
        return "n/a"
    text = f"{entry['value']:.3f}"
    if entry.get("ci95") and None not in entry["ci95"]:
        low, high = entry["ci95"]
        text += f" (95 % CI {low:.3f}-{high:.3f})"
    return text


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def render(metadata: Mapping[str, Any]) -> str:
    """The model card of ``metadata`` (a ``metadata.json`` document) as Markdown."""
    card = metadata.get("card") or {}
    training = metadata.get("training") or {}
    network = metadata.get("network") or {}
    inp = metadata.get("input") or {}
    decision = metadata.get("decision") or {}
    data = card.get("training_data") or {}
    x, y, z = inp.get("patch_size", ["?"] * 3)
    lines = [
        f"# Model card: calcinet {network.get('name', '?')} malignancy classifier",
        "",
        "## Intended use",
        "",
        card.get("intended_use", INTENDED_USE),
        "",
        "## Limitations",
        "",
        *[f"- {note}" for note in card.get("limitations", [])],
        "",
        "## Model",
        "",
        f"- Task: {metadata.get('task', '?')}",
        f"- Network: `{network.get('name', '?')}` "
        f"{json.dumps(network.get('kwargs', {}), sort_keys=True)}",
        f"- Input: float32 HU `[N, 1, {x}, {y}, {z}]` (x, y, z), {inp.get('orientation', 'RAS')}, "
        f"spacing {inp.get('spacing_mm')} mm, HU window "
        f"{(metadata.get('preprocessing') or {}).get('hu_window')} applied inside the model",
        f"- Output: `[N]` probability of {(metadata.get('class_names') or ['', '?'])[1]!r}; "
        f"operating threshold {_number(decision.get('threshold'))} "
        f"({decision.get('operating_point', '?')}, chosen on validation)",
        "- Calibration temperature: "
        f"{_number((metadata.get('calibration') or {}).get('temperature'))}",
        "",
        "## Training data",
        "",
        f"- Kind: {data.get('description', 'unknown')}",
    ]
    # A fixed order: metadata read back from JSON (sorted keys) renders as first written.
    origin = data.get("origin") or {}
    for key in sorted(origin, key=lambda k: (k not in ORIGIN_ORDER, ORIGIN_ORDER.index(k)
                                             if k in ORIGIN_ORDER else 0, k)):
        lines.append(f"- {key}: {origin[key]}")
    counts = data.get("class_counts") or {}
    if counts:
        lines += ["", "| split | benign | malignant |", "|---|---|---|"]
        order = sorted(counts, key=lambda k: (SPLIT_ORDER.index(k) if k in SPLIT_ORDER else 9, k))
        lines += [f"| {split} | {counts[split]['benign']} | {counts[split]['malignant']} |"
                  for split in order]
    lines += [
        "",
        "## Provenance",
        "",
        f"- Config hash: `{training.get('config_hash')}`",
        f"- Git commit: `{card.get('git_commit')}`",
        f"- Data fingerprint: `{training.get('data_fingerprint')}`",
        f"- Training run (MLflow): `{training.get('mlflow_run_id')}`",
        f"- Checkpoint SHA-256: `{training.get('checkpoint_sha256')}`",
        f"- Debug run: {card.get('debug') or 'no'}",
        f"- calcinet {training.get('calcinet_version')} (training), "
        f"{(metadata.get('export') or {}).get('calcinet_version')} (export)",
        "",
        "## Validation metrics (the split the checkpoint and threshold were chosen on)",
        "",
    ]
    val = training.get("val_metrics") or {}
    if val:
        lines += [f"- {name}: {_number(value)}" for name, value in sorted(val.items())]
    else:
        lines.append("- not recorded")
    evaluation = card.get("evaluation")
    lines += ["", "## Test metrics", ""]
    if evaluation:
        counts = evaluation["counts"]
        lines += [
            f"calcinet-evaluate on split `{evaluation['split']}` of the "
            f"{evaluation.get('data_source')} data ({counts['n']} findings, "
            f"{counts['n_malignant']} malignant), at the stored operating threshold "
            f"{_number(evaluation['threshold'])}; {evaluation['bootstrap'].get('n')} bootstrap "
            f"resamples by {evaluation['bootstrap'].get('unit')}; "
            f"{evaluation.get('evaluated_at')}.",
            "",
            "| metric | value (95 % CI) |",
            "|---|---|",
            *[f"| {name} | {_value(entry)} |" for name, entry in evaluation["metrics"].items()],
        ]
        weakest = evaluation.get("weakest")
        lines += ["", "### Weaknesses", ""]
        if weakest and weakest["groups"]:
            lines.append(f"Lowest accuracy by `{weakest['column']}`:")
            lines.append("")
            lines += [f"- {g['group']}: accuracy {g['accuracy']:.2f} ({g['errors']} errors "
                      f"of {g['n']})" for g in weakest["groups"]]
        else:
            lines.append("No breakdown in the evaluation.")
    else:
        lines.append("Not evaluated on held-out data yet: run `calcinet-evaluate` on this model "
                     "or its checkpoint (it rewrites this card).")
    lines += [
        "",
        "## Licence and authors",
        "",
        f"- Licence: {card.get('license', 'unknown')}",
        f"- Authors: {', '.join(card.get('authors') or ['unknown'])}",
        "",
    ]
    return "\n".join(lines)


#: Splits whose results a card reports as test results (``all``: an external held-out set).
HELD_OUT_SPLITS = ("test", "all")


def with_evaluation(metadata: Mapping[str, Any], evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` whose card carries ``evaluation``."""
    updated = json.loads(json.dumps(metadata))
    updated.setdefault("card", {})["evaluation"] = dict(evaluation)
    return updated


def record_evaluation(report: Mapping[str, Any], kind: str, path: Path,
                      identity: Mapping[str, Any]) -> tuple[str | None, list[Path]]:
    """Keep a held-out evaluation where the card will find it; returns the evaluated
    checkpoint's SHA-256 (None when unknown) and the files written.

    A checkpoint: ``<checkpoint>.evaluation.json`` beside it (a later export picks it up). An
    exported TorchScript / ``.pt2`` file: its card beside it (:func:`card_path`), rewritten with
    these results (the card inside the file stays as exported).
    """
    if report["split"] not in HELD_OUT_SPLITS:
        return None, []
    summary = evaluation_summary(report)
    written: list[Path] = []
    if kind == "checkpoint":
        sha256 = identity.get("sha256")
        target = evaluation_path(Path(path))
        target.write_text(json.dumps({"checkpoint_sha256": sha256, "evaluation": summary},
                                     indent=2, default=str) + "\n")
        written.append(target)
        return sha256, written
    metadata = identity.get("metadata") or {}
    sha256 = (metadata.get("training") or {}).get("checkpoint_sha256")
    if metadata:
        target = card_path(Path(path))
        target.write_text(render(with_evaluation(metadata, summary)))
        written.append(target)
    return sha256, written
