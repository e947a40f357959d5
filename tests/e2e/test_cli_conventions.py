"""One convention for every console script: help that lists what a command uses, exit statuses,
no traceback on a closed pipe, the run's report in its log file, quiet mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calcinet.cli import BROKEN_PIPE, CONFIG_DIR
from tests.helpers import run_cli

BIN = Path(sys.executable).parent

# The groups each Hydra command composes, read from its defaults list by hand.
GROUPS = {
    "calcinet-train": {"callbacks", "data", "debug", "experiment", "hparams_search", "logger",
                       "model", "optim", "paths", "trainer"},
    "calcinet-cv": {"callbacks", "data", "debug", "experiment", "hparams_search", "logger",
                    "model", "optim", "paths", "trainer"},
    "calcinet-evaluate": {"data", "paths"},
    "calcinet-export": {"paths"},
    "calcinet-synth": {"paths"},
}


def _groups_section(text: str) -> dict[str, list[str]]:
    section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    lines = [line for line in section.splitlines()[1:] if ": " in line]
    return {g: o.split(", ") for g, o in (line.split(": ", 1) for line in lines)}


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_help_lists_only_the_groups_the_command_uses(name: str, tmp_path: Path) -> None:
    done = run_cli([name, "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    groups = _groups_section(done.stdout)
    assert set(groups) == GROUPS[name]
    for group, options in groups.items():
        on_disk = sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml")
                         if not p.stem.startswith("_"))
        assert options == on_disk, group  # every option, and no internal `_base`
    assert "exit status:" in done.stdout and "130  stopped by Ctrl+C" in done.stdout
    assert done.stdout.lstrip().startswith(name.replace("-cv", "-train"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["calcinet-train", "trainer.max_epoch=3"],
         "calcinet: error: Could not override 'trainer.max_epoch'. To append to your config use "
         "+trainer.max_epoch=3: Key 'max_epoch' is not in struct"),
        (["calcinet-evaluate", "bootstrap.samples=3"],
         "calcinet: error: Could not override 'bootstrap.samples'. To append to your config use "
         "+bootstrap.samples=3: Key 'samples' is not in struct"),
        (["calcinet-train", "model=vgg"], "calcinet: error: In 'train': Could not find "
         "'model/vgg' Available options in 'model': compact, densenet121,"),
        (["calcinet-synth", "num_samples=[1"], "calcinet: error: "),
        (["calcinet-synth", "output_dri=x"], "calcinet: error: Could not override 'output_dri'."),
    ],
)
def test_hydra_errors_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path
                                           ) -> None:
    done = run_cli([*args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(message)
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["calcinet-predict", "calcinet-compare",
                                  "calcinet-check-manifest", "calcinet-synth"])
def test_bad_option_exits_2(name: str, tmp_path: Path) -> None:
    done = run_cli([name, "a.csv", "--no-such-option"], cwd=tmp_path)
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-option" in done.stderr
    assert "Traceback" not in done.stderr


ARGPARSE = ("calcinet-predict", "calcinet-compare", "calcinet-check-manifest")


def closed_pipe(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run with a stdout pipe whose reader is gone before the command writes (``| head``)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([str(BIN / args[0]), *args[1:]], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=cwd, timeout=300)
    finally:
        os.close(write)


@pytest.mark.parametrize("name", ["calcinet-train", "calcinet-evaluate", "calcinet-export",
                                  "calcinet-synth", "calcinet-cv", "calcinet-predict",
                                  "calcinet-compare", "calcinet-check-manifest"])
def test_closed_pipe_ends_quietly(name: str, tmp_path: Path) -> None:
    done = closed_pipe([name, "--help"], tmp_path)
    assert done.stderr == ""
    # argparse's help gives up on a closed pipe by itself (status 0); the others exit 141.
    assert done.returncode == (0 if name in ARGPARSE else BROKEN_PIPE)


def test_synth_log_holds_the_report_and_quiet_keeps_the_terminal_clean(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = run_cli(["calcinet-synth", f"output_dir={tmp_path / 'data'}", "num_samples=2",
                    "montage=false", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "data" / "manifest.csv"
    assert done.stdout == f"Wrote 2 samples and {manifest}\n"  # bare lines, no log prefix
    assert f"[calcinet][INFO] - Wrote 2 samples and {manifest}" in (run / "synth.log").read_text()

    quiet = run_cli(["calcinet-synth", f"output_dir={tmp_path / 'quiet'}", "num_samples=2",
                     "montage=false", "quiet=true", f"hydra.run.dir={tmp_path / 'q'}"],
                    cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""
    assert "Wrote 2 samples" in (tmp_path / "q" / "synth.log").read_text()

    old = run_cli(["calcinet-synth", f"out_dir={tmp_path / 'old'}", "num_samples=2",
                   "montage=false", f"hydra.run.dir={tmp_path / 'o'}"], cwd=tmp_path)
    assert old.returncode == 0, old.stderr
    assert old.stderr == "calcinet: warning: out_dir= is deprecated; use output_dir=\n"
    assert (tmp_path / "old" / "manifest.csv").is_file()


@pytest.mark.slow
def test_train_log_holds_what_the_command_printed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = run_cli(["calcinet-train", "debug=smoke", f"hydra.run.dir={run}"], cwd=tmp_path,
                   env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert done.returncode == 0, done.stderr[-3000:]
    logged = (run / "train.log").read_text()
    report = done.stdout[done.stdout.index("Run folder:"):].splitlines()
    assert report and all(line in logged for line in report)
    # Lightning's own messages reach the file, once on the terminal, without advertisements.
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in logged
    assert done.stdout.count("`Trainer.fit` stopped") == 1
    assert "INFO: " not in done.stderr
    for text in (done.stdout, done.stderr, logged):
        assert "litlogger" not in text and "litmodels" not in text


def test_check_manifest_exit_statuses_and_spacing_spellings(tmp_path: Path) -> None:
    missing = run_cli(["calcinet-check-manifest", str(tmp_path / "nope.csv")], cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (f"calcinet: error: {tmp_path / 'nope.csv'}: no such file; "
                              "expected a manifest CSV (path,label,...)\n")
    bad = run_cli(["calcinet-check-manifest", "m.csv", "--npy-spacing", "1,0,1"], cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == ("calcinet: error: --npy-spacing='1,0,1': expected three positive "
                          "numbers x,y,z (mm)\n")
    hu = np.random.default_rng(0).uniform(-1000, 1500, (8, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", hu)  # a CT-like range of HU
    (tmp_path / "m.csv").write_text("path,label,split\na.npy,benign,test\n")
    for spelling in (["1,1,2"], ["1", "1", "2"]):
        done = run_cli(["calcinet-check-manifest", "m.csv", "--for", "evaluation",
                        "--npy-spacing", *spelling], cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
