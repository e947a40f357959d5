"""``evaluate(cfg)``: a model, a held-out set, and everything worth knowing about the pair.

Steps: load the model (checkpoint or TorchScript) -> fill the data's patch size, spacing and HU
window from the model (refuse different values) -> build the DataModule the data config
describes -> predict (optionally with flips) -> metrics with bootstrap intervals at the stored
thresholds -> breakdowns, figures, Grad-CAM -> ``predictions.csv``, ``report.json``,
``report.md`` in the run folder -> an MLflow run nested under the training run
(:mod:`calcinet.evaluation.mlflow_log`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from calcinet import __version__
from calcinet.config import ConfigError
from calcinet.data.datamodule import CalciDataModule
from calcinet.evaluation import EvaluationError, plots
from calcinet.evaluation.breakdown import breakdowns
from calcinet.evaluation.calibration import bound_note, calibration_effect
from calcinet.evaluation.metrics import (
    THRESHOLD_METRICS,
    BootstrapResult,
    CurveBands,
    calibration_bins,
    confusion_counts,
    curve_bands,
    decision_summary,
    evaluate_with_bootstrap,
)
from calcinet.evaluation.mlflow_log import log_to_mlflow, update_registered_cards
from calcinet.evaluation.predict import (
    TTA_FLIPS,
    LoadedModel,
    load_checkpoint,
    load_exported,
    predict_loader,
    resolve_device,
)
from calcinet.evaluation.report import write_json, write_markdown

log = logging.getLogger(__name__)

#: ``all``: every finding of the data, whatever its split (an external set).
SPLITS = ("train", "val", "test", "all")
PREPROCESSING_KEYS = ("patch_size", "spacing", "hu_window")


def _int_setting(cfg: DictConfig, key: str, minimum: int) -> int:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return value


def check_evaluate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first setting of ``conf/evaluate.yaml`` that fails."""
    ckpt, model = cfg.get("ckpt_path"), cfg.get("model_path")
    if not ckpt and not model:
        raise ConfigError(
            "ckpt_path=null and model_path=null: give ckpt_path=PATH (a calcinet-train checkpoint, "
            "e.g. <run folder>/checkpoints/best.ckpt, or the run folder) or model_path=PATH (a "
            ".ts or .pt2 model from calcinet-export)"
        )
    if ckpt and model:
        raise ConfigError(f"ckpt_path={ckpt!r} and model_path={model!r}: give only one of them")
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r}: expected one of {', '.join(SPLITS)}")
    _int_setting(cfg, "bootstrap.n", 0)
    _int_setting(cfg, "bootstrap.seed", 0)
    _int_setting(cfg, "calibration.n_bins", 1)
    _int_setting(cfg, "gradcam.num_errors", 0)
    columns = cfg.breakdown.get("columns")
    if columns is not None and not OmegaConf.is_list(columns):
        raise ConfigError(f"breakdown.columns={columns!r}: expected a list of column names or null")


#: Files of an exported model (calcinet-export); anything else is a checkpoint or a run folder.
EXPORTED_SUFFIXES = (".ts", ".pt", ".pt2")


def load_model(cfg: DictConfig, device: torch.device) -> LoadedModel:
    """The model ``ckpt_path`` or ``model_path`` names, whichever key it was given in: a
    checkpoint, a training run folder (its best checkpoint) or an exported ``.ts`` / ``.pt2``."""
    path = Path(str(cfg.get("ckpt_path") or cfg.get("model_path")))
    if path.suffix in EXPORTED_SUFFIXES:
        return load_exported(path, device)
    return load_checkpoint(path, device)


def _same(a: Any, b: Any) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9)
        for x, y in zip(a, b, strict=True)
    )


def apply_model_preprocessing(cfg: DictConfig, model: LoadedModel) -> None:
    """Set ``data.patch_size``, ``data.spacing``, ``data.hu_window`` to the model's when unset;
    refuse values that differ from the model's (it only works on the input it was trained on)."""
    what = f"{'ckpt_path' if model.kind == 'checkpoint' else 'model_path'}={str(model.path)!r}"
    for key in PREPROCESSING_KEYS:
        wanted = OmegaConf.select(cfg, f"data.{key}")
        trained = model.preprocessing.get(key)
        if wanted is None:
            if trained is None:
                raise ConfigError(
                    f"data.{key}=null and the model ({what}) does not record its {key}: "
                    f"set data.{key}=[...] to what it was trained with"
                )
            cfg.data[key] = list(trained)
        elif trained is not None and not _same(wanted, trained):
            shown = OmegaConf.to_container(wanted) if OmegaConf.is_config(wanted) else wanted
            raise ConfigError(
                f"data.{key}={shown} does not match the model's {key} {list(trained)} ({what}); "
                f"the model only works on patches like those it was trained on: leave "
                f"data.{key} unset to use the model's"
            )


def _data_name(cfg: DictConfig) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return f"data={HydraConfig.get().runtime.choices['data']}"
    except Exception:  # noqa: BLE001 - outside a Hydra run
        return f"data.source={OmegaConf.select(cfg, 'data.source._target_')}"


def _check_counts(counts: Mapping[int, int], split: str, cfg: DictConfig) -> None:
    n = counts.get(0, 0) + counts.get(1, 0)
    if n == 0:
        raise EvaluationError(
            f"split={split!r} of {_data_name(cfg)} has no samples: nothing to evaluate"
        )
    for label, name in ((0, "benign"), (1, "malignant")):
        if counts.get(label, 0) == n:
            raise EvaluationError(
                f"split={split!r} of {_data_name(cfg)} holds one class only: all {n} samples are "
                f"{name} (label {label}); AUROC, sensitivity and specificity need both classes"
            )


def _sections(
    result: BootstrapResult, label: np.ndarray, probability: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """``metrics`` + ``confusion`` at the operating threshold, one section per other threshold."""
    out: dict[str, Any] = {
        "metrics": result.metrics(0),
        "confusion": confusion_counts(label, probability, result.thresholds[0]),
    }
    for index, name in enumerate(names, start=1):
        threshold = result.thresholds[index]
        out[name] = {
            "threshold": threshold,
            "metrics": result.metrics(index, THRESHOLD_METRICS),
            "confusion": confusion_counts(label, probability, threshold),
        }
    return out


def _figures(
    out: Path,
    label: np.ndarray,
    probability: np.ndarray,
    report: Mapping[str, Any],
    points: dict[str, float],
    class_names: tuple[str, str],
    bands: CurveBands,
    suffix: str = "",
) -> dict[str, str]:
    """ROC, PR (with bootstrap bands), decision curve, calibration, confusion and histogram
    figures; ``{name: path relative to out}``."""
    folder = out / "figures"
    metrics = report["metrics"]
    tag = " (TTA)" if suffix else ""
    made = {
        "roc": plots.roc_figure(
            label,
            probability,
            points,
            folder / f"roc{suffix}.png",
            auroc=metrics["auroc"]["value"],
            title=f"ROC curve{tag}",
            bands=bands,
            auroc_ci=metrics["auroc"]["ci95"],
        ),
        "pr": plots.pr_figure(
            label,
            probability,
            points,
            folder / f"pr{suffix}.png",
            ap=metrics["ap"]["value"],
            title=f"Precision-recall curve{tag}",
            bands=bands,
            ap_ci=metrics["ap"]["ci95"],
        ),
        "decision_curve": plots.decision_curve_figure(
            label,
            probability,
            bands,
            folder / f"decision_curve{suffix}.png",
            operating_threshold=report["operating_point"]["threshold"],
            title=f"Decision curve{tag}",
        ),
        "calibration": plots.reliability_figure(
            report["calibration"]["bins"],
            folder / f"calibration{suffix}.png",
            ece=metrics["ece"]["value"],
            title=f"Calibration{tag}",
        ),
        "confusion": plots.confusion_figure(
            report["confusion"],
            class_names,
            report["operating_point"]["threshold"],
            folder / f"confusion{suffix}.png",
            title=f"Confusion matrix{tag}",
        ),
        "histogram": plots.histogram_figure(
            label,
            probability,
            class_names,
            points,
            folder / f"histogram{suffix}.png",
            title=f"Predicted probability by class{tag}",
        ),
    }
    return {f"{name}{suffix}": str(path.relative_to(out)) for name, path in made.items()}


def _error_montage(
    cfg: DictConfig, model: LoadedModel, loader: Any, predictions: pd.DataFrame, out: Path
) -> dict[str, Any]:
    """Grad-CAM (checkpoints) or plain slices (TorchScript) of the most confident errors."""
    if not cfg.gradcam.enabled:
        return {"status": "skipped", "reason": "disabled (gradcam.enabled=false)"}
    wrong = predictions[predictions["prediction"] != predictions["label"]]
    if wrong.empty or cfg.gradcam.num_errors == 0:
        return {
            "status": "skipped",
            "reason": "no errors at the operating threshold"
            if wrong.empty
            else "gradcam.num_errors=0",
        }
    confidence = np.where(wrong["prediction"] == 1, wrong["probability"], 1 - wrong["probability"])
    order = np.lexsort((wrong["id"].to_numpy(), -confidence))[: int(cfg.gradcam.num_errors)]
    positions = wrong.index[order].to_list()
    images = torch.stack([torch.as_tensor(loader.dataset[i]["image"]) for i in positions]).float()
    if model.takes_hu:  # pictures show the window the model was trained with
        from calcinet.export.wrapper import window_hu

        images = window_hu(images, *(float(v) for v in cfg.data.hu_window))
    classes = predictions.loc[positions, "prediction"].astype(int).tolist()
    names = model.class_names
    threshold = model.threshold

    def title(i: int) -> str:
        row = predictions.loc[i]
        pattern = f", pattern {row['pattern']}" if "pattern" in predictions.columns else ""
        return (
            f"{row['id']}: truth {names[int(row['label'])]}{pattern}\n"
            f"p(malignant) = {row['probability']:.3f}, predicted "
            f"{names[int(row['prediction'])]} at threshold {threshold:.3f}"
        )

    items = [{"image": images[k, 0].numpy(), "title": title(i)} for k, i in enumerate(positions)]
    entry: dict[str, Any] = {"samples": [str(predictions.loc[i, "id"]) for i in positions]}
    # The data's window and spacing: the model's, filled in by apply_model_preprocessing.
    draw = {"hu_window": list(cfg.data.hu_window), "spacing": list(cfg.data.spacing)}
    if model.network is None:
        path = plots.finding_figure(
            items,
            out / "figures" / "errors.png",
            "Most confident errors (no Grad-CAM for TorchScript)",
            **draw,
        )
        return {
            **entry,
            "status": "skipped",
            "figure": str(path.relative_to(out)),
            "reason": "Grad-CAM needs the eager network, which a TorchScript model does not "
            "have; evaluate the checkpoint (ckpt_path=...) for Grad-CAM",
        }
    from calcinet.evaluation.gradcam import gradcam_maps

    try:
        maps, layer = gradcam_maps(model.network, images, classes, cfg.gradcam.get("layer"))
    except EvaluationError:
        raise
    except Exception as error:  # noqa: BLE001 - a picture must not cost the whole evaluation
        log.warning("Grad-CAM failed: %s", error)
        return {**entry, "status": "failed", "reason": f"{type(error).__name__}: {error}"}
    for item, cam in zip(items, maps, strict=True):
        item["cam"] = cam
        if not np.asarray(cam).any():  # Grad-CAM's ReLU left nothing: say so, not a blank map
            item["title"] += "\nGrad-CAM zero everywhere: no voxel raises this class's score"
    path = plots.finding_figure(
        items,
        out / "figures" / "gradcam_errors.png",
        f"Most confident errors: Grad-CAM of the predicted class (layer {layer}), "
        "slices through the finding",
        **draw,
    )
    return {**entry, "status": "produced", "layer": layer, "figure": str(path.relative_to(out))}


def _patients(predictions: pd.DataFrame) -> np.ndarray | None:
    """The bootstrap clusters: ``patient_id`` where the data has one (a sample without one is
    its own cluster), else None (resample samples)."""
    if "patient_id" not in predictions.columns:
        return None
    patients = predictions["patient_id"].astype(object)
    missing = patients.isna() | (patients.astype(str).str.strip() == "")
    if missing.all():
        return None
    own = "sample:" + predictions["id"].astype(str)
    return np.where(missing, own, "patient:" + patients.astype(str)).astype(str)


def _source_identity(datamodule: CalciDataModule) -> dict[str, Any]:
    source = datamodule.source
    return {"source": source.kind, "fingerprint": source.fingerprint(),
            "describe": source.describe()}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the model of ``cfg`` on ``cfg.split`` of ``cfg.data``; return the report.

    Writes ``predictions.csv``, ``report.json``, ``report.md``, ``config.yaml`` and ``figures/``
    into ``cfg.paths.output_dir`` and, with ``mlflow.enabled``, logs them to MLflow (the
    returned report then has an ``mlflow`` entry).
    """
    started = time.perf_counter()
    started_ms = int(time.time() * 1000)  # the MLflow run's start (it is created at the end)
    check_evaluate_config(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(str(cfg.device))
    model = load_model(cfg, device)
    apply_model_preprocessing(cfg, model)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True)))

    split = str(cfg.split)
    datamodule = instantiate(cfg.data)
    _check_counts(datamodule.class_counts(split), split, cfg)
    # An exported model gets HU patches, as calcinet-predict gives them (it windows inside).
    loader = datamodule.evaluation_loader(split, windowed=not model.takes_hu)
    records = datamodule.records(split)
    tta = bool(cfg.tta)
    log.info(
        "Predicting %d samples of split %r with %s%s",
        len(records),
        split,
        model.path,
        " (+ 8 flipped views)" if tta else "",
    )
    predictions = predict_loader(model, loader, records, tta=tta)

    label = predictions["label"].to_numpy(dtype=int)
    groups = _patients(predictions)
    thresholds, names = [model.threshold, 0.5], ["at_threshold_0.5"]
    if model.threshold_at_sensitivity is not None:
        thresholds.append(model.threshold_at_sensitivity)
        names.append("at_target_sensitivity")
    boot = {
        "n_resamples": int(cfg.bootstrap.n),
        "seed": int(cfg.bootstrap.seed),
        "groups": groups,
        "n_bins": int(cfg.calibration.n_bins),
    }

    bands: dict[str, CurveBands] = {}

    def assess(column: str) -> tuple[dict[str, Any], BootstrapResult]:
        probability = predictions[column].to_numpy(dtype=float)
        result = evaluate_with_bootstrap(label, probability, thresholds, **boot)
        section = _sections(result, label, probability, names)
        bands[column] = curve_bands(
            label, probability, boot["n_resamples"], boot["seed"], boot["groups"],
            extra_thresholds=[model.threshold],
        )
        section["decision_curve"] = decision_summary(label, bands[column], model.threshold)
        if "at_target_sensitivity" in section:
            section["at_target_sensitivity"]["target_sensitivity"] = model.target_sensitivity
        section["operating_point"] = {
            "threshold": model.threshold,
            "rule": model.operating_point,
            "source": f"stored with the model: chosen on the training run's validation set "
            f"({model.operating_point or 'rule unknown'}), not on this set",
        }
        section["calibration"] = {
            "n_bins": boot["n_bins"],
            "bins": calibration_bins(label, probability, boot["n_bins"]),
            **calibration_effect(label, probability, model.temperature, boot["n_bins"]),
        }
        return section, result

    main, result = assess("probability")
    predictions.insert(4, "prediction", (predictions["probability"] >= model.threshold).astype(int))
    if tta:
        tta_section, _ = assess("probability_tta")
        tta_section["views"] = len(TTA_FLIPS)
        at = predictions.columns.get_loc("probability_tta") + 1
        predictions.insert(
            at, "prediction_tta", (predictions["probability_tta"] >= model.threshold).astype(int)
        )

    counts = {
        "n": len(label),
        "n_malignant": int(label.sum()),
        "n_benign": int((label == 0).sum()),
        "prevalence": float(label.mean()),
    }
    if groups is not None:
        counts["n_patients"] = int(pd.Series(groups).nunique())
    data = {
        "split": split,
        **_source_identity(datamodule),
        "config": OmegaConf.to_container(cfg.data, resolve=True),
    }
    report: dict[str, Any] = {
        "schema_version": 1,
        "calcinet_version": __version__,
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "split": split,
        "model": {
            "kind": model.kind,
            "path": str(model.path.resolve()),
            "training_run_id": model.training_run_id,
            **model.preprocessing,
            "threshold": model.threshold,
            "threshold_at_sensitivity": model.threshold_at_sensitivity,
            "target_sensitivity": model.target_sensitivity,
            "operating_point": model.operating_point,
            "class_names": list(model.class_names),
            **{k: v for k, v in model.identity.items() if k not in ("mlflow_run_id",)},
        },
        "data": data,
        "counts": counts,
        **main,
        "bootstrap": {
            "n": result.n_resamples,
            "seed": result.seed,
            "unit": result.unit,
            "n_units": result.n_units,
            "interval": "percentile (2.5 %, 97.5 %)",
            "undefined_resamples": result.undefined,
        },
    }
    if tta:
        report["tta"] = tta_section

    tables, notes = breakdowns(
        predictions,
        list(cfg.breakdown.columns) if cfg.breakdown.get("columns") else None,
        max_groups=int(cfg.breakdown.max_groups),
        max_levels=int(cfg.breakdown.max_levels),
        quantiles=int(cfg.breakdown.quantiles),
        max_columns=int(cfg.breakdown.max_columns),
    )
    report["breakdowns"] = {
        column: {"grouping": notes[column], "groups": table.to_dict("records")}
        for column, table in tables.items()
    }
    report["breakdown_notes"] = notes

    probability = predictions["probability"].to_numpy(dtype=float)
    points = {"operating": model.threshold, "0.5": 0.5}
    if model.threshold_at_sensitivity is not None:
        points[f"sens. {model.target_sensitivity or ''}".strip()] = model.threshold_at_sensitivity
    figures = _figures(
        out, label, probability, report, points, model.class_names, bands["probability"]
    )
    if tta:
        figures.update(
            _figures(
                out,
                label,
                predictions["probability_tta"].to_numpy(dtype=float),
                {**tta_section},
                points,
                model.class_names,
                bands["probability_tta"],
                suffix="_tta",
            )
        )
    for column, table in tables.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column)
        path = plots.breakdown_figure(table, column, out / "figures" / f"breakdown_{safe}.png")
        figures[f"breakdown_{safe}"] = str(path.relative_to(out))
    report["gradcam"] = _error_montage(cfg, model, loader, predictions, out)
    if report["gradcam"].get("figure"):
        figures["gradcam" if report["gradcam"]["status"] == "produced" else "errors"] = report[
            "gradcam"
        ]["figure"]
    report["figures"] = figures
    report["notes"] = _notes(report, model, split)

    predictions.to_csv(out / "predictions.csv", index=False)
    if datamodule.source.kind == "manifest":  # rows evaluated and left out, as training keeps
        report["data"]["artifacts"] = [
            str(path.relative_to(out))
            for path in datamodule.source.write_artifacts(out / "artifacts")]
    write_json(report, out / "report.json")
    write_markdown(report, out / "report.md")
    if cfg.mlflow.enabled:
        report["mlflow"] = log_to_mlflow(cfg, report, model, out, started_ms)
    report["model_card"] = _update_model_card(report, model)
    _print_summary(report, out, time.perf_counter() - started)
    return report


def _update_model_card(report: dict[str, Any], model: LoadedModel) -> dict[str, Any]:
    """Held-out results go to the model card: beside the checkpoint or the exported model
    (:func:`calcinet.export.card.record_evaluation`) and into the descriptions of the registered
    versions exported from that checkpoint."""
    from calcinet.export.card import evaluation_summary, record_evaluation

    sha256, written = record_evaluation(report, model.kind, model.path, model.identity)
    updated: list[str] = []
    if report.get("mlflow") and sha256:
        updated = update_registered_cards(report["mlflow"]["tracking_uri"], sha256,
                                          evaluation_summary(report))
    return {"files": [str(p) for p in written], "registered_versions": updated}


def _notes(report: Mapping[str, Any], model: LoadedModel, split: str) -> list[str]:
    notes = [note[0].upper() + note[1:] + "." for note in [bound_note(model.temperature)]
             if note]
    trained_on = model.identity.get("data_fingerprint")
    here = report["data"].get("fingerprint")
    if split in ("train", "val"):
        notes.append(
            f"The {split} split took part in training (train: fitted; val: model "
            "selection and threshold), so these numbers are optimistic."
        )
    elif split == "all" and trained_on and trained_on == here:
        notes.append(
            "split=all includes the train and val findings this model was trained and "
            "selected on, so these numbers are optimistic; evaluate split=test for an unbiased "
            "estimate."
        )
    if trained_on and here and trained_on != here:
        notes.append(
            f"The data differ from the training run's (data fingerprint {here} here, "
            f"{trained_on} in training): make sure this set was not used in training."
        )
    skipped = (report["data"].get("describe") or {}).get("skipped_rows")
    if skipped:
        notes.append(f"{skipped} manifest row(s) with problems were left out (data.on_error=skip); "
                     "they are listed in artifacts/skipped_rows.csv.")
    if report["bootstrap"]["unit"] == "patient":
        notes.append(
            "Intervals resample patients (cluster bootstrap; a manifest without patient_id "
            "makes each image file one): samples of one patient are not independent."
        )
    for name, count in report["bootstrap"]["undefined_resamples"].items():
        notes.append(
            f"{name}: undefined in {count} of {report['bootstrap']['n']} resamples "
            "(left out of its interval)."
        )
    return notes


def _print_summary(report: Mapping[str, Any], out: Path, seconds: float) -> None:
    m = report["metrics"]

    def show(name: str) -> str:
        entry = m[name]
        low, high = entry["ci95"]
        value = entry["value"]
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            return f"{name} {value:.3f}"
        return f"{name} {value:.3f} [{low:.3f}, {high:.3f}]"

    counts = report["counts"]
    lines = [
        "",
        f"Evaluated {counts['n']} samples ({counts['n_malignant']} malignant) of split "
        f"{report['split']!r} in {seconds:.0f} s",
        "  " + ", ".join(show(n) for n in ("auroc", "ap", "sensitivity", "specificity")),
        f"  at the stored operating threshold {report['operating_point']['threshold']:.4f}",
        *(f"  note: {note}" for note in report.get("notes") or []),
        f"Report:       {out / 'report.md'}",
        f"Predictions:  {out / 'predictions.csv'}",
    ]
    if report.get("mlflow"):
        info = report["mlflow"]
        nested = (
            f" (nested under training run {info['parent_run_id']})" if info["parent_run_id"] else ""
        )
        lines.append(f"MLflow run:   {info['run_id']}{nested} in {info['tracking_uri']}")
        lines.append(f"  {info['url']}")
    log.info("\n".join(lines))


__all__ = ["apply_model_preprocessing", "check_evaluate_config", "evaluate", "log_to_mlflow"]
