"""`logger=[csv,tensorboard,mlflow]`: what a sweep leaves there, read back with TensorBoard's
event reader and MLflow's client."""

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import REPO, run_in_process
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

ALL = "logger=[csv,tensorboard,mlflow]"


def events(run_dir: Path) -> EventAccumulator:
    reader = EventAccumulator(str(run_dir))
    reader.Reload()
    return reader


def hparams_of(reader: EventAccumulator) -> tuple[dict, str]:
    """A TensorBoard run's HParams session: its hyperparameters, and its end status."""
    content = reader.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return values, api_pb2.Status.Name(end.status)


def mlflow_runs(root: Path, experiment: str) -> tuple[mlflow.MlflowClient, list]:
    client = mlflow.MlflowClient(f"sqlite:///{root}/outputs/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return client, sorted(
        client.search_runs([found.experiment_id]), key=lambda r: r.data.tags["run_dir"]
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """The issue's command: `python run.py -m hidden=20,40 epochs=2 logger=[...]`."""
    root = tmp_path_factory.mktemp("loggers")
    result = run_in_process("-m", "hidden=20,40", "epochs=2", ALL, cwd=root)
    assert result.code == 0, result.err
    (sweep,) = (root / "outputs" / "sweeps").iterdir()
    return sweep


def test_tensorboard_has_each_runs_epochs_and_hparams(grid):
    for job, hidden in (("0", 20), ("1", 40)):
        reader = events(grid / job)
        assert [e.step for e in reader.Scalars("val_acc")] == [1, 2]
        assert [e.step for e in reader.Scalars("lr")] == [1, 2]
        assert "final/test_acc" in reader.Tags()["scalars"]
        values, status = hparams_of(reader)
        assert values["hidden"] == hidden and values["lr"] == pytest.approx(0.1)
        assert values["model"] == "softmax_ce" and status == "STATUS_SUCCESS"


def test_mlflow_has_one_finished_run_per_job_with_params_and_epoch_metrics(grid):
    client, runs = mlflow_runs(grid.parent.parent.parent, grid.name)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.params["hidden"] for r in runs] == ["20", "40"]
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert run.data.tags["status"] == "complete" and run.data.tags["sweep"] == grid.name
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == {"curves.png", "metrics.json"}


def test_a_search_logs_each_trial_into_the_studys_experiment(run_app, tmp_path):
    result = run_app("hparams_search=optuna", "hydra.sweeper.n_trials=2", "epochs=1", ALL)
    assert result.code == 0, result.err
    study = "optuna-mnist_5k-val_acc"
    _, runs = mlflow_runs(tmp_path, study)
    assert sorted(r.data.tags["trial"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for trial in ("0", "1"):
        reader = events(tmp_path / "outputs" / "optuna" / study / trial)
        assert [e.step for e in reader.Scalars("val_acc")] == [1]
        assert hparams_of(reader)[0]["trial"] == int(trial)


def test_a_failed_run_ends_failed_in_mlflow_and_tensorboard(run_app, tmp_path):
    run_app("-m", "lr=1e38,0.1", "epochs=2", ALL)  # how a grid goes on is not tested here
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    _, runs = mlflow_runs(tmp_path, sweep.name)
    assert runs[0].info.status == "FAILED" and runs[0].data.tags["status"] == "failed"
    assert "became nan" in runs[0].data.tags["error"]
    assert hparams_of(events(sweep / "0"))[1] == "STATUS_FAILURE"


def test_an_unreachable_tracking_store_warns_once_and_the_run_goes_on(run_app, tmp_path):
    (tmp_path / "afile").write_text("")
    store = f"sqlite:///{tmp_path}/afile/mlflow.db"  # under a file: it cannot be made
    result = run_app("epochs=2", "logger=[csv,mlflow]", f"logger.mlflow.tracking_uri={store}")
    assert result.code == 0, result.err
    warnings = [line for line in result.out.splitlines() if "logger mlflow failed" in line]
    assert len(warnings) == 1
    (metrics,) = tmp_path.glob("outputs/runs/*/metrics.json")
    assert '"status": "complete"' in metrics.read_text()


@pytest.mark.parametrize("args", [[], ["-m", "hidden=20,40"], ["hparams_search=optuna"]])
def test_a_logger_that_is_not_installed_is_one_line_naming_its_extra(tmp_path, args):
    # sys.modules[name] = None is how Python itself marks a module as not importable.
    argv = ["run.py", *args, "logger=[csv,mlflow]"]
    code = (
        f"import sys; sys.modules['mlflow'] = None; sys.argv = {argv!r};"
        "from mlp_sweep.app import main; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: logger=mlflow needs the mlflow package, which is not installed: "
        'pip install -e ".[mlflow]"'
    ]
    assert not list(tmp_path.rglob("metrics.json"))  # nothing trained


def test_importing_mlp_sweep_imports_neither_mlflow_nor_tensorboard():
    code = (
        "import sys, mlp_sweep.app, mlp_sweep.job, mlp_sweep.loggers;"
        "print(sorted(m for m in ('mlflow', 'tensorboard') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.strip() == "[]", proc.stderr


def live_runs(root: Path, experiment: str) -> list:
    """The MLflow runs of an experiment that are not deleted."""
    return mlflow_runs(root, experiment)[1]


def test_a_fresh_start_replaces_the_tracker_records_of_the_earlier_run(run_app, tmp_path):
    run_app("hydra.run.dir=outputs/r/a", "lr=1e38", "epochs=2", ALL)  # fails
    again = run_app("hydra.run.dir=outputs/r/a", "lr=0.1", "resume=false", "epochs=1", ALL)
    assert again.code == 0, again.err
    (run,) = live_runs(tmp_path, "r")
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.1"
    assert "error" not in run.data.tags
    assert len(list((tmp_path / "outputs/r/a").glob("events.out.tfevents.*"))) == 1
    assert hparams_of(events(tmp_path / "outputs/r/a"))[1] == "STATUS_SUCCESS"


def test_training_a_complete_run_further_updates_its_params(run_app, tmp_path):
    assert run_app("hydra.run.dir=outputs/r/a", "epochs=2", ALL).code == 0
    assert run_app("hydra.run.dir=outputs/r/a", "epochs=3", ALL).code == 0
    client, (run,) = mlflow_runs(tmp_path, "r")
    assert run.data.params["epochs"] == "3" and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert sorted(m.step for m in history) == [1, 2, 3]
