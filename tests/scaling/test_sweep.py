"""`-m hparams_search=optuna`: calcinet's Optuna sweeper, its study storage and its trials.

The slow tests run the real console script with tiny trials and read the results back through
Optuna's own storage classes and MLflow's client: a sweep killed mid-trial and rerun, two workers
sharing one journal file, and a pruned trial run by the submitit launcher.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from calcinet.config import ConfigError
from tests.helpers import DEBUG_EXPERIMENT, compose_config, run_cli
from tests.scaling.conftest import TINY
from tests.scaling.test_resume import KILL_HOOK


def _sweep(sweep_dir: Path, *extra: str) -> list[str]:
    return ["calcinet-train", "-m", "hparams_search=optuna", *TINY, "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep_dir}", *extra]


def _study(sweep_dir: Path, name: str = "calcinet"):
    """The study as Optuna itself reads it from the sweep's journal file."""
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


def _runs(uri: str, sweep_dir: Path):
    """(the parent run of the sweep, its child runs by Optuna trial number)."""
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(DEBUG_EXPERIMENT).experiment_id])
    (parent,) = [r for r in runs if "calcinet.parent_key" in r.data.tags]
    assert parent.data.tags["calcinet.parent_key"] == str(sweep_dir.resolve())
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1
    by_trial = {int(r.data.tags["calcinet.optuna_trial"]): r for r in children}
    assert len(by_trial) == len(children)  # one MLflow run per trial, none twice
    return parent, by_trial


def _settings(tmp_path: Path, **sweeper):
    from calcinet.sweeps.storage import StudySettings

    values = {"study_name": "s", "direction": "max", "heartbeat_interval": 1,
              "grace_period": 2, "max_retry": 3, **sweeper}
    return StudySettings.from_sweeper(values, tmp_path / "sweep")


def test_optuna_search_composes_over_existing_keys(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from calcinet.sweeps import space
    from calcinet.sweeps.storage import StudySettings

    cfg = compose_config("train", ["hparams_search=optuna"], run_dir=tmp_path)
    hydra_cfg = HydraConfig.get()
    sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
    settings = StudySettings.from_sweeper(sweeper, hydra_cfg.sweep.dir)
    assert settings.direction == ("maximize" if cfg.monitor.mode == "max" else "minimize")
    assert settings.location() == ("journal", str(settings.sweep_dir / "optuna_journal.log"))
    assert hydra_cfg.sweep.dir.endswith("/train/sweeps/calcinet")  # stable: a rerun resumes
    searched, fixed = space.parse(space.params_overrides(sweeper["params"]))
    assert fixed == []
    space.check_keys(searched, cfg)  # every searched key exists in the training config
    assert searched["optim.optimizer.lr"] == FloatDistribution(0.0003, 0.006, log=True)
    assert searched["data.batch_size"] == CategoricalDistribution([8, 16, 32])


def test_slurm_launcher_config_is_submitits_with_its_folder_in_the_sweep(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig

    compose_config("train", ["hparams_search=optuna", "hydra/launcher=slurm",
                             "hydra.launcher.partition=gpu"], run_dir=tmp_path)
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.launcher
    assert launcher._target_ == ("hydra_plugins.hydra_submitit_launcher.submitit_launcher."
                                 "SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    assert launcher.submitit_folder == f"{hydra_cfg.sweep.dir}/.submitit/%j"


def test_hydra_sweep_grammar_becomes_optuna_distributions() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from calcinet.sweeps import space

    searched, fixed = space.parse([
        "a=choice(compact, resnet18)", "b=range(8, 33, 8)", "c=interval(0.1, 0.5)",
        "d=tag(log, int, interval(1, 1024))", "e=range(0.0, 1.0, 0.25)", "debug=smoke",
        "g=tag(log, interval(1, 1024))",
        "f=choice(1, 2)", "f=3"])
    # Hydra's range, like Python's, stops before its end: range(8, 33, 8) is 8 ... 32.
    assert searched == {
        "a": CategoricalDistribution(["compact", "resnet18"]),
        "b": IntDistribution(8, 32, step=8),
        "c": FloatDistribution(0.1, 0.5),
        "d": IntDistribution(1, 1024, log=True),
        "e": FloatDistribution(0.0, 0.75, step=0.25),
        "g": FloatDistribution(1.0, 1024.0, log=True),
    }
    assert fixed == ["debug=smoke", "f=3"]  # a fixed value takes a key out of the search
    assert space.trial_overrides({"x": 0.5, "y": None, "z": True}) == ["x=0.5", "y=null",
                                                                       "z=true"]


def test_bad_sweep_input_names_the_key_and_what_is_expected(tmp_path: Path) -> None:
    from calcinet.sweeps import space
    from calcinet.sweeps.storage import open_storage, open_study

    with pytest.raises(ConfigError, match=r"storage='redis://h/0': unknown scheme 'redis'"):
        _settings(tmp_path, storage="redis://h/0").location()
    cfg = compose_config("train", [], run_dir=tmp_path / "run")
    searched, _ = space.parse(["optim.optimizer.learning_rate=interval(0.1, 0.2)"])
    with pytest.raises(ConfigError, match=r"'optim.optimizer.learning_rate' is not in the"):
        space.check_keys(searched, cfg)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.direction='up': expected maximize"):
        _settings(tmp_path, direction="up")
    settings = _settings(tmp_path)
    open_study(settings, open_storage(settings))
    minimise = _settings(tmp_path, direction="min")
    with pytest.raises(ConfigError, match=r"direction=minimize: the study 's' in .* was "
                                          r"created to maximize; expected direction=maximize"):
        open_study(minimise, open_storage(minimise))


@pytest.mark.slow
def test_resuming_with_another_search_space_stops_with_one_line_and_status_2(
    tmp_path: Path
) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    study = optuna.create_study(
        study_name="calcinet", direction="maximize", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna_journal.log"))))
    study.add_trial(optuna.trial.create_trial(
        params={"data.batch_size": 8}, value=0.5,
        distributions={"data.batch_size": CategoricalDistribution([8, 16, 32])}))
    result = run_cli(_sweep(sweep_dir, "hydra.sweeper.params=null", "data.batch_size=choice(8,16)"),
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "calcinet: error:" in line]
    assert errors == [
        "calcinet: error: hydra.sweeper.params: data.batch_size searches "
        "CategoricalDistribution(choices=(8, 16)), but the study 'calcinet' in "
        f"{sweep_dir / 'optuna_journal.log'} searched CategoricalDistribution(choices=(8, 16, "
        "32)); expected the study's search space to resume it, or another "
        "hydra.sweeper.study_name for a new study"]
    assert "Traceback" not in result.stderr
    assert len(_study(sweep_dir).trials) == 1  # nothing was asked
    assert not (sweep_dir / "trial_1").exists()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_a_silent_trial_is_failed_and_queued_again_a_beating_one_is_not(tmp_path: Path) -> None:
    """The journal storage's heartbeats, through Optuna's own stale-trial code."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    from calcinet.sweeps.storage import open_storage, open_study

    settings = _settings(tmp_path)
    storage = open_storage(settings)
    study = open_study(settings, storage)
    hour_ago = datetime.datetime.now() - datetime.timedelta(hours=1)
    for x in (0.25, 0.75):  # two trials started an hour ago, RUNNING ever since
        trial = optuna.trial.create_trial(state=TrialState.RUNNING, params={"x": x},
                                          distributions={"x": FloatDistribution(0, 1)})
        trial.datetime_start = hour_ago
        study.add_trial(trial)
    silent, beating = study.get_trials()
    storage.record_heartbeat(beating._trial_id)  # its worker is alive

    fail_stale_trials(study)

    # Read back by a storage of Optuna's own, as another worker would.
    trials = _study(settings.sweep_dir, "s").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING,
                                         TrialState.WAITING]
    assert trials[2].params == {"x": 0.25}
    assert trials[2].system_attrs["failed_trial"] == silent.number
    fail_stale_trials(study)  # the queued retry is not failed again, nor queued twice
    assert len(study.get_trials()) == 3
    retry = study.ask()  # the next trial asked for is the retry
    assert retry.number == 2 and retry.params == {"x": 0.25}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sweep_killed_mid_trial_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    """SIGKILL in trial 1 of 3, rerun: trial 0 is kept, trial 1 is failed and its parameters
    run again, and the study ends with exactly 3 complete trials under one MLflow parent."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    command = _sweep(sweep_dir, "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1",
                     "hydra.sweeper.grace_period=2")
    path = os.pathsep.join([str(KILL_HOOK), os.environ.get("PYTHONPATH", "")])
    killed = run_cli(command, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": path,
                                                 "CALCINET_KILL_AT": "after_commit:0:trial_1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    from optuna.trial import TrialState

    assert [t.state for t in _study(sweep_dir).trials] == [TrialState.COMPLETE,
                                                           TrialState.RUNNING]

    rerun = run_cli(command, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    trials = _study(sweep_dir).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and len(trials) == 4
    assert trials[1].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[1].params

    parent, runs = _runs(uri, sweep_dir)
    assert sorted(runs) == [t.number for t in trials]
    assert runs[1].info.status == "KILLED"  # closed by the rerun
    assert runs[1].data.tags["calcinet.trial_state"] == "FAIL"
    scores = {}
    for trial in complete:
        run = runs[trial.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["calcinet.trial_state"] == "COMPLETE"
        assert run.data.metrics["best/val_auroc"] == pytest.approx(trial.value)
        scores[run.info.run_id] = trial.value
    best = max(scores.values())
    assert parent.data.metrics["best/val_auroc"] == pytest.approx(best)
    assert scores[parent.data.tags["calcinet.best_run_id"]] == pytest.approx(best)
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best)
    assert results["trials"] == {"COMPLETE": 3, "FAIL": 1}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_share_one_journal_and_run_each_trial_once(tmp_path: Path) -> None:
    """The README's command started twice at once in a fresh project (no MLflow store yet, the
    default sweep folder): 4 trials in all, each launched by one worker."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "outputs" / "train" / "sweeps" / "calcinet"
    bin_dir = Path(sys.executable).parent
    command = [*_sweep(sweep_dir, "hydra.sweeper.n_trials=4",
                       "hydra.sweeper.heartbeat_interval=2")]
    command.remove(f"hydra.sweep.dir={sweep_dir}")  # the default folder, as a user runs it
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HYDRA_FULL_ERROR": "1"}
    logs = [tmp_path / f"worker{k}.log" for k in (0, 1)]
    workers = [subprocess.Popen([str(bin_dir / command[0]), *command[1:]], cwd=tmp_path, env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    try:
        codes = [worker.wait(timeout=540) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)

    from optuna.trial import TrialState

    trials = _study(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    launched = [[int(line.split("Trial ")[1].split(":")[0]) for line in log.read_text()
                 .splitlines() if "[HYDRA] Trial " in line] for log in logs]
    assert sorted(launched[0] + launched[1]) == [0, 1, 2, 3]  # each by one worker only
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 4  # seeded per trial number: no two workers draw alike
    parent, runs = _runs(uri, sweep_dir)
    assert sorted(runs) == [0, 1, 2, 3]
    assert {(sweep_dir / f"trial_{n}" / "mlflow_run_id.txt").read_text().strip()
            for n in range(4)} == {r.info.run_id for r in runs.values()}
    assert parent.data.metrics["best/val_auroc"] == pytest.approx(max(t.value for t in trials))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pruned_trial_run_by_submitit_is_pruned_in_the_study_and_in_mlflow(
    tmp_path: Path
) -> None:
    """A pruner no score passes (val/auroc never exceeds 1.01) stops the trial after its first
    epoch of two; the trial runs in a process of submitit's local executor."""
    import torch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    result = run_cli(["calcinet-train", "-m", "hparams_search=optuna",
                      "hydra/launcher=submitit_local", *TINY, "trainer.max_epochs=2",
                      f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_trials=1",
                      "hydra.sweeper.pruner=null",
                      "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1.01}"],
                     cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-4000:]
    from optuna.trial import TrialState

    (trial,) = _study(sweep_dir).trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    last = sweep_dir / "trial_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert list((sweep_dir / ".submitit").glob("*/*_0_log.out"))  # a submitit job ran it
    parent, runs = _runs(uri, sweep_dir)
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["calcinet.trial_state"] == "PRUNED"
    assert "best/val_auroc" not in parent.data.metrics  # only complete trials compete
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["trials"] == {"PRUNED": 1} and "best_value" not in results


@pytest.mark.slow
def test_a_trial_refused_by_the_config_check_fails_once_and_is_not_queued_again(
        tmp_path: Path) -> None:
    """Parameters calcinet refuses (batch size 0) fail their trial with calcinet's one line;
    nothing is queued again, and past ``max_failures`` the sweep stops with status 2."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli(_sweep(sweep_dir, "hydra.sweeper.params=null", "data.batch_size=choice(0)",
                            "hydra.sweeper.n_trials=2", "logger=none"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "calcinet: error:" in line]
    assert errors == ["calcinet: error: data.batch_size=0: expected a positive integer"]
    assert "heartbeat" not in result.stdout + result.stderr
    from optuna.trial import TrialState

    assert [t.state for t in _study(sweep_dir).trials] == [TrialState.FAIL]  # none WAITING
