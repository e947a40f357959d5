"""What a training run prints at its end: where everything is, in paths that paste."""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Sequence
from pathlib import Path

from calcinet.tracking import run_url, ui_command
from calcinet.training.checkpoints import Saved, newest_last

log = logging.getLogger(__name__)


def hydra_value(key: str, path: Path) -> str:
    """``key=path`` as a shell word Hydra parses back to ``path`` (quoted when it must be).

    Hydra reads a value in single quotes literally except ``\\'`` (a quote); the shell gets the
    override in double quotes, or fully quoted by :func:`shlex.quote` when the path holds a
    character the shell expands inside double quotes."""
    text = str(path)
    if all(c.isalnum() or c in "/._-+" for c in text):
        return f"{key}={text}"
    override = f"{key}='" + text.replace("'", "\\'") + "'"
    if any(c in text for c in '"$`\\!'):
        return shlex.quote(override)
    return f'"{override}"'


def shell_words(words: Sequence[str]) -> str:
    """Hydra overrides as they would be typed into a shell."""
    return " ".join(shlex.quote(word) for word in words)


def report_stopped(output_dir: Path, checkpoints: Path, epoch: int | None,
                   sweep_trial: bool = False) -> None:
    """Tell the user how to continue a run stopped by SIGTERM (in ``epoch`` when known); a
    sweep's trial is continued by rerunning the sweep (the trial is queued again)."""
    last = newest_last(checkpoints) if checkpoints.is_dir() else None
    saved = f"{last} holds the last finished epoch" if last else "no epoch finished"
    where = "" if epoch is None else f" in epoch {epoch}"
    if sweep_trial:
        log.info(f"calcinet: sweep trial {output_dir.name} stopped by SIGTERM{where}; it is "
                 "queued again: rerun the same sweep command to continue the study")
        return
    log.info(f"calcinet: stopped by SIGTERM{where}; {saved}. Continue with the same command "
             f"plus {hydra_value('hydra.run.dir', output_dir.resolve())} resume=true")


def report_run(output_dir: Path, checkpoints: Path, best: Saved | None,
               metrics: dict[str, float], mlflow: tuple[str, str, str] | None,
               data_overrides: Sequence[str] = ()) -> None:
    """Print the run folder, best and last checkpoints, final validation metrics, the command
    that evaluates the best checkpoint on the run's data (``data_overrides``) and, with
    ``mlflow=(uri, experiment_id, run_id)``, where to see the run."""
    lines = ["", f"Run folder:       {output_dir.resolve()}"]
    if best is not None:
        shown = f" ({best.metric}={best.score:.4f}, epoch {best.epoch})" \
            if best.score is not None else ""
        lines.append(f"Best checkpoint:  {best.path}{shown}")
    last = newest_last(checkpoints) if checkpoints.is_dir() else None
    if last is not None:
        lines.append(f"Last checkpoint:  {last}")
    finite = {k: v for k, v in metrics.items() if k.startswith("val/") and math.isfinite(v)}
    if finite:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(finite.items()))
        lines.append(f"Final validation: {shown}")
    if best is not None:
        data = f" {shell_words(data_overrides)}" if data_overrides else ""
        lines.append(f"Evaluate it:      calcinet-evaluate "
                     f"{hydra_value('ckpt_path', best.path)}{data}")
    if mlflow is not None:
        uri, experiment_id, run_id = mlflow
        lines.append(f"MLflow run:       {run_id} in {uri}")
        lines.append(f"Open the MLflow UI: {ui_command(uri)}")
        lines.append(f"  then browse to {run_url(uri, experiment_id, run_id)}")
    log.info("\n".join(lines))
