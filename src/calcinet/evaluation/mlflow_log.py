"""Log an evaluation to MLflow: a run nested under the model's training run when the tracking
store holds it, else a run of its own experiment; metrics as ``<prefix>/<metric>``, the
report, predictions and figures as artifacts; the evaluated data as the run's dataset input
(``log_inputs``), the registered model version(s) of the evaluated checkpoint as its model
input, and the source, user and git tags MLflow gives a training run."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from calcinet import __version__
from calcinet.evaluation.predict import LoadedModel
from calcinet.evaluation.report import to_jsonable

log = logging.getLogger(__name__)


def _normalise_uri(uri: str | None) -> str | None:
    if not uri:
        return None
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            return scheme + str(Path(uri[len(scheme) :]).resolve())
    return uri.rstrip("/")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping) or not tree:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def mlflow_metrics(report: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{prefix}/{metric}`` (+ ``_ci95_low``/``_ci95_high``), the threshold sections under
    ``{prefix}/{section}/`` and TTA under ``{prefix}/tta/``; finite values only."""
    values: dict[str, float] = {}

    def add(section: Mapping[str, Any], base: str) -> None:
        for name, entry in section["metrics"].items():
            values[f"{base}/{name}"] = entry["value"]
            if entry["ci95"]:
                values[f"{base}/{name}_ci95_low"], values[f"{base}/{name}_ci95_high"] = entry[
                    "ci95"
                ]
        for key in ("at_threshold_0.5", "at_target_sensitivity"):
            if key in section:
                for name, entry in section[key]["metrics"].items():
                    values[f"{base}/{key}/{name}"] = entry["value"]
        values[f"{base}/threshold"] = section["operating_point"]["threshold"]

    add(report, prefix)
    if report.get("tta"):
        add(report["tta"], f"{prefix}/tta")
    values[f"{prefix}/n"] = report["counts"]["n"]
    values[f"{prefix}/prevalence"] = report["counts"]["prevalence"]
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def log_to_mlflow(
    cfg: DictConfig, report: Mapping[str, Any], model: LoadedModel, out: Path,
    started_ms: int | None = None,
) -> dict[str, Any]:
    """One MLflow run with the metrics, the report, the predictions and the figures, started
    at ``started_ms`` (ms since the epoch; default now), when the evaluation started.

    Nested under the training run (tag ``mlflow.parentRunId``, same experiment) when the model
    records one that lives in this tracking store; otherwise a run of ``mlflow.experiment_name``.
    """
    from mlflow.entities import LoggedModelInput, Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context.registry import resolve_tags

    from calcinet.tracking import (
        default_run_name,
        ensure_experiment,
        git_commit,
        is_remote,
        resolve_tracking_uri,
        run_url,
    )

    uri = resolve_tracking_uri(cfg.mlflow.get("tracking_uri"), cfg.paths.root_dir)
    client = MlflowClient(tracking_uri=uri)
    parent = model.training_run_id
    parent_uri = _normalise_uri(model.identity.get("mlflow_tracking_uri"))
    experiment_id = None
    why_not_nested = None
    if not parent:
        why_not_nested = "the model records no training run"
    elif parent_uri and parent_uri != _normalise_uri(uri):
        why_not_nested = f"its training run {parent} is in another store ({parent_uri})"
    else:
        try:
            experiment_id = client.get_run(parent).info.experiment_id
            ensure_experiment(client, client.get_experiment(experiment_id).name)
        except MlflowException:
            why_not_nested = f"its training run {parent} is not in {uri}"
    if experiment_id is None:
        log.info("Evaluation run not nested: %s", why_not_nested)
        parent = None
        location = None
        if not is_remote(uri):
            location = str((Path(cfg.paths.root_dir) / "mlartifacts").resolve())
        experiment_id = ensure_experiment(client, str(cfg.mlflow.experiment_name), location)

    tags = {
        "calcinet.evaluation": "true",
        "calcinet.version": __version__,
        "calcinet.split": report["split"],
        "calcinet.model_path": report["model"]["path"],
        "calcinet.model_kind": model.kind,
        "calcinet.data_source": str(report["data"].get("source")),
    }
    if report["data"].get("fingerprint"):
        tags["calcinet.data_fingerprint"] = str(report["data"]["fingerprint"])
    if model.training_run_id:
        tags["calcinet.training_run_id"] = model.training_run_id
    if parent:
        tags["mlflow.parentRunId"] = parent
    versions = model_versions(client, checkpoint_sha256(model))
    if versions:
        tags["calcinet.model_versions"] = ", ".join(f"{v.name}/{v.version}" for v in versions)
    commit = git_commit(Path(__file__).parent)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags = resolve_tags(tags)  # mlflow.user, mlflow.source.name / type, as a training run gets
    # Named after the evaluation's folder, as training runs are; started when it started.
    run_name = cfg.mlflow.get("run_name") or default_run_name(out)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags,
                            start_time=started_ms)
    run_id = run.info.run_id
    status = "FAILED"
    try:
        now = int(time.time() * 1000)
        prefix = str(cfg.metric_prefix)
        metrics = [Metric(k, v, now, 0) for k, v in mlflow_metrics(report, prefix).items()]
        params = {
            k: v
            for k, v in _flatten(to_jsonable(OmegaConf.to_container(cfg, resolve=True))).items()
        }
        param_list = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        for start in range(0, len(param_list), 100):
            client.log_batch(run_id, params=param_list[start : start + 100])
        client.log_batch(run_id, tags=[RunTag("calcinet.threshold", str(model.threshold))])
        for name in ("predictions.csv", "report.json", "report.md", "config.yaml"):
            client.log_artifact(run_id, str(out / name))
        if (out / "figures").is_dir():
            client.log_artifacts(run_id, str(out / "figures"), "figures")
        for name in report["data"].get("artifacts") or []:
            client.log_artifact(run_id, str(out / name), "data")
        client.log_inputs(run_id, datasets=[dataset_input(report)],
                          models=[LoggedModelInput(i) for i in map(logged_model_id, versions) if i])
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "tracking_uri": uri,
        "parent_run_id": parent,
        "not_nested_because": why_not_nested,
        "url": run_url(uri, experiment_id, run_id),
        "model_versions": [f"{v.name}/{v.version}" for v in versions],
    }


def checkpoint_sha256(model: LoadedModel) -> str | None:
    """The SHA-256 of the checkpoint the model is (a checkpoint) or was exported from."""
    if model.kind == "checkpoint":
        return model.identity.get("sha256")
    return ((model.identity.get("metadata") or {}).get("training") or {}).get("checkpoint_sha256")


def model_versions(client: Any, sha256: str | None) -> list[Any]:
    """Registered model versions exported from the checkpoint with this SHA-256 (tag
    ``calcinet.checkpoint_sha256``, set by calcinet-export); [] when none or no registry."""
    from mlflow.exceptions import MlflowException

    if not sha256:
        return []
    try:
        versions = client.search_model_versions(
            f"tags.`calcinet.checkpoint_sha256` = '{sha256}'")
    except MlflowException:
        return []
    return sorted(versions, key=lambda v: (v.name, int(v.version)))


def logged_model_id(version: Any) -> str | None:
    """The MLflow 3 logged model a registered version was made from (``models:/m-...``)."""
    if version.model_id:
        return version.model_id
    source = str(version.source or "")
    return source[len("models:/"):] if source.startswith("models:/m-") else None


def dataset_input(report: Mapping[str, Any]) -> Any:
    """The evaluated data as an MLflow dataset input: its source is the manifest (or
    NoduleMNIST3D file) path, or for the phantom its seed and configuration; its digest the
    data fingerprint; its context the split."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    data = report["data"]
    describe = data.get("describe") or {}
    path = describe.get("manifest") or describe.get("path")
    if path:
        with warnings.catch_warnings():
            # MLflow registers its local-file dataset source once for the scheme "" and once
            # for "file:" and warns that a path matches both ("can be interpreted in multiple
            # ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource"); either is the same.
            warnings.filterwarnings("ignore", message="The specified dataset source can be "
                                    "interpreted in multiple ways")
            source = resolve_dataset_source(str(path))
    else:
        source = CodeDatasetSource(tags={
            "generator": "calcinet.data.phantom", "seed": str(describe.get("seed")),
            "sizes": str(describe.get("sizes")),
            "phantom": str(describe.get("phantom"))[:4000]})
    name = f"{data.get('source')}-{report['split']}"
    dataset = MetaDataset(source, name=name, digest=data.get("fingerprint"))
    return DatasetInput(dataset._to_mlflow_entity(),
                        tags=[InputTag("mlflow.data.context", str(report["split"]))])


def update_registered_cards(uri: str, sha256: str | None,
                            evaluation: Mapping[str, Any]) -> list[str]:
    """Rewrite the description (the model card) of every registered version exported from
    this checkpoint with ``evaluation``; returns ``name/version`` of those updated."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from calcinet.export.card import render, with_evaluation
    from calcinet.export.mlflow_model import description_text
    from calcinet.tracking import fluent_tracking_uri

    client = MlflowClient(tracking_uri=uri)
    updated = []
    for version in model_versions(client, sha256):
        with fluent_tracking_uri(uri):
            info = mlflow.models.get_model_info(f"models:/{version.name}/{version.version}")
        metadata = (info.metadata or {}).get("calcinet")
        if not metadata:
            continue
        card = render(with_evaluation(metadata, evaluation))
        client.update_model_version(version.name, version.version,
                                    description=description_text(card))
        updated.append(f"{version.name}/{version.version}")
    return updated
