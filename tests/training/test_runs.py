"""Runs that never lie: what a training run prints, stores and logs is what it did.

Each test drives the real console scripts on tiny data and checks one promise: checkpoint paths
that paste into the next command, validation metrics measured at the stored threshold and equal
to what calcinet-evaluate finds, a last.ckpt that is the last epoch, resumes in a copied folder,
a refused one-class split, external test sets.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.data.conftest import patch_rows, write_manifest
from tests.helpers import DEBUG_EXPERIMENT, run_cli
from tests.scaling.conftest import TINY


def _line(output: str, label: str) -> str:
    (line,) = [text for text in output.splitlines() if text.startswith(label)]
    return line[len(label):].strip()


def _same_metrics(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def _stored(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["calcinet"]


@pytest.mark.slow
def test_printed_checkpoints_paste_and_metrics_agree_with_evaluate(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / ("a-long-folder-name-" * 6) / ("and-another-one-" * 6) / "run"
    assert len(str(run_dir)) > 250  # Lightning's MLflow logger cuts parameters at 250
    trained = run_cli(["calcinet-train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"],
                      cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert trained.returncode == 0, trained.stderr[-3000:]
    # No deprecation Lightning triggers in torch reaches the user (nothing they can change).
    assert "LeafSpec" not in trained.stderr + trained.stdout
    checkpoints = run_dir / "checkpoints"
    names = sorted(p.name for p in checkpoints.glob("*.ckpt"))
    assert "best.ckpt" in names and "last.ckpt" in names and not any("=" in n for n in names)
    best = Path(_line(trained.stdout, "Best checkpoint:").split(" (")[0])
    assert best == checkpoints / "best.ckpt"
    stored = _stored(best)["val_metrics"]
    named = [checkpoints / n for n in names if n.startswith("epoch")]
    # A copy of the named best (NaN, a metric with no defined value, counts as equal to NaN).
    assert any(_same_metrics(_stored(p)["val_metrics"], stored) for p in named)

    # The printed command runs as printed.
    command = shlex.split(_line(trained.stdout, "Evaluate it:"))
    # It carries the run's data overrides, so split=val is the run's validation split.
    assert "data.source.num_val=16" in command
    evaluated = run_cli([*command, "split=val", "bootstrap.n=10",
                         f"hydra.run.dir={tmp_path / 'evaluate'}"], cwd=tmp_path,
                        env={"MLFLOW_TRACKING_URI": uri})
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "evaluate" / "report.json").read_text())
    # Training's validation metrics are evaluate's on the same split, at the stored threshold.
    assert report["operating_point"]["threshold"] == pytest.approx(stored["val/threshold"])
    for name in ("auroc", "ap", "accuracy", "sensitivity", "specificity", "f1", "brier"):
        assert report["metrics"][name]["value"] == pytest.approx(stored[f"val/{name}"], abs=1e-5)
    assert report["calibration"]["temperature"] == pytest.approx(stored["val/temperature"])

    # ... and so are MLflow's at that epoch, and the exported model's metadata.
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run((run_dir / "mlflow_run_id.txt").read_text().strip())
    epoch = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run.info.run_id, "epoch")}
    logged = {epoch_at[m.step]: m.value
              for m in client.get_metric_history(run.info.run_id, "val/sensitivity")}
    assert logged[epoch] == pytest.approx(stored["val/sensitivity"])
    assert run.data.metrics["best/val_auroc"] == pytest.approx(stored["val/auroc"])
    assert run.data.params["paths.output_dir"] == str(run_dir)  # whole, not cut at 250
    exported = run_cli(["calcinet-export", f"ckpt_path={best}", "mlflow.enabled=false",
                        f"output_path={tmp_path / 'model.ts'}",
                        f"hydra.run.dir={tmp_path / 'export'}"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    extra = {"metadata.json": ""}
    torch.jit.load(str(tmp_path / "model.ts"), _extra_files=extra)
    metadata = json.loads(extra["metadata.json"])
    assert metadata["training"]["val_metrics"]["val/sensitivity"] == \
        pytest.approx(stored["val/sensitivity"])
    assert metadata["calibration"]["temperature"] == pytest.approx(stored["val/temperature"])


@pytest.mark.slow
def test_a_one_class_validation_split_stops_before_the_first_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_cli(["calcinet-train", *TINY, "data.source.num_val=1", "logger=none",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 2
    (line,) = [text for text in done.stderr.splitlines() if text.strip()]
    assert re.fullmatch(r"calcinet: error: the val split holds [01] benign and [01] malignant "
                        r"findings; training needs both classes in train and val: .*", line)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_whatever_the_validation_interval(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    done = run_cli(["calcinet-train", *TINY, "trainer.max_epochs=3",
                    "trainer.check_val_every_n_epoch=2", f"hydra.run.dir={run_dir}"],
                   cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr[-3000:]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last["epoch"] == 2
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run.info.run_id, "epoch")}

    def epochs(name: str) -> list[int]:
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        return [epoch_at[m.step] for m in history]

    assert epochs("train/loss") == [0, 1, 2]
    assert epochs("val/auroc") == [1]  # validated after epochs 2 of 3 only (0-based 1)


@pytest.mark.slow
def test_resume_in_a_copied_folder_keeps_the_best_and_trains_each_epoch_once(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first, copy = tmp_path / "first", tmp_path / "copy"
    done = run_cli(["calcinet-train", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={first}"],
                   cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.copytree(first, copy)
    # What Lightning leaves in a copied folder: the newest epoch in last-v1.ckpt beside a stale
    # last.ckpt (here: epoch 1's state in last-v1, an older state in last.ckpt).
    folder = copy / "checkpoints"
    (folder / "last.ckpt").rename(folder / "last-v1.ckpt")
    stale = torch.load(folder / "last-v1.ckpt", map_location="cpu", weights_only=False)
    stale["epoch"], stale["global_step"] = 0, stale["global_step"] // 2
    torch.save(stale, folder / "last.ckpt")
    scores_before = {p.name: _stored(p)["val_metrics"].get("val/auroc")
                     for p in folder.glob("epoch*.ckpt")}
    resumed = run_cli(["calcinet-train", *TINY, "trainer.max_epochs=4", f"hydra.run.dir={copy}",
                       "resume=true"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(copy / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["epoch"] == 3
    all_scores = {p.name: _stored(p)["val_metrics"]["val/auroc"]
                  for p in (copy / "checkpoints").glob("epoch*.ckpt")}
    assert set(scores_before) <= set(all_scores)  # nothing of the earlier run was deleted
    best = max(all_scores.values())
    assert _stored(copy / "checkpoints" / "best.ckpt")["val_metrics"]["val/auroc"] == best
    printed = _line(resumed.stdout, "Best checkpoint:")
    assert printed.startswith(f"{copy / 'checkpoints' / 'best.ckpt'} (val/auroc={best:.4f}")
    client = MlflowClient(tracking_uri=uri)
    run_id = (copy / "mlflow_run_id.txt").read_text().strip()
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run_id, "epoch")}
    history = sorted(client.get_metric_history(run_id, "val/auroc"), key=lambda m: m.step)
    assert [epoch_at[m.step] for m in history] == [0, 1, 2, 3]  # no epoch twice
    assert client.get_run(run_id).data.metrics["best/val_auroc"] == pytest.approx(best)


@pytest.mark.slow
def test_an_external_test_set_is_evaluated(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A manifest whose rows are all split=test (a held-out set from another site), and
    split=all over a manifest without a split column."""
    rows = patch_rows(tmp_path / "site_b", 8, shape=(24, 24, 24))
    for row in rows:
        row.update(path=f"site_b/{row['path']}", split="test")
    manifest = write_manifest(tmp_path / "site_b.csv", rows)
    done = run_cli(["calcinet-evaluate", f"ckpt_path={tiny_checkpoint}", "data=manifest",
                    f"data.manifest={manifest}", "bootstrap.n=10", "mlflow.enabled=false",
                    "device=cpu", f"hydra.run.dir={tmp_path / 'evaluate'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "evaluate" / "report.json").read_text())
    assert report["counts"]["n"] == 8 and report["split"] == "test"
    plain = write_manifest(tmp_path / "plain.csv", [
        {k: v for k, v in r.items() if k != "split"} for r in rows])
    done = run_cli(["calcinet-evaluate", f"model_path={tiny_checkpoint}", "data=manifest",
                    f"data.manifest={plain}", "split=all", "bootstrap.n=10",
                    "mlflow.enabled=false", "device=cpu", f"hydra.run.dir={tmp_path / 'all'}"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "all" / "report.json").read_text())["counts"]["n"] == 8
    # A problem of the data is one line, not Hydra's "Error in call to target" with \n in it.
    broken = write_manifest(tmp_path / "broken.csv", [{**rows[0], "label": "maybe"}])
    done = run_cli(["calcinet-evaluate", f"ckpt_path={tiny_checkpoint}", "data=manifest",
                    f"data.manifest={broken}", f"hydra.run.dir={tmp_path / 'broken'}"],
                   cwd=tmp_path)
    assert done.returncode == 2 and "Error in call to target" not in done.stderr
    assert "line 2, column 'label', value 'maybe': unknown label" in done.stderr
    # With data.on_error=skip the row is left out, and listed where the warning says.
    skipping = write_manifest(tmp_path / "skipping.csv", [{**rows[0], "label": "maybe"},
                                                          *rows[1:]])
    done = run_cli(["calcinet-evaluate", f"ckpt_path={tiny_checkpoint}", "data=manifest",
                    f"data.manifest={skipping}", "data.on_error=skip", "bootstrap.n=10",
                    "mlflow.enabled=false", "device=cpu", f"hydra.run.dir={tmp_path / 'skip'}"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "listed in the run folder's artifacts/skipped_rows.csv" in done.stderr
    with (tmp_path / "skip" / "artifacts" / "skipped_rows.csv").open() as handle:
        skipped = list(csv.DictReader(handle))
    assert [(r["manifest_line"], r["column"], r["value"]) for r in skipped] == [
        ("2", "label", "maybe")]
    report = json.loads((tmp_path / "skip" / "report.json").read_text())
    assert report["counts"]["n"] == 7
    note = ("1 manifest row(s) with problems were left out (data.on_error=skip); they are "
            "listed in artifacts/skipped_rows.csv.")
    assert note in report["notes"] and note in (tmp_path / "skip" / "report.md").read_text()


@pytest.mark.parametrize("folder", ["plain/run", "with space/run", "it's a run", 'a "b" $HOME `x`'])
def test_printed_overrides_survive_the_shell_and_hydra(folder: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from calcinet.training.report import hydra_value

    path = Path("/tmp") / folder / "checkpoints" / "best.ckpt"
    (word,) = shlex.split(hydra_value("ckpt_path", path))  # what the shell hands over
    assert OverridesParser.create().parse_override(word).value() == str(path)


@pytest.mark.parametrize("override, line", [
    ("data.augment.intensity_prob=1.5",
     "data.augment.intensity_prob=1.5: expected a probability in [0, 1]"),
    ("data.augment.texture_noise_prob=abc",
     "data.augment.texture_noise_prob='abc': expected a number"),
    ("data.augment_on=gpu", "data.augment_on='gpu': expected one of "),
    ("model.network.channels=[8,0]", "model.network.channels=[8, 0]: expected the feature"),
    ("model.operating_point=median", "model.operating_point='median': expected one of "),
])
def test_a_bad_value_met_while_building_the_run_is_one_line(override: str, line: str,
                                                             tmp_path: Path) -> None:
    """Values checked where Hydra instantiates the data module or the model, not only those of
    the config check before it: one line naming the key, exit status 2, no traceback."""
    done = run_cli(["calcinet-train", *TINY, override, "logger=none",
                    f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"calcinet: error: {line}")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
